"""Register codecs and register-map loading."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hal.modbus.registers import (
    DataType,
    ReadBlock,
    RegisterMapError,
    RegisterSpec,
    WordOrder,
    available_models,
    decode,
    encode,
    load_register_map,
    plan_blocks,
)

_INT_RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    # 64-bit values travel as float: stay where a double is exact.
    DataType.INT64: (-(2**53), 2**53),
    DataType.UINT64: (0, 2**53),
}
orders = st.sampled_from(list(WordOrder))


@given(st.sampled_from(list(_INT_RANGES)), orders, st.data())
def test_integer_value_round_trip(dtype: DataType, order: WordOrder, data: st.DataObject) -> None:
    low, high = _INT_RANGES[dtype]
    value = data.draw(st.integers(low, high))
    registers = encode(value, dtype, order)
    assert len(registers) == dtype.register_count
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert decode(registers, dtype, order) == value


@given(
    st.sampled_from([DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32]),
    orders,
    st.data(),
)
def test_integer_registers_round_trip(
    dtype: DataType, order: WordOrder, data: st.DataObject
) -> None:
    registers = data.draw(
        st.lists(
            st.integers(0, 0xFFFF), min_size=dtype.register_count, max_size=dtype.register_count
        )
    )
    assert encode(decode(registers, dtype, order), dtype, order) == registers


@given(st.floats(width=32, allow_nan=False), orders)
def test_float32_value_round_trip(value: float, order: WordOrder) -> None:
    assert decode(encode(value, DataType.FLOAT32, order), DataType.FLOAT32, order) == value


@given(st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2), orders)
def test_float32_registers_round_trip(registers: list[int], order: WordOrder) -> None:
    value = decode(registers, DataType.FLOAT32, order)
    if math.isnan(value):
        return  # NaN payloads are not preserved through float; the driver rejects NaN anyway
    assert encode(value, DataType.FLOAT32, order) == registers


def test_word_order_is_word_swap_and_bytes_stay_big_endian() -> None:
    big = encode(0x12345678, DataType.UINT32, WordOrder.BIG)
    little = encode(0x12345678, DataType.UINT32, WordOrder.LITTLE)
    assert big == [0x1234, 0x5678]
    assert little == [0x5678, 0x1234]
    # SDM630 float32 high word first: 230.0 V = 0x43660000
    assert encode(230.0, DataType.FLOAT32, WordOrder.BIG) == [0x4366, 0x0000]
    assert decode([0x0000, 0x4366], DataType.FLOAT32, WordOrder.LITTLE) == 230.0


def test_decode_rejects_wrong_register_count_and_range() -> None:
    with pytest.raises(ValueError, match="needs 2 registers"):
        decode([1], DataType.FLOAT32, WordOrder.BIG)
    with pytest.raises(ValueError, match="out of range"):
        decode([0x10000], DataType.UINT16, WordOrder.BIG)


def test_encode_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode(70000, DataType.UINT16, WordOrder.BIG)
    with pytest.raises(ValueError, match="does not fit"):
        encode(-1, DataType.UINT32, WordOrder.BIG)
    with pytest.raises(ValueError):
        encode(math.inf, DataType.INT32, WordOrder.BIG)


def test_sdm630_map_matches_the_eastron_table() -> None:
    m = load_register_map("sdm630")
    assert "sdm630" in available_models()
    assert m.function_code == 4
    assert m.max_registers_per_read == 80
    q = m.quantities
    assert q["voltage_l1"].address == 0x0000
    assert q["current_l3"].address == 0x000A
    assert q["power"].address == 0x0034
    assert q["frequency"].address == 0x0046
    assert q["energy_import"] == RegisterSpec(0x0048, DataType.FLOAT32, WordOrder.BIG, 1000.0)
    assert q["energy_export"].address == 0x004A
    assert set(q) == {
        "voltage_l1", "voltage_l2", "voltage_l3", "current_l1", "current_l2", "current_l3",
        "power", "frequency", "energy_import", "energy_export",
    }  # fmt: skip
    for block in m.blocks:
        assert block.count % 2 == 0  # Eastron: reads cover an even number of registers
        assert block.count <= m.max_registers_per_read
    for spec in q.values():
        assert any(b.contains(spec) for b in m.blocks)


def test_sdm630_decodes_blocks_into_si_units() -> None:
    m = load_register_map("sdm630")
    image: dict[int, int] = {}
    values = {"energy_import": 12345.0, "power": 11040.0, "voltage_l2": 231.5, "frequency": 50.0}
    for name, si in values.items():
        for i, reg in enumerate(m.encode_quantity(name, si)):
            image[m.quantities[name].address + i] = reg
    blocks = [[image.get(a, 0) for a in range(b.address, b.end)] for b in m.blocks]
    decoded = m.decode_blocks(blocks)
    assert decoded["energy_import"] == pytest.approx(12345.0, rel=1e-6)  # kWh float32 -> Wh
    assert decoded["power"] == 11040.0
    assert decoded["voltage_l2"] == 231.5
    assert decoded["current_l1"] == 0.0


def test_decode_blocks_rejects_nan_and_short_blocks() -> None:
    m = load_register_map("sdm630")
    blocks = [[0] * b.count for b in m.blocks]
    nan = list(struct.unpack(">HH", struct.pack(">f", math.nan)))
    blocks[1] = nan  # total power
    with pytest.raises(ValueError, match=r"power .* not a finite number"):
        m.decode_blocks(blocks)
    with pytest.raises(ValueError, match="expected 2 registers"):
        m.decode_blocks([[0] * 12, [0], [0] * 6])


def test_load_by_path_and_planned_blocks(tmp_path: Path) -> None:
    path = tmp_path / "em340.toml"
    path.write_text(
        """
function_code = 4
[defaults]
type = "int32"
word_order = "little"
[quantities]
voltage_l1 = { address = 0x0000, scale = 0.1 }
current_l1 = { address = 0x000C, scale = 0.001 }
power = { address = 0x0028, scale = 0.1 }
frequency = { address = 0x0033, type = "int16", scale = 0.1 }
energy_import = { address = 0x0034, scale = 100.0 }
""",
        encoding="utf-8",
    )
    m = load_register_map(str(path))
    assert m.model == "em340"
    assert m.quantities["frequency"].dtype is DataType.INT16
    assert m.quantities["power"].word_order is WordOrder.LITTLE
    # 0x33 (1 reg) and 0x34 (2 regs) touch: one block; the others stand alone.
    assert m.blocks == (
        ReadBlock(0x00, 2),
        ReadBlock(0x0C, 2),
        ReadBlock(0x28, 2),
        ReadBlock(0x33, 3),
    )


def test_plan_blocks_respects_the_read_limit() -> None:
    specs = [RegisterSpec(a, DataType.FLOAT32, WordOrder.BIG, 1.0) for a in range(0, 10, 2)]
    assert plan_blocks(specs, 4) == (ReadBlock(0, 4), ReadBlock(4, 4), ReadBlock(8, 2))


_GOOD = """
function_code = 4
[quantities]
energy_import = { address = 0x48, type = "float32" }
power = { address = 0x34, type = "float32" }
"""


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (_GOOD.replace("function_code = 4", "function_code = 6"), "function_code"),
        (
            _GOOD.replace('type = "float32" }\npower', 'type = "float33" }\npower'),
            "quantities.energy_import.type",
        ),
        (_GOOD.replace("address = 0x34,", "adress = 0x34,"), "quantities.power.adress"),
        (_GOOD.replace("energy_import = ", "energy_imported = "), "quantities.energy_imported"),
        (_GOOD.replace('power = { address = 0x34, type = "float32" }', ""), "quantities.power"),
        (_GOOD.replace("address = 0x48", 'address = "0x48"'), "quantities.energy_import.address"),
        (_GOOD + "[[blocks]]\naddress = 0x34\ncount = 2\n", "quantities.energy_import"),
        (_GOOD + "[[blocks]]\naddress = 0\ncount = 200\n", "blocks[0].count"),
        (_GOOD + "colour = 'red'\n", "colour"),
        ("function_code = \n", "invalid TOML"),
    ],
)
def test_bad_map_file_names_the_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RegisterMapError) as info:
        load_register_map(str(path))
    message = str(info.value)
    assert str(path) in message
    assert key in message


def test_unknown_model_lists_known_models() -> None:
    with pytest.raises(RegisterMapError, match=r"unknown meter model 'nope'.*sdm630"):
        load_register_map("nope")
