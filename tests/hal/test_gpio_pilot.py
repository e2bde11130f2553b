"""GpioControlPilot (the real driver) on mock pins: PWM pin + bit-banged SPI ADC, EV behind it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

import pytest
from gpiozero import MCP3008, MCP3208

from hal.gpio.pilot import DIODE_FAULT, GpioControlPilot
from hal.pilot import PilotOutput
from hal.sim.cp_adc import SimBoardFactory, SimCpBoard
from hal.types import CpState, FaultCode, FaultReport

GUARD_S = 5.0  # a guard against hangs, never a pacing delay
PWM_PIN = 18
DUTY_16A = 16 / 0.6


class Line:
    """Collects the pilot's callbacks and lets a test wait for a condition."""

    def __init__(self, board: SimCpBoard, pilot: GpioControlPilot) -> None:
        self.board = board
        self.pilot = pilot
        self.states: list[CpState] = []
        self.faults: list[FaultReport] = []
        self._changed = asyncio.Event()

    def on_state(self, state: CpState) -> None:
        self.states.append(state)
        self._changed.set()

    def on_fault(self, report: FaultReport) -> None:
        self.faults.append(report)
        self._changed.set()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        async def _wait() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), GUARD_S)

    async def wait_state(self, state: CpState) -> None:
        await self.wait_for(lambda: bool(self.states) and self.states[-1] == state)


def make_line(factory: SimBoardFactory, bits: int = 10, **pilot_options: object) -> Line:
    board = SimCpBoard(pin_factory=factory, pwm_pin=PWM_PIN, pp_channel=2, bits=bits)
    options: dict[str, object] = {"poll_interval_s": 0.002, "pp_channel": 2, **pilot_options}
    pilot = GpioControlPilot(pwm_pin=PWM_PIN, pin_factory=factory, **options)  # type: ignore[arg-type]
    return Line(board, pilot)


@pytest.fixture
async def line() -> AsyncIterator[Line]:
    factory = SimBoardFactory(bit_banged_spi=True)
    cp = make_line(factory, diode_fault_hold_s=0.05)
    await cp.pilot.start(cp.on_state, cp.on_fault)
    try:
        yield cp
    finally:
        await cp.pilot.stop()
        cp.board.close()
        factory.reset()


async def test_session_states_follow_the_ev_and_the_output(line: Line) -> None:
    assert line.states == [CpState.F]  # the pin starts at -12 V: EVSE not available
    assert line.board.pwm_pin.state == 0.0
    assert line.board.pwm_pin.frequency == 1000

    line.pilot.set_output(PilotOutput.steady())
    assert line.board.pwm_pin.state == 1.0  # steady +12 V = duty 100 %
    await line.wait_state(CpState.A)

    line.board.ev.plug()
    await line.wait_state(CpState.B)

    line.pilot.set_output(PilotOutput.pwm(DUTY_16A))
    assert line.board.pwm_pin.state == pytest.approx(DUTY_16A / 100)
    assert line.board.ev.offered_current_a == pytest.approx(16.0)
    await line.wait_state(CpState.C)  # the EV closes S2 once it sees PWM

    line.board.ev.pause()
    await line.wait_state(CpState.B)
    line.board.ev.unplug()
    await line.wait_state(CpState.A)

    assert line.states == [CpState.F, CpState.A, CpState.B, CpState.C, CpState.B, CpState.A]
    assert line.faults == []
    assert line.pilot.state is CpState.A


async def test_ventilation_request_reads_as_state_d() -> None:
    factory = SimBoardFactory()
    board = SimCpBoard(pin_factory=factory, pwm_pin=PWM_PIN, ventilation_required=True)
    pilot = GpioControlPilot(pwm_pin=PWM_PIN, pin_factory=factory, poll_interval_s=0.002)
    cp = Line(board, pilot)
    await pilot.start(cp.on_state, cp.on_fault)
    try:
        board.ev.plug()
        pilot.set_output(PilotOutput.pwm(DUTY_16A))
        await cp.wait_state(CpState.D)
    finally:
        await pilot.stop()
        board.close()


async def test_diode_fault_forces_f_then_clears_when_the_check_passes(line: Line) -> None:
    line.pilot.set_output(PilotOutput.steady())
    line.board.ev.plug()
    line.pilot.set_output(PilotOutput.pwm(DUTY_16A))
    await line.wait_state(CpState.C)

    line.board.ev.inject_fault("diode")
    await line.wait_for(lambda: any(f.active for f in line.faults))
    raised = line.faults[0]
    assert raised.code is FaultCode.DIODE_FAULT
    assert raised.detail.startswith(DIODE_FAULT)
    assert line.board.pwm_pin.state == 0.0  # -12 V at once, in the same loop callback
    assert line.pilot.output == PilotOutput.pwm(DUTY_16A)  # the command is remembered
    await line.wait_state(CpState.F)

    line.board.ev.clear_faults()  # after the hold the commanded PWM returns and passes
    await line.wait_for(lambda: len(line.faults) == 2)
    assert line.faults[1] == FaultReport(FaultCode.DIODE_FAULT, False, "EV diode present")
    assert line.board.pwm_pin.state == pytest.approx(DUTY_16A / 100)
    await line.wait_state(CpState.C)


async def test_diode_fault_persists_over_holds_until_unplug(line: Line) -> None:
    line.pilot.set_output(PilotOutput.steady())
    line.board.ev.plug()
    line.board.ev.inject_fault("diode")
    line.pilot.set_output(PilotOutput.pwm(DUTY_16A))
    await line.wait_for(lambda: line.pilot.diode_fault_active)
    # every hold ends with a re-check under PWM that fails again: F is forced again
    rechecks = 0
    while rechecks < 2:
        await line.wait_for(lambda: line.board.pwm_pin.state > 0.0)
        await line.wait_for(lambda: line.board.pwm_pin.state == 0.0)
        rechecks += 1
    assert [f.active for f in line.faults] == [True]  # one episode, reported once

    line.pilot.set_output(PilotOutput.steady())  # what a faulted charger commands
    line.board.ev.unplug()
    await line.wait_for(lambda: not line.pilot.diode_fault_active)
    await line.wait_state(CpState.A)


async def test_pp_codes_the_cable_rating(line: Line) -> None:
    line.pilot.set_output(PilotOutput.steady())
    assert line.pilot.cable_max_current_a is None  # no cable in the socket
    line.board.cable_ohm = 680.0
    line.board.ev.plug()
    await line.wait_state(CpState.B)
    await line.wait_for(lambda: line.pilot.cable_max_current_a is not None)
    assert line.pilot.cable_max_current_a == 20.0


async def test_a_one_sample_glitch_is_not_reported() -> None:
    factory = SimBoardFactory(bit_banged_spi=True)
    cp = make_line(factory, debounce_samples=3)
    board = cp.board
    normal = board.adc.channels[0]
    calls = 0
    glitched = threading.Event()

    def glitchy() -> float:
        nonlocal calls
        calls += 1
        if calls == 5:
            return board._to_adc(6.0)  # one reading at the state C level
        if calls > 12:
            glitched.set()
        return normal()

    board.adc.channels[0] = glitchy
    await cp.pilot.start(cp.on_state, cp.on_fault)
    try:
        cp.pilot.set_output(PilotOutput.steady())
        await cp.wait_state(CpState.A)
        await asyncio.wait_for(asyncio.to_thread(glitched.wait), GUARD_S)
        board.ev.plug()
        await cp.wait_state(CpState.B)
        assert CpState.C not in cp.states
    finally:
        await cp.pilot.stop()
        board.close()


async def test_adc_errors_raise_an_internal_error_and_clear_on_recovery(line: Line) -> None:
    board = line.board
    normal = board.adc.channels[0]
    broken = threading.Event()
    broken.set()

    def flaky() -> float:
        if broken.is_set():
            raise OSError("SPI transfer failed")
        return normal()

    board.adc.channels[0] = flaky
    await line.wait_for(lambda: any(f.code is FaultCode.INTERNAL_ERROR for f in line.faults))
    broken.clear()
    await line.wait_for(lambda: len(line.faults) == 2)
    assert [(f.code, f.active) for f in line.faults] == [
        (FaultCode.INTERNAL_ERROR, True),
        (FaultCode.INTERNAL_ERROR, False),
    ]


async def test_stop_drives_f_and_joins_the_thread() -> None:
    factory = SimBoardFactory(bit_banged_spi=True)
    cp = make_line(factory)
    await cp.pilot.start(cp.on_state, cp.on_fault)
    cp.pilot.set_output(PilotOutput.steady())
    await cp.wait_state(CpState.A)
    pwm_pin = cp.board.pwm_pin
    await cp.pilot.stop()
    await cp.pilot.stop()  # idempotent
    assert not any(t.name == "cp-adc" for t in threading.enumerate())
    assert cp.board.line.output == PilotOutput.error()
    assert pwm_pin.frequency is None  # released
    cp.board.close()


def test_bad_options_are_refused() -> None:
    factory = SimBoardFactory()
    with pytest.raises(ValueError, match="adc_model"):
        GpioControlPilot(pwm_pin=PWM_PIN, pin_factory=factory, adc_model="ads1115")
    with pytest.raises(ValueError, match="debounce"):
        GpioControlPilot(pwm_pin=PWM_PIN, pin_factory=factory, debounce_samples=0)


@pytest.mark.parametrize("bit_banged", [True, False])
@pytest.mark.parametrize(("adc_class", "bits"), [(MCP3008, 10), (MCP3208, 12)])
def test_mock_adc_speaks_the_mcp3x08_protocol(adc_class: type, bits: int, bit_banged: bool) -> None:
    factory = SimBoardFactory(bit_banged_spi=bit_banged)
    board = SimCpBoard(pin_factory=factory, bits=bits)
    volts = {0: 0.0, 1: 1.0, 2: 2.5, 5: 3.29}
    board.adc.channels = {ch: (lambda v=v: v) for ch, v in volts.items()}
    adcs = {ch: adc_class(channel=ch, pin_factory=factory) for ch in volts}
    try:
        for ch, v in volts.items():
            assert adcs[ch].voltage == pytest.approx(v, abs=3.3 / 2**bits)
    finally:
        for adc in adcs.values():
            adc.close()
        board.close()


async def test_mcp3208_session_states() -> None:
    factory = SimBoardFactory()
    cp = make_line(factory, bits=12, adc_model="mcp3208")
    await cp.pilot.start(cp.on_state, cp.on_fault)
    try:
        cp.pilot.set_output(PilotOutput.steady())
        cp.board.ev.plug()
        cp.pilot.set_output(PilotOutput.pwm(DUTY_16A))
        await cp.wait_state(CpState.C)
        assert cp.states[0] is CpState.F
        assert cp.pilot.cable_max_current_a == 32.0
    finally:
        await cp.pilot.stop()
        cp.board.close()


async def test_no_valid_cable_with_an_ev_connected_is_a_cable_fault(line: Line) -> None:
    line.pilot.set_output(PilotOutput.steady())
    line.board.ev.plug()
    await line.wait_state(CpState.B)
    assert line.faults == []  # a valid 32 A cable

    line.board.cable_ohm = 10_000.0  # outside every coded range (REFERENCE 1.3)
    await line.wait_for(lambda: any(f.active for f in line.faults))
    assert line.faults[-1].code is FaultCode.CABLE_FAULT
    assert line.pilot.cable_max_current_a is None

    line.board.ev.unplug()  # the unplug ends it
    await line.wait_for(lambda: not line.faults[-1].active)
    assert line.faults[-1].code is FaultCode.CABLE_FAULT
    assert [f.active for f in line.faults] == [True, False]
