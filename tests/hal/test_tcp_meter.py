"""ModbusTcpPowerMeter (the real driver) against SimModbusMeterServer over loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable

import pytest

from hal.faults import MeterError
from hal.modbus.registers import load_register_map
from hal.modbus.tcp_meter import ModbusTcpPowerMeter
from hal.pilot import PilotOutput
from hal.sim.modbus_server import SimModbusMeterServer
from hal.sim.pilot import SimControlPilot
from hal.sim.plant import SimEv
from hal.types import FaultCode, MeterReading
from tests.hal.recorder import Recorder


@pytest.fixture
async def server() -> AsyncIterator[SimModbusMeterServer]:
    srv = SimModbusMeterServer(load_register_map("sdm630"))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def make_meter(
    server: SimModbusMeterServer,
) -> AsyncIterator[Callable[..., ModbusTcpPowerMeter]]:
    meters: list[ModbusTcpPowerMeter] = []

    def make(**kwargs: float) -> ModbusTcpPowerMeter:
        options: dict[str, float] = {
            "poll_interval_s": 3600.0,
            "timeout_s": 0.2,
            "frozen_min_energy_wh": 0.0,  # the simulator's registers are exact
        }
        options.update(kwargs)
        meter = ModbusTcpPowerMeter(
            host="127.0.0.1",
            port=server.port,
            register_map=server.register_map,
            **options,  # type: ignore[arg-type]
        )
        meters.append(meter)
        return meter

    yield make
    for meter in meters:
        await meter.stop()


def _values(energy_wh: float, power_w: float) -> dict[str, float]:
    return {"energy_import": energy_wh, "power": power_w}


async def test_reading_matches_what_the_ev_produced(
    server: SimModbusMeterServer, make_meter: Callable[..., ModbusTcpPowerMeter]
) -> None:
    pilot = SimControlPilot()
    ev = SimEv(pilot=pilot, phases=3, voltage_v=230.0)
    ev.connect_contactor_probe(lambda: True)
    ev.plug()
    pilot.set_output(PilotOutput.pwm(16 / 0.6))
    ev.tick(3600.0)
    server.update(ev.meter_values())

    rec = Recorder()
    meter = make_meter()
    before_s = time.monotonic()
    await meter.start(rec.on_reading, rec.on_fault)  # returns after the first poll
    after_s = time.monotonic()

    assert rec.faults == []
    [reading] = rec.readings
    assert meter.latest == reading
    assert reading.energy_import_wh == pytest.approx(11040.0, rel=1e-6)  # float32 kWh
    assert reading.energy_import_wh == pytest.approx(ev.energy_import_wh, rel=1e-6)
    assert reading.power_w == pytest.approx(ev.power_w, rel=1e-6)
    assert reading.current_a == pytest.approx(ev.current_a, rel=1e-6)
    assert reading.voltage_v == (230.0, 230.0, 230.0)
    assert reading.frequency_hz == 50.0
    assert reading.energy_export_wh == 0.0
    assert before_s <= reading.monotonic_s <= after_s
    assert server.requests_served == len(server.register_map.blocks)  # one request per block


async def test_silent_meter_faults_after_debounce_and_recovery_clears(
    server: SimModbusMeterServer, make_meter: Callable[..., ModbusTcpPowerMeter]
) -> None:
    server.update(_values(1000.0, 0.0))
    rec = Recorder()
    meter = make_meter(poll_interval_s=0.05, timeout_s=0.1, fault_after_s=0.3)
    await meter.start(rec.on_reading, rec.on_fault)
    assert len(rec.readings) == 1

    server.set_answering(False)
    await rec.wait_for(lambda: len(rec.faults) == 1)
    raised = rec.faults[0]
    raised_at_s = time.monotonic()
    assert raised.code is FaultCode.POWER_METER_FAILURE
    assert raised.active
    assert "no good reading" in raised.detail
    last_good = meter.latest
    assert last_good is not None
    assert raised_at_s - last_good.monotonic_s >= 0.3  # debounced, not on the first miss
    assert meter.fault_active

    server.set_answering(True)
    server.update(_values(1001.0, 0.0))
    await rec.wait_for(lambda: len(rec.faults) == 2 and rec.events[-1] is not rec.faults[-1])
    cleared = rec.faults[1]
    assert cleared.code is FaultCode.POWER_METER_FAILURE
    assert not cleared.active
    # The fault is cleared before the good reading is delivered, and raised only once.
    index = rec.events.index(cleared)
    after = rec.events[index + 1]
    assert isinstance(after, MeterReading)
    assert after.energy_import_wh == pytest.approx(1001.0, rel=1e-6)
    assert not meter.fault_active


async def test_absent_meter_start_does_not_raise_and_faults(
    make_meter: Callable[..., ModbusTcpPowerMeter], server: SimModbusMeterServer
) -> None:
    await server.stop()  # nothing listens on the port any more
    rec = Recorder()
    meter = make_meter(poll_interval_s=0.05, timeout_s=0.1, fault_after_s=0.2)
    await meter.start(rec.on_reading, rec.on_fault)
    await rec.wait_for(lambda: len(rec.faults) == 1)
    assert rec.faults[0].active
    assert "cannot connect" in rec.faults[0].detail
    assert rec.readings == []
    assert meter.latest is None


async def test_frozen_registers_under_load_fault_and_are_withheld(
    server: SimModbusMeterServer, make_meter: Callable[..., ModbusTcpPowerMeter]
) -> None:
    rec = Recorder()
    meter = make_meter(poll_interval_s=0.03, frozen_after_s=0.2, fault_after_s=30.0)
    # Standing energy without load is normal: readings keep coming, no fault.
    server.update(_values(1000.0, 0.0))
    await meter.start(rec.on_reading, rec.on_fault)
    first_s = rec.readings[0].monotonic_s
    await rec.wait_for(lambda: rec.readings[-1].monotonic_s - first_s > 0.3)
    assert rec.faults == []

    # 11 kW but the energy register does not move: the registers are frozen.
    server.update(_values(1000.0, 11000.0))
    await rec.wait_for(lambda: len(rec.faults) == 1)
    fault = rec.faults[0]
    assert fault.code is FaultCode.POWER_METER_FAILURE and fault.active
    assert "frozen" in fault.detail
    loaded = [r for r in rec.readings if r.power_w > 50]
    assert loaded, "readings under load came before the debounce ran out"
    assert loaded[-1].monotonic_s - loaded[0].monotonic_s < 0.2  # none delivered once stale

    server.update(_values(1000.5, 11000.0))
    await rec.wait_for(lambda: len(rec.faults) == 2 and rec.events[-1] is not rec.faults[-1])
    assert not rec.faults[1].active
    assert rec.readings[-1].energy_import_wh == pytest.approx(1000.5, rel=1e-6)


async def test_frozen_needs_the_power_to_account_for_the_register_resolution(
    server: SimModbusMeterServer, make_meter: Callable[..., ModbusTcpPowerMeter]
) -> None:
    # A register that counts in coarse steps stands still for a while under light
    # load; only once the power implies more than frozen_min_energy_wh is it frozen.
    server.update(_values(1000.0, 36000.0))  # 36 kW: 1 Wh every 0.1 s
    rec = Recorder()
    meter = make_meter(
        poll_interval_s=0.02, frozen_after_s=0.05, frozen_min_energy_wh=3.0, fault_after_s=30.0
    )
    await meter.start(rec.on_reading, rec.on_fault)
    first_s = rec.readings[0].monotonic_s
    await rec.wait_for(lambda: len(rec.faults) == 1)
    raised_s = time.monotonic()
    assert raised_s - first_s >= 3.0 / 36000.0 * 3600.0  # 0.3 s, well past frozen_after_s
    assert "Wh unaccounted" in rec.faults[0].detail


async def test_sim_server_freeze_with_power_flowing_is_detected(
    server: SimModbusMeterServer, make_meter: Callable[..., ModbusTcpPowerMeter]
) -> None:
    server.update(_values(2000.0, 7360.0))
    server.freeze(True)
    server.update(_values(2500.0, 7360.0))  # ignored while frozen
    assert server.frozen
    rec = Recorder()
    meter = make_meter(poll_interval_s=0.03, frozen_after_s=0.15, fault_after_s=30.0)
    await meter.start(rec.on_reading, rec.on_fault)
    assert rec.readings[0].energy_import_wh == pytest.approx(2000.0, rel=1e-6)
    await rec.wait_for(lambda: len(rec.faults) == 1)
    assert "frozen" in rec.faults[0].detail


async def test_energy_going_backwards_is_dropped(
    server: SimModbusMeterServer, make_meter: Callable[..., ModbusTcpPowerMeter]
) -> None:
    server.update(_values(5000.0, 0.0))
    rec = Recorder()
    meter = make_meter()  # no background polls within the test: poll by hand
    await meter.start(rec.on_reading, rec.on_fault)
    assert len(rec.readings) == 1

    server.update(_values(4000.0, 0.0))
    assert await meter.poll_once() is None
    assert meter.dropped_readings == 1
    assert len(rec.readings) == 1
    assert meter.latest is not None
    assert meter.latest.energy_import_wh == pytest.approx(5000.0, rel=1e-6)

    server.update(_values(5000.5, 0.0))
    reading = await meter.poll_once()
    assert reading is not None
    assert reading.energy_import_wh == pytest.approx(5000.5, rel=1e-6)
    assert rec.readings[-1] == reading
    assert rec.faults == []


async def test_read_once_raises_meter_error_with_a_reason(
    server: SimModbusMeterServer, make_meter: Callable[..., ModbusTcpPowerMeter]
) -> None:
    server.update(_values(42.0, 0.0))
    meter = make_meter(timeout_s=0.1)
    reading = await meter.read_once()  # no start needed
    assert reading.energy_import_wh == pytest.approx(42.0, rel=1e-6)

    server.set_answering(False)
    with pytest.raises(MeterError, match="no answer") as info:
        await meter.read_once()
    assert "\n" not in str(info.value)

    server.set_answering(True)
    assert (await meter.read_once()).energy_import_wh == pytest.approx(42.0, rel=1e-6)

    await server.stop()
    # The open connection may first swallow a request (no answer), then the
    # reconnect is refused.
    with pytest.raises(MeterError, match=r"no answer|cannot connect"):
        await meter.read_once()
    with pytest.raises(MeterError, match="cannot connect"):
        await meter.read_once()


@pytest.mark.parametrize(("function_code", "device_id"), [(3, 1), (4, 7)])
async def test_wrong_function_code_or_device_id_gives_no_reading(
    server: SimModbusMeterServer, function_code: int, device_id: int
) -> None:
    register_map = dataclasses.replace(server.register_map, function_code=function_code)
    meter = ModbusTcpPowerMeter(
        host="127.0.0.1",
        port=server.port,
        device_id=device_id,
        register_map=register_map,
        timeout_s=0.2,
    )
    try:
        with pytest.raises(MeterError, match="exception response"):
            await meter.read_once()
    finally:
        await meter.stop()


async def test_stop_is_idempotent_and_stops_polling(
    server: SimModbusMeterServer, make_meter: Callable[..., ModbusTcpPowerMeter]
) -> None:
    server.update(_values(1.0, 0.0))
    rec = Recorder()
    meter = make_meter(poll_interval_s=0.02)
    await meter.start(rec.on_reading, rec.on_fault)
    await rec.wait_for(lambda: len(rec.readings) >= 3)
    await meter.stop()
    await meter.stop()
    served = server.requests_served
    count = len(rec.readings)
    # No poll task left: nothing can run any more.
    assert all(t.get_name().startswith("meter-poll") is False for t in asyncio.all_tasks())
    assert server.requests_served == served
    assert len(rec.readings) == count
