"""ModbusRtuPowerMeter and ModbusRtuBus against SimModbusRtuServer on a pty line.

Real RTU frames (device id, PDU, CRC) cross a pseudo-terminal pair; the simulator
can silence a device, corrupt its next answer or put noise on the wire.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from pymodbus.framer import FramerRTU

from hal.modbus.bus import BusError, ModbusRtuBus, ModbusRtuLines, SerialSettings
from hal.modbus.registers import load_register_map
from hal.modbus.rtu_meter import ModbusRtuPowerMeter
from hal.registry import BackendContext, BackendError, ModbusRtuMeterOptions, default_registry
from hal.sim.rtu_server import SimModbusRtuServer
from hal.types import FaultCode, MeterReading
from tests.hal.recorder import GUARD_S, Recorder

TIMEOUT_S = 0.2
MODELS = ("sdm630", "sdm72dm2", "sdm120", "abb-b23", "em340")


class Line:
    """A started simulator with a bus on its far end; meters made here are stopped."""

    def __init__(self, sim: SimModbusRtuServer) -> None:
        self.sim = sim
        self.garbage_seen = asyncio.Event()
        self.bus = ModbusRtuBus(
            SerialSettings(sim.port, baudrate=19200, timeout_s=TIMEOUT_S),
            on_garbage=lambda _count: self.garbage_seen.set(),
        )
        self.meters: list[ModbusRtuPowerMeter] = []

    def meter(self, device_id: int, **kwargs: float) -> ModbusRtuPowerMeter:
        options: dict[str, float] = {"poll_interval_s": 3600.0, "frozen_min_energy_wh": 0.0}
        options.update(kwargs)
        meter = ModbusRtuPowerMeter(
            bus=self.bus,
            device_id=device_id,
            register_map=self.sim.meter(device_id).register_map,
            **options,  # type: ignore[arg-type]
        )
        self.meters.append(meter)
        return meter

    async def close(self) -> None:
        for meter in self.meters:
            await meter.stop()
        await self.bus.close()
        await self.sim.stop()


async def open_line(devices: dict[int, str]) -> Line:
    sim = SimModbusRtuServer({i: load_register_map(m) for i, m in devices.items()}, baudrate=19200)
    await sim.start()
    return Line(sim)


@pytest.fixture
async def line() -> AsyncIterator[Line]:
    """Two meters on one wire: an SDM630 (id 1, FC04 float32) and an ABB B23 (id 2, FC03)."""
    result = await open_line({1: "sdm630", 2: "abb-b23"})
    try:
        yield result
    finally:
        await result.close()


def with_crc(frame: bytes) -> bytes:
    return frame + FramerRTU.compute_CRC(frame).to_bytes(2, "big")


def values(energy_wh: float, power_w: float, current_a: float = 0.0) -> dict[str, float]:
    return {
        "energy_import": energy_wh,
        "power": power_w,
        "current_l1": current_a,
        "voltage_l1": 230.0,
        "frequency": 50.0,
    }


# --- every model over RTU ---------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
async def test_each_model_round_trips_over_rtu(model: str) -> None:
    line = await open_line({7: model})
    try:
        line.sim.meter(7).update(values(123_400.0, 7_361.5, 10.5))
        reading = await line.meter(7).read_once()
    finally:
        await line.close()
    step = line.sim.meter(7).register_map.quantities["energy_import"].scale
    assert reading.energy_import_wh == pytest.approx(123_400.0, abs=max(step / 2, 0.2))
    assert reading.power_w == pytest.approx(7_361.5, abs=0.05)
    assert reading.current_a[0] == pytest.approx(10.5, abs=1e-3)
    assert reading.voltage_v[0] == pytest.approx(230.0, abs=0.05)
    assert reading.frequency_hz == pytest.approx(50.0, abs=0.05)
    blocks = len(line.sim.meter(7).register_map.blocks)
    assert line.sim.meter(7).requests_served == blocks
    assert line.bus.stats.requests == line.bus.stats.answers == blocks
    assert line.bus.stats.garbage_events == 0


# --- one owner per line -------------------------------------------------------------------


async def test_two_meters_on_one_line_are_polled_concurrently_one_request_at_a_time(
    line: Line,
) -> None:
    line.sim.meter(1).update(values(1_000.0, 3_680.0, 16.0))
    line.sim.meter(2).update(values(50_000.0, -1_200.0, 5.25))
    sdm, abb = Recorder(), Recorder()
    m1 = line.meter(1, poll_interval_s=0.02)
    m2 = line.meter(2, poll_interval_s=0.02)
    await asyncio.gather(
        m1.start(sdm.on_reading, sdm.on_fault), m2.start(abb.on_reading, abb.on_fault)
    )
    await sdm.wait_for(lambda: len(sdm.readings) >= 5)
    await abb.wait_for(lambda: len(abb.readings) >= 5)
    await m1.stop()
    await m2.stop()

    assert sdm.faults == abb.faults == []
    assert {(r.energy_import_wh, r.power_w, r.current_a[0]) for r in sdm.readings} == {
        (1_000.0, 3_680.0, 16.0)
    }
    assert {(r.energy_import_wh, r.power_w, r.current_a[0]) for r in abb.readings} == {
        (50_000.0, -1_200.0, 5.25)
    }
    stats = line.bus.stats
    assert stats.timeouts == stats.garbage_events == 0
    assert stats.reconnects == 1  # one port, opened once, shared
    # On the wire: strictly request, answer to that device, request, ... never overlapping.
    log = list(line.sim.wire_log)
    assert len(log) >= 2 * (5 * 3 + 5 * 3)
    for (kind_a, id_a), (kind_b, id_b) in zip(log[::2], log[1::2], strict=True):
        assert (kind_a, kind_b) == ("request", "answer")
        assert id_a == id_b
    assert {i for _, i in log} == {1, 2}  # both meters were interleaved on the line


# --- garbage on the line --------------------------------------------------------------------


def bad_crc(frame: bytes) -> bytes:
    return frame[:-1] + bytes([frame[-1] ^ 0xFF])


def truncated(frame: bytes) -> bytes:
    return frame[: len(frame) // 2]


def wrong_id(frame: bytes) -> bytes:
    return with_crc(bytes([0x09]) + frame[1:-2])  # a valid frame, but from device 9


def oversized(frame: bytes) -> bytes:
    return frame[:-2] + bytes(200) + frame[-2:]


@pytest.mark.parametrize("mangle", [bad_crc, truncated, wrong_id, oversized])
async def test_a_spoiled_answer_is_counted_and_ignored_and_the_next_poll_succeeds(
    line: Line, mangle: Callable[[bytes], bytes]
) -> None:
    line.sim.meter(1).update(values(2_000.0, 0.0))
    rec = Recorder()
    meter = line.meter(1)
    await meter.start(rec.on_reading, rec.on_fault)
    assert len(rec.readings) == 1

    line.sim.mangle_next_answer(mangle)
    assert await meter.poll_once() is None  # that poll got no usable answer
    stats = line.bus.stats
    assert stats.garbage_events == 1
    assert stats.garbage_bytes > 0
    assert stats.timeouts == 1

    line.sim.meter(1).update(values(2_001.0, 0.0))
    reading = await meter.poll_once()
    assert reading is not None
    assert reading.energy_import_wh == pytest.approx(2_001.0, rel=1e-6)
    assert rec.faults == []  # one spoiled poll is well within the debounce
    assert line.bus.stats.garbage_events == 1


async def test_noise_before_an_answer_is_counted_and_the_line_recovers(line: Line) -> None:
    line.sim.meter(1).update(values(3_000.0, 0.0))
    meter = line.meter(1)
    line.sim.mangle_next_answer(lambda frame: b"\x00\xff\x13\x37" + frame)
    await meter.poll_once()  # the framer may or may not find the answer behind the noise
    assert line.bus.stats.garbage_events == 1
    reading = await meter.poll_once()
    assert reading is not None
    assert reading.energy_import_wh == 3_000.0


async def test_unsolicited_bytes_are_counted_and_ignored(line: Line) -> None:
    line.sim.meter(1).update(values(4_000.0, 0.0))
    meter = line.meter(1)
    assert await meter.poll_once() is not None  # the port is open, the line idle
    line.sim.inject(with_crc(b"\x01\x04\x02\x12\x34"))  # a well-formed answer nobody asked for
    await asyncio.wait_for(line.garbage_seen.wait(), GUARD_S)
    assert line.bus.stats.garbage_events == 1
    assert line.bus.stats.garbage_bytes == 7
    reading = await meter.poll_once()
    assert reading is not None
    assert reading.energy_import_wh == 4_000.0
    assert line.bus.stats.timeouts == 0


# --- a silent device ----------------------------------------------------------------------


async def test_silent_device_faults_within_fault_after_s_others_keep_reading_and_recovery_clears(
    line: Line,
) -> None:
    line.sim.meter(1).update(values(1_000.0, 0.0))
    line.sim.meter(2).update(values(9_000.0, 0.0))
    silent, talking = Recorder(), Recorder()
    m2 = line.meter(2, poll_interval_s=0.05, fault_after_s=0.5)
    # m2 keeps the line busy with a timeout per poll; m1 waits at most one of those
    # (TIMEOUT_S) per poll, far inside its own debounce.
    m1 = line.meter(1, poll_interval_s=0.05, fault_after_s=1.0)
    await m2.start(silent.on_reading, silent.on_fault)
    await m1.start(talking.on_reading, talking.on_fault)
    assert len(silent.readings) == 1

    line.sim.meter(2).set_answering(False)
    await silent.wait_for(lambda: len(silent.faults) == 1)
    raised_at_s = time.monotonic()
    raised = silent.faults[0]
    assert raised.code is FaultCode.POWER_METER_FAILURE and raised.active
    assert "no answer from device 2" in raised.detail
    last_good = m2.latest
    assert last_good is not None
    assert raised_at_s - last_good.monotonic_s >= 0.5  # debounced, not on the first miss
    # The other meter on the same line kept its readings coming, and never faulted.
    count = len(talking.readings)
    await talking.wait_for(lambda: len(talking.readings) >= count + 3)
    assert talking.faults == []

    line.sim.meter(2).set_answering(True)
    line.sim.meter(2).update(values(9_010.0, 0.0))
    await silent.wait_for(
        lambda: len(silent.faults) == 2 and silent.events[-1] is not silent.faults[-1]
    )
    cleared = silent.faults[1]
    assert not cleared.active
    after = silent.events[silent.events.index(cleared) + 1]
    assert isinstance(after, MeterReading)  # the clear comes right before the good reading
    # (an answer already being built when the device woke up may still carry 9000 Wh)
    assert after.energy_import_wh in (9_000.0, 9_010.0)
    await silent.wait_for(lambda: silent.readings[-1].energy_import_wh == 9_010.0)
    assert not m2.fault_active
    assert line.bus.stats.garbage_events == 0  # silence is not garbage


async def test_frozen_registers_on_rtu_fault_like_on_tcp(line: Line) -> None:
    line.sim.meter(1).update(values(5_000.0, 7_000.0))
    line.sim.meter(1).freeze(True)
    rec = Recorder()
    meter = line.meter(1, poll_interval_s=0.03, frozen_after_s=0.15, fault_after_s=30.0)
    await meter.start(rec.on_reading, rec.on_fault)
    await rec.wait_for(lambda: len(rec.faults) == 1)
    assert "frozen" in rec.faults[0].detail


async def test_absent_port_does_not_raise_and_faults() -> None:
    bus = ModbusRtuBus(SerialSettings("/dev/nonexistent-evse-rs485", timeout_s=TIMEOUT_S))
    meter = ModbusRtuPowerMeter(
        bus=bus,
        register_map=load_register_map("sdm630"),
        poll_interval_s=0.05,
        fault_after_s=0.2,
        owns_bus=True,
    )
    rec = Recorder()
    try:
        await meter.start(rec.on_reading, rec.on_fault)
        await rec.wait_for(lambda: len(rec.faults) == 1)
    finally:
        await meter.stop()
    assert "cannot open" in rec.faults[0].detail
    assert rec.readings == []
    with pytest.raises(BusError, match="closed"):  # owns_bus: stop closed it
        await bus.read_registers(1, 4, 0, 2)


# --- config and registry -------------------------------------------------------------------


async def test_registry_builds_rtu_meters_sharing_one_bus_per_port(line: Line) -> None:
    spec = default_registry().get("meter", "modbus-rtu")
    assert spec.options is ModbusRtuMeterOptions
    lines = ModbusRtuLines()
    ctx = BackendContext(modbus_rtu_lines=lines)
    port = line.sim.port
    m1 = spec.factory(ModbusRtuMeterOptions(port=port, device_id=1, timeout_s=TIMEOUT_S), ctx)
    m2 = spec.factory(
        ModbusRtuMeterOptions(port=port, device_id=2, model="abb-b23", timeout_s=TIMEOUT_S), ctx
    )
    assert isinstance(m1, ModbusRtuPowerMeter) and isinstance(m2, ModbusRtuPowerMeter)
    assert m1.bus is m2.bus
    with pytest.raises(BackendError, match="must share its settings"):
        spec.factory(ModbusRtuMeterOptions(port=port, device_id=3, baudrate=2400), ctx)
    line.sim.meter(2).update(values(77_000.0, 0.0))
    try:
        assert (await m2.read_once()).energy_import_wh == 77_000.0
    finally:
        await m1.stop()
        await m2.stop()
        await lines.close()

    alone = spec.factory(ModbusRtuMeterOptions(port=port), BackendContext())
    assert isinstance(alone, ModbusRtuPowerMeter)
    assert alone.bus is not m1.bus
    await alone.stop()


def test_rtu_options_check_serial_settings() -> None:
    import dataclasses

    checks = {
        f.name: f.metadata["check"]
        for f in dataclasses.fields(ModbusRtuMeterOptions)
        if "check" in f.metadata
    }
    assert checks["baudrate"](9600) is None
    assert checks["baudrate"](9601) is not None
    assert checks["parity"]("E") is None and checks["parity"]("X") is not None
    assert checks["stopbits"](2) is None and checks["stopbits"](3) is not None
    assert checks["bytesize"](8) is None and checks["bytesize"](5) is not None
    assert checks["device_id"](247) is None and checks["device_id"](0) is not None
    assert checks["port"]("") is not None
    assert checks["timeout_s"](0) is not None
    defaults = ModbusRtuMeterOptions(port="/dev/ttyUSB0")
    assert (defaults.baudrate, defaults.parity, defaults.stopbits, defaults.device_id) == (
        9600,
        "N",
        1,
        1,
    )
    with pytest.raises(ValueError, match="parity"):
        SerialSettings("/dev/ttyUSB0", parity="X")
