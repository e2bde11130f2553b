"""The charging session of one EVSE, as a pure state machine.

``step(state, event) -> (state, effects)``: no I/O, no clock. The controller
(``agent/evse/controller.py``) feeds it events and executes the effects in order.

The machine stores the facts (plugged, power requested, faults, authorization,
transaction, limit); the outputs (contactor, pilot, OCPP status) are *derived*
from the facts after every event and emitted as effects only when they change.
Deriving them in one place is what makes the safety invariant easy to check:

    the contactor is on only if CP is in C or D, a transaction is running for an
    authorized id, no fault or pilot error is active, and the EVSE offers >= 6 A.

Effect order is part of the contract: when the contactor must open, ``SetContactor(False)``
is the first effect, before the pilot changes and before any transaction bookkeeping
(DESIGN "Safety ordering"). When it may close, it is the last effect.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TypeAlias

from agent.events import (
    ConnectorStatus,
    FaultCode,
    StopReason,
    TxChargingState,
    TxPoint,
    TxUpdateTrigger,
)
from agent.evse import iec61851
from agent.evse.iec61851 import PilotEvent
from hal.pilot import PilotOutput

CONNECTION_TIMER = "connection_timeout"

OCPP16_START_POINTS: frozenset[TxPoint] = frozenset({TxPoint.POWER_PATH_CLOSED})
"""OCPP 1.6's fixed start: the transaction begins once plugged in *and* authorized."""
OCPP16_STOP_POINTS: frozenset[TxPoint] = frozenset({TxPoint.AUTHORIZED})
"""OCPP 1.6's fixed stop: deauthorization (local / remote stop...) ends it; unplugging
ends it only with ``stop_tx_on_ev_side_disconnect``."""

DEAUTHORIZING_STOPS = frozenset({StopReason.LOCAL, StopReason.REMOTE, StopReason.DEAUTHORIZED})
"""Stop requests that withdraw the authorization; with a stop point that is still true
(e.g. only ``EV_CONNECTED``) the transaction outlives them until that point is lost.
Every other stop request (reset, unlock, emergency...) ends the transaction at once."""

EV_SIDE_ERRORS = frozenset({FaultCode.EV_COMMUNICATION_ERROR})
"""Errors on the EV's side of the link. They stop the energy exactly as a fault does
(contactor open, no PWM / output off), but OCPP 1.6 allows EVCommunicationError only
with Preparing, SuspendedEV, SuspendedEVSE and Finishing (REFERENCE 2.3): the status
is the session's (SuspendedEVSE while a transaction runs) with the error code, never
Faulted."""


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class ChargerConfig:
    """Settings the machine consults; changed at run time by ``ConfigChanged``.

    Attributes:
        connection_timeout_s: Authorized but not plugged in for this long ->
            the authorization lapses (OCPP 1.6 ConnectionTimeOut).
        stop_tx_on_ev_side_disconnect: Unplugging the EV ends the transaction
            (1.6 StopTransactionOnEVSideDisconnect); when False the transaction
            stays and the connector is SuspendedEV.
        ventilation_available: Whether state D may be energised (IEC 61851-1: D
            needs ventilation; without it D is never energised).
        tx_start_points: A transaction begins as soon as any of these is reached
            (:class:`~agent.events.TxPoint`); default: the OCPP 1.6 rule.
        tx_stop_points: A transaction ends as soon as any of these that was reached
            during it is no longer true; default: the OCPP 1.6 rule.
    """

    connection_timeout_s: float = 60.0
    stop_tx_on_ev_side_disconnect: bool = True
    ventilation_available: bool = False
    tx_start_points: frozenset[TxPoint] = OCPP16_START_POINTS
    tx_stop_points: frozenset[TxPoint] = OCPP16_STOP_POINTS


# ---------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Pilot:
    """The pilot events of one CP sample (IEC 61851 interpreter), applied together.

    C -> A is "power released" and "unplugged" at once; applying them as one
    event avoids reporting a status that never existed in between.
    """

    events: tuple[PilotEvent, ...]

    def __init__(self, *events: PilotEvent) -> None:
        object.__setattr__(self, "events", events)


@dataclass(frozen=True, slots=True)
class TokenPresented:
    """A local id token was read (RFID card, keypad)."""

    id_tag: str


@dataclass(frozen=True, slots=True)
class RemoteStartRequested:
    """The CSMS asked to start. ``authorize`` False means "already authorized"."""

    id_tag: str
    authorize: bool
    remote_start_id: int | None = None
    reservation_id: int | None = None
    """The reservation the start uses when ``authorize`` is False (the station decided)."""


@dataclass(frozen=True, slots=True)
class AuthorizationResolved:
    """The answer to a ``RequestAuthorization`` effect, reservations already applied."""

    id_tag: str
    accepted: bool
    reservation_id: int | None = None


@dataclass(frozen=True, slots=True)
class StopRequested:
    """Stop the running transaction (remote stop, reset, unlock, deauthorization)."""

    reason: StopReason


@dataclass(frozen=True, slots=True)
class FaultChanged:
    """A hardware fault was raised (``active``) or cleared."""

    code: FaultCode
    active: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AvailabilityChanged:
    """Operative / inoperative (ChangeAvailability, persisted by the station)."""

    operative: bool


@dataclass(frozen=True, slots=True)
class LimitChanged:
    """New effective current limit in A (min of every limit; the controller computes it)."""

    limit_a: float


@dataclass(frozen=True, slots=True)
class TimerExpired:
    """A timer started by ``StartTimer`` ran out."""

    name: str


@dataclass(frozen=True, slots=True)
class ConfigChanged:
    config: ChargerConfig


@dataclass(frozen=True, slots=True)
class ReservationChanged:
    """The connector is now held by a reservation (``reserved``) or free again.

    Who may use a held connector is the reservation book's decision (it answers
    before ``AuthorizationResolved`` / ``RemoteStartRequested`` are posted);
    the machine only shows Reserved while idle.
    """

    reserved: bool


Event: TypeAlias = (
    Pilot
    | TokenPresented
    | RemoteStartRequested
    | AuthorizationResolved
    | StopRequested
    | FaultChanged
    | AvailabilityChanged
    | LimitChanged
    | TimerExpired
    | ConfigChanged
    | ReservationChanged
)


# --------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class SetContactor:
    on: bool


@dataclass(frozen=True, slots=True)
class SetPilot:
    output: PilotOutput


@dataclass(frozen=True, slots=True)
class RequestAuthorization:
    id_tag: str


@dataclass(frozen=True, slots=True)
class BeginTransaction:
    """Begin a transaction (journal it).

    Attributes:
        id_tag: The authorizing id, ``""`` when it began before any authorization
            (start point ``EV_CONNECTED``, cable first).
        started_by: The fact whose arrival reached the start point: ``EV_CONNECTED``
            (plug-in came last), ``AUTHORIZED`` (authorization came last),
            ``ENERGY_TRANSFER`` (the EV's power request came last); None when
            something else (a fault clearing, a limit rising) let it begin.
        charging_state: The transaction's charging state as it begins.
        authorized: False when it begins before any id was accepted.
    """

    id_tag: str
    remote_start_id: int | None
    reservation_id: int | None = None
    started_by: TxPoint | None = TxPoint.AUTHORIZED
    charging_state: TxChargingState = TxChargingState.SUSPENDED_EV
    authorized: bool = True


@dataclass(frozen=True, slots=True)
class EndTransaction:
    reason: StopReason


@dataclass(frozen=True, slots=True)
class TransactionUpdated:
    """The running transaction changed (journal an "update" row).

    ``trigger`` AUTHORIZED / REMOTE_START: an id was accepted for a transaction that
    began without one (``id_tag`` is it; a remote start's ``remote_start_id``).
    CHARGING_STATE_CHANGED: ``charging_state`` is new.
    """

    trigger: TxUpdateTrigger
    charging_state: TxChargingState
    id_tag: str | None = None
    remote_start_id: int | None = None


@dataclass(frozen=True, slots=True)
class PublishStatus:
    status: ConnectorStatus
    error_code: FaultCode | None
    info: str | None


@dataclass(frozen=True, slots=True)
class StartTimer:
    name: str
    delay_s: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


Effect: TypeAlias = (
    SetContactor
    | SetPilot
    | RequestAuthorization
    | BeginTransaction
    | EndTransaction
    | TransactionUpdated
    | PublishStatus
    | StartTimer
    | CancelTimer
)


# ----------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class ChargerState:
    """Facts about one EVSE plus the outputs last commanded.

    Attributes:
        plugged, power_requested, ventilation_required, pilot_error: from the CP.
        faults: active hardware faults with their detail text (EV-side errors,
            ``EV_SIDE_ERRORS``, included: they block energy but do not fault).
        operative: requested availability (a running transaction finishes first).
        pending_auth: id tag waiting for an authorization answer.
        authorized_id: accepted id tag not yet used by a transaction.
        remote_start_id: remote start id to attach to the next transaction.
        reserved: a reservation holds this connector (status Reserved while idle).
        reservation_id: the reservation the authorized id will use up.
        tx_id_tag: id tag of the running transaction, None when there is none,
            ``""`` while it waits for an id (it began before authorization).
        tx_authorized: the running transaction's id is accepted (energy may flow).
        tx_reached: the start/stop points that were true during the transaction.
        tx_deauth_reason: why a transaction that outlives its deauthorization (stop
            point still true) was deauthorized; it ends with this reason.
        charging_state: the running transaction's charging state last journaled.
        finishing: a transaction ended with the cable still plugged in.
        limit_a: effective current limit in A.
        contactor_on, pilot, status: outputs last commanded (for diffing).
    """

    config: ChargerConfig = field(default_factory=ChargerConfig)
    plugged: bool = False
    power_requested: bool = False
    ventilation_required: bool = False
    pilot_error: bool = False
    faults: tuple[tuple[FaultCode, str], ...] = ()
    operative: bool = True
    pending_auth: str | None = None
    authorized_id: str | None = None
    remote_start_id: int | None = None
    reserved: bool = False
    reservation_id: int | None = None
    tx_id_tag: str | None = None
    tx_authorized: bool = False
    tx_reached: frozenset[TxPoint] = frozenset()
    tx_deauth_reason: StopReason | None = None
    charging_state: TxChargingState | None = None
    finishing: bool = False
    limit_a: float = 0.0
    contactor_on: bool = False
    pilot: PilotOutput = field(default_factory=PilotOutput.steady)
    status: PublishStatus | None = None

    @property
    def tx_active(self) -> bool:
        return self.tx_id_tag is not None

    @property
    def awaiting_id(self) -> bool:
        """A transaction runs that began before any id was accepted (cable first): a
        token or a remote start authorizes it."""
        return self.tx_active and not self.tx_authorized and self.tx_deauth_reason is None

    @property
    def faulted(self) -> bool:
        """A fault that makes the status Faulted: a hardware fault other than an
        EV-side error, or CP in E/F."""
        return self.pilot_error or any(code not in EV_SIDE_ERRORS for code, _ in self.faults)

    @property
    def ev_error(self) -> FaultCode | None:
        """The active EV-side error (``EV_SIDE_ERRORS``), None when there is none."""
        return next((code for code, _ in self.faults if code in EV_SIDE_ERRORS), None)

    @property
    def blocked(self) -> bool:
        """No energy and no new session: any fault, EV-side errors included."""
        return bool(self.faults) or self.pilot_error


def initial_state(
    *, config: ChargerConfig, operative: bool, limit_a: float
) -> tuple[ChargerState, list[Effect]]:
    """The state at start-up and the effects that put the outputs in line with it."""
    state = ChargerState(config=config, operative=operative, limit_a=limit_a, status=None)
    # Force the first output diff: contactor off and steady pilot are commanded
    # explicitly even though the defaults already say so.
    forced = replace(state, contactor_on=True, pilot=PilotOutput.error())
    return _settle(forced, [])


# ------------------------------------------------------------------------ step


def _same_tag(a: str | None, b: str) -> bool:
    # OCPP IdToken comparison is case-insensitive (1.6 IdToken is CiString20).
    return a is not None and a.upper() == b.upper()


def step(state: ChargerState, event: Event) -> tuple[ChargerState, list[Effect]]:
    """Apply one event; return the new state and the effects to execute in order."""
    effects: list[Effect] = []
    s = state
    before = _start_points(s)
    match event:
        case Pilot(events=pilot_events):
            for pe in pilot_events:
                s = _on_pilot(s, pe, effects)
        case TokenPresented(id_tag=tag):
            s = _on_token(s, tag, effects)
        case RemoteStartRequested(
            id_tag=tag, authorize=authorize, remote_start_id=rsid, reservation_id=reservation
        ):
            if _awaiting_id(s) and s.pending_auth is None and s.operative:
                # cable first: the remote start authorizes the running transaction
                if authorize:
                    s = replace(s, pending_auth=tag, remote_start_id=rsid)
                    effects.append(RequestAuthorization(tag))
                else:
                    s = _authorize_tx(s, tag, effects, rsid)
                return _settle(s, effects)
            if not _can_start(s) or s.pending_auth is not None:
                return _settle(s, effects)  # the station answers Rejected before this
            s = replace(s, remote_start_id=rsid)
            if authorize:
                s = replace(s, pending_auth=tag)
                effects.append(RequestAuthorization(tag))
            elif _may_use(s, reservation):
                s = _authorized(s, tag, effects, reservation)
            else:
                s = replace(s, remote_start_id=None)
        case AuthorizationResolved(id_tag=tag, accepted=accepted, reservation_id=reservation):
            if _same_tag(s.pending_auth, tag):
                s = replace(s, pending_auth=None)
                if s.tx_active:
                    if accepted and _awaiting_id(s):
                        s = _authorize_tx(s, tag, effects, s.remote_start_id)
                    s = replace(s, remote_start_id=None)
                elif accepted and _can_start(s) and _may_use(s, reservation):
                    s = _authorized(s, tag, effects, reservation)
                else:
                    s = replace(s, remote_start_id=None)
        case StopRequested(reason=reason):
            if s.tx_active:
                s = _stop_tx(s, reason, effects)
            else:
                s = _drop_authorization(s, effects)
        case FaultChanged(code=code, active=active, detail=detail):
            others = tuple(f for f in s.faults if f[0] != code)
            s = replace(s, faults=(*others, (code, detail)) if active else others)
        case AvailabilityChanged(operative=operative):
            s = replace(s, operative=operative)
            if not operative and not s.tx_active:
                s = _drop_authorization(s, effects)
        case LimitChanged(limit_a=limit_a):
            s = replace(s, limit_a=limit_a)
        case TimerExpired(name=name):
            if name == CONNECTION_TIMER and not s.plugged:
                if not s.tx_active:
                    s = _drop_authorization(s, effects)
                elif TxPoint.EV_CONNECTED not in s.tx_reached:
                    # EVConnectionTimeOut: a transaction begun at authorization is
                    # cancelled when no EV was plugged in in time
                    s = _end_tx(s, StopReason.TIMEOUT, effects)
        case ConfigChanged(config=config):
            s = replace(s, config=config)
        case ReservationChanged(reserved=reserved):
            s = replace(s, reserved=reserved)
    s = _maybe_end(s, effects)
    s = _maybe_begin(s, before, effects)
    late: list[Effect] = []
    if s.tx_active:
        charging_state = tx_charging_state(s)
        if charging_state != s.charging_state:
            s = replace(s, charging_state=charging_state)
            late.append(TransactionUpdated(TxUpdateTrigger.CHARGING_STATE_CHANGED, charging_state))
    return _settle(s, effects, late)


def _on_pilot(s: ChargerState, pe: PilotEvent, effects: list[Effect]) -> ChargerState:
    match pe:
        case PilotEvent.PLUGGED:
            incipient = s.tx_active and TxPoint.EV_CONNECTED not in s.tx_reached
            if s.authorized_id is not None or incipient:
                effects.append(CancelTimer(CONNECTION_TIMER))
            s = replace(s, plugged=True, finishing=False)
        case PilotEvent.UNPLUGGED:
            s = replace(s, plugged=False, power_requested=False, finishing=False)
            if s.tx_active and _ends_on_unplug(s):
                # a transaction that outlived its stop request ends with that reason
                s = _end_tx(s, s.tx_deauth_reason or StopReason.EV_DISCONNECTED, effects)
        case PilotEvent.POWER_REQUESTED:
            s = replace(s, power_requested=True)
        case PilotEvent.POWER_RELEASED:
            s = replace(s, power_requested=False)
        case PilotEvent.VENTILATION_REQUIRED:
            s = replace(s, ventilation_required=True)
        case PilotEvent.VENTILATION_RELEASED:
            s = replace(s, ventilation_required=False)
        case PilotEvent.ERROR_RAISED:
            s = replace(s, pilot_error=True)
        case PilotEvent.ERROR_CLEARED:
            s = replace(s, pilot_error=False)
    return s


def _ends_on_unplug(s: ChargerState) -> bool:
    """Whether unplugging ends the running transaction (checked in the pilot sample's
    order, so C -> A opens, ends and reports Available in one step)."""
    if TxPoint.EV_CONNECTED not in s.tx_reached:
        return False  # begun at authorization: the EV has not arrived yet
    if s.config.stop_tx_on_ev_side_disconnect or _awaiting_id(s):
        return True
    stop = s.config.tx_stop_points & s.tx_reached
    return bool(stop & {TxPoint.EV_CONNECTED, TxPoint.POWER_PATH_CLOSED})


def _on_token(s: ChargerState, tag: str, effects: list[Effect]) -> ChargerState:
    if s.tx_active:
        if _awaiting_id(s):
            # cable first: the token authorizes the running transaction
            if s.pending_auth is None and s.operative:
                effects.append(RequestAuthorization(tag))
                return replace(s, pending_auth=tag)
            return s
        # The same token presented again stops the session (OCPP 1.6 3.5: local stop).
        if s.tx_authorized and _same_tag(s.tx_id_tag, tag):
            return _stop_tx(s, StopReason.LOCAL, effects)
        return s
    if s.pending_auth is not None or not _can_start(s):
        return s
    if _same_tag(s.authorized_id, tag):
        return _drop_authorization(s, effects)  # presenting it again cancels
    effects.append(RequestAuthorization(tag))
    return replace(s, pending_auth=tag)


def _can_start(s: ChargerState) -> bool:
    return s.operative and not s.blocked and not s.tx_active


def _awaiting_id(s: ChargerState) -> bool:
    """A transaction runs that began before any id was accepted (cable first)."""
    return s.awaiting_id


def _may_use(s: ChargerState, reservation_id: int | None) -> bool:
    # A held connector starts only through a reservation. The book decided before
    # the event was posted; this closes the window where the hold arrived after.
    return not s.reserved or reservation_id is not None


def _authorized(
    s: ChargerState, tag: str, effects: list[Effect], reservation_id: int | None = None
) -> ChargerState:
    s = replace(s, authorized_id=tag, reservation_id=reservation_id)
    if not s.plugged:
        effects.append(StartTimer(CONNECTION_TIMER, s.config.connection_timeout_s))
    return s


def _authorize_tx(
    s: ChargerState, tag: str, effects: list[Effect], remote_start_id: int | None = None
) -> ChargerState:
    """An id was accepted for a transaction that began without one (cable first), by a
    token or (``remote_start_id``) a remote start."""
    s = replace(s, tx_id_tag=tag, tx_authorized=True, remote_start_id=None)
    charging_state = tx_charging_state(s)
    trigger = (
        TxUpdateTrigger.AUTHORIZED if remote_start_id is None else TxUpdateTrigger.REMOTE_START
    )
    effects.append(TransactionUpdated(trigger, charging_state, tag, remote_start_id))
    return replace(s, charging_state=charging_state, tx_reached=s.tx_reached | _tx_points(s))


def _drop_authorization(s: ChargerState, effects: list[Effect]) -> ChargerState:
    if s.authorized_id is not None and not s.plugged:
        effects.append(CancelTimer(CONNECTION_TIMER))
    return replace(
        s, authorized_id=None, pending_auth=None, remote_start_id=None, reservation_id=None
    )


def _start_points(s: ChargerState) -> frozenset[TxPoint]:
    """The start points reached now (meaningful while no transaction runs)."""
    authorized = s.authorized_id is not None
    points: set[TxPoint] = set()
    if s.plugged and not s.finishing:  # a finished session's cable is not a new arrival
        points.add(TxPoint.EV_CONNECTED)
    if authorized:
        points.add(TxPoint.AUTHORIZED)
        if s.plugged:
            points.add(TxPoint.POWER_PATH_CLOSED)
            if s.power_requested and _can_offer(s):
                points.add(TxPoint.ENERGY_TRANSFER)
    return frozenset(points)


def _tx_points(s: ChargerState) -> frozenset[TxPoint]:
    """The stop points true now for the running transaction."""
    points: set[TxPoint] = set()
    if s.plugged:
        points.add(TxPoint.EV_CONNECTED)
    if s.tx_authorized:
        points.add(TxPoint.AUTHORIZED)
        if s.plugged:
            points.add(TxPoint.POWER_PATH_CLOSED)
    if contactor_allowed(s):
        points.add(TxPoint.ENERGY_TRANSFER)
    return frozenset(points)


def _maybe_begin(
    s: ChargerState, before: frozenset[TxPoint], effects: list[Effect]
) -> ChargerState:
    """Begin a transaction when a configured start point is reached."""
    if not _can_start(s):
        return s
    now = _start_points(s)
    if not now & s.config.tx_start_points:
        return s
    arrived = now - before
    order = (TxPoint.AUTHORIZED, TxPoint.EV_CONNECTED, TxPoint.ENERGY_TRANSFER)
    started_by = next((p for p in order if p in arrived), None)
    tag = s.authorized_id
    rsid, reservation = s.remote_start_id, s.reservation_id
    s = replace(
        s,
        tx_id_tag=tag if tag is not None else "",
        tx_authorized=tag is not None,
        tx_deauth_reason=None,
        authorized_id=None,
        remote_start_id=None,
        reservation_id=None,
        finishing=False,
    )
    charging_state = tx_charging_state(s)
    s = replace(s, tx_reached=_tx_points(s), charging_state=charging_state)
    effects.append(
        BeginTransaction(
            tag if tag is not None else "",
            rsid,
            reservation,
            started_by,
            charging_state,
            authorized=tag is not None,
        )
    )
    return s


def _stop_tx(s: ChargerState, reason: StopReason, effects: list[Effect]) -> ChargerState:
    """A stop request for the running transaction: end it, or only withdraw the
    authorization when a reached stop point stays true without it (the transaction
    then ends when that point is lost, with ``reason``)."""
    if reason not in DEAUTHORIZING_STOPS:
        return _end_tx(s, reason, effects)
    s = replace(s, tx_authorized=False, tx_deauth_reason=reason)
    still = s.config.tx_stop_points & s.tx_reached & _tx_points(s)
    if _lost_stop_points(s) or not still:
        return _end_tx(s, reason, effects)
    return s


def _lost_stop_points(s: ChargerState) -> frozenset[TxPoint]:
    return (s.tx_reached & s.config.tx_stop_points) - _tx_points(s)


def _maybe_end(s: ChargerState, effects: list[Effect]) -> ChargerState:
    """End the running transaction when a reached stop point is no longer true."""
    if not s.tx_active:
        return s
    lost = _lost_stop_points(s)
    if not lost:
        return replace(s, tx_reached=s.tx_reached | _tx_points(s))
    if not s.plugged:
        reason = s.tx_deauth_reason or StopReason.EV_DISCONNECTED
    elif not s.tx_authorized:
        reason = s.tx_deauth_reason or StopReason.DEAUTHORIZED
    elif not s.power_requested:
        reason = StopReason.STOPPED_BY_EV  # the EV ended the energy transfer
    else:
        reason = StopReason.OTHER  # the EVSE withholds energy (fault, limit below 6 A)
    return _end_tx(s, reason, effects)


def _end_tx(s: ChargerState, reason: StopReason, effects: list[Effect]) -> ChargerState:
    # The contactor must be open before the transaction is ended (safety ordering).
    if s.contactor_on:
        effects.append(SetContactor(False))
        s = replace(s, contactor_on=False)
    effects.append(EndTransaction(reason))
    return replace(
        s,
        tx_id_tag=None,
        tx_authorized=False,
        tx_reached=frozenset(),
        tx_deauth_reason=None,
        charging_state=None,
        finishing=s.plugged,
    )


# ------------------------------------------------------------ derived outputs


def offers_energy(s: ChargerState) -> bool:
    """Whether the EVSE signals PWM (is ready to supply energy): plugged in, with an
    accepted id (the running transaction's, or - start point ``ENERGY_TRANSFER`` -
    the one that will start it when the EV asks for power), nothing blocking."""
    if s.tx_active:
        authorized = s.tx_authorized
    else:
        authorized = (
            s.authorized_id is not None
            and TxPoint.ENERGY_TRANSFER in s.config.tx_start_points
            and s.operative
        )
    return authorized and s.plugged and _can_offer(s)


def _can_offer(s: ChargerState) -> bool:
    return (
        not s.blocked
        and iec61851.duty_for_current(s.limit_a) is not None
        and not (s.ventilation_required and not s.config.ventilation_available)
    )


def contactor_allowed(s: ChargerState) -> bool:
    """The safety invariant: may the contactor be closed now? Only for a running,
    authorized transaction with energy offered and the EV asking for it."""
    return s.tx_active and offers_energy(s) and s.power_requested


def tx_charging_state(s: ChargerState) -> TxChargingState:
    """The running transaction's charging state, derived from the facts."""
    if not s.plugged:
        return TxChargingState.IDLE
    if not s.tx_authorized:
        return TxChargingState.EV_CONNECTED
    if not offers_energy(s):
        return TxChargingState.SUSPENDED_EVSE
    if s.power_requested:
        return TxChargingState.CHARGING
    return TxChargingState.SUSPENDED_EV


def desired_pilot(s: ChargerState) -> PilotOutput:
    duty = iec61851.duty_for_current(s.limit_a)
    if offers_energy(s) and duty is not None:
        return PilotOutput.pwm(duty)
    return PilotOutput.steady()


def derive_status(s: ChargerState) -> PublishStatus:
    """The OCPP-visible status (1.6 §4.9 rules, REFERENCE 2.3)."""
    hard = [(code, detail) for code, detail in s.faults if code not in EV_SIDE_ERRORS]
    if hard:
        code, detail = hard[0]
        return PublishStatus(ConnectorStatus.FAULTED, code, detail or None)
    if s.pilot_error:
        return PublishStatus(
            ConnectorStatus.FAULTED, FaultCode.OTHER_ERROR, "control pilot in state E/F"
        )
    status = _session_status(s)
    ev_error = s.ev_error
    if ev_error is not None and status.status in _EV_ERROR_STATUSES:
        detail = next(detail for code, detail in s.faults if code is ev_error)
        return PublishStatus(status.status, ev_error, detail or status.info)
    return status


_EV_ERROR_STATUSES = frozenset(
    {
        ConnectorStatus.PREPARING,
        ConnectorStatus.SUSPENDED_EV,
        ConnectorStatus.SUSPENDED_EVSE,
        ConnectorStatus.FINISHING,
    }
)
"""The statuses OCPP 1.6 allows EVCommunicationError with (REFERENCE 2.3)."""


def _session_status(s: ChargerState) -> PublishStatus:
    """The status without hardware faults (an EV-side error only withholds energy)."""
    if s.tx_active:
        if not s.plugged:
            if TxPoint.EV_CONNECTED not in s.tx_reached:  # begun at authorization
                return PublishStatus(ConnectorStatus.PREPARING, None, None)
            return PublishStatus(ConnectorStatus.SUSPENDED_EV, None, "EV side disconnected")
        if not s.tx_authorized:  # waiting for an id (cable first) or for the unplug
            if s.tx_deauth_reason is not None:
                return PublishStatus(ConnectorStatus.FINISHING, None, None)
            return PublishStatus(ConnectorStatus.PREPARING, None, None)
        if not offers_energy(s):  # SuspendedEVSE wins over SuspendedEV (1.6 §4.9)
            return PublishStatus(ConnectorStatus.SUSPENDED_EVSE, None, None)
        if s.power_requested:
            return PublishStatus(ConnectorStatus.CHARGING, None, None)
        return PublishStatus(ConnectorStatus.SUSPENDED_EV, None, None)
    if not s.operative:
        return PublishStatus(ConnectorStatus.UNAVAILABLE, None, None)
    if s.reserved and s.authorized_id is None:
        # 1.6 4.9: Reserved until the reserved tag is presented (-> Preparing)
        return PublishStatus(ConnectorStatus.RESERVED, None, None)
    if s.finishing:
        return PublishStatus(ConnectorStatus.FINISHING, None, None)
    if s.plugged or s.pending_auth is not None or s.authorized_id is not None:
        return PublishStatus(ConnectorStatus.PREPARING, None, None)
    return PublishStatus(ConnectorStatus.AVAILABLE, None, None)


def _settle(
    s: ChargerState, effects: list[Effect], late: list[Effect] | None = None
) -> tuple[ChargerState, list[Effect]]:
    """Append the output changes the new facts imply, in safe order; ``late`` effects
    (transaction updates) go last, after the contactor closed and the status."""
    want_contactor = contactor_allowed(s)
    want_pilot = desired_pilot(s)
    want_status = derive_status(s)
    head: list[Effect] = []
    tail: list[Effect] = []
    if s.contactor_on and not want_contactor:
        head.append(SetContactor(False))  # opening goes before everything else
    if want_pilot != s.pilot:
        tail.append(SetPilot(want_pilot))
    if want_contactor and not s.contactor_on:
        tail.append(SetContactor(True))  # closing goes after PWM and transaction start
    if want_status != s.status:
        tail.append(want_status)
    s = replace(s, contactor_on=want_contactor, pilot=want_pilot, status=want_status)
    return s, [*head, *effects, *tail, *(late or [])]
