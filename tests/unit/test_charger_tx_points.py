"""Transaction start and stop points of the session machine (OCPP 2.0.1 TxStartPoint /
TxStopPoint, neutral ``TxPoint``), cable-first authorization and charging-state updates,
as tables. The 1.6 defaults are covered by test_charger.py."""

from dataclasses import replace

import pytest

from agent.events import StopReason, TxChargingState, TxPoint, TxUpdateTrigger
from agent.evse import charger as ch
from agent.evse.charger import (
    AuthorizationResolved,
    BeginTransaction,
    ChargerConfig,
    ChargerState,
    EndTransaction,
    Pilot,
    SetContactor,
    StopRequested,
    TimerExpired,
    TokenPresented,
    TransactionUpdated,
    step,
)
from agent.evse.iec61851 import PilotEvent
from hal.pilot import PilotMode

EV = TxPoint.EV_CONNECTED
AUTH = TxPoint.AUTHORIZED
PPC = TxPoint.POWER_PATH_CLOSED
ET = TxPoint.ENERGY_TRANSFER


def fresh(start: set[TxPoint], stop: set[TxPoint], *, unplug_stops: bool = False) -> ChargerState:
    config = ChargerConfig(
        connection_timeout_s=30.0,
        stop_tx_on_ev_side_disconnect=unplug_stops,
        tx_start_points=frozenset(start),
        tx_stop_points=frozenset(stop),
    )
    s, _ = ch.initial_state(config=config, operative=True, limit_a=32.0)
    return s


def run(s: ChargerState, *events: ch.Event) -> tuple[ChargerState, list[ch.Effect]]:
    out: list[ch.Effect] = []
    for e in events:
        s, eff = step(s, e)
        out.extend(eff)
    return s, out


def of_type(effects: list[ch.Effect], kind: type) -> list[ch.Effect]:
    return [e for e in effects if isinstance(e, kind)]


SESSION: list[ch.Event] = [
    Pilot(PilotEvent.PLUGGED),
    TokenPresented("T"),
    AuthorizationResolved("T", accepted=True),
    Pilot(PilotEvent.POWER_REQUESTED),
    Pilot(PilotEvent.POWER_RELEASED),
    Pilot(PilotEvent.UNPLUGGED),
]
"""Cable first, then the badge, the EV charges, pauses, leaves (indices 0..5)."""

BEGINS_AT = {EV: 0, AUTH: 2, PPC: 2, ET: 3}
ENDS_AT = {EV: (5, StopReason.EV_DISCONNECTED), AUTH: None, PPC: (5, StopReason.EV_DISCONNECTED)}
ENDS_AT[ET] = (4, StopReason.STOPPED_BY_EV)


@pytest.mark.parametrize("start", [EV, AUTH, PPC, ET])
@pytest.mark.parametrize("stop", [EV, AUTH, PPC, ET])
def test_each_start_and_stop_point_on_a_cable_first_session(start: TxPoint, stop: TxPoint) -> None:
    """One begin at the first start point reached; the end when a reached stop point is
    lost (AUTHORIZED alone is never lost here: unplugging does not end it)."""
    s = fresh({start}, {stop})
    begins: list[int] = []
    ends: list[tuple[int, StopReason]] = []
    for index, event in enumerate(SESSION):
        s, eff = step(s, event)
        begins += [index for _ in of_type(eff, BeginTransaction)]
        ends += [(index, e.reason) for e in eff if isinstance(e, EndTransaction)]
        if s.contactor_on:
            assert s.tx_active and s.tx_authorized
    assert begins == [BEGINS_AT[start]]
    expected = ENDS_AT[stop]
    assert ends == ([] if expected is None else [expected])


def test_cable_first_begins_unauthorized_then_the_token_authorizes_it() -> None:
    s, eff = run(fresh({EV}, {EV, AUTH}), Pilot(PilotEvent.PLUGGED))
    assert eff[0] == BeginTransaction(
        "", None, None, EV, TxChargingState.EV_CONNECTED, authorized=False
    )
    assert s.pilot.mode == PilotMode.STEADY  # no energy offered before an id
    s, eff = run(s, TokenPresented("T"))
    assert eff == [ch.RequestAuthorization("T")]
    s, eff = run(s, AuthorizationResolved("T", accepted=True))
    assert TransactionUpdated(TxUpdateTrigger.AUTHORIZED, TxChargingState.SUSPENDED_EV, "T") in eff
    assert not of_type(eff, BeginTransaction)
    assert s.pilot.mode == PilotMode.PWM
    s, eff = run(s, Pilot(PilotEvent.POWER_REQUESTED))
    assert eff[0] == SetContactor(True)
    assert eff[-1] == TransactionUpdated(
        TxUpdateTrigger.CHARGING_STATE_CHANGED, TxChargingState.CHARGING
    )


def test_a_rejected_token_leaves_the_cable_first_transaction_waiting() -> None:
    s, _ = run(fresh({EV}, {EV, AUTH}), Pilot(PilotEvent.PLUGGED), TokenPresented("BAD"))
    s, eff = run(s, AuthorizationResolved("BAD", accepted=False))
    assert not of_type(eff, TransactionUpdated) and s.tx_active and not s.tx_authorized
    s, eff = run(s, Pilot(PilotEvent.UNPLUGGED))
    assert of_type(eff, EndTransaction) == [EndTransaction(StopReason.EV_DISCONNECTED)]


def test_start_point_authorized_begins_before_the_cable_and_times_out() -> None:
    s, eff = run(fresh({AUTH}, {EV, AUTH}), TokenPresented("T"))
    s, eff = run(s, AuthorizationResolved("T", accepted=True))
    assert ch.StartTimer(ch.CONNECTION_TIMER, 30.0) in eff
    assert BeginTransaction("T", None, None, AUTH, TxChargingState.IDLE) in eff
    s, eff = run(s, TimerExpired(ch.CONNECTION_TIMER))
    assert eff[0] == EndTransaction(StopReason.TIMEOUT)
    assert not s.tx_active


def test_start_point_authorized_then_plug_in_cancels_the_timeout() -> None:
    s, _ = run(fresh({AUTH}, {EV, AUTH}), TokenPresented("T"))
    s, _ = run(s, AuthorizationResolved("T", accepted=True))
    s, eff = run(s, Pilot(PilotEvent.PLUGGED))
    assert ch.CancelTimer(ch.CONNECTION_TIMER) in eff
    assert eff[-1] == TransactionUpdated(
        TxUpdateTrigger.CHARGING_STATE_CHANGED, TxChargingState.SUSPENDED_EV
    )
    s, eff = run(s, TimerExpired(ch.CONNECTION_TIMER))  # a stale expiry is ignored
    assert not of_type(eff, EndTransaction) and s.tx_active


def test_start_point_energy_transfer_offers_pwm_then_begins_with_the_request() -> None:
    s, eff = run(fresh({ET}, {EV, AUTH}), *SESSION[:3])
    assert not s.tx_active and s.pilot.mode == PilotMode.PWM and not s.contactor_on
    s, eff = run(s, Pilot(PilotEvent.POWER_REQUESTED))
    begin = of_type(eff, BeginTransaction)
    assert begin == [BeginTransaction("T", None, None, ET, TxChargingState.CHARGING)]
    assert eff.index(begin[0]) < eff.index(SetContactor(True))  # closes after the start


def test_stop_point_ev_connected_only_outlives_a_local_stop_until_unplugged() -> None:
    s, _ = run(fresh({PPC}, {EV}), *SESSION[:4])
    s, eff = run(s, TokenPresented("T"))
    assert eff[0] == SetContactor(False)
    assert not of_type(eff, EndTransaction) and s.tx_active
    assert s.status is not None and s.status.status.value == "Finishing"
    s, eff = run(s, TokenPresented("T"))  # no second stop, no re-authorization
    assert not of_type(eff, EndTransaction) and not of_type(eff, ch.RequestAuthorization)
    s, eff = run(s, Pilot(PilotEvent.POWER_RELEASED, PilotEvent.UNPLUGGED))
    assert of_type(eff, EndTransaction) == [EndTransaction(StopReason.LOCAL)]


def test_a_reset_ends_at_once_whatever_the_stop_points() -> None:
    s, _ = run(fresh({PPC}, {EV}), *SESSION[:4])
    s, eff = run(s, StopRequested(StopReason.HARD_RESET))
    assert eff[:2] == [SetContactor(False), EndTransaction(StopReason.HARD_RESET)]


def test_stop_tx_on_ev_side_disconnect_ends_even_without_the_stop_point() -> None:
    s, _ = run(fresh({PPC}, {AUTH}, unplug_stops=True), *SESSION[:4])
    s, eff = run(s, Pilot(PilotEvent.POWER_RELEASED, PilotEvent.UNPLUGGED))
    assert of_type(eff, EndTransaction) == [EndTransaction(StopReason.EV_DISCONNECTED)]


def test_charging_state_updates_follow_the_session() -> None:
    s, _ = run(fresh({PPC}, {EV, AUTH}), *SESSION[:3])
    states = []
    for event in (
        Pilot(PilotEvent.POWER_REQUESTED),
        ch.LimitChanged(0.0),
        ch.LimitChanged(16.0),
        Pilot(PilotEvent.POWER_RELEASED),
    ):
        s, eff = step(s, event)
        states += [e.charging_state for e in of_type(eff, TransactionUpdated)]
    assert states == [
        TxChargingState.CHARGING,
        TxChargingState.SUSPENDED_EVSE,
        TxChargingState.CHARGING,
        TxChargingState.SUSPENDED_EV,
    ]


def test_config_change_mid_session_keeps_the_transaction() -> None:
    s, _ = run(fresh({PPC}, {EV, AUTH}), *SESSION[:4])
    config = replace(s.config, tx_start_points=frozenset({EV}), tx_stop_points=frozenset({ET}))
    s, eff = run(s, ch.ConfigChanged(config))
    assert not of_type(eff, EndTransaction) and not of_type(eff, BeginTransaction)
    s, eff = run(s, Pilot(PilotEvent.POWER_RELEASED))
    assert of_type(eff, EndTransaction) == [EndTransaction(StopReason.STOPPED_BY_EV)]


def test_a_remote_start_authorizes_a_cable_first_transaction() -> None:
    s, _ = run(fresh({EV}, {EV, AUTH}), Pilot(PilotEvent.PLUGGED))
    assert s.awaiting_id
    s, eff = run(s, ch.RemoteStartRequested("APP", authorize=False, remote_start_id=9))
    assert not of_type(eff, BeginTransaction)
    assert of_type(eff, TransactionUpdated) == [
        TransactionUpdated(
            TxUpdateTrigger.REMOTE_START, TxChargingState.SUSPENDED_EV, "APP", remote_start_id=9
        )
    ]
    assert s.tx_authorized and s.tx_id_tag == "APP" and not s.awaiting_id


def test_a_remote_start_that_needs_authorization_asks_first() -> None:
    s, _ = run(fresh({EV}, {EV, AUTH}), Pilot(PilotEvent.PLUGGED))
    s, eff = run(s, ch.RemoteStartRequested("APP", authorize=True, remote_start_id=9))
    assert eff == [ch.RequestAuthorization("APP")]
    s, eff = run(s, AuthorizationResolved("APP", accepted=True))
    (update,) = of_type(eff, TransactionUpdated)
    assert (update.trigger, update.remote_start_id) == (TxUpdateTrigger.REMOTE_START, 9)
