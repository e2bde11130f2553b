"""A registry of HAL backends by role and name, so the config can name them.

Built-in backends are registered by ``default_registry()``; vendors add board
drivers through the ``evse_agent.backends`` entry point group without forking.
Backend modules are imported lazily, when a factory runs, so naming a backend
never drags in hardware libraries that are not used.

A backend factory has the signature ``factory(options, ctx) -> backend`` where
``options`` is an instance of the spec's ``options`` dataclass (built by the
config loader from the backend's config table) and ``ctx`` a ``BackendContext``.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hal.options import check, non_negative, positive

if TYPE_CHECKING:
    from hal.modbus.bus import ModbusRtuLines

ENTRY_POINT_GROUP = "evse_agent.backends"


class BackendError(Exception):
    """A backend could not be registered, found or built."""


class UnknownBackendError(BackendError, LookupError):
    """No backend of that role and name; the message lists the known names."""

    def __init__(self, role: str, name: str, known: Iterable[str]) -> None:
        self.role = role
        self.name = name
        self.known = sorted(known)
        listing = ", ".join(self.known) or "none"
        super().__init__(f"unknown {role} backend {name!r} (known {role} backends: {listing})")


@dataclass(frozen=True)
class BackendContext:
    """What factories may need besides their own options.

    Attributes:
        pin_factory: The gpiozero pin factory for GPIO backends, or None where
            the board has no GPIO (GPIO backends then refuse to build).
        modbus_rtu_lines: The owner of every RS-485 line of the station, shared
            by all "modbus-rtu" meters so that meters on one port share one bus.
            None: each such meter opens its port for itself (one meter per line).
    """

    pin_factory: Any | None = None
    modbus_rtu_lines: ModbusRtuLines | None = None


@dataclass(frozen=True)
class BackendSpec:
    """One backend a config can name.

    Attributes:
        role: HAL role: "meter", "contactor", "pilot", "lock", "token_reader", ...
        name: Name used in the config (``backend = "modbus-tcp"``).
        factory: ``factory(options, ctx) -> backend``.
        options: A frozen dataclass type whose fields are the backend's config
            keys (fields without defaults are required); the config loader
            validates against it.
    """

    role: str
    name: str
    factory: Callable[..., object]
    options: type


class Registry:
    """Backends by (role, name). Build one with ``default_registry()``."""

    def __init__(self) -> None:
        self._specs: dict[tuple[str, str], BackendSpec] = {}

    def register(self, spec: BackendSpec, *, replace: bool = False) -> None:
        """Add a backend.

        Raises:
            BackendError: That role and name exist already (unless ``replace``).
        """
        key = (spec.role, spec.name)
        if key in self._specs and not replace:
            raise BackendError(f"{spec.role} backend {spec.name!r} is already registered")
        self._specs[key] = spec

    def get(self, role: str, name: str) -> BackendSpec:
        """The backend of ``role`` called ``name``.

        Raises:
            UnknownBackendError: None registered; lists the known names for the role.
        """
        try:
            return self._specs[(role, name)]
        except KeyError:
            raise UnknownBackendError(role, name, self.names(role)) from None

    def names(self, role: str) -> list[str]:
        """Sorted names of the backends registered for ``role``."""
        return sorted(name for r, name in self._specs if r == role)

    def roles(self) -> list[str]:
        """Sorted roles that have at least one backend."""
        return sorted({role for role, _ in self._specs})

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> int:
        """Import the installed plug-ins of ``group`` and register their backends.

        Each entry point refers to a ``BackendSpec``, a list/tuple of them, or a
        callable without arguments returning either.

        Returns:
            Number of backends registered.

        Raises:
            BackendError: An entry point fails to load or yields something else;
                the message names the entry point.
        """
        count = 0
        for entry_point in importlib.metadata.entry_points(group=group):
            label = f"entry point {entry_point.name!r} ({entry_point.value}) in {group}"
            try:
                loaded = entry_point.load()
                if callable(loaded) and not isinstance(loaded, BackendSpec):
                    loaded = loaded()
            except Exception as exc:
                raise BackendError(f"{label}: failed to load: {exc}") from exc
            specs = loaded if isinstance(loaded, list | tuple) else [loaded]
            for spec in specs:
                if not isinstance(spec, BackendSpec):
                    raise BackendError(f"{label}: expected BackendSpec, got {spec!r}")
                try:
                    self.register(spec)
                except BackendError as exc:
                    raise BackendError(f"{label}: {exc}") from exc
                count += 1
        return count


# --- built-in backends ---------------------------------------------------------------


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


def _serial_port(value: Any) -> str | None:
    return None if value else "must name a serial port (e.g. /dev/ttyUSB0)"


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

    port: str = field(metadata=check(_serial_port))
    baudrate: int = field(default=9600, metadata=check(_baudrate))
    parity: str = field(default="N", metadata=check(_parity))
    stopbits: int = field(default=1, metadata=check(_stopbits))
    bytesize: int = field(default=8, metadata=check(_bytesize))
    timeout_s: float = field(default=0.5, metadata=check(positive))


@dataclass(frozen=True)
class GpioContactorOptions:
    """Config of the "gpio" contactor (see ``hal.gpio.contactor``)."""

    coil_pin: int | str
    feedback_pin: int | str | None = None
    coil_active_high: bool = True
    feedback_active_high: bool = True
    feedback_settle_s: float = field(default=0.1, metadata=check(positive))


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


def _build_gpio_contactor(options: GpioContactorOptions, ctx: BackendContext) -> object:
    if ctx.pin_factory is None:
        raise BackendError("contactor backend 'gpio' needs a GPIO pin factory (none configured)")
    from hal.gpio.contactor import GpioContactor

    return GpioContactor(
        coil_pin=options.coil_pin,
        feedback_pin=options.feedback_pin,
        pin_factory=ctx.pin_factory,
        coil_active_high=options.coil_active_high,
        feedback_active_high=options.feedback_active_high,
        feedback_settle_s=options.feedback_settle_s,
    )


def builtin_backends() -> list[BackendSpec]:
    """The backends shipped with the agent ("sim" ones are built by SimEvseRig)."""
    return [
        BackendSpec("meter", "modbus-tcp", _build_modbus_tcp_meter, ModbusTcpMeterOptions),
        BackendSpec("meter", "modbus-rtu", _build_modbus_rtu_meter, ModbusRtuMeterOptions),
        BackendSpec("contactor", "gpio", _build_gpio_contactor, GpioContactorOptions),
    ]


def default_registry() -> Registry:
    """A new registry holding the built-in backends (entry points not loaded yet)."""
    registry = Registry()
    for spec in builtin_backends():
        registry.register(spec)
    return registry
