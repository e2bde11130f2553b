"""Every shipped meter model's register map against the real driver over Modbus TCP.

The maps are checked twice: against the data sheets' wire formats by hand (so a
wrong word order or scale in a map fails), and end to end (the simulator encodes
SI values with the map, ModbusTcpPowerMeter reads and decodes them over loopback).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hal.modbus.registers import (
    DataType,
    RegisterMap,
    available_models,
    load_register_map,
)
from hal.modbus.tcp_meter import ModbusTcpPowerMeter
from hal.registry import ModbusRtuMeterOptions, ModbusTcpMeterOptions
from hal.sim.modbus_server import SimModbusMeterServer

MODELS = ("sdm630", "sdm72dm2", "sdm120", "abb-b23", "em340")

# SI values every model can represent (EM340 resolution: 0.1 kWh, 0.1 Hz).
SAMPLE = {
    "energy_import": 1_234_500.0,  # Wh
    "energy_export": 2_500.0,  # Wh
    "power": 7_361.5,  # W
    "current_l1": 10.5,
    "current_l2": 10.25,
    "current_l3": 0.0,
    "voltage_l1": 230.1,
    "voltage_l2": 229.8,
    "voltage_l3": 231.0,
    "frequency": 50.0,
}


def tolerance(register_map: RegisterMap, name: str) -> float:
    """Half a step of an integer register; float32 is good to ~7 digits."""
    spec = register_map.quantities[name]
    if spec.dtype is DataType.FLOAT32:
        return abs(SAMPLE[name]) * 1e-6 + 1e-9
    return abs(spec.scale) / 2 + 1e-9


def test_all_models_are_shipped() -> None:
    assert set(MODELS) <= set(available_models())


@pytest.mark.parametrize("model", MODELS)
def test_map_has_what_a_reading_needs(model: str) -> None:
    m = load_register_map(model)
    assert m.model == model
    assert {"energy_import", "power"} <= set(m.quantities)
    for block in m.blocks:
        assert block.count <= m.max_registers_per_read
    if model.startswith("sdm"):  # Eastron: reads must cover an even number of registers
        assert all(b.count % 2 == 0 and b.address % 2 == 0 for b in m.blocks)


# --- wire formats, written out by hand from REFERENCE 5 -------------------------------


def test_sdm120_is_single_phase_float32_input_registers() -> None:
    m = load_register_map("sdm120")
    assert m.function_code == 4
    assert {q for q in m.quantities if q[:-1] in ("current_l", "voltage_l")} == {
        "current_l1",
        "voltage_l1",
    }
    assert m.quantities["power"].address == 0x000C
    # 1.5 kWh as float32 big-endian 0x3FC00000 -> 1500 Wh
    values = m.decode_blocks(
        [[0x4366, 0x0000], [0x4120, 0x0000], [0x44FA, 0x0000], [0x4248, 0, 0x3FC0, 0, 0, 0]]
    )
    assert values == {
        "voltage_l1": 230.0,
        "current_l1": 10.0,
        "power": 2000.0,
        "frequency": 50.0,
        "energy_import": 1500.0,
        "energy_export": 0.0,
    }


def test_sdm72dm2_shares_the_sdm630_v2_layout() -> None:
    sdm72 = load_register_map("sdm72dm2")
    sdm630 = load_register_map("sdm630")
    assert sdm72.quantities == sdm630.quantities
    assert sdm72.blocks == sdm630.blocks
    assert sdm72.function_code == 4


def _abb_registers(energy_raw: int, power_raw: int) -> list[list[int]]:
    """ABB B23 blocks: u64 import/export, the 0x5B00 block, frequency."""
    energy = [(energy_raw >> s) & 0xFFFF for s in (48, 32, 16, 0)]
    main = [0] * 28
    main[0:2] = [0, 2301]  # V L1 = 230.1 V (u32, 0.1 V)
    main[0x0C:0x0E] = [0, 1050]  # I L1 = 10.50 A (u32, 0.01 A)
    main[0x14:0x16] = [(power_raw >> 16) & 0xFFFF, power_raw & 0xFFFF]  # s32, 0.01 W
    return [[*energy, 0, 0, 0, 0], main, [5001]]  # 50.01 Hz


def test_abb_b23_u64_energy_in_hundredths_of_kwh_and_signed_power() -> None:
    m = load_register_map("abb-b23")
    assert m.function_code == 3
    big = 123_456_789_012  # 0.01 kWh units: 1.23e12 Wh, beyond 32 bits
    values = m.decode_blocks(_abb_registers(big, (-150_050) & 0xFFFF_FFFF))
    assert values["energy_import"] == pytest.approx(big * 10.0)
    assert values["power"] == pytest.approx(-1500.50)
    assert values["voltage_l1"] == pytest.approx(230.1)
    assert values["current_l1"] == pytest.approx(10.5)
    assert values["frequency"] == pytest.approx(50.01)


def test_abb_not_available_values_are_missing_not_numbers() -> None:
    m = load_register_map("abb-b23")
    blocks = _abb_registers(1000, 500)
    blocks[1][0:2] = [0xFFFF, 0xFFFF]  # V L1 n/a (u32 all ones)
    blocks[1][0x0E:0x10] = [0xFFFF, 0xFFFF]  # I L2 n/a
    blocks[2] = [0xFFFF]  # frequency n/a (u16)
    values = m.decode_blocks(blocks)
    assert "voltage_l1" not in values
    assert "current_l2" not in values
    assert "frequency" not in values
    assert values["energy_import"] == 10_000.0
    assert values["current_l1"] == pytest.approx(10.5)

    no_power = _abb_registers(1000, 0x7FFF_FFFF)  # s32 "not available"
    with pytest.raises(ValueError, match=r"power .* not available"):
        m.decode_blocks(no_power)
    no_energy = _abb_registers(0xFFFF_FFFF_FFFF_FFFF, 500)
    with pytest.raises(ValueError, match=r"energy_import .* not available"):
        m.decode_blocks(no_energy)


def test_em340_int32_low_word_first_with_its_scales() -> None:
    m = load_register_map("em340")
    assert m.function_code == 4
    first = [0] * 18
    first[0:2] = [2301, 0]  # 230.1 V, low word first
    first[0x0C:0x0E] = [0x86A0, 0x0001]  # 100000 mA = 100 A: the high word matters
    second = [0] * 14
    second[0:2] = [(-15005) & 0xFFFF, 0xFFFF]  # -1500.5 W: sign in the high (second) word
    second[0x33 - 0x28] = 500  # 50.0 Hz (int16, 0.1 Hz)
    second[0x34 - 0x28 : 0x36 - 0x28] = [0x2345, 0x0001]  # 0x12345 = 74565 * 0.1 kWh
    values = m.decode_blocks([first, second, [0, 0]])
    assert values["voltage_l1"] == pytest.approx(230.1)
    assert values["current_l1"] == pytest.approx(100.0)
    assert values["power"] == pytest.approx(-1500.5)
    assert values["frequency"] == pytest.approx(50.0)
    assert values["energy_import"] == pytest.approx(7_456_500.0)


# --- end to end over Modbus TCP -------------------------------------------------------


@pytest.fixture(params=MODELS)
async def server(request: pytest.FixtureRequest) -> AsyncIterator[SimModbusMeterServer]:
    srv = SimModbusMeterServer(load_register_map(request.param))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def test_each_model_round_trips_over_tcp(server: SimModbusMeterServer) -> None:
    m = server.register_map
    server.update(SAMPLE)
    meter = ModbusTcpPowerMeter(host="127.0.0.1", port=server.port, register_map=m, timeout_s=0.5)
    try:
        reading = await meter.read_once()
    finally:
        await meter.stop()
    assert server.requests_served == len(m.blocks)  # one request per block
    got = {
        "energy_import": reading.energy_import_wh,
        "energy_export": reading.energy_export_wh,
        "power": reading.power_w,
        "frequency": reading.frequency_hz,
    }
    for i, phase in enumerate(p for p in ("l1", "l2", "l3") if f"current_{p}" in m.quantities):
        got[f"current_{phase}"] = reading.current_a[i]
    for i, phase in enumerate(p for p in ("l1", "l2", "l3") if f"voltage_{p}" in m.quantities):
        got[f"voltage_{phase}"] = reading.voltage_v[i]
    for name in m.quantities:
        assert got[name] == pytest.approx(SAMPLE[name], abs=tolerance(m, name)), name
    assert len(reading.current_a) == (1 if m.model == "sdm120" else 3)


async def test_negative_power_survives_every_signed_format(server: SimModbusMeterServer) -> None:
    server.update({**SAMPLE, "power": -1_500.5})  # an "upside-down" or exporting meter
    meter = ModbusTcpPowerMeter(
        host="127.0.0.1", port=server.port, register_map=server.register_map, timeout_s=0.5
    )
    try:
        reading = await meter.read_once()
    finally:
        await meter.stop()
    assert reading.power_w == pytest.approx(-1_500.5, abs=0.05)


# --- a vendor's own map: a data file, no code -----------------------------------------

VENDOR_MAP = """
description = "Vendor X 1-phase meter, holding registers, word-swapped uint32"
function_code = 3

[defaults]
type = "uint32"
word_order = "little"

[quantities]
energy_import = { address = 0x0100, scale = 1.0 }   # Wh
power = { address = 0x0102, type = "int32", scale = 0.1 }
current_l1 = { address = 0x0104, scale = 0.001 }
"""


async def test_vendor_map_file_works_without_code(tmp_path: Path) -> None:
    path = tmp_path / "vendor-x.toml"
    path.write_text(VENDOR_MAP, encoding="utf-8")
    # The config accepts the path as the model (both transports), and names a bad one.
    for options in (ModbusTcpMeterOptions, ModbusRtuMeterOptions):
        [model_field] = [f for f in dataclasses.fields(options) if f.name == "model"]
        problem = model_field.metadata["check"]
        assert problem(str(path)) is None
        assert "cannot read" in (problem(str(tmp_path / "missing.toml")) or "")
        assert "unknown meter model" in (problem("nope") or "")

    m = load_register_map(str(path))
    assert m.model == "vendor-x"
    srv = SimModbusMeterServer(m)
    await srv.start()
    meter = ModbusTcpPowerMeter(host="127.0.0.1", port=srv.port, register_map=m, timeout_s=0.5)
    try:
        srv.update({"energy_import": 70_000.0, "power": 3_450.7, "current_l1": 15.001})
        assert srv.registers(0x0100, 2) == [70_000 & 0xFFFF, 70_000 >> 16]  # low word first
        reading = await meter.read_once()
    finally:
        await meter.stop()
        await srv.stop()
    assert reading.energy_import_wh == 70_000.0
    assert reading.power_w == pytest.approx(3_450.7)
    assert reading.current_a == pytest.approx((15.001,))
    assert reading.voltage_v == ()
    assert reading.frequency_hz is None
