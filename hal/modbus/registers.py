"""Modbus meter register maps: a data model loaded from TOML, and register codecs.

A register map says where a meter model keeps each quantity, how it is encoded and
how to read it efficiently. One TOML file per model lives in
``hal/modbus/register_maps/`` (REFERENCE 5); adding a meter means adding a file.

File format (every key is checked; an unknown or bad key names itself)::

    model = "sdm630"                  # optional, defaults to the file stem
    description = "Eastron SDM630 v2"
    function_code = 4                 # 3 = holding registers, 4 = input registers
    max_registers_per_read = 80       # the meter's per-request limit

    [defaults]                        # optional, applies to every quantity
    type = "float32"                  # float32 | int16 | uint16 | int32 | uint32 | int64 | uint64
    word_order = "big"                # "big" = high word first, "little" = word-swapped
    scale = 1.0                       # SI value = raw value * scale
    not_available = false             # true: all-ones (unsigned) or max (signed) = missing

    [quantities]                      # energy_import and power are required
    energy_import = { address = 0x0048, scale = 1000.0 }   # kWh -> Wh

    [[blocks]]                        # optional: contiguous ranges to read, one
    address = 0x0000                  # request each; planned from the quantities
    count = 12                        # when absent

A quantity marked ``not_available = true`` whose registers hold the meter's "not
available" pattern (all ones for unsigned types, the largest positive value for
signed ones, as ABB B23 does) is left out of the decoded values; a missing
``energy_import`` or ``power`` makes the whole read bad data.

Quantities and their SI units: ``energy_import``/``energy_export`` Wh, ``power`` W,
``current_l1..l3`` A, ``voltage_l1..l3`` V, ``frequency`` Hz.
"""

from __future__ import annotations

import importlib.resources
import math
import struct
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

_MAPS_PACKAGE = "hal.modbus.register_maps"
_MAX_ADDRESS = 0xFFFF
_MODBUS_MAX_READ = 125  # Modbus application protocol: FC03/FC04 read at most 125 registers


class RegisterMapError(ValueError):
    """A register map file is missing or invalid; the message names the file and key."""


class DataType(StrEnum):
    """How a quantity is encoded in 16-bit registers."""

    FLOAT32 = "float32"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"

    @property
    def register_count(self) -> int:
        """Number of 16-bit registers one value occupies."""
        return _STRUCT[self][1] // 2


class WordOrder(StrEnum):
    """Order of the 16-bit words of a multi-register value (bytes within a word are BE)."""

    BIG = "big"  # high word first (ABCD)
    LITTLE = "little"  # low word first, "word-swapped" (CDAB)


# struct format (big-endian) and size in bytes per data type
_STRUCT: dict[DataType, tuple[str, int]] = {
    DataType.FLOAT32: (">f", 4),
    DataType.INT16: (">h", 2),
    DataType.UINT16: (">H", 2),
    DataType.INT32: (">i", 4),
    DataType.UINT32: (">I", 4),
    DataType.INT64: (">q", 8),
    DataType.UINT64: (">Q", 8),
}

QUANTITIES: tuple[str, ...] = (
    "energy_import",
    "energy_export",
    "power",
    "current_l1",
    "current_l2",
    "current_l3",
    "voltage_l1",
    "voltage_l2",
    "voltage_l3",
    "frequency",
)
"""Quantity names a register map may define, in their SI units (see module doc)."""

REQUIRED_QUANTITIES: tuple[str, ...] = ("energy_import", "power")


def _words_in_wire_order(words: list[int], word_order: WordOrder) -> list[int]:
    return words if word_order is WordOrder.BIG else words[::-1]


def decode(registers: Sequence[int], dtype: DataType, word_order: WordOrder) -> float:
    """Decode the registers of one value into a raw (unscaled) number.

    Args:
        registers: Exactly ``dtype.register_count`` 16-bit values, in the order
            they came off the wire.
        dtype: The encoding.
        word_order: ``BIG`` when the high word comes first, ``LITTLE`` when
            word-swapped. Ignored for 16-bit types.

    Returns:
        The value as a float (64-bit integers beyond 2**53 lose precision).
        A float32 NaN or infinity is returned as is; callers decide.

    Raises:
        ValueError: Wrong number of registers or a register outside 0..0xFFFF.
    """
    fmt, size = _STRUCT[dtype]
    if len(registers) != size // 2:
        raise ValueError(f"{dtype} needs {size // 2} registers, got {len(registers)}")
    if any(not 0 <= r <= 0xFFFF for r in registers):
        raise ValueError(f"register value out of range 0..0xFFFF: {list(registers)}")
    words = _words_in_wire_order(list(registers), word_order)
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    value = struct.unpack(fmt, raw)[0]
    return float(value)


def encode(value: float, dtype: DataType, word_order: WordOrder) -> list[int]:
    """Encode a raw (unscaled) number into registers; the inverse of ``decode``.

    Integer types round to the nearest integer. Used by the simulators.

    Raises:
        ValueError: The value does not fit the type (or is not finite for an
            integer type).
    """
    fmt, size = _STRUCT[dtype]
    packed_value: float | int
    if dtype is DataType.FLOAT32:
        packed_value = float(value)
    else:
        if not math.isfinite(value):
            raise ValueError(f"{value} cannot be encoded as {dtype}")
        packed_value = round(value)
    try:
        raw = struct.pack(fmt, packed_value)
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"{value} does not fit {dtype}: {exc}") from exc
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, size, 2)]
    return _words_in_wire_order(words, word_order)


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    """Where and how one quantity is stored.

    Attributes:
        address: Protocol (0-based) address of the first register.
        dtype: Encoding.
        word_order: Word order of multi-register values.
        scale: SI value = raw value * scale (SDM energy in kWh: 1000.0).
        not_available: When True, the "not available" pattern (see
            ``is_not_available``) means the value is missing.
    """

    address: int
    dtype: DataType
    word_order: WordOrder
    scale: float
    not_available: bool = False

    @property
    def count(self) -> int:
        """Registers occupied."""
        return self.dtype.register_count

    @property
    def end(self) -> int:
        """One past the last register occupied."""
        return self.address + self.count

    def is_not_available(self, registers: Sequence[int]) -> bool:
        """True when ``registers`` (wire order) hold the "not available" pattern.

        The pattern is all ones for unsigned integers and the largest positive
        value for signed ones (0x7FFF..., in the spec's word order); float32 has
        none (a NaN is rejected by ``RegisterMap.decode_blocks`` anyway). Always
        False unless the map marks the quantity ``not_available = true``.
        """
        if not self.not_available or self.dtype is DataType.FLOAT32:
            return False
        if self.dtype in _SIGNED:
            bits = self.dtype.register_count * 16
            pattern = encode(float(2 ** (bits - 1) - 1), self.dtype, self.word_order)
        else:
            pattern = [0xFFFF] * self.count
        return list(registers) == pattern


_SIGNED = frozenset({DataType.INT16, DataType.INT32, DataType.INT64})


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """A contiguous range read with one request."""

    address: int
    count: int

    @property
    def end(self) -> int:
        """One past the last register of the block."""
        return self.address + self.count

    def contains(self, spec: RegisterSpec) -> bool:
        """True when ``spec`` lies entirely inside this block."""
        return self.address <= spec.address and spec.end <= self.end


@dataclass(frozen=True)
class RegisterMap:
    """One meter model's register layout.

    Attributes:
        model: Model name (file stem unless the file says otherwise).
        description: Human description.
        function_code: 3 (holding registers) or 4 (input registers).
        max_registers_per_read: Largest count the meter accepts in one request.
        quantities: Quantity name -> where it lives (see ``QUANTITIES``).
        blocks: The ranges to read each poll, one request per block.
        source: File the map came from (for messages).
    """

    model: str
    description: str
    function_code: int
    max_registers_per_read: int
    quantities: Mapping[str, RegisterSpec]
    blocks: tuple[ReadBlock, ...]
    source: str = ""

    def decode_blocks(self, block_registers: Sequence[Sequence[int]]) -> dict[str, float]:
        """Decode every quantity from the registers read for ``blocks``.

        Args:
            block_registers: One register list per entry of ``blocks``, same order.

        Returns:
            Quantity name -> SI value. A quantity reporting "not available" (see
            ``RegisterSpec.is_not_available``) is left out.

        Raises:
            ValueError: A block has the wrong length, a value does not decode
                to a finite number, or a required quantity is not available.
        """
        if len(block_registers) != len(self.blocks):
            raise ValueError(f"expected {len(self.blocks)} blocks, got {len(block_registers)}")
        for block, regs in zip(self.blocks, block_registers, strict=True):
            if len(regs) != block.count:
                raise ValueError(
                    f"block at {block.address:#06x}: expected {block.count} registers, "
                    f"got {len(regs)}"
                )
        values: dict[str, float] = {}
        for name, spec in self.quantities.items():
            index, block = next((i, b) for i, b in enumerate(self.blocks) if b.contains(spec))
            offset = spec.address - block.address
            registers = block_registers[index][offset : offset + spec.count]
            if spec.is_not_available(registers):
                if name in REQUIRED_QUANTITIES:
                    raise ValueError(f"{name} at {spec.address:#06x} is not available")
                continue
            raw = decode(registers, spec.dtype, spec.word_order)
            if not math.isfinite(raw):
                raise ValueError(f"{name} at {spec.address:#06x} is not a finite number: {raw}")
            values[name] = raw * spec.scale
        return values

    def encode_quantity(self, name: str, si_value: float) -> list[int]:
        """Encode an SI value of ``name`` into its registers (used by simulators).

        Raises:
            KeyError: The map has no such quantity.
            ValueError: The scaled value does not fit the register type.
        """
        spec = self.quantities[name]
        return encode(si_value / spec.scale, spec.dtype, spec.word_order)


def plan_blocks(
    specs: Sequence[RegisterSpec], max_registers_per_read: int
) -> tuple[ReadBlock, ...]:
    """Group registers into the fewest contiguous blocks, each within the read limit.

    Only touching or overlapping ranges are merged: reading across a gap could hit
    registers the meter refuses.
    """
    blocks: list[ReadBlock] = []
    for spec in sorted(specs, key=lambda s: s.address):
        if blocks and spec.address <= blocks[-1].end:
            last = blocks[-1]
            end = max(last.end, spec.end)
            if end - last.address <= max_registers_per_read:
                blocks[-1] = ReadBlock(last.address, end - last.address)
                continue
        blocks.append(ReadBlock(spec.address, spec.count))
    return tuple(blocks)


def available_models() -> list[str]:
    """Names of the register maps shipped in ``hal/modbus/register_maps``."""
    files = importlib.resources.files(_MAPS_PACKAGE)
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def load_register_map(model: str) -> RegisterMap:
    """Load a register map by model name or by path.

    Args:
        model: A model shipped in ``hal/modbus/register_maps`` (``"sdm630"``), or a
            path to a ``.toml`` file (anything containing a path separator or
            ending in ``.toml``).

    Raises:
        RegisterMapError: Unknown model, unreadable file or invalid content; the
            message names the file and the offending key.
    """
    if model.endswith(".toml") or "/" in model or "\\" in model:
        path = Path(model)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RegisterMapError(f"{path}: cannot read: {exc.strerror}") from exc
        return parse_register_map(text, source=str(path), default_model=path.stem)
    resource = importlib.resources.files(_MAPS_PACKAGE).joinpath(f"{model}.toml")
    if not resource.is_file():
        known = ", ".join(available_models())
        raise RegisterMapError(f"unknown meter model {model!r} (known: {known})")
    return parse_register_map(
        resource.read_text(encoding="utf-8"), source=f"{model}.toml", default_model=model
    )


def parse_register_map(text: str, *, source: str, default_model: str) -> RegisterMap:
    """Parse and validate a register map from TOML text.

    Args:
        text: TOML content.
        source: Name used in error messages (usually the file path).
        default_model: Model name when the file has no ``model`` key.

    Raises:
        RegisterMapError: Invalid TOML or content; names ``source`` and the key.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegisterMapError(f"{source}: invalid TOML: {exc}") from exc
    return _Parser(source).parse(doc, default_model)


class _Parser:
    """Validates one map document; every error names the file and the key."""

    _TOP_KEYS = frozenset(
        {"model", "description", "function_code", "max_registers_per_read", "defaults"}
        | {"quantities", "blocks"}
    )
    _SPEC_KEYS = frozenset({"address", "type", "word_order", "scale", "not_available"})

    def __init__(self, source: str) -> None:
        self._source = source

    def _error(self, key: str, problem: str) -> RegisterMapError:
        return RegisterMapError(f"{self._source}: {key}: {problem}")

    def _get(self, table: Mapping[str, Any], key: str, path: str, kind: type, default: Any) -> Any:
        if key not in table:
            if default is _REQUIRED:
                raise self._error(path, "missing")
            return default
        value = table[key]
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise self._error(path, f"expected {kind.__name__}, got {value!r}")
        return value

    def _unknown(self, table: Mapping[str, Any], allowed: frozenset[str], prefix: str) -> None:
        for key in table:
            if key not in allowed:
                raise self._error(f"{prefix}{key}", f"unknown key (allowed: {sorted(allowed)})")

    def parse(self, doc: Mapping[str, Any], default_model: str) -> RegisterMap:
        self._unknown(doc, self._TOP_KEYS, "")
        model = self._get(doc, "model", "model", str, default_model)
        description = self._get(doc, "description", "description", str, "")
        function_code = self._get(doc, "function_code", "function_code", int, _REQUIRED)
        if function_code not in (3, 4):
            raise self._error("function_code", f"must be 3 or 4, got {function_code}")
        max_read = self._get(
            doc, "max_registers_per_read", "max_registers_per_read", int, _MODBUS_MAX_READ
        )
        if not 1 <= max_read <= _MODBUS_MAX_READ:
            raise self._error("max_registers_per_read", f"must be 1..125, got {max_read}")
        defaults = self._get(doc, "defaults", "defaults", dict, {})
        self._unknown(defaults, self._SPEC_KEYS - {"address"}, "defaults.")
        quantities = self._quantities(
            self._get(doc, "quantities", "quantities", dict, _REQUIRED), defaults
        )
        if "blocks" in doc:
            blocks = self._blocks(doc["blocks"], max_read)
            for name, spec in quantities.items():
                if not any(b.contains(spec) for b in blocks):
                    raise self._error(
                        f"quantities.{name}",
                        f"registers {spec.address:#06x}..{spec.end - 1:#06x} are not inside "
                        "any [[blocks]] range",
                    )
        else:
            blocks = plan_blocks(list(quantities.values()), max_read)
        return RegisterMap(
            model=model,
            description=description,
            function_code=function_code,
            max_registers_per_read=max_read,
            quantities=quantities,
            blocks=blocks,
            source=self._source,
        )

    def _quantities(
        self, table: Mapping[str, Any], defaults: Mapping[str, Any]
    ) -> dict[str, RegisterSpec]:
        specs: dict[str, RegisterSpec] = {}
        for name, entry in table.items():
            path = f"quantities.{name}"
            if name not in QUANTITIES:
                raise self._error(path, f"unknown quantity (known: {', '.join(QUANTITIES)})")
            if not isinstance(entry, dict):
                raise self._error(path, "expected a table like { address = 0x0048 }")
            self._unknown(entry, self._SPEC_KEYS, f"{path}.")
            merged = {**defaults, **entry}
            address = self._get(merged, "address", f"{path}.address", int, _REQUIRED)
            type_name = self._get(merged, "type", f"{path}.type", str, _REQUIRED)
            order_name = self._get(merged, "word_order", f"{path}.word_order", str, "big")
            scale = self._get(merged, "scale", f"{path}.scale", float, 1.0)
            not_available = self._get(merged, "not_available", f"{path}.not_available", bool, False)
            try:
                dtype = DataType(type_name)
            except ValueError:
                known = ", ".join(t.value for t in DataType)
                raise self._error(f"{path}.type", f"unknown type {type_name!r} ({known})") from None
            try:
                word_order = WordOrder(order_name)
            except ValueError:
                raise self._error(
                    f"{path}.word_order", f"must be 'big' or 'little', got {order_name!r}"
                ) from None
            if address < 0 or address + dtype.register_count - 1 > _MAX_ADDRESS:
                raise self._error(f"{path}.address", f"out of range 0..0xFFFF: {address}")
            if not math.isfinite(scale) or scale == 0:
                raise self._error(f"{path}.scale", f"must be a non-zero number, got {scale}")
            specs[name] = RegisterSpec(address, dtype, word_order, scale, not_available)
        for name in REQUIRED_QUANTITIES:
            if name not in specs:
                raise self._error(f"quantities.{name}", "missing (required)")
        return specs

    def _blocks(self, value: Any, max_read: int) -> tuple[ReadBlock, ...]:
        if not isinstance(value, list) or not value:
            raise self._error("blocks", "expected a non-empty array of tables ([[blocks]])")
        blocks: list[ReadBlock] = []
        for i, entry in enumerate(value):
            path = f"blocks[{i}]"
            if not isinstance(entry, dict):
                raise self._error(path, "expected a table with address and count")
            self._unknown(entry, frozenset({"address", "count"}), f"{path}.")
            address = self._get(entry, "address", f"{path}.address", int, _REQUIRED)
            count = self._get(entry, "count", f"{path}.count", int, _REQUIRED)
            if not 1 <= count <= max_read:
                raise self._error(
                    f"{path}.count", f"must be 1..max_registers_per_read ({max_read}), got {count}"
                )
            if address < 0 or address + count - 1 > _MAX_ADDRESS:
                raise self._error(f"{path}.address", f"out of range 0..0xFFFF: {address}")
            blocks.append(ReadBlock(address, count))
        return tuple(blocks)


class _Required:
    """Marker for a key without a default."""


_REQUIRED = _Required()
