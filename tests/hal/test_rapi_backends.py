"""The "openevse-rapi" pilot, contactor and meter against SimRapiController on a pty.

Real RAPI frames (checksums, sequence ids, $AT notifications) cross a pseudo-
terminal; the simulated controller drives a simulated EV and can go silent,
miss heartbeats, reboot, fault, or put garbage on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from hal.pilot import PilotOutput
from hal.rapi.controller import RapiController, RapiLinks, RapiSettings
from hal.rapi.frames import encode
from hal.rapi.roles import RapiContactor, RapiControlPilot, RapiPowerMeter
from hal.rapi.states import EvseMode, EvseState
from hal.registry import (
    BackendContext,
    BackendError,
    RapiMeterOptions,
    RapiOptions,
    default_registry,
)
from hal.sim.rapi_controller import SimRapiController
from hal.types import CpState, FaultCode, FaultReport, MeterReading

GUARD_S = 5.0  # generous guard on waits; never a pacing delay
DUTY_16A = 26.6  # what agent.evse.iec61851 signals for 16 A


@dataclass
class Probe:
    """What the roles reported, in order, with a way to wait for a condition."""

    states: list[CpState] = field(default_factory=list)
    faults: list[FaultReport] = field(default_factory=list)
    readings: list[MeterReading] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_state(self, state: CpState) -> None:
        self.states.append(state)
        self.changed.set()

    def on_fault(self, report: FaultReport) -> None:
        self.faults.append(report)
        self.changed.set()

    def on_reading(self, reading: MeterReading) -> None:
        self.readings.append(reading)
        self.changed.set()

    def active(self, code: FaultCode) -> bool:
        last = [f for f in self.faults if f.code is code]
        return bool(last) and last[-1].active

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        async def wait() -> None:
            while not condition():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), GUARD_S)


@dataclass
class Board:
    sim: SimRapiController
    controller: RapiController
    pilot: RapiControlPilot
    contactor: RapiContactor
    meter: RapiPowerMeter
    probe: Probe
    garbage: list[tuple[str, int]]

    async def until(self, predicate: Callable[[], bool]) -> None:
        await asyncio.wait_for(self.sim.wait_until(predicate), GUARD_S)

    def since(self, index: int) -> list[str]:
        return [" ".join(c.tokens) for c in list(self.sim.received)[index:]]


@pytest.fixture
async def board() -> AsyncIterator[Board]:
    sim = SimRapiController(tick_interval_s=0.05)
    await sim.start()
    garbage: list[tuple[str, int]] = []
    settings = RapiSettings(
        sim.port,
        timeout_s=0.2,
        heartbeat_interval_s=0.2,
        heartbeat_timeout_s=1,
        fault_after_s=0.4,
    )
    controller = RapiController(settings, on_garbage=lambda r, n: garbage.append((r, n)))
    probe = Probe()
    pilot = RapiControlPilot(controller)
    contactor = RapiContactor(controller)
    meter = RapiPowerMeter(controller, poll_interval_s=0.05, fault_after_s=0.4)

    def interlock(state: CpState) -> None:  # what agent.evse.controller does
        if state not in (CpState.C, CpState.D) and contactor.is_on:
            contactor.switch(False)

    controller.add_state_listener(interlock)
    contactor.switch(False)  # the controller's initial effects, before start
    pilot.set_output(PilotOutput.steady())
    await contactor.start(probe.on_fault)
    await pilot.start(probe.on_state, probe.on_fault)
    await meter.start(probe.on_reading, probe.on_fault)
    yield Board(sim, controller, pilot, contactor, meter, probe, garbage)
    await meter.stop()
    await pilot.stop()
    await contactor.stop()
    await sim.stop()


async def charge(b: Board) -> None:
    """Plug in, offer 16 A, permit the relay: the EV charges."""
    b.sim.ev.plug()
    await b.probe.wait_for(lambda: b.pilot.state is CpState.B)
    b.pilot.set_output(PilotOutput.pwm(DUTY_16A))
    await b.probe.wait_for(lambda: b.pilot.state is CpState.C)
    b.contactor.switch(True)
    await b.until(lambda: b.sim.relay_closed)


async def test_start_configures_supervision_and_reports_the_state(board: Board) -> None:
    b = board
    assert b.probe.states == [CpState.A]
    assert b.sim.hs_interval_s == 1 and b.sim.hs_current_a == 6
    sent = b.since(0)
    assert sent[:3] == ["GY", "SY 1 6", "GS"]
    # the agent asked for steady +12 V before start: the controller (booted enabled) sleeps
    await b.until(lambda: b.sim.mode is EvseMode.SLEEPING)
    assert not b.sim.relay_closed


async def test_a_session_charges_pauses_and_stops(board: Board) -> None:
    b = board
    start = len(b.sim.received)
    await charge(b)
    assert "SC 16 V" in b.since(start)
    assert b.sim.capacity_a == 16
    # the meter sees the current and the energy grows
    await b.probe.wait_for(lambda: b.meter.latest is not None and b.meter.latest.current_a[0] > 15)
    first = b.meter.latest
    assert first is not None
    await b.probe.wait_for(
        lambda: (
            b.meter.latest is not None
            and b.meter.latest.energy_import_wh > first.energy_import_wh + 0.05
        )
    )
    reading = b.meter.latest
    assert reading is not None
    assert reading.power_w == pytest.approx(230.0 * 16.0, rel=0.01)
    # the EV pauses: C -> B, the interlock switches off: $FS goes out, then PWM is re-armed
    mark = len(b.sim.received)
    b.sim.ev.pause()
    await b.probe.wait_for(lambda: b.pilot.state is CpState.B)
    assert not b.contactor.is_on
    await b.until(lambda: b.since(mark)[-2:] == ["FS", "FE"])
    assert b.sim.mode is EvseMode.ENABLED and not b.sim.relay_closed
    # resume: the controller closes its relay in C once the agent permits it again
    b.sim.ev.resume()
    await b.probe.wait_for(lambda: b.pilot.state is CpState.C)
    b.contactor.switch(True)
    await b.until(lambda: b.sim.relay_closed)
    # stop: relay forbidden, then steady +12 V
    b.contactor.switch(False)
    b.pilot.set_output(PilotOutput.steady())
    await b.until(lambda: b.sim.mode is EvseMode.SLEEPING and not b.sim.relay_closed)
    await b.probe.wait_for(lambda: b.pilot.state is CpState.B)


async def test_contactor_off_while_the_ev_requests_keeps_the_relay_open(board: Board) -> None:
    b = board
    await charge(b)
    mark = len(b.sim.received)
    b.contactor.switch(False)  # e.g. a fault elsewhere while the EV stays in C
    # RAPI has no "PWM on, relay open": the controller sleeps (+12 V), the EV goes to B,
    # and only then is the PWM that is still wanted re-armed
    await b.until(lambda: b.since(mark)[:2] == ["FS", "FE"])
    fs, fe = list(b.sim.received)[mark : mark + 2]
    left_c = [s.monotonic_s for s in b.sim.pilot.state_history if s.state is CpState.B]
    assert left_c and fs.monotonic_s < left_c[-1] < fe.monotonic_s


async def test_pwm_below_six_amps_or_digital_communication_sleeps(board: Board) -> None:
    b = board
    b.pilot.set_output(PilotOutput.pwm(5.0))
    await b.until(lambda: b.sim.mode is EvseMode.SLEEPING)
    b.pilot.set_output(PilotOutput.pwm(53.3))
    await b.until(lambda: b.sim.mode is EvseMode.ENABLED and b.sim.capacity_a == 32)


@pytest.mark.parametrize(
    ("state", "code"),
    [
        (EvseState.GFCI_FAULT, FaultCode.GROUND_FAILURE),
        (EvseState.NO_GROUND, FaultCode.GROUND_FAILURE),
        (EvseState.STUCK_RELAY, FaultCode.POWER_SWITCH_FAILURE),
        (EvseState.GFI_SELF_TEST_FAILED, FaultCode.GROUND_FAILURE),
        (EvseState.OVER_TEMPERATURE, FaultCode.HIGH_TEMPERATURE),
        (EvseState.OVER_CURRENT, FaultCode.OVER_CURRENT_FAILURE),
    ],
)
async def test_controller_faults_are_reported_and_cleared(
    board: Board, state: EvseState, code: FaultCode
) -> None:
    b = board
    await charge(b)
    b.sim.inject_fault(state)
    await b.probe.wait_for(lambda: b.probe.active(code))
    assert not b.sim.relay_closed  # the controller opened its relay by itself
    b.sim.clear_fault()
    await b.probe.wait_for(lambda: not b.probe.active(code))
    assert [f.active for f in b.probe.faults if f.code is code] == [True, False]


async def test_diode_check_failure_reads_as_f_with_a_fault(board: Board) -> None:
    b = board
    await charge(b)
    b.sim.ev.inject_fault("diode")
    await b.probe.wait_for(lambda: b.probe.active(FaultCode.OTHER_ERROR))
    assert b.pilot.state is CpState.F
    assert not b.sim.relay_closed
    b.sim.ev.clear_faults()
    await b.probe.wait_for(lambda: not b.probe.active(FaultCode.OTHER_ERROR))
    assert b.pilot.state is CpState.C


async def test_garbage_is_counted_ignored_and_the_link_keeps_working(board: Board) -> None:
    b = board
    states_before = list(b.probe.states)
    b.sim.inject(b"\x00\xffnoise")
    b.sim.inject(b"$AT 03 03 16 0000^00\r")  # bad checksum: would say "C" if believed
    b.sim.inject(b"$AT 03 03")  # truncated by the next frame
    b.sim.inject(encode(("OK", "1"), seq_id=0xEE))  # nobody asked: unknown id
    b.sim.inject(b"$" + b"9" * 200 + b"\r")  # oversized
    b.sim.inject(encode(("XX", "1")))  # a command from the controller: unexpected
    reasons = {
        "noise",
        "bad checksum",
        "truncated",
        "oversized",
    }
    await b.until(lambda: reasons <= {r for r, _ in b.garbage} and len(b.garbage) >= 6)
    assert b.probe.states == states_before  # nothing acted on
    assert b.controller.link.stats.garbage_events >= 6
    # a mangled answer costs its command only
    b.sim.mangle_next_response(lambda frame: frame[:-3] + b"00\r")
    b.sim.ev.plug()
    await b.probe.wait_for(lambda: b.pilot.state is CpState.B)
    b.pilot.set_output(PilotOutput.pwm(DUTY_16A))
    await b.until(lambda: b.sim.mode is EvseMode.ENABLED and b.sim.capacity_a == 16)


async def test_missed_heartbeats_fall_back_and_recover(board: Board) -> None:
    b = board
    await charge(b)
    b.sim.drop_commands("SY")  # the pulses get lost: the controller falls back by itself
    await b.until(lambda: b.sim.hs_trigger == 2)
    assert b.sim.capacity_a == 6
    assert b.sim.ev.offered_current_a == pytest.approx(6.0, abs=0.1)
    b.sim.drop_commands()
    # the next pulse is answered $NK: the agent acknowledges and sends its current again
    await b.until(lambda: b.sim.hs_trigger == 1 and b.sim.capacity_a == 16)
    assert "SY 165" in b.since(0)


async def test_controller_falls_back_when_the_agent_stops_pulsing(board: Board) -> None:
    b = board
    await charge(b)
    task = b.controller._task
    assert task is not None
    task.cancel()  # the agent hangs: no more pulses (the roles stay "started")
    await asyncio.wait({task})
    await b.until(lambda: b.sim.hs_trigger == 2)
    assert b.sim.capacity_a == 6 and b.sim.relay_closed  # still charging, at the safe current


async def test_a_silent_controller_is_a_fault_until_it_answers(board: Board) -> None:
    b = board
    b.sim.set_answering(False)
    await b.probe.wait_for(lambda: b.probe.active(FaultCode.INTERNAL_ERROR))
    assert b.pilot.state is CpState.F
    await b.probe.wait_for(lambda: b.probe.active(FaultCode.POWER_METER_FAILURE))
    mark = len(b.sim.received)
    b.sim.set_answering(True)
    await b.probe.wait_for(
        lambda: (
            not b.probe.active(FaultCode.INTERNAL_ERROR)
            and not b.probe.active(FaultCode.POWER_METER_FAILURE)
        )
    )
    await b.probe.wait_for(lambda: b.pilot.state is CpState.A)
    await b.until(lambda: "FS" in b.since(mark))  # the wanted output is sent again


async def test_a_rebooted_controller_is_configured_again(board: Board) -> None:
    b = board
    await charge(b)
    b.contactor.switch(False)
    b.pilot.set_output(PilotOutput.steady())
    await b.until(lambda: b.sim.mode is EvseMode.SLEEPING)
    mark = len(b.sim.received)
    b.sim.reboot()  # comes back enabled at its EEPROM current: not what the agent wants
    await b.until(lambda: "GS" in b.since(mark) and b.sim.mode is EvseMode.SLEEPING)


async def test_energy_is_monotonic_across_sessions(board: Board) -> None:
    b = board
    await charge(b)
    await b.probe.wait_for(
        lambda: b.meter.latest is not None and b.meter.latest.energy_import_wh > 0.2
    )
    b.sim.ev.unplug()  # the controller banks the session into its total (whole Wh)
    await b.probe.wait_for(lambda: b.pilot.state is CpState.A)
    b.pilot.set_output(PilotOutput.steady())
    first_session_wh = b.sim.session_ws / 3600  # (the total only holds whole Wh)
    await charge(b)  # a new session: the controller's session counter restarts at 0
    await b.probe.wait_for(lambda: b.probe.readings[-1].energy_import_wh > first_session_wh + 0.05)
    energies = [r.energy_import_wh for r in b.probe.readings]
    assert energies == sorted(energies)
    # the register is the sum of the sessions: no double count, no loss
    expected_wh = first_session_wh + b.sim.session_ws / 3600
    assert b.probe.readings[-1].energy_import_wh <= expected_wh + 1e-6


async def test_stop_disables_the_controller(board: Board) -> None:
    b = board
    await charge(b)
    await b.pilot.stop()
    assert b.sim.mode is EvseMode.DISABLED and not b.sim.relay_closed


async def test_a_controller_silent_from_the_start_is_reported_not_raised() -> None:
    sim = SimRapiController()
    await sim.start()
    sim.set_answering(False)
    controller = RapiController(RapiSettings(sim.port, timeout_s=0.1, fault_after_s=0.1))
    pilot = RapiControlPilot(controller)
    meter = RapiPowerMeter(controller, poll_interval_s=0.05, fault_after_s=0.1)
    probe = Probe()
    try:
        await pilot.start(probe.on_state, probe.on_fault)
        assert probe.states == [CpState.F]
        assert probe.active(FaultCode.INTERNAL_ERROR)
        await meter.start(probe.on_reading, probe.on_fault)
        await probe.wait_for(lambda: probe.active(FaultCode.POWER_METER_FAILURE))
        assert meter.latest is None
        sim.set_answering(True)
        await probe.wait_for(lambda: pilot.state is CpState.A and probe.readings != [])
        assert not probe.active(FaultCode.INTERNAL_ERROR)
    finally:
        await meter.stop()
        await pilot.stop()
        await sim.stop()
    assert controller.link.closed


async def test_firmware_without_heartbeat_supervision_still_charges(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = SimRapiController(heartbeat_supported=False)
    await sim.start()
    controller = RapiController(RapiSettings(sim.port, timeout_s=0.2, heartbeat_interval_s=0.05))
    pilot = RapiControlPilot(controller)
    probe = Probe()
    try:
        await pilot.start(probe.on_state, probe.on_fault)
        assert "refuses $SY" in caplog.text
        sim.ev.plug()
        await probe.wait_for(lambda: pilot.state is CpState.B)
        pilot.set_output(PilotOutput.pwm(DUTY_16A))
        await probe.wait_for(lambda: pilot.state is CpState.C)
        mark = len(sim.received)
        await asyncio.wait_for(sim.wait_until(lambda: len(sim.received) >= mark + 3), GUARD_S)
        assert "SY" not in [c.command for c in list(sim.received)[mark:]]  # no futile pulses
        assert probe.faults == []
    finally:
        await pilot.stop()
        await sim.stop()


# --- registry -------------------------------------------------------------------------


def test_roles_on_one_port_share_one_controller() -> None:
    registry = default_registry()
    links = RapiLinks()
    ctx = BackendContext(rapi_links=links)
    pilot = registry.get("pilot", "openevse-rapi").factory(RapiOptions(port="/dev/ttyX"), ctx)
    contactor = registry.get("contactor", "openevse-rapi").factory(
        RapiOptions(port="/dev/ttyX"), ctx
    )
    meter = registry.get("meter", "openevse-rapi").factory(
        RapiMeterOptions(port="/dev/ttyX", phases=3), ctx
    )
    assert isinstance(pilot, RapiControlPilot)
    assert isinstance(contactor, RapiContactor)
    assert isinstance(meter, RapiPowerMeter)
    assert pilot._controller is contactor._controller is meter._controller
    with pytest.raises(BackendError, match="share its settings"):
        registry.get("pilot", "openevse-rapi").factory(
            RapiOptions(port="/dev/ttyX", baudrate=9600), ctx
        )


def test_heartbeat_interval_must_be_below_the_timeout() -> None:
    spec = default_registry().get("pilot", "openevse-rapi")
    with pytest.raises(BackendError, match="heartbeat_interval_s"):
        spec.factory(RapiOptions(port="/dev/ttyX", heartbeat_interval_s=10.0), BackendContext())
