"""``evse-agent meter read``: read one Modbus meter once, for a technician.

The meter is built through the HAL registry exactly as the agent builds it from
a config (same options, same validation, same register maps), read once with
``read_once`` and released. Nothing here polls or keeps state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agent.config import ConfigError, parse_dataclass
from hal.registry import BackendContext, Registry
from hal.types import MeterReading


@dataclass(frozen=True)
class MeterTarget:
    """Where and what to read.

    Attributes:
        model: Register map name (``sdm630``...) or a vendor's map file path.
        host: Modbus TCP host; exclusive with ``serial_port``.
        port: Modbus TCP port.
        serial_port: RS-485 adapter device path for Modbus RTU.
        baudrate, parity, stopbits: Serial line settings (RTU only).
        device_id: Modbus device (unit) id, 1-247.
        timeout_s: Answer timeout per request, s.
    """

    model: str
    host: str | None = None
    port: int = 502
    serial_port: str | None = None
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    device_id: int = 1
    timeout_s: float = 1.0


def backend_options(target: MeterTarget) -> tuple[str, dict[str, Any]]:
    """The registry backend name and its config table for ``target``.

    Raises:
        ConfigError: Neither or both of host and serial port given.
    """
    if (target.host is None) == (target.serial_port is None):
        raise ConfigError("give exactly one of --host or --serial")
    common: dict[str, Any] = {
        "model": target.model,
        "device_id": target.device_id,
        "timeout_s": target.timeout_s,
    }
    if target.host is not None:
        return "modbus-tcp", {**common, "host": target.host, "port": target.port}
    return "modbus-rtu", {
        **common,
        "port": target.serial_port,
        "baudrate": target.baudrate,
        "parity": target.parity,
        "stopbits": target.stopbits,
    }


async def read_meter(registry: Registry, target: MeterTarget) -> MeterReading:
    """Build the meter backend for ``target``, read it once and release it.

    Takes about one ``timeout_s`` per register block when the meter is silent.

    Raises:
        ConfigError: Bad option (names the option, like the config loader does).
        MeterError: The meter did not answer or answered garbage (one-line reason).
    """
    name, table = backend_options(target)
    spec = registry.get("meter", name)
    options: Any = parse_dataclass(spec.options, table, "meter")
    meter: Any = spec.factory(options, BackendContext())
    try:
        reading: MeterReading = await meter.read_once()
    finally:
        await meter.stop()
    return reading


def reading_as_json(reading: MeterReading) -> dict[str, Any]:
    """The ``--json`` object: energies in Wh, power W, per-phase lists, Hz or null."""
    return {
        "energy_import_wh": reading.energy_import_wh,
        "energy_export_wh": reading.energy_export_wh,
        "power_w": reading.power_w,
        "voltage_v": list(reading.voltage_v),
        "current_a": list(reading.current_a),
        "frequency_hz": reading.frequency_hz,
    }


def format_reading(reading: MeterReading) -> str:
    """Human-readable lines, one quantity per line, units spelled out."""
    values = reading_as_json(reading)
    lines = []
    for key, value in values.items():
        lines.append(f"{key:<17} {_format_value(value)}")
    return "\n".join(lines)


def _format_value(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, list):
        return " ".join(f"{v:.2f}" for v in value) or "n/a"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def dumps(reading: MeterReading) -> str:
    """``reading_as_json`` as one line of JSON."""
    return json.dumps(reading_as_json(reading))
