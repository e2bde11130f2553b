"""The Modbus meter backends a config can name: "modbus-tcp" and "modbus-rtu".

Their option classes (the config keys, with checks) and factories. ``hal.registry``
imports this module when a config names one of them; pymodbus itself is imported
when a meter is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hal.options import check, non_negative, positive, serial_port
from hal.registry import BackendContext, BackendError, BackendSpec


def _tcp_port(value: Any) -> str | None:
    return None if 1 <= value <= 65535 else "must be a TCP port (1-65535)"


def _modbus_device_id(value: Any) -> str | None:
    return None if 1 <= value <= 247 else "must be a Modbus device id (1-247)"


def _meter_model(value: Any) -> str | None:
    from hal.modbus.registers import RegisterMapError, available_models, load_register_map

    if isinstance(value, str) and (value.endswith(".toml") or "/" in value or "\\" in value):
        try:  # a vendor's own register map file: no code needed
            load_register_map(value)
        except RegisterMapError as exc:
            return str(exc)
        return None
    models = available_models()
    return None if value in models else f"unknown meter model (known: {', '.join(models)})"


def _baudrate(value: Any) -> str | None:
    from hal.modbus.bus import BAUDRATES

    return None if value in BAUDRATES else f"must be one of {', '.join(map(str, BAUDRATES))}"


def _parity(value: Any) -> str | None:
    return None if value in ("N", "E", "O") else "must be N, E or O"


def _stopbits(value: Any) -> str | None:
    return None if value in (1, 2) else "must be 1 or 2"


def _bytesize(value: Any) -> str | None:
    return None if value in (7, 8) else "must be 7 or 8"


@dataclass(frozen=True, kw_only=True)
class _PolledMeterOptions:
    """What every polled Modbus meter takes (``hal.modbus.polled_meter``): the model
    (a shipped name or a register map file), its device id, polling and fault timing."""

    device_id: int = field(default=1, metadata=check(_modbus_device_id))
    model: str = field(default="sdm630", metadata=check(_meter_model))
    poll_interval_s: float = field(default=1.0, metadata=check(positive))
    fault_after_s: float = field(default=5.0, metadata=check(positive))
    frozen_after_s: float = field(default=5.0, metadata=check(positive))
    frozen_min_energy_wh: float = field(default=10.0, metadata=check(non_negative))


@dataclass(frozen=True)
class ModbusTcpMeterOptions(_PolledMeterOptions):
    """Config of the "modbus-tcp" meter (see ``hal.modbus.tcp_meter``)."""

    host: str
    port: int = field(default=502, metadata=check(_tcp_port))
    timeout_s: float = field(default=1.0, metadata=check(positive))


@dataclass(frozen=True)
class ModbusRtuMeterOptions(_PolledMeterOptions):
    """Config of the "modbus-rtu" meter (see ``hal.modbus.rtu_meter``).

    ``port`` .. ``timeout_s`` describe the RS-485 line: every meter on one port
    must give the same values (the line has one owner, ``hal.modbus.bus``).
    """

    port: str = field(metadata=check(serial_port))
    baudrate: int = field(default=9600, metadata=check(_baudrate))
    parity: str = field(default="N", metadata=check(_parity))
    stopbits: int = field(default=1, metadata=check(_stopbits))
    bytesize: int = field(default=8, metadata=check(_bytesize))
    timeout_s: float = field(default=0.5, metadata=check(positive))


def _build_modbus_tcp_meter(options: ModbusTcpMeterOptions, ctx: BackendContext) -> object:
    from hal.modbus.registers import load_register_map
    from hal.modbus.tcp_meter import ModbusTcpPowerMeter

    return ModbusTcpPowerMeter(
        host=options.host,
        port=options.port,
        device_id=options.device_id,
        register_map=load_register_map(options.model),
        poll_interval_s=options.poll_interval_s,
        timeout_s=options.timeout_s,
        fault_after_s=options.fault_after_s,
        frozen_after_s=options.frozen_after_s,
        frozen_min_energy_wh=options.frozen_min_energy_wh,
    )


def _build_modbus_rtu_meter(options: ModbusRtuMeterOptions, ctx: BackendContext) -> object:
    from hal.modbus.bus import ModbusRtuBus, SerialSettings
    from hal.modbus.registers import load_register_map
    from hal.modbus.rtu_meter import ModbusRtuPowerMeter

    settings = SerialSettings(
        port=options.port,
        baudrate=options.baudrate,
        parity=options.parity,
        stopbits=options.stopbits,
        bytesize=options.bytesize,
        timeout_s=options.timeout_s,
    )
    shared = ctx.modbus_rtu_lines
    try:
        bus = shared.bus(settings) if shared is not None else ModbusRtuBus(settings)
    except ValueError as exc:
        raise BackendError(f"meter backend 'modbus-rtu': {exc}") from exc
    return ModbusRtuPowerMeter(
        bus=bus,
        device_id=options.device_id,
        register_map=load_register_map(options.model),
        poll_interval_s=options.poll_interval_s,
        fault_after_s=options.fault_after_s,
        frozen_after_s=options.frozen_after_s,
        frozen_min_energy_wh=options.frozen_min_energy_wh,
        owns_bus=shared is None,
    )


MODBUS_TCP_METER = BackendSpec(
    "meter", "modbus-tcp", _build_modbus_tcp_meter, ModbusTcpMeterOptions
)
MODBUS_RTU_METER = BackendSpec(
    "meter", "modbus-rtu", _build_modbus_rtu_meter, ModbusRtuMeterOptions
)
