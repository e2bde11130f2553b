"""One EVSE's controller: the only writer of that EVSE's state.

HAL callbacks, CSMS commands and timers arrive as events in one inbox; the pure
machines (``iec61851``, ``charger``) decide; this module executes their effects
in order. Two things bypass the inbox because they are safety rules, not
decisions (DESIGN "Safety ordering", IEC 61851-1 Table A.6 seq. 8.1):

* a CP state outside C/D opens the contactor in the HAL callback itself, before
  the event is queued, so the opening never waits behind disk or network I/O;
* a hardware fault report opens the contactor the same way.

The machine decides on the events it has processed; facts that arrived since (a CP
change, a fault report, the lock position) may still wait in the inbox when a
``SetContactor(True)`` runs, e.g. after the lock motor moved. So one synchronous
guard (``_close_refusal``) runs right before every ``switch(True)``: CP in C/D, no
active fault (the set the fault callback keeps before it posts), lock confirmed
(when there is a lock), controller running. A refused close needs no retry: the
pending event makes the machine open and, once the cause is gone, close again.

When the controller task ends for any reason (stop, cancel, crash) it opens the
contactor and drives CP to state F in a shielded, time-bounded ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agent.authorization.authorizer import IdTagInfo
from agent.authorization.master_pass import is_master_pass
from agent.clock import Clock
from agent.events import (
    AuthorizationStatus,
    CpState,
    EvseStatusChanged,
    MeterReading,
    MeterSample,
    ReadingContext,
    StopReason,
    TxChargingState,
    TxPoint,
)
from agent.evse import charger, iec61851
from agent.evse.charger import ChargerConfig, ChargerState
from agent.evse.sampling import build_sample
from agent.reservations.book import Admission
from agent.settings import Settings
from agent.transactions.journal import JournalError, TransactionJournal, TxRecord
from hal.contactor import Contactor
from hal.indicator import StatusIndicator
from hal.lock import ConnectorLock
from hal.meter import PowerMeter
from hal.pilot import (
    CableRatingSource,
    ControlPilot,
    PilotMode,
    PilotOutput,
    StateOfChargeSource,
)
from hal.token_reader import IdTokenReader
from hal.types import FaultCode, FaultReport

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 2.0
LAST_METER_PERSIST_INTERVAL_S = 15.0
CABLE_LIMIT = "cable"
"""``set_limit`` source of the plugged cable's rating (PP, REFERENCE 1.3)."""

PWM_UPDATE_INTERVAL_S = 5.0
"""Least time between two duty changes while the PWM runs (REFERENCE 1.4: EVerest's
IEC_PWM_MAX_UPDATE_INTERVAL; an EV takes up to ~5 s to follow a new duty). A *higher*
duty waits until the interval has passed; a lower one, starting and stopping the PWM
apply at once, so a smart-charging or station limit is never signalled late."""


@dataclass(frozen=True, slots=True)
class _ClockAligned:
    """Inbox item: take the clock-aligned sample due at ``timestamp`` (ISO 8601 UTC)."""

    timestamp: str


@dataclass(frozen=True, slots=True)
class _Barrier:
    """Inbox item: set ``passed`` once every item queued before it was processed."""

    passed: asyncio.Event


@dataclass(frozen=True, slots=True)
class _Release:
    """Inbox item: unlock the connector (OCPP UnlockConnector); ``done`` gets the result."""

    done: asyncio.Future[bool]


class TokenAuthorizer(Protocol):
    async def authorize_info(self, id_tag: str) -> IdTagInfo: ...


StartAdmission = Callable[[int, str, str | None], Admission]
"""``(evse_id, id_tag, parent_id_tag) -> Admission``: may an authorized tag start
here, and which reservation does it use (the station's reservation book decides)."""


@dataclass
class EvseHardware:
    """The HAL devices of one EVSE."""

    meter: PowerMeter
    contactor: Contactor
    pilot: ControlPilot
    token_reader: IdTokenReader | None = None
    lock: ConnectorLock | None = None
    indicator: StatusIndicator | None = None


class EvseController:
    """Runs one EVSE.

    Args:
        evse_id: 1-based EVSE / connector id.
        hardware: The devices.
        journal: Where transactions and their messages are recorded durably.
        settings: Live settings (sample interval, measurands, timeouts).
        authorizer: Decides on presented tokens.
        clock: Time source.
        on_status: Called (in the loop) with every status change.
        on_tx_message: Called after a transaction message was queued in the journal.
        operative: Availability at start.
        max_current_a: Hardware limit of this EVSE, A.
        ventilation_available: Whether state D may be energised.
        on_sample: Called (in the loop) with ``(evse_id, sample)`` for a meter
            sample outside any transaction (clock-aligned data while idle); these
            are not journalled.
        admit: Asked after every accepted authorization whether the tag may
            start on this EVSE (reservations); None admits every tag.
        pwm_update_interval_s: Least spacing of PWM duty increases
            (``PWM_UPDATE_INTERVAL_S``).
    """

    def __init__(
        self,
        *,
        evse_id: int,
        hardware: EvseHardware,
        journal: TransactionJournal,
        settings: Settings,
        authorizer: TokenAuthorizer,
        clock: Clock,
        on_status: Callable[[EvseStatusChanged], None],
        on_tx_message: Callable[[], None],
        operative: bool = True,
        max_current_a: float = 32.0,
        ventilation_available: bool = False,
        on_sample: Callable[[int, MeterSample], None] | None = None,
        admit: StartAdmission | None = None,
        pwm_update_interval_s: float = PWM_UPDATE_INTERVAL_S,
        configurable_tx_points: bool = False,
    ) -> None:
        self.evse_id = evse_id
        # True: the transaction start/stop points come from the ``tx_start_point`` /
        # ``tx_stop_point`` settings and charging-state / late-authorization updates
        # are journaled (a protocol with TxStartPoint, OCPP 2.0.1). False: the fixed
        # OCPP 1.6 points (plugged in and authorized) and no update rows.
        self._configurable_tx_points = configurable_tx_points
        self._pwm_update_interval_s = pwm_update_interval_s
        self._last_duty_change_s: float | None = None  # monotonic, last PWM duty set
        self._deferred_pilot: asyncio.TimerHandle | None = None  # a held duty increase
        self._signalled_limit_a = 0.0  # the limit the PWM on the line encodes
        self.hw = hardware
        self._journal = journal
        self._settings = settings
        self._authorizer = authorizer
        self._clock = clock
        self._on_status = on_status
        self._on_tx_message = on_tx_message
        self._on_sample = on_sample
        self._admit = admit
        self._max_current_a = max_current_a
        self._limits_a: dict[str, float] = {}
        self._inbox: asyncio.Queue[charger.Event | _ClockAligned | _Barrier | _Release] = (
            asyncio.Queue()
        )
        self._pilot_state = iec61851.PilotState()
        self._state, self._initial_effects = charger.initial_state(
            config=self._charger_config(ventilation_available),
            operative=operative,
            limit_a=max_current_a,
        )
        self._ventilation_available = ventilation_available
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._tx: TxRecord | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._last_status: EvseStatusChanged | None = None
        self._lock_fault = False  # CONNECTOR_LOCK_FAILURE raised by this controller
        self._lock_commanded = False  # this session commanded the lock (unlock at its end)
        self._active_faults: set[FaultCode] = set()  # as reported, before the machine knows
        self._running = False  # between hardware start and the safe-state ``finally``
        self._barriers: set[asyncio.Event] = set()  # ``drain`` calls not yet passed
        self._started = asyncio.Event()
        self._stopped = False  # the controller task has ended
        self._no_transaction = asyncio.Event()
        self._no_transaction.set()
        settings.subscribe(self._on_setting)

    # ------------------------------------------------------------ public API

    @property
    def state(self) -> ChargerState:
        return self._state

    @property
    def transaction(self) -> TxRecord | None:
        """The running transaction, None when there is none."""
        return self._tx

    @property
    def status(self) -> EvseStatusChanged | None:
        return self._last_status

    def post(self, event: charger.Event) -> None:
        """Queue an event (loop thread only)."""
        self._inbox.put_nowait(event)

    def set_limit(self, source: str, limit_a: float | None) -> None:
        """Set or clear one limit; the effective limit is the minimum of all."""
        if limit_a is None:
            self._limits_a.pop(source, None)
        else:
            self._limits_a[source] = limit_a
        effective_a = self.effective_limit_a()
        self._lower_duty_now(effective_a)
        self.post(charger.LimitChanged(effective_a))

    def _lower_duty_now(self, limit_a: float) -> None:
        """A lower limit reaches CP in the caller's stack, before anything else runs.

        Lowering the offered current is always safe, and another EVSE may be about to
        start on the share of the station limit this one gives up
        (``agent.smart_charging.sharing``): its PWM must not come first. The machine
        then derives the same output from ``LimitChanged``. A limit below the minimum
        (the EVSE suspends) and every increase are left to the machine.
        """
        duty_pct = iec61851.duty_for_current(limit_a)
        current = self.hw.pilot.output
        if duty_pct is None or current.mode is not PilotMode.PWM or duty_pct >= current.duty_pct:
            return
        self._drop_deferred_pilot()
        self.hw.pilot.set_output(PilotOutput.pwm(duty_pct))
        self._signalled_limit_a = limit_a
        self._last_duty_change_s = self._clock.monotonic()

    def effective_limit_a(self) -> float:
        return min([self._max_current_a, *self._limits_a.values()])

    @property
    def offered_current_a(self) -> float:
        """The current the EVSE signals to the EV now, A per phase: the limit the
        pilot PWM encodes (after smart charging), 0 while it offers no energy
        (no transaction, suspended by the EVSE, below 6 A, faulted)."""
        if not charger.offers_energy(self._state):
            return 0.0
        if self._deferred_pilot is not None:  # a higher duty is held back
            return self._signalled_limit_a
        return self._state.limit_a

    @property
    def meter_reading(self) -> MeterReading | None:
        """The meter's latest reading, None before it has answered."""
        return self.hw.meter.latest

    def post_clock_aligned(self, timestamp: str) -> None:
        """Take the clock-aligned sample due at ``timestamp`` (ISO 8601 UTC, the
        boundary) in this controller's task (loop thread only)."""
        self._inbox.put_nowait(_ClockAligned(timestamp))

    async def wait_started(self) -> None:
        await self._started.wait()

    async def wait_no_transaction(self) -> None:
        """Return once no transaction runs (its end is journalled).

        The flag is cleared in the same step in which the machine decides to begin a
        transaction, before the journal is written. Events still queued are not
        looked at: call ``drain`` first to see their effect.
        """
        await self._no_transaction.wait()

    async def drain(self) -> None:
        """Return once every event posted before this call has been processed
        (their effects executed, including journal writes).

        A barrier for callers that post an event and then look at the state (e.g. the
        station's maintenance hold before ``wait_no_transaction``). Returns at once
        when the controller has stopped; before it started, it waits for the start.
        """
        if self._stopped:
            return
        passed = asyncio.Event()
        self._barriers.add(passed)
        self._inbox.put_nowait(_Barrier(passed))
        try:
            await passed.wait()
        finally:
            self._barriers.discard(passed)

    async def run(self) -> None:
        """Run until cancelled. Outputs are left safe however it ends."""
        try:
            for effect in self._initial_effects:
                await self._execute(effect)
            self._running = True
            await self._start_hardware()
            self._started.set()
            while True:
                event = await self._inbox.get()
                if isinstance(event, _Barrier):
                    event.passed.set()
                    continue
                if isinstance(event, _ClockAligned):
                    await self._sample_clock_aligned(event.timestamp)
                    continue
                if isinstance(event, _Release):
                    if not event.done.done():
                        event.done.set_result(await self._release_connector())
                    continue
                self._state, effects = charger.step(self._state, event)
                if any(isinstance(e, charger.BeginTransaction) for e in effects):
                    # a transaction is decided: from now on there is one (firmware
                    # install, reset wait for its end), although it is journalled later
                    self._no_transaction.clear()
                for effect in effects:
                    await self._execute(effect)
        finally:
            # Synchronously, before any await: contactor open, then CP to F.
            self._running = False
            self._stopped = True
            self.hw.contactor.switch(False)
            self._drop_deferred_pilot()
            self.hw.pilot.set_output(PilotOutput.error())
            for passed in self._barriers:  # nothing more will be processed
                passed.set()
            if self._tx is None:  # one decided but never journalled will not begin now
                self._no_transaction.set()
            await _shielded(self._release())

    # ------------------------------------------------------ hardware edges

    async def _start_hardware(self) -> None:
        await self.hw.contactor.start(self._on_fault)
        await self.hw.pilot.start(self._on_cp_state, self._on_fault)
        await self.hw.meter.start(self._on_reading, self._on_fault)
        if self.hw.lock is not None:
            await self.hw.lock.start(self._on_fault)  # supervised while charging
        if self.hw.token_reader is not None:
            await self.hw.token_reader.start(self._on_token)

    def _on_cp_state(self, cp: CpState) -> None:
        if not iec61851.is_power_state(cp) and self.hw.contactor.is_on:
            self.hw.contactor.switch(False)  # interlock: before anything is queued
        if cp is CpState.A and self._lock_fault:
            self._lock_fault = False  # the plug is out: the next session tries again
            self._on_fault(FaultReport(FaultCode.CONNECTOR_LOCK_FAILURE, False, "unplugged"))
        if isinstance(self.hw.pilot, CableRatingSource):
            # A detachable cable caps the current at its rating (REFERENCE 1.3).
            cable_a = self.hw.pilot.cable_max_current_a if cp is not CpState.A else None
            if cable_a != self._limits_a.get(CABLE_LIMIT):
                self.set_limit(CABLE_LIMIT, cable_a)
        self._pilot_state, events = iec61851.step(self._pilot_state, cp)
        if events:
            self.post(charger.Pilot(*events))

    def _on_fault(self, report: FaultReport) -> None:
        if report.active:
            self._active_faults.add(report.code)  # seen by ``_close_refusal`` at once
            if self.hw.contactor.is_on:
                self.hw.contactor.switch(False)
        else:
            self._active_faults.discard(report.code)
        log.warning(
            "evse %d: fault %s %s %s",
            self.evse_id,
            report.code,
            "raised" if report.active else "cleared",
            report.detail,
        )
        self.post(charger.FaultChanged(report.code, report.active, report.detail))

    def _on_reading(self, reading: MeterReading) -> None:
        del reading  # the latest reading is read from the meter when needed

    def _on_token(self, id_tag: str) -> None:
        self.post(charger.TokenPresented(id_tag))
        tx = self._tx
        if (
            tx is not None
            and tx.id_tag
            and tx.id_tag.upper() != id_tag.upper()
            and self._settings.get("master_pass_group_id")
        ):
            # 2.0.1 C16: another token during a transaction may be a MasterPass
            self._spawn(self._check_master_pass(id_tag))

    async def _check_master_pass(self, id_tag: str) -> None:
        """A MasterPass token presented here during a transaction: the station stops
        every transaction (``admit`` does, see ``Station.admit_start``)."""
        try:
            info = await self._authorizer.authorize_info(id_tag)
        except Exception:
            log.exception("evse %d: authorization of %s failed", self.evse_id, id_tag)
            return
        group = str(self._settings.get("master_pass_group_id"))
        accepted = info.status == AuthorizationStatus.ACCEPTED
        if accepted and is_master_pass(info.parent_id_tag, group) and self._admit is not None:
            self._admit(self.evse_id, id_tag, info.parent_id_tag)

    def use_configurable_tx_points(self, configurable: bool) -> None:
        """Follow the ``tx_start_point`` / ``tx_stop_point`` settings (a protocol with
        TxStartPoint, OCPP 2.0.1) or the fixed 1.6 points; for ``ocpp_version = "auto"``
        the app switches when the CSMS selects a version. A running transaction keeps
        its start; its end follows the new stop points."""
        if configurable == self._configurable_tx_points:
            return
        self._configurable_tx_points = configurable
        self.post(charger.ConfigChanged(self._charger_config(self._ventilation_available)))

    def _on_setting(self, name: str, value: object) -> None:
        del value
        if name in (
            "connection_timeout_s",
            "stop_transaction_on_ev_side_disconnect",
            "tx_start_point",
            "tx_stop_point",
        ):
            self.post(charger.ConfigChanged(self._charger_config(self._ventilation_available)))

    def _charger_config(self, ventilation_available: bool) -> ChargerConfig:
        return ChargerConfig(
            connection_timeout_s=float(self._settings.get_int("connection_timeout_s")),
            stop_tx_on_ev_side_disconnect=self._settings.get_bool(
                "stop_transaction_on_ev_side_disconnect"
            ),
            ventilation_available=ventilation_available,
            **self._tx_points(),
        )

    def _tx_points(self) -> dict[str, frozenset[TxPoint]]:
        """The configured start/stop points, or none (the machine's 1.6 defaults)."""
        if not self._configurable_tx_points:
            return {}
        return {
            "tx_start_points": frozenset(
                TxPoint(v) for v in self._settings.get_list("tx_start_point")
            ),
            "tx_stop_points": frozenset(
                TxPoint(v) for v in self._settings.get_list("tx_stop_point")
            ),
        }

    # ------------------------------------------------------------ effects

    async def _execute(self, effect: charger.Effect) -> None:
        match effect:
            case charger.SetContactor(on=False):
                self.hw.contactor.switch(False)
            case charger.SetContactor(on=True):
                await self._close_contactor()
            case charger.SetPilot(output=output):
                self._set_pilot(output)
            case charger.RequestAuthorization(id_tag=tag):
                self._spawn(self._authorize(tag))
            case charger.BeginTransaction(
                id_tag=tag,
                remote_start_id=rsid,
                reservation_id=reservation_id,
                started_by=started_by,
                charging_state=charging_state,
                authorized=authorized,
            ):
                await self._begin(
                    tag, rsid, reservation_id, started_by, charging_state, authorized=authorized
                )
            case charger.TransactionUpdated():
                await self._update(effect)
            case charger.EndTransaction(reason=reason):
                await self._end(reason)
            case charger.PublishStatus(status=status, error_code=code, info=info):
                self._last_status = EvseStatusChanged(
                    self.evse_id, status, code, info, self._clock.iso_now()
                )
                log.info("evse %d: %s%s", self.evse_id, status, f" ({code})" if code else "")
                self._show_status(status.value, code is not None)
                self._on_status(self._last_status)
            case charger.StartTimer(name=name, delay_s=delay_s):
                self._cancel_timer(name)
                loop = asyncio.get_running_loop()
                self._timers[name] = loop.call_later(delay_s, self.post, charger.TimerExpired(name))
            case charger.CancelTimer(name=name):
                self._cancel_timer(name)

    async def _close_contactor(self) -> None:
        """Lock, then close, if the guard still allows it after the lock moved."""
        refusal = self._close_refusal(lock_checked=False)
        if refusal is None:
            if not await self._lock_connector():
                return  # the lock failure is reported; the machine opens again
            refusal = self._close_refusal(lock_checked=True)  # facts changed meanwhile?
        if refusal is not None:
            log.info("evse %d: contactor not closed: %s", self.evse_id, refusal)
            return
        self.hw.contactor.switch(True)

    def _close_refusal(self, *, lock_checked: bool) -> str | None:
        """The one guard before every ``switch(True)``: why the contactor must stay
        open now, None when it may close. Synchronous, so nothing can change between
        it and the switch.

        Args:
            lock_checked: Whether to require the lock confirmed (False for the
                check before the lock is moved).
        """
        if not self._running:
            return "controller stopping"
        if not iec61851.is_power_state(self.hw.pilot.state):
            return f"CP in {self.hw.pilot.state}"  # the Pilot event is queued
        if self._active_faults:
            return "fault active: " + ", ".join(sorted(self._active_faults))
        lock = self.hw.lock
        if lock_checked and lock is not None and not lock.is_locked:
            return "connector not locked"
        return None

    def _cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _set_pilot(self, output: PilotOutput) -> None:
        """Drive CP, holding a duty *increase* until ``pwm_update_interval_s`` after the
        last duty change (REFERENCE 1.4); everything else applies at once."""
        self._drop_deferred_pilot()
        current = self.hw.pilot.output
        if output == current:  # e.g. a decrease ``_lower_duty_now`` applied already
            self._signalled_limit_a = self._state.limit_a
            return
        now_s = self._clock.monotonic()
        if (
            output.mode is PilotMode.PWM
            and current.mode is PilotMode.PWM
            and output.duty_pct > current.duty_pct
            and self._last_duty_change_s is not None
        ):
            wait_s = self._last_duty_change_s + self._pwm_update_interval_s - now_s
            if wait_s > 0:
                loop = asyncio.get_running_loop()
                self._deferred_pilot = loop.call_later(
                    wait_s, self._apply_deferred_pilot, output, self._state.limit_a
                )
                return
        self.hw.pilot.set_output(output)
        self._signalled_limit_a = self._state.limit_a
        if output.mode is PilotMode.PWM and output != current:
            self._last_duty_change_s = now_s

    def _apply_deferred_pilot(self, output: PilotOutput, limit_a: float) -> None:
        self._deferred_pilot = None
        self.hw.pilot.set_output(output)
        self._signalled_limit_a = limit_a
        self._last_duty_change_s = self._clock.monotonic()

    def _drop_deferred_pilot(self) -> None:
        if self._deferred_pilot is not None:
            self._deferred_pilot.cancel()
            self._deferred_pilot = None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _authorize(self, id_tag: str) -> None:
        try:
            info = await self._authorizer.authorize_info(id_tag)
        except Exception:
            log.exception("evse %d: authorization of %s failed", self.evse_id, id_tag)
            info = IdTagInfo(AuthorizationStatus.INVALID)
        log.info("evse %d: %s is %s", self.evse_id, id_tag, info.status)
        admission = Admission(info.status == AuthorizationStatus.ACCEPTED)
        if admission.allowed and self._admit is not None:
            admission = self._admit(self.evse_id, id_tag, info.parent_id_tag)
            if not admission.allowed:
                log.info("evse %d: %s refused: connector reserved", self.evse_id, id_tag)
        self.post(
            charger.AuthorizationResolved(id_tag, admission.allowed, admission.reservation_id)
        )

    def _meter_wh(self) -> int:
        reading = self.hw.meter.latest
        if reading is not None:
            return round(reading.energy_import_wh)
        if self._tx is not None:
            return self._tx.last_meter_wh or self._tx.meter_start_wh
        return 0

    async def _begin(
        self,
        id_tag: str,
        remote_start_id: int | None,
        reservation_id: int | None,
        started_by: TxPoint | None = None,
        charging_state: TxChargingState | None = None,
        *,
        authorized: bool = True,
    ) -> None:
        timestamp = self._clock.iso_now()
        try:
            self._tx = await self._journal.begin(
                evse_id=self.evse_id,
                connector_id=self.evse_id,
                id_tag=id_tag,
                meter_start_wh=self._meter_wh(),
                timestamp=timestamp,
                remote_start_id=remote_start_id,
                reservation_id=reservation_id,
                stop_data=self._stop_sample(
                    "stop_txn_sampled_data", ReadingContext.TRANSACTION_BEGIN, timestamp
                ),
                started_by=started_by if self._configurable_tx_points else None,
                charging_state=charging_state if self._configurable_tx_points else None,
                authorized=authorized,
            )
        except BaseException:
            self._no_transaction.set()  # cleared when it was decided; none began
            raise
        log.info("evse %d: transaction %s started for %s", self.evse_id, self._tx.tx_id, id_tag)
        self._on_tx_message()
        self._sampler = asyncio.create_task(self._sample_loop(self._tx.tx_id))
        # The EVSEs whose share of the station limit this transaction lowers were just
        # told (agent.smart_charging.sharing) and lowered their duty at once
        # (``_lower_duty_now``), before this EVSE's PWM starts (the next effect).

    async def _update(self, update: charger.TransactionUpdated) -> None:
        """Journal a change of the running transaction (see ``configurable_tx_points``)."""
        tx = self._tx
        if tx is None:
            return
        if update.id_tag is not None:
            self._tx = tx = dataclasses.replace(
                tx, id_tag=update.id_tag, remote_start_id=update.remote_start_id
            )
            log.info("evse %d: transaction %s authorized for %s", self.evse_id, tx.tx_id, tx.id_tag)
        if not self._configurable_tx_points:
            return
        await self._journal.record_update(
            tx.tx_id,
            timestamp=self._clock.iso_now(),
            trigger=update.trigger,
            charging_state=update.charging_state,
            id_tag=update.id_tag,
            remote_start_id=update.remote_start_id,
        )
        self._on_tx_message()

    async def _end(self, reason: StopReason) -> None:
        tx = self._tx
        if tx is None:
            return
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        timestamp = self._clock.iso_now()
        # OCPP 1.6 6.47 / 9.1: transactionData = the StopTxnSampledData samples
        # (begin, every sample interval, end) and the StopTxnAlignedData ones; all but
        # the end one are already in the journal (they survive a power cut).
        end_data = self._stop_sample(
            "stop_txn_sampled_data", ReadingContext.TRANSACTION_END, timestamp
        )
        self._tx = None
        await self._journal.end(
            tx.tx_id,
            reason=reason,
            meter_stop_wh=self._meter_wh_for(tx),
            timestamp=timestamp,
            transaction_data=end_data,
        )
        log.info("evse %d: transaction %s stopped (%s)", self.evse_id, tx.tx_id, reason)
        self._no_transaction.set()
        self._on_tx_message()
        await self._unlock_connector()  # the contactor opened before EndTransaction

    # ------------------------------------------------------ connector lock, lamps

    async def _lock_connector(self) -> bool:
        """Lock before closing the contactor (REFERENCE 1.4). Blocks this EVSE's inbox
        for at most the lock's timeout; the CP interlock does not wait for it."""
        lock = self.hw.lock
        if lock is None or (self._lock_commanded and lock.is_locked):
            return True
        self._lock_commanded = True  # commanded once per session, idempotent if locked
        if await lock.lock():
            return True
        self._lock_fault = True
        self._on_fault(FaultReport(FaultCode.CONNECTOR_LOCK_FAILURE, True, "lock not confirmed"))
        return False

    async def _unlock_connector(self) -> None:
        """Unlock once the contactor is open at the end of a session."""
        lock = self.hw.lock
        if lock is None or self.hw.contactor.is_on:
            return
        if not lock.is_locked and not self._lock_commanded:
            return
        # also when it was forced open: the commanded position becomes "unlocked",
        # which ends the lock's supervision fault
        self._lock_commanded = False
        if not await lock.unlock():
            self._lock_fault = True
            self._on_fault(
                FaultReport(FaultCode.CONNECTOR_LOCK_FAILURE, True, "unlock not confirmed")
            )

    @property
    def has_lock(self) -> bool:
        """True when the EVSE has a connector lock (a socket, not a tethered cable)."""
        return self.hw.lock is not None

    async def release_connector(self) -> bool:
        """OCPP UnlockConnector: unlock in this controller's task, after everything
        queued before (e.g. the stop of the transaction). True when the lock confirms
        the unlocked position; False while the contactor is closed or the lock fails.

        Raises:
            RuntimeError: The EVSE has no lock.
        """
        if self.hw.lock is None:
            raise RuntimeError(f"evse {self.evse_id} has no connector lock")
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(_Release(done))
        return await done

    async def _release_connector(self) -> bool:
        lock = self.hw.lock
        if lock is None or self.hw.contactor.is_on:
            return False
        self._lock_commanded = False
        if await lock.unlock():
            return True
        self._lock_fault = True
        self._on_fault(FaultReport(FaultCode.CONNECTOR_LOCK_FAILURE, True, "unlock not confirmed"))
        return False

    async def _release_lock(self, lock: ConnectorLock) -> None:
        """At shutdown (contactor already open): free the cable, then the pins."""
        try:
            if lock.is_locked:
                await lock.unlock()
        finally:
            await lock.stop()

    def _show_status(self, status: str, faulted: bool) -> None:
        indicator = self.hw.indicator
        if indicator is None:
            return
        try:
            indicator.show(status, faulted)
        except Exception:  # a lamp must never stop the EVSE
            log.exception("evse %d: status indicator failed", self.evse_id)

    def _meter_wh_for(self, tx: TxRecord) -> int:
        reading = self.hw.meter.latest
        if reading is not None:
            return max(round(reading.energy_import_wh), tx.meter_start_wh)
        return tx.last_meter_wh or tx.meter_start_wh

    async def _sample_loop(self, tx_id: str) -> None:
        """While a transaction runs: periodic meter values (MeterValueSampleInterval)
        and, at least every ``LAST_METER_PERSIST_INTERVAL_S``, the last meter value
        made durable, so a PowerLoss stop after a power cut is at most that stale."""
        last_sample_s = self._clock.monotonic()
        while True:
            interval_s = self._settings.get_int("meter_value_sample_interval_s")
            period_s = LAST_METER_PERSIST_INTERVAL_S
            if interval_s > 0:
                period_s = min(period_s, interval_s - (self._clock.monotonic() - last_sample_s))
            await asyncio.sleep(max(period_s, 0.0))
            reading = self.hw.meter.latest
            if reading is None:
                continue
            meter_wh = round(reading.energy_import_wh)
            now_s = self._clock.monotonic()
            timestamp = self._clock.iso_now()
            sample = None
            stop_data: tuple[MeterSample, ...] = ()
            if interval_s > 0 and now_s - last_sample_s >= interval_s - 1e-3:
                last_sample_s = now_s
                sample = self.sample_now(ReadingContext.SAMPLE_PERIODIC, timestamp=timestamp)
                stop_data = self._stop_sample(
                    "stop_txn_sampled_data", ReadingContext.SAMPLE_PERIODIC, timestamp
                )
            # the StopTxnSampledData sample shares the store transaction of the meter write
            if sample is not None and sample.values:
                await self._journal.record_meter(  # also the last value
                    tx_id, sample, meter_wh, stop_data=stop_data
                )
                self._on_tx_message()
            else:
                await self._journal.update_last_meter(
                    tx_id, meter_wh, timestamp, stop_data=stop_data
                )

    async def _sample_clock_aligned(self, timestamp: str) -> None:
        """The clock-aligned sample (MeterValuesAlignedData, context Sample.Clock) due
        at ``timestamp``: journalled with the running transaction (delivered in order,
        survives offline periods and reboots), else handed to ``on_sample``."""
        sample = self.sample_now(
            ReadingContext.SAMPLE_CLOCK,
            measurands=self._settings.get_list("meter_values_aligned_data"),
            timestamp=timestamp,
        )
        if sample is None:
            return  # no reading yet: nothing to report
        tx = self._tx
        if tx is None:
            if sample.values and self._on_sample is not None:
                self._on_sample(self.evse_id, sample)
            return
        stop_data = self._stop_sample(
            "stop_txn_aligned_data", ReadingContext.SAMPLE_CLOCK, timestamp
        )
        if sample.values:
            await self._journal.record_meter(
                tx.tx_id, sample, self._meter_wh_for(tx), stop_data=stop_data
            )
            self._on_tx_message()
        elif stop_data:
            await self._journal.add_stop_data(tx.tx_id, stop_data)

    def _stop_sample(
        self, setting: str, context: ReadingContext, timestamp: str
    ) -> tuple[MeterSample, ...]:
        """A sample of the ``setting`` measurands for StopTransaction.transactionData,
        to be kept in the journal (which bounds it per transaction); empty when the
        setting is empty or the meter has not answered yet."""
        sample = self.sample_now(
            context, measurands=self._settings.get_list(setting), timestamp=timestamp
        )
        if sample is None or not sample.values:
            return ()
        return (sample,)

    async def record_sample(self, context: ReadingContext) -> bool:
        """Take a sample now and journal it with the running transaction (e.g. a 2.0.1
        TriggerMessage(TransactionEvent): an Updated event with triggerReason Trigger).

        Returns:
            False without a running transaction or a meter reading.
        """
        tx = self._tx
        sample = self.sample_now(context) if tx is not None else None
        if tx is None or sample is None:
            return False
        try:
            await self._journal.record_meter(tx.tx_id, sample, self._meter_wh_for(tx))
        except JournalError:
            return False  # it ended meanwhile: its Ended event carries the last reading
        self._on_tx_message()
        return True

    def sample_now(
        self,
        context: ReadingContext,
        *,
        measurands: Sequence[str] | None = None,
        timestamp: str | None = None,
    ) -> MeterSample | None:
        """A meter sample now (e.g. for TriggerMessage).

        Args:
            context: Why it is taken.
            measurands: Configured entries; default MeterValuesSampledData.
            timestamp: ISO 8601 UTC; default now (a clock-aligned sample passes
                its boundary).

        Returns:
            The sample (``Current.Offered``/``Power.Offered`` from
            :attr:`offered_current_a`, ``SoC`` from a pilot that knows it), or
            None before the meter has answered.
        """
        reading = self.hw.meter.latest
        if reading is None:
            return None
        if measurands is None:
            measurands = self._settings.get_list("meter_values_sampled_data")
        pilot = self.hw.pilot
        return build_sample(
            reading,
            measurands,
            context=context,
            timestamp=timestamp if timestamp is not None else self._clock.iso_now(),
            offered_current_a=self.offered_current_a,
            soc_pct=pilot.soc_pct if isinstance(pilot, StateOfChargeSource) else None,
        )

    async def _release(self) -> None:
        """Cancel timers and tasks, then stop the hardware (outputs already safe)."""
        for handle in self._timers.values():
            handle.cancel()
        tasks = [t for t in (*self._tasks, self._sampler) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stops = [self.hw.meter.stop(), self.hw.pilot.stop(), self.hw.contactor.stop()]
        if self.hw.token_reader is not None:
            stops.append(self.hw.token_reader.stop())
        if self.hw.indicator is not None:
            stops.append(self.hw.indicator.stop())
        if self.hw.lock is not None:
            stops.append(self._release_lock(self.hw.lock))
        results = await asyncio.gather(*stops, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.error("evse %d: hardware stop failed: %r", self.evse_id, result)


async def _shielded(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` to completion even if the caller is cancelled, within a bound."""
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.wait_for(asyncio.shield(task), SHUTDOWN_TIMEOUT_S)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):  # finish the job, then propagate
            await asyncio.wait_for(task, SHUTDOWN_TIMEOUT_S)
        raise
    except TimeoutError:
        log.error("releasing the EVSE hardware took longer than %.1f s", SHUTDOWN_TIMEOUT_S)
