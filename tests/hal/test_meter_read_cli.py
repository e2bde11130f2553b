"""``evse-agent meter read``: one reading from a real Modbus server, TCP and RTU.

The command runs as a subprocess (it owns its event loop) against the pymodbus
simulators serving the model's register map, so arguments, decoding and the
exit codes are checked end to end.
"""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from agent.config import ConfigError
from agent.console.meter_read import MeterTarget, read_meter, reading_as_json
from hal.faults import MeterError
from hal.modbus.registers import load_register_map
from hal.registry import default_registry
from hal.sim.modbus_server import SimModbusMeterServer
from hal.sim.rtu_server import SimModbusRtuServer

GUARD_S = 30.0
VALUES = {
    "energy_import": 12_345.0,
    "power": 7_200.0,
    "current_l1": 10.5,
    "current_l2": 10.25,
    "current_l3": 10.0,
    "voltage_l1": 230.5,
    "voltage_l2": 231.0,
    "voltage_l3": 229.5,
    "frequency": 50.0,
}


def served(model: str) -> dict[str, float]:
    """VALUES restricted to what the model's map has."""
    names = set(load_register_map(model).quantities)
    return {k: v for k, v in VALUES.items() if k in names}


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "meter",
        "read",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), GUARD_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_json_reading_over_tcp_has_every_field() -> None:
    server = SimModbusMeterServer(load_register_map("sdm630"))
    await server.start()
    try:
        server.update(served("sdm630"))
        args = ["--model", "sdm630", "--host", "127.0.0.1", "--port", str(server.port)]
        code, out, err = await run_cli(*args, "--json")
    finally:
        await server.stop()
    assert code == 0, err
    reading = json.loads(out)
    assert reading["energy_import_wh"] == pytest.approx(12_345.0, abs=1.0)
    assert reading["power_w"] == pytest.approx(7_200.0, abs=0.5)
    assert reading["current_a"] == pytest.approx([10.5, 10.25, 10.0], abs=0.01)
    assert reading["voltage_v"] == pytest.approx([230.5, 231.0, 229.5], abs=0.01)
    assert reading["frequency_hz"] == pytest.approx(50.0)
    assert set(reading) == {
        "energy_import_wh",
        "energy_export_wh",
        "power_w",
        "voltage_v",
        "current_a",
        "frequency_hz",
    }


async def test_rtu_reading_of_a_single_phase_meter_without_frequency_gives_null() -> None:
    model = "sdm120"
    names = set(load_register_map(model).quantities)
    sim = SimModbusRtuServer({7: load_register_map(model)}, baudrate=19200)  # a pty has no parity
    await sim.start()
    try:
        sim.meter(7).update(served(model))
        code, out, err = await run_cli(
            "--model",
            model,
            "--serial",
            sim.port,
            "--baud",
            "19200",
            "--device-id",
            "7",
            "--json",
        )
    finally:
        await sim.stop()
    assert code == 0, err
    reading = json.loads(out)
    assert len(reading["current_a"]) == 1
    assert reading["current_a"][0] == pytest.approx(10.5, abs=0.01)
    if "frequency" not in names:
        assert reading["frequency_hz"] is None
    else:
        assert reading["frequency_hz"] == pytest.approx(50.0)


async def test_silent_meter_exits_1_with_one_line_reason() -> None:
    server = SimModbusMeterServer(load_register_map("sdm630"))
    await server.start()
    try:
        server.set_answering(False)
        args = ["--model", "sdm630", "--host", "127.0.0.1", "--port", str(server.port)]
        code, out, err = await run_cli(*args, "--timeout", "0.3")
    finally:
        await server.stop()
    assert code == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "no reading" in err


async def test_human_output_names_units() -> None:
    server = SimModbusMeterServer(load_register_map("abb-b23"))
    await server.start()
    try:
        server.update(served("abb-b23"))
        args = ["--model", "abb-b23", "--host", "127.0.0.1", "--port", str(server.port)]
        code, out, err = await run_cli(*args)
    finally:
        await server.stop()
    assert code == 0, err
    lines = dict(line.split(None, 1) for line in out.strip().splitlines())
    assert float(lines["energy_import_wh"]) == pytest.approx(12_345.0, abs=10.0)
    assert float(lines["power_w"]) == pytest.approx(7_200.0, abs=1.0)


async def test_bad_model_and_missing_target_are_usage_errors() -> None:
    code, _, err = await run_cli("--model", "nosuch", "--host", "127.0.0.1")
    assert code == 2
    assert "meter.model" in err
    with pytest.raises(ConfigError):
        await read_meter(default_registry(), MeterTarget(model="sdm630"))


async def test_unanswered_port_raises_meter_error_in_process() -> None:
    server = SimModbusMeterServer(load_register_map("sdm630"))
    await server.start()
    port = server.port
    await server.stop()  # nothing listens there any more
    with pytest.raises(MeterError):
        await read_meter(
            default_registry(),
            MeterTarget(model="sdm630", host="127.0.0.1", port=port, timeout_s=0.3),
        )


async def test_in_process_reading_matches_what_the_server_serves() -> None:
    server = SimModbusMeterServer(load_register_map("em340"))
    await server.start()
    try:
        server.update(served("em340"))
        reading = await read_meter(
            default_registry(),
            MeterTarget(model="em340", host="127.0.0.1", port=server.port, timeout_s=1.0),
        )
    finally:
        await server.stop()
    data = reading_as_json(reading)
    assert data["energy_import_wh"] == pytest.approx(12_345.0, abs=100.0)
    assert data["voltage_v"] == pytest.approx([230.5, 231.0, 229.5], abs=0.1)
