"""SimEvseRig: the simulated hardware of one EVSE, driven through the agent-side roles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from gpiozero.pins.mock import MockFactory

from hal.pilot import PilotOutput
from hal.sim.pilot import SimControlPilot
from hal.sim.rig import SimEvseRig
from hal.sim.token_reader import SimIdTokenReader
from hal.types import CpState, FaultCode, FaultReport, MeterReading

GUARD_S = 5.0
PWM_16A = PilotOutput.pwm(16 / 0.6)


class Agent:
    """Stands in for the station core: records what the roles deliver, in the loop."""

    def __init__(self) -> None:
        self.states: asyncio.Queue[CpState] = asyncio.Queue()
        self.tokens: asyncio.Queue[str] = asyncio.Queue()
        self.faults: list[FaultReport] = []
        self.readings: list[MeterReading] = []
        self._changed = asyncio.Event()

    def on_state(self, state: CpState) -> None:
        self.states.put_nowait(state)

    def on_fault(self, report: FaultReport) -> None:
        self.faults.append(report)
        self._changed.set()

    def on_reading(self, reading: MeterReading) -> None:
        self.readings.append(reading)
        self._changed.set()

    async def next_state(self) -> CpState:
        return await asyncio.wait_for(self.states.get(), GUARD_S)

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        async def _wait() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), GUARD_S)


@pytest.fixture
async def rig() -> AsyncIterator[SimEvseRig]:
    factory = MockFactory()
    r = SimEvseRig(
        evse_id=1,
        pin_factory=factory,
        coil_pin=17,
        feedback_pin=27,
        tick_interval_s=0.02,
        meter_poll_interval_s=0.03,
        meter_timeout_s=0.1,
        meter_fault_after_s=0.3,
        feedback_settle_s=0.02,
    )
    await r.start()
    try:
        yield r
    finally:
        await r.stop()
        factory.reset()


@pytest.fixture
async def agent(rig: SimEvseRig) -> Agent:
    a = Agent()
    await rig.pilot.start(a.on_state)
    await rig.token_reader.start(a.tokens.put_nowait)
    await rig.contactor.start(a.on_fault)
    return a


async def test_commands_produce_cp_states_through_on_state(rig: SimEvseRig, agent: Agent) -> None:
    assert await agent.next_state() is CpState.A  # initial state, once at start
    assert rig.apply("plug") == "evse 1: plugged in, CP B"
    assert await agent.next_state() is CpState.B
    rig.pilot.set_output(PWM_16A)  # the agent offers 16 A
    assert await agent.next_state() is CpState.C
    rig.apply("pause")
    assert await agent.next_state() is CpState.B
    rig.apply("resume")
    assert await agent.next_state() is CpState.C
    rig.apply("fault", "cp-error")
    assert await agent.next_state() is CpState.E
    rig.apply("clear")
    assert await agent.next_state() is CpState.C
    rig.apply("fault", "diode")
    assert await agent.next_state() is CpState.F
    rig.apply("clear")
    assert await agent.next_state() is CpState.C
    rig.apply("unplug")
    assert await agent.next_state() is CpState.A
    assert rig.pilot.state is CpState.A
    assert agent.states.empty()


async def test_state_changes_arrive_in_the_loop_not_inside_the_call(
    rig: SimEvseRig, agent: Agent
) -> None:
    await agent.next_state()
    rig.apply("plug")
    assert agent.states.empty()  # delivered through call_in_loop, on a later iteration
    assert await agent.next_state() is CpState.B


async def test_swipe_reaches_the_reader_owner(rig: SimEvseRig, agent: Agent) -> None:
    assert rig.apply("swipe", "04a2b3c4") == "evse 1: swiped 04A2B3C4"
    assert await asyncio.wait_for(agent.tokens.get(), GUARD_S) == "04A2B3C4"


async def test_charging_session_energy_reaches_the_real_meter_driver(
    rig: SimEvseRig, agent: Agent
) -> None:
    rig.apply("plug")
    rig.pilot.set_output(PWM_16A)
    rig.contactor.switch(True)
    assert rig.coil_is_on()
    assert await asyncio.wait_for(rig.contactor.wait_settled(), GUARD_S)
    assert rig.ev.drawn_current_a == pytest.approx(16.0)

    await rig.meter.start(agent.on_reading, agent.on_fault)
    await agent.wait_for(
        lambda: (
            len(agent.readings) >= 2
            and agent.readings[-1].energy_import_wh > agent.readings[0].energy_import_wh
        )
    )
    last = agent.readings[-1]
    assert last.power_w == pytest.approx(11040.0, rel=1e-6)
    assert last.current_a == pytest.approx((16.0, 16.0, 16.0), rel=1e-6)
    assert agent.faults == []

    rig.contactor.switch(False)
    assert not rig.coil_is_on()
    assert rig.ev.drawn_current_a == 0.0


async def test_meter_fault_commands_reach_the_driver(rig: SimEvseRig, agent: Agent) -> None:
    await rig.meter.start(agent.on_reading, agent.on_fault)
    rig.apply("fault", "meter")
    await agent.wait_for(lambda: len(agent.faults) == 1)
    assert agent.faults[0].code is FaultCode.POWER_METER_FAILURE and agent.faults[0].active
    rig.apply("clear")
    await agent.wait_for(lambda: len(agent.faults) == 2)
    assert not agent.faults[1].active


async def test_meter_frozen_with_power_flowing(rig: SimEvseRig, agent: Agent) -> None:
    rig.apply("plug")
    rig.pilot.set_output(PWM_16A)
    rig.contactor.switch(True)
    await rig.meter.start(agent.on_reading, agent.on_fault)
    # Freeze only once the registers show the load (the EV clock publishes it).
    await agent.wait_for(lambda: bool(agent.readings) and agent.readings[-1].power_w > 10000)
    rig.apply("fault", "meter-frozen")
    await agent.wait_for(lambda: len(agent.faults) == 1)
    assert "frozen" in agent.faults[0].detail
    rig.apply("clear")
    await agent.wait_for(lambda: len(agent.faults) == 2)
    assert not agent.faults[1].active


async def test_contactor_welded_and_stuck_commands(rig: SimEvseRig, agent: Agent) -> None:
    rig.apply("plug")
    rig.pilot.set_output(PWM_16A)
    rig.contactor.switch(True)
    assert await asyncio.wait_for(rig.contactor.wait_settled(), GUARD_S)

    rig.apply("fault", "contactor-welded")
    rig.contactor.switch(False)
    assert not await asyncio.wait_for(rig.contactor.wait_settled(), GUARD_S)
    assert agent.faults[-1] == FaultReport(FaultCode.POWER_SWITCH_FAILURE, True, "welded")
    assert rig.ev.drawn_current_a == pytest.approx(16.0)  # power still flows: welded
    rig.apply("clear")  # contacts open again
    await agent.wait_for(lambda: not agent.faults[-1].active)

    rig.apply("fault", "contactor-stuck")
    rig.contactor.switch(True)
    assert not await asyncio.wait_for(rig.contactor.wait_settled(), GUARD_S)
    assert agent.faults[-1] == FaultReport(FaultCode.POWER_SWITCH_FAILURE, True, "stuck open")
    assert not rig.coil_is_on()
    assert rig.ev.drawn_current_a == 0.0
    rig.apply("clear")
    rig.contactor.switch(False)
    assert await asyncio.wait_for(rig.contactor.wait_settled(), GUARD_S)
    assert not agent.faults[-1].active
    rig.contactor.switch(True)  # healthy again
    assert await asyncio.wait_for(rig.contactor.wait_settled(), GUARD_S)


@pytest.mark.parametrize(
    ("command", "arg", "message"),
    [
        ("dance", None, "unknown command 'dance'; valid: plug, unplug, swipe"),
        ("fault", None, "fault needs an argument"),
        ("fault", "gremlins", "unknown fault 'gremlins'; valid: cp-error"),
        ("swipe", None, "swipe needs an argument: swipe TOKEN"),
        ("swipe", "X" * 21, "token must be 1..20 characters"),
        ("plug", "now", "plug takes no argument"),
    ],
)
async def test_bad_commands_raise_value_error(
    rig: SimEvseRig, command: str, arg: str | None, message: str
) -> None:
    with pytest.raises(ValueError) as info:
        rig.apply(command, arg)
    assert message in str(info.value)


async def test_status_and_swipe_without_listener(rig: SimEvseRig) -> None:
    assert "ignored: reader not started" in rig.apply("swipe", "abc")
    status = rig.apply("status")
    assert status.startswith("evse 1: CP A, plugged False")
    assert "faults none" in status


async def test_pilot_records_output_changes_with_timestamps() -> None:
    pilot = SimControlPilot()
    pilot.set_output(PWM_16A)
    pilot.set_output(PilotOutput.steady())
    stamps = [c.monotonic_s for c in pilot.output_history]
    assert [c.output for c in pilot.output_history] == [PWM_16A, PilotOutput.steady()]
    assert stamps == sorted(stamps)
    with pytest.raises(ValueError):
        pilot.set_output(PilotOutput.pwm(120.0))
    states: list[CpState] = []
    await pilot.start(states.append)
    await pilot.stop()
    assert pilot.output == PilotOutput.error()  # stop drives F
    assert states == [CpState.A]


async def test_token_reader_normalises_and_stops() -> None:
    reader = SimIdTokenReader()
    tokens: asyncio.Queue[str] = asyncio.Queue()
    await reader.start(tokens.put_nowait)
    assert reader.swipe(" deadbeef ")
    assert await asyncio.wait_for(tokens.get(), GUARD_S) == "DEADBEEF"
    with pytest.raises(ValueError):
        reader.swipe("has space")
    await reader.stop()
    await reader.stop()
    assert not reader.swipe("AFTER")
