"""Meter read latency for ``python -m hil.bench`` (part ``meter``).

Keys:
    meter_read_ms_p50_tcp: one ``read_once`` of an SDM630 map over Modbus TCP
        (pymodbus simulator on 127.0.0.1), request sent until decoded reading.
    meter_read_ms_p50_rtu: the same over Modbus RTU on a pty pair at 19200 baud
        (a pty has no baud rate, so this is the software path, not the wire time).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from hal.modbus.bus import ModbusRtuBus, SerialSettings
from hal.modbus.polled_meter import PolledModbusMeter
from hal.modbus.registers import load_register_map
from hal.modbus.rtu_meter import ModbusRtuPowerMeter
from hal.modbus.tcp_meter import ModbusTcpPowerMeter
from hal.sim.modbus_server import SimModbusMeterServer
from hal.sim.rtu_server import SimModbusRtuServer

MODEL = "sdm630"
TRIALS = 200
WARMUP = 10
VALUES = {
    "energy_import": 1_000.0,
    "power": 7_000.0,
    "current_l1": 10.0,
    "current_l2": 10.0,
    "current_l3": 10.0,
    "voltage_l1": 230.0,
    "voltage_l2": 230.0,
    "voltage_l3": 230.0,
}


async def _median_read_ms(meter: PolledModbusMeter) -> float:
    for _ in range(WARMUP):
        await meter.read_once()
    samples_ms = []
    for _ in range(TRIALS):
        t0 = time.perf_counter()
        await meter.read_once()
        samples_ms.append((time.perf_counter() - t0) * 1000.0)
    return round(statistics.median(samples_ms), 3)


async def bench_meter_read() -> dict[str, Any]:
    """Both keys; each simulator and meter is stopped before returning."""
    register_map = load_register_map(MODEL)
    tcp_server = SimModbusMeterServer(register_map)
    await tcp_server.start()
    tcp_meter = None
    try:
        tcp_server.update(VALUES)
        tcp_meter = ModbusTcpPowerMeter(
            host="127.0.0.1",
            port=tcp_server.port,
            device_id=1,
            register_map=register_map,
            poll_interval_s=3600.0,
            timeout_s=1.0,
            fault_after_s=3600.0,
            frozen_after_s=3600.0,
            frozen_min_energy_wh=0.0,
        )
        tcp_ms = await _median_read_ms(tcp_meter)
    finally:
        if tcp_meter is not None:
            await tcp_meter.stop()
        await tcp_server.stop()

    rtu_sim = SimModbusRtuServer({1: register_map}, baudrate=19200)
    await rtu_sim.start()
    rtu_meter = None
    try:
        rtu_sim.meter(1).update(VALUES)
        rtu_meter = ModbusRtuPowerMeter(
            bus=ModbusRtuBus(SerialSettings(rtu_sim.port, baudrate=19200, timeout_s=1.0)),
            device_id=1,
            register_map=register_map,
            poll_interval_s=3600.0,
            fault_after_s=3600.0,
            frozen_after_s=3600.0,
            frozen_min_energy_wh=0.0,
            owns_bus=True,
        )
        rtu_ms = await _median_read_ms(rtu_meter)
    finally:
        if rtu_meter is not None:
            await rtu_meter.stop()
        await rtu_sim.stop()
    return {"meter_read_ms_p50_tcp": tcp_ms, "meter_read_ms_p50_rtu": rtu_ms}
