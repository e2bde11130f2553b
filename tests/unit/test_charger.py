"""The session machine: tables of (state, event) -> (state, effects), and the
safety invariant as a hypothesis stateful test (EV-side errors included)."""

from dataclasses import replace

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from agent.events import (
    ConnectorStatus,
    FaultCode,
    StopReason,
    TxChargingState,
    TxPoint,
    TxUpdateTrigger,
)
from agent.evse import charger as ch
from agent.evse.charger import (
    AuthorizationResolved,
    AvailabilityChanged,
    BeginTransaction,
    ChargerConfig,
    ChargerState,
    EndTransaction,
    FaultChanged,
    LimitChanged,
    Pilot,
    PublishStatus,
    RemoteStartRequested,
    RequestAuthorization,
    SetContactor,
    SetPilot,
    StopRequested,
    TimerExpired,
    TokenPresented,
    TransactionUpdated,
    step,
)
from agent.evse.iec61851 import PilotEvent
from hal.pilot import PilotMode, PilotOutput

CONFIG = ChargerConfig(connection_timeout_s=30.0)


def fresh(limit_a: float = 32.0) -> ChargerState:
    s, _ = ch.initial_state(config=CONFIG, operative=True, limit_a=limit_a)
    return s


def run(s: ChargerState, *events: ch.Event) -> tuple[ChargerState, list[ch.Effect]]:
    out: list[ch.Effect] = []
    for e in events:
        s, eff = step(s, e)
        out.extend(eff)
    return s, out


def status_of(s: ChargerState) -> ConnectorStatus:
    assert s.status is not None
    return s.status.status


def charging() -> ChargerState:
    s, _ = run(
        fresh(),
        Pilot(PilotEvent.PLUGGED),
        TokenPresented("TAG1"),
        AuthorizationResolved("TAG1", accepted=True),
        Pilot(PilotEvent.POWER_REQUESTED),
    )
    assert s.contactor_on
    return s


def test_initial_state_commands_safe_outputs() -> None:
    s, effects = ch.initial_state(config=CONFIG, operative=True, limit_a=32.0)
    assert effects[0] == SetContactor(False)
    assert SetPilot(PilotOutput.steady()) in effects
    assert status_of(s) == ConnectorStatus.AVAILABLE


def test_plug_then_swipe_starts_transaction_then_pwm() -> None:
    s, eff = run(fresh(), Pilot(PilotEvent.PLUGGED))
    assert status_of(s) == ConnectorStatus.PREPARING
    s, eff = run(s, TokenPresented("tag1"))
    assert eff == [RequestAuthorization("tag1")]
    s, eff = run(s, AuthorizationResolved("TAG1", accepted=True))
    assert eff[0] == BeginTransaction("TAG1", None)
    assert SetPilot(PilotOutput.pwm(53.3)) in eff
    assert not s.contactor_on  # EV still in B
    assert status_of(s) == ConnectorStatus.SUSPENDED_EV
    s, eff = run(s, Pilot(PilotEvent.POWER_REQUESTED))
    assert eff[0] == SetContactor(True)
    assert status_of(s) == ConnectorStatus.CHARGING


def test_rejected_token_goes_back_to_preparing() -> None:
    s, _ = run(fresh(), Pilot(PilotEvent.PLUGGED), TokenPresented("BAD"))
    s, eff = run(s, AuthorizationResolved("BAD", accepted=False))
    assert not any(isinstance(e, BeginTransaction) for e in eff)
    assert status_of(s) == ConnectorStatus.PREPARING
    assert s.pilot.mode == PilotMode.STEADY


def test_swipe_before_plug_times_out() -> None:
    s, eff = run(fresh(), TokenPresented("T"), AuthorizationResolved("T", accepted=True))
    assert ch.StartTimer(ch.CONNECTION_TIMER, 30.0) in eff
    assert status_of(s) == ConnectorStatus.PREPARING
    s, _ = run(s, TimerExpired(ch.CONNECTION_TIMER))
    assert status_of(s) == ConnectorStatus.AVAILABLE
    s, eff = run(s, Pilot(PilotEvent.PLUGGED))
    assert not any(isinstance(e, BeginTransaction) for e in eff)


def test_ev_pause_opens_contactor_first() -> None:
    s, eff = run(charging(), Pilot(PilotEvent.POWER_RELEASED))
    assert eff[0] == SetContactor(False)
    assert status_of(s) == ConnectorStatus.SUSPENDED_EV


def test_unplug_during_charging_opens_contactor_before_ending() -> None:
    _, eff = run(charging(), Pilot(PilotEvent.POWER_RELEASED, PilotEvent.UNPLUGGED))
    assert eff[0] == SetContactor(False)
    assert EndTransaction(StopReason.EV_DISCONNECTED) in eff
    # one CP sample C -> A: no SuspendedEV reported in between
    statuses = [e.status for e in eff if isinstance(e, PublishStatus)]
    assert statuses == [ConnectorStatus.AVAILABLE]


def test_unplug_keeps_tx_when_configured() -> None:
    s = replace(charging(), config=replace(CONFIG, stop_tx_on_ev_side_disconnect=False))
    s, eff = run(s, Pilot(PilotEvent.POWER_RELEASED), Pilot(PilotEvent.UNPLUGGED))
    assert not any(isinstance(e, EndTransaction) for e in eff)
    assert status_of(s) == ConnectorStatus.SUSPENDED_EV
    assert s.status is not None and s.status.info == "EV side disconnected"


def test_remote_stop_with_cable_in_is_finishing_then_available() -> None:
    s, eff = run(charging(), StopRequested(StopReason.REMOTE))
    assert eff[0] == SetContactor(False)
    assert eff[1] == EndTransaction(StopReason.REMOTE)
    assert status_of(s) == ConnectorStatus.FINISHING
    s, _ = run(s, Pilot(PilotEvent.POWER_RELEASED), Pilot(PilotEvent.UNPLUGGED))
    assert status_of(s) == ConnectorStatus.AVAILABLE


def test_same_token_stops_locally_other_token_ignored() -> None:
    s, eff = run(charging(), TokenPresented("OTHER"))
    assert eff == []
    s, eff = run(s, TokenPresented("tag1"))
    assert EndTransaction(StopReason.LOCAL) in eff


def test_remote_start_without_authorization_starts_on_plug() -> None:
    s, eff = run(fresh(), RemoteStartRequested("R1", authorize=False, remote_start_id=7))
    assert status_of(s) == ConnectorStatus.PREPARING
    s, eff = run(s, Pilot(PilotEvent.PLUGGED))
    assert BeginTransaction("R1", 7, started_by=TxPoint.EV_CONNECTED) in eff


def test_remote_start_with_authorization_asks_first() -> None:
    s, _ = run(fresh(), Pilot(PilotEvent.PLUGGED))
    s, eff = run(s, RemoteStartRequested("R1", authorize=True))
    assert eff == [RequestAuthorization("R1")]


def test_fault_opens_contactor_and_clearing_recovers() -> None:
    s, eff = run(charging(), FaultChanged(FaultCode.POWER_METER_FAILURE, True, "no answer"))
    assert eff[0] == SetContactor(False)
    assert s.status == PublishStatus(
        ConnectorStatus.FAULTED, FaultCode.POWER_METER_FAILURE, "no answer"
    )
    assert s.pilot.mode == PilotMode.STEADY
    assert s.tx_active  # the session survives a transient fault
    s, eff = run(s, FaultChanged(FaultCode.POWER_METER_FAILURE, False))
    assert eff[-3:] == [
        SetContactor(True),
        PublishStatus(ConnectorStatus.CHARGING, None, None),
        TransactionUpdated(TxUpdateTrigger.CHARGING_STATE_CHANGED, TxChargingState.CHARGING),
    ]


EV_COMM = FaultCode.EV_COMMUNICATION_ERROR


def test_ev_communication_error_while_charging_suspends_the_evse_not_faulted() -> None:
    s, eff = run(charging(), FaultChanged(EV_COMM, True, "no frame 0x102"))
    assert eff[0] == SetContactor(False)  # energy stops exactly as for a fault
    assert SetPilot(PilotOutput.steady()) in eff
    assert s.status == PublishStatus(ConnectorStatus.SUSPENDED_EVSE, EV_COMM, "no frame 0x102")
    assert s.tx_active
    s, eff = run(s, FaultChanged(EV_COMM, False))
    assert eff[-3:] == [
        SetContactor(True),
        PublishStatus(ConnectorStatus.CHARGING, None, None),
        TransactionUpdated(TxUpdateTrigger.CHARGING_STATE_CHANGED, TxChargingState.CHARGING),
    ]


def test_ev_communication_error_without_transaction() -> None:
    # (state before, expected status, expected error code): OCPP 1.6 allows
    # EVCommunicationError only with Preparing/SuspendedEV/SuspendedEVSE/Finishing
    plugged, _ = run(fresh(), Pilot(PilotEvent.PLUGGED))
    finishing, _ = run(charging(), StopRequested(StopReason.REMOTE))
    unplugged_tx = replace(charging(), config=replace(CONFIG, stop_tx_on_ev_side_disconnect=False))
    unplugged_tx, _ = run(unplugged_tx, Pilot(PilotEvent.POWER_RELEASED, PilotEvent.UNPLUGGED))
    table = [
        (plugged, ConnectorStatus.PREPARING, EV_COMM),
        (finishing, ConnectorStatus.FINISHING, EV_COMM),
        (unplugged_tx, ConnectorStatus.SUSPENDED_EV, EV_COMM),
        (fresh(), ConnectorStatus.AVAILABLE, None),  # no EV: not a status it goes with
    ]
    for before, status, code in table:
        s, _ = run(before, FaultChanged(EV_COMM, True, "link lost"))
        assert s.status is not None
        assert (s.status.status, s.status.error_code) == (status, code), before
        assert not s.contactor_on and s.pilot.mode == PilotMode.STEADY


def test_ev_communication_error_blocks_a_start_until_cleared() -> None:
    s, _ = run(fresh(), Pilot(PilotEvent.PLUGGED), FaultChanged(EV_COMM, True))
    s, eff = run(s, TokenPresented("T"))
    assert eff == []
    s, eff = run(s, RemoteStartRequested("R", authorize=False))
    assert not any(isinstance(e, BeginTransaction) for e in eff)
    s, eff = run(s, FaultChanged(EV_COMM, False), RemoteStartRequested("R", authorize=False))
    assert BeginTransaction("R", None) in eff


def test_a_hardware_fault_wins_over_an_ev_communication_error() -> None:
    s, _ = run(
        charging(),
        FaultChanged(EV_COMM, True),
        FaultChanged(FaultCode.GROUND_FAILURE, True, "RCD"),
    )
    assert s.status == PublishStatus(ConnectorStatus.FAULTED, FaultCode.GROUND_FAILURE, "RCD")
    assert s.faulted and s.blocked
    s, _ = run(s, FaultChanged(FaultCode.GROUND_FAILURE, False))
    assert s.status is not None and s.status.status == ConnectorStatus.SUSPENDED_EVSE
    assert not s.faulted and s.blocked  # no Faulted status, still no energy


def test_pilot_error_faults_with_other_error() -> None:
    s, _eff = run(charging(), Pilot(PilotEvent.POWER_RELEASED), Pilot(PilotEvent.ERROR_RAISED))
    assert status_of(s) == ConnectorStatus.FAULTED
    assert s.status is not None and s.status.error_code == FaultCode.OTHER_ERROR


def test_limit_below_6a_suspends_evse() -> None:
    s, eff = run(charging(), LimitChanged(4.0))
    assert eff[0] == SetContactor(False)
    assert SetPilot(PilotOutput.steady()) in eff
    assert status_of(s) == ConnectorStatus.SUSPENDED_EVSE
    s, eff = run(s, LimitChanged(10.0))
    assert SetPilot(PilotOutput.pwm(16.6)) in eff
    assert status_of(s) == ConnectorStatus.CHARGING


def test_inoperative_waits_for_transaction_end() -> None:
    s, _ = run(charging(), AvailabilityChanged(operative=False))
    assert status_of(s) == ConnectorStatus.CHARGING
    s, _ = run(s, StopRequested(StopReason.REMOTE))
    assert status_of(s) == ConnectorStatus.UNAVAILABLE
    s, eff = run(s, TokenPresented("X"))
    assert eff == []


def test_ventilation_required_without_ventilation_suspends() -> None:
    s, _ = run(
        fresh(),
        Pilot(PilotEvent.PLUGGED),
        RemoteStartRequested("R", authorize=False),
        Pilot(PilotEvent.POWER_REQUESTED),
        Pilot(PilotEvent.VENTILATION_REQUIRED),
    )
    assert not s.contactor_on
    assert status_of(s) == ConnectorStatus.SUSPENDED_EVSE


# ---------------------------------------------------------------- invariant

events = st.one_of(
    st.lists(st.sampled_from(list(PilotEvent)), min_size=1, max_size=3).map(
        lambda pes: Pilot(*pes)
    ),
    st.sampled_from(["A", "B"]).map(TokenPresented),
    st.builds(AuthorizationResolved, st.sampled_from(["A", "B"]), st.booleans()),
    st.builds(RemoteStartRequested, st.sampled_from(["A", "B"]), st.booleans()),
    st.sampled_from(list(StopReason)).map(StopRequested),
    st.builds(
        FaultChanged,
        st.sampled_from([FaultCode.POWER_METER_FAILURE, FaultCode.POWER_SWITCH_FAILURE, EV_COMM]),
        st.booleans(),
    ),
    st.booleans().map(AvailabilityChanged),
    st.sampled_from([0.0, 5.0, 6.0, 16.0, 32.0]).map(LimitChanged),
    st.just(TimerExpired(ch.CONNECTION_TIMER)),
    # any start / stop points (OCPP 2.0.1 TxStartPoint / TxStopPoint), changed at any time
    st.builds(
        lambda start, stop, unplug_stops: ch.ConfigChanged(
            replace(
                CONFIG,
                tx_start_points=start,
                tx_stop_points=stop,
                stop_tx_on_ev_side_disconnect=unplug_stops,
            )
        ),
        st.frozensets(st.sampled_from(list(TxPoint)), min_size=1),
        st.frozensets(st.sampled_from(list(TxPoint)), min_size=1),
        st.booleans(),
    ),
)


class SessionMachine(RuleBasedStateMachine):
    """Random event sequences; the contactor command stream must stay safe.

    A model of the CP line is tracked from the pilot events themselves, so the
    invariant is checked against what the hardware says, not against the
    machine's own bookkeeping.
    """

    def __init__(self) -> None:
        super().__init__()
        self.state = fresh()
        self.contactor = False
        self.cp_power = False
        self.faults: set[FaultCode] = set()
        self.cp_error = False
        self.tx = False

    @rule(event=events)
    def apply(self, event: ch.Event) -> None:
        if isinstance(event, Pilot):
            for pe in event.events:
                if pe == PilotEvent.POWER_REQUESTED:
                    self.cp_power = True
                elif pe in (PilotEvent.POWER_RELEASED, PilotEvent.UNPLUGGED):
                    self.cp_power = False
                elif pe == PilotEvent.ERROR_RAISED:
                    self.cp_error = True
                elif pe == PilotEvent.ERROR_CLEARED:
                    self.cp_error = False
        if isinstance(event, FaultChanged):
            (self.faults.add if event.active else self.faults.discard)(event.code)
        self.state, effects = step(self.state, event)
        for effect in effects:
            if isinstance(effect, SetContactor):
                self.contactor = effect.on
            elif isinstance(effect, BeginTransaction):
                assert not self.tx, "a second transaction began while one runs"
                self.tx = True
            elif isinstance(effect, TransactionUpdated):
                assert self.tx, "a transaction update without a transaction"
            elif isinstance(effect, EndTransaction):
                assert self.tx, "ended a transaction that was not running"
                assert not self.contactor, "transaction ended with the contactor closed"
                self.tx = False

    @invariant()
    def contactor_only_when_safe(self) -> None:
        if self.contactor:
            assert self.cp_power, "contactor on while CP not in C/D"
            assert self.tx, "contactor on without an authorized transaction"
            assert self.state.tx_authorized, "contactor on for a transaction without an id"
            assert not self.faults, "contactor on with an active fault"
            assert not self.cp_error, "contactor on with CP in E/F"
            assert self.state.limit_a >= 6.0
            assert self.state.pilot.mode == PilotMode.PWM

    @invariant()
    def faulted_only_for_hardware_faults(self) -> None:
        status = self.state.status
        assert status is not None
        hard = bool(self.faults - {EV_COMM}) or self.cp_error
        assert (status.status == ConnectorStatus.FAULTED) == hard
        if status.error_code == EV_COMM:  # REFERENCE 2.3
            assert status.status in {
                ConnectorStatus.PREPARING,
                ConnectorStatus.SUSPENDED_EV,
                ConnectorStatus.SUSPENDED_EVSE,
                ConnectorStatus.FINISHING,
            }

    @invariant()
    def outputs_match_commands(self) -> None:
        assert self.contactor == self.state.contactor_on


TestSessionInvariant = SessionMachine.TestCase
TestSessionInvariant.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
