"""The chademo-can pilot backend against the simulated CHAdeMO vehicle, over a real
python-can bus: the virtual bus always, SocketCAN ``vcan0`` where the kernel has it.

One test body per behaviour runs against every bus; the SocketCAN runs skip cleanly
without ``socket.AF_CAN`` or a ``vcan0`` interface.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import can
import pytest

from agent.config import ConfigError, parse_dataclass
from agent.evse.iec61851 import duty_for_current
from hal.can import endpoint
from hal.can.chademo_frames import (
    ChargerStatusFlag,
    RejectReason,
    VehicleFault,
    VehicleStatus,
    encode,
)
from hal.can.chademo_pilot import ChademoCanPilot
from hal.can.endpoint import CanLinkError, open_bus
from hal.faults import HalError
from hal.pilot import PilotOutput
from hal.registry import BackendContext, ChademoCanPilotOptions, default_registry
from hal.sim.chademo_vehicle import Garbage, SimChademoVehicle
from hal.types import CpState, FaultCode, FaultReport

GUARD_S = 5.0  # a guard against hangs, never a delay
TIMEOUT_S = 0.3  # the pilot's vehicle-silence timeout in these tests (product default 1.0)
TX_PERIOD_S = 0.1
_channels = itertools.count()


def _has_vcan0() -> bool:
    return hasattr(socket, "AF_CAN") and os.path.exists("/sys/class/net/vcan0")


BUSES = [
    pytest.param("virtual", id="virtual"),
    pytest.param(
        "socketcan",
        id="socketcan-vcan0",
        marks=pytest.mark.skipif(not _has_vcan0(), reason="no AF_CAN socket or no vcan0"),
    ),
]


@dataclass
class Bench:
    pilot: ChademoCanPilot
    vehicle: SimChademoVehicle
    events: list[CpState | FaultReport] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def states(self) -> list[CpState]:
        return [e for e in self.events if isinstance(e, CpState)]

    @property
    def faults(self) -> list[FaultReport]:
        return [e for e in self.events if isinstance(e, FaultReport)]

    def record(self, event: CpState | FaultReport) -> None:
        self.events.append(event)
        self.changed.set()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        async def _wait() -> None:
            while not condition():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(_wait(), GUARD_S)

    async def wait_state(self, state: CpState) -> None:
        await self.wait_for(lambda: self.pilot.state == state)

    async def charging(self, current_a: float = 16.0) -> None:
        """Plug, permit and offer ``current_a``: wait for state C and power flowing."""
        self.vehicle.plug()
        self.vehicle.permit()
        duty = duty_for_current(current_a)
        assert duty is not None
        self.pilot.set_output(PilotOutput.pwm(duty))
        await self.wait_state(CpState.C)
        await self.vehicle.wait_for_charger(lambda v: v.current_a > 0, GUARD_S)


def _channel(interface: str) -> str:
    return "vcan0" if interface == "socketcan" else f"chademo-test-{os.getpid()}-{next(_channels)}"


@pytest.fixture(params=BUSES)
async def bench(request: pytest.FixtureRequest) -> AsyncIterator[Bench]:
    interface: str = request.param
    channel = _channel(interface)
    vehicle = SimChademoVehicle(channel=channel, interface=interface, battery_wh=100.0)
    pilot = ChademoCanPilot(
        open_bus=lambda: open_bus(interface, channel, 500_000),
        max_voltage_v=500,
        max_current_a=125,
        timeout_s=TIMEOUT_S,
        tx_period_s=TX_PERIOD_S,
    )
    bench = Bench(pilot, vehicle)
    await vehicle.start()
    await pilot.start(bench.record, bench.record)
    yield bench
    await bench.pilot.stop()  # the test may have swapped in its own
    await vehicle.stop()
    readers = [t.name for t in threading.enumerate() if t.name.startswith("Notifier")]
    assert not readers, f"CAN reader threads left behind: {readers}"


async def test_starts_in_a_and_a_plugged_vehicle_is_b_with_its_soc(bench: Bench) -> None:
    assert bench.events == [CpState.A]
    assert bench.pilot.soc_pct is None
    bench.vehicle.plug()
    await bench.wait_state(CpState.B)
    assert bench.pilot.soc_pct == 40.0
    assert bench.faults == []


async def test_permission_and_pwm_make_state_c_and_the_soc_rises(bench: Bench) -> None:
    bench.vehicle.plug()
    bench.vehicle.permit()
    await bench.wait_state(CpState.B)
    # steady output (not authorized yet): the charger offers 0 A, the vehicle waits
    await bench.vehicle.wait_for_charger(
        lambda v: v.charger_capability is not None and v.charger_capability.available_current_a == 0
    )
    assert not bench.vehicle.charging_enabled
    assert bench.pilot.state == CpState.B

    await bench.charging(16.0)
    cap, status = bench.vehicle.charger_capability, bench.vehicle.charger_status
    assert cap is not None and status is not None
    assert cap.available_current_a == 16  # 26.6 % is 16 A again, not 15 A
    assert cap.threshold_voltage_v == 410  # min(vehicle max 410 V, charger max 500 V)
    assert ChargerStatusFlag.CHARGING in status.status
    assert bench.vehicle.current_a == 16.0
    await bench.vehicle.wait_for_charger(lambda v: (bench.pilot.soc_pct or 0.0) >= 41.0)
    assert bench.states == [CpState.A, CpState.B, CpState.C]


@pytest.mark.parametrize(
    ("output", "available_a", "flags"),
    [
        (PilotOutput.steady(), 0, ChargerStatusFlag.NONE),
        (PilotOutput.error(), 0, ChargerStatusFlag.STOP_CONTROL),
        (PilotOutput.pwm(100.0), 0, ChargerStatusFlag.NONE),
        (PilotOutput.pwm(5.0), 0, ChargerStatusFlag.NONE),
        (PilotOutput.pwm(96.0), 80, ChargerStatusFlag.CHARGING),
    ],
)
async def test_core_output_maps_onto_the_charger_frames(
    bench: Bench, output: PilotOutput, available_a: int, flags: ChargerStatusFlag
) -> None:
    await bench.charging(16.0)
    bench.pilot.set_output(output)

    def shows(v: SimChademoVehicle) -> bool:
        cap, status = v.charger_capability, v.charger_status
        return (
            cap is not None
            and status is not None
            and cap.available_current_a == available_a
            and status.status == flags
        )

    await bench.vehicle.wait_for_charger(shows)
    if available_a == 0:
        await bench.wait_state(CpState.B)  # the vehicle withdraws its permission


async def test_charger_rating_caps_the_advertised_current(bench: Bench) -> None:
    await bench.pilot.stop()
    channel = bench.vehicle.channel
    capped = ChademoCanPilot(
        open_bus=lambda: open_bus(bench.vehicle.interface, channel, 500_000), max_current_a=40
    )
    bench.pilot = capped
    await capped.start(bench.record, bench.record)
    await bench.charging(63.0)
    cap = bench.vehicle.charger_capability
    assert cap is not None and cap.available_current_a == 40


async def test_vehicle_silence_is_an_ev_communication_error_and_recovers(bench: Bench) -> None:
    await bench.charging()
    loop = asyncio.get_running_loop()
    silent_at = loop.time()
    bench.vehicle.go_silent()
    await bench.wait_for(lambda: bool(bench.faults))
    elapsed_s = loop.time() - silent_at
    # the last frame left at most one period before go_silent
    assert elapsed_s >= TIMEOUT_S - TX_PERIOD_S  # never before the timeout ran out
    assert bench.faults == [
        FaultReport(
            FaultCode.EV_COMMUNICATION_ERROR, True, "no CHAdeMO vehicle status (0x102) for 0.3 s"
        )
    ]
    # fault first (the controller opens the contactor on it), then the state
    assert bench.events[-2:] == [bench.faults[0], CpState.B]  # not E: no CP fault
    assert bench.pilot.soc_pct is None
    # the output is off whatever the core still commands (PWM)
    await bench.vehicle.wait_for_charger(
        lambda v: (
            v.charger_capability is not None
            and v.charger_capability.available_current_a == 0
            and v.charger_status is not None
            and ChargerStatusFlag.STOP_CONTROL in v.charger_status.status
        )
    )

    bench.vehicle.resume()
    await bench.wait_state(CpState.C)
    assert bench.faults[-1] == FaultReport(
        FaultCode.EV_COMMUNICATION_ERROR, False, "CHAdeMO vehicle frames back"
    )
    assert len(bench.faults) == 2
    assert bench.pilot.soc_pct is not None


async def test_unplugging_after_a_stop_request_is_state_a_without_a_fault(bench: Bench) -> None:
    await bench.charging()
    bench.vehicle.unplug()
    await bench.wait_state(CpState.A)
    assert bench.states == [CpState.A, CpState.B, CpState.C, CpState.B, CpState.A]
    assert bench.faults == []
    assert bench.pilot.soc_pct is None
    assert bench.pilot.vehicle_status is None


async def test_garbage_is_counted_and_never_acted_on(bench: Bench) -> None:
    bench.vehicle.plug()
    await bench.wait_state(CpState.B)
    for kind in Garbage:  # BAD_SOC and the others claim "charging enabled"
        bench.vehicle.send_garbage(kind)
    # a valid frame after the garbage: once its effect shows, the garbage was handled
    bench.vehicle.raise_fault(VehicleFault.HIGH_BATTERY_TEMPERATURE)
    await bench.wait_for(lambda: bool(bench.faults))
    assert bench.pilot.rejected == {
        RejectReason.WRONG_LENGTH: 1,
        RejectReason.UNKNOWN_ID: 2,  # 0x1FF and the 29-bit 0x102
        RejectReason.BAD_VALUE: 1,
    }
    assert CpState.C not in bench.states
    assert bench.pilot.soc_pct == 40.0  # not the garbage's 50 or 150 %


async def test_vehicle_fault_flags_become_fault_reports(bench: Bench) -> None:
    await bench.charging()
    bench.vehicle.raise_fault(VehicleFault.BATTERY_OVER_VOLTAGE)
    await bench.wait_for(lambda: bool(bench.faults))
    assert bench.faults[0].code == FaultCode.OVER_VOLTAGE and bench.faults[0].active
    assert "battery_over_voltage" in bench.faults[0].detail
    await bench.wait_state(CpState.B)
    await bench.vehicle.wait_for_charger(
        lambda v: (
            v.charger_status is not None
            and ChargerStatusFlag.STOP_CONTROL in v.charger_status.status
        )
    )
    bench.vehicle.clear_faults()
    await bench.wait_state(CpState.C)
    assert bench.faults[-1] == FaultReport(FaultCode.OVER_VOLTAGE, False, "")


async def test_stop_sends_stop_control_and_is_idempotent(bench: Bench) -> None:
    await bench.charging()
    await bench.pilot.stop()
    await bench.vehicle.wait_for_charger(
        lambda v: (
            v.charger_status is not None
            and ChargerStatusFlag.STOP_CONTROL in v.charger_status.status
            and v.charger_capability is not None
            and v.charger_capability.available_current_a == 0
        )
    )
    await bench.pilot.stop()
    assert bench.pilot.output == PilotOutput.error()


async def test_an_unknown_interface_refuses_to_start() -> None:
    pilot = ChademoCanPilot(open_bus=lambda: open_bus("no-such-interface", "can9", 500_000))
    with pytest.raises(CanLinkError, match="no-such-interface") as info:
        await pilot.start(lambda s: None, lambda f: None)
    assert isinstance(info.value, HalError)
    await pilot.stop()  # nothing was opened: still fine


@pytest.mark.skipif(not hasattr(socket, "AF_CAN"), reason="no AF_CAN socket")
async def test_a_missing_socketcan_device_refuses_to_start() -> None:
    pilot = ChademoCanPilot(open_bus=lambda: open_bus("socketcan", "nocan42", 500_000))
    with pytest.raises(CanLinkError, match="nocan42"):
        await pilot.start(lambda s: None, lambda f: None)


def test_registry_builds_the_backend_from_config_options() -> None:
    spec = default_registry().get("pilot", "chademo-can")
    options: object = parse_dataclass(
        spec.options, {"interface": "virtual", "channel": "x", "max_current_a": 200}, "evse.pilot"
    )
    assert options == ChademoCanPilotOptions(interface="virtual", channel="x", max_current_a=200)
    pilot = spec.factory(options, BackendContext())
    assert isinstance(pilot, ChademoCanPilot)
    assert pilot.state == CpState.A


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"interface": "bogus"}, r"evse\.pilot\.interface: unknown python-can interface"),
        ({"channel": ""}, r"evse\.pilot\.channel: must name a CAN channel"),
        ({"max_current_a": 300}, r"evse\.pilot\.max_current_a: must be 1\.\.255"),
        ({"timeout_s": 0}, r"evse\.pilot\.timeout_s: must be > 0"),
    ],
)
def test_registry_refuses_bad_options_naming_the_key(
    options: dict[str, object], message: str
) -> None:
    spec = default_registry().get("pilot", "chademo-can")
    with pytest.raises(ConfigError, match=message):
        parse_dataclass(spec.options, options, "evse.pilot")


class FdBus(can.BusABC):
    """A bus with a file descriptor (like SocketCAN): frames injected by the test make
    a socketpair readable. ``failing`` makes every receive raise (an interface gone down)."""

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._queue: deque[can.Message] = deque()
        self.failing = False
        self.failed = asyncio.Event()
        self.recv_calls = 0
        self.sent: list[can.Message] = []
        super().__init__(channel="fd-test")

    def fileno(self) -> int:
        return self._r.fileno()

    def inject(self, frame: VehicleStatus) -> None:
        can_id, data = encode(frame)
        self._queue.append(can.Message(arbitration_id=can_id, data=data, is_extended_id=False))
        self._w.send(b"x")

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        self.recv_calls += 1
        if self.failing:
            self.failed.set()
            raise can.CanOperationError("interface down")
        try:
            self._r.recv(1)
        except BlockingIOError:
            return None, False
        return self._queue.popleft(), False

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        self.sent.append(msg)

    def shutdown(self) -> None:
        super().shutdown()
        self._r.close()
        self._w.close()


async def test_fd_buses_are_read_in_the_loop_and_a_receive_error_pauses_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(endpoint, "RX_ERROR_BACKOFF_S", 0.05)
    bus = FdBus()
    pilot = ChademoCanPilot(open_bus=lambda: bus, timeout_s=GUARD_S)
    states: list[CpState] = []
    got_b = asyncio.Event()

    def on_state(state: CpState) -> None:
        states.append(state)
        if state == CpState.B:
            got_b.set()

    await pilot.start(on_state, lambda f: None)
    try:
        assert not [t for t in threading.enumerate() if t.name.startswith("Notifier")]
        assert {m.arbitration_id for m in bus.sent} == {0x108, 0x109}  # first frames at once
        bus.failing = True
        bus.inject(VehicleStatus(soc_pct=30))
        await asyncio.wait_for(bus.failed.wait(), GUARD_S)
        for _ in range(20):  # the fd stays readable: a loop reader would spin here
            await asyncio.sleep(0)
        assert bus.recv_calls == 1
        assert pilot.rx_errors == 1
        bus.failing = False  # the interface is back: reading resumes after the pause
        await asyncio.wait_for(got_b.wait(), GUARD_S)
        assert states == [CpState.A, CpState.B]
        assert pilot.soc_pct == 30.0
    finally:
        await pilot.stop()
    assert bus._r.fileno() == -1  # shut down


class TimedBus(FdBus):
    """An FdBus that notes when (loop time, s) each charger status (0x109) went out."""

    def __init__(self, wanted: int) -> None:
        super().__init__()
        self.status_sent_at_s: list[float] = []
        self.enough = asyncio.Event()
        self._wanted = wanted

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        super().send(msg, timeout)
        if msg.arbitration_id == 0x109:
            self.status_sent_at_s.append(asyncio.get_running_loop().time())
            if len(self.status_sent_at_s) >= self._wanted:
                self.enough.set()


async def test_charger_frames_go_out_every_period_and_never_faster() -> None:
    # Measured where the frames leave (the bus's send), not where a receiver thread
    # hands them on: only the lower bound is a property of the code; how late a
    # frame goes out on a loaded machine is for the benchmark, not a test.
    bus = TimedBus(wanted=6)
    pilot = ChademoCanPilot(open_bus=lambda: bus, timeout_s=GUARD_S, tx_period_s=TX_PERIOD_S)
    await pilot.start(lambda s: None, lambda f: None)
    try:
        await asyncio.wait_for(bus.enough.wait(), GUARD_S)
        sent = list(bus.status_sent_at_s)  # stopping sends one more, at once
    finally:
        await pilot.stop()
    gaps_s = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert len(gaps_s) >= 5
    assert all(gap >= TX_PERIOD_S * 0.95 for gap in gaps_s), gaps_s
    # every cycle sends the pair: as many 0x108 as 0x109
    ids = [m.arbitration_id for m in bus.sent]
    assert abs(ids.count(0x108) - ids.count(0x109)) <= 1
