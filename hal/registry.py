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
    from hal.rapi.controller import RapiLinks

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
        rapi_links: One OpenEVSE controller per serial port, shared by the
            "openevse-rapi" pilot, contactor and meter of one board. None: each
            role gets a controller of its own (only sensible for a single role).
    """

    pin_factory: Any | None = None
    modbus_rtu_lines: ModbusRtuLines | None = None
    rapi_links: RapiLinks | None = None


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


def _gpio_pin(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip()):
        return None  # names ("GPIO17", "BOARD11") are checked by gpiozero when built
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 53
    return None if ok else "must be a GPIO number (0-53) or a pin name"


def _distinct_pins(*pins: int | str | None) -> None:
    """Raise ValueError when two options name the same pin (None = not wired)."""
    used = [pin for pin in pins if pin is not None]
    if len(used) != len(set(used)):
        raise ValueError(f"two options use the same pin: {sorted(map(str, used))}")


@dataclass(frozen=True)
class GpioContactorOptions:
    """Config of the "gpio" contactor (see ``hal.gpio.contactor``)."""

    coil_pin: int | str = field(metadata=check(_gpio_pin))
    feedback_pin: int | str | None = field(default=None, metadata=check(_gpio_pin))
    coil_active_high: bool = True
    feedback_active_high: bool = True
    feedback_settle_s: float = field(default=0.1, metadata=check(positive))
    rcd_pin: int | str | None = field(default=None, metadata=check(_gpio_pin))
    rcd_active_high: bool = True
    estop_pin: int | str | None = field(default=None, metadata=check(_gpio_pin))
    estop_active_high: bool = True

    def __post_init__(self) -> None:
        _distinct_pins(self.coil_pin, self.feedback_pin, self.rcd_pin, self.estop_pin)


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
        rcd_pin=options.rcd_pin,
        rcd_active_high=options.rcd_active_high,
        estop_pin=options.estop_pin,
        estop_active_high=options.estop_active_high,
    )


# --- GPIO pilot, lock and status lamps (hal.gpio) --------------------------------------


def _adc_model(value: Any) -> str | None:
    return None if value in ("mcp3008", "mcp3208") else "must be mcp3008 or mcp3208"


def _adc_channel(value: Any) -> str | None:
    return None if value is None or 0 <= value <= 7 else "must be an ADC channel (0-7)"


def _at_least_one(value: Any) -> str | None:
    return None if value >= 1 else "must be >= 1"


def _pwm_frequency(value: Any) -> str | None:
    # IEC 61851-1 / REFERENCE 1.1: 1 kHz +-2 %
    return None if 980 <= value <= 1020 else "must be 980..1020 Hz (IEC 61851-1: 1 kHz)"


@dataclass(frozen=True)
class GpioControlPilotOptions:
    """Config of the "gpio" pilot (see ``hal.gpio.pilot``): a PWM pin and an MCP3x08 ADC."""

    pwm_pin: int | str = field(metadata=check(_gpio_pin))
    adc_model: str = field(default="mcp3008", metadata=check(_adc_model))
    cp_high_channel: int = field(default=0, metadata=check(_adc_channel))
    cp_low_channel: int | None = field(default=1, metadata=check(_adc_channel))
    pp_channel: int | None = field(default=None, metadata=check(_adc_channel))
    spi_clock_pin: int | str = field(default=11, metadata=check(_gpio_pin))
    spi_mosi_pin: int | str = field(default=10, metadata=check(_gpio_pin))
    spi_miso_pin: int | str = field(default=9, metadata=check(_gpio_pin))
    spi_select_pin: int | str = field(default=8, metadata=check(_gpio_pin))
    adc_vref_v: float = field(default=3.3, metadata=check(positive))
    cp_gain: float = field(default=10.0, metadata=check(positive))
    cp_offset_v: float = -15.0
    hysteresis_v: float = field(default=0.5, metadata=check(non_negative))
    debounce_samples: int = field(default=2, metadata=check(_at_least_one))
    poll_interval_s: float = field(default=0.005, metadata=check(positive))
    pp_pullup_ohm: float = field(default=1000.0, metadata=check(positive))
    pp_interval_s: float = field(default=0.1, metadata=check(positive))
    pwm_frequency_hz: float = field(default=1000.0, metadata=check(_pwm_frequency))
    diode_fault_hold_s: float = field(default=2.0, metadata=check(non_negative))

    def __post_init__(self) -> None:
        _distinct_pins(
            self.pwm_pin,
            self.spi_clock_pin,
            self.spi_mosi_pin,
            self.spi_miso_pin,
            self.spi_select_pin,
        )
        channels = [c for c in (self.cp_high_channel, self.cp_low_channel, self.pp_channel)]
        used = [c for c in channels if c is not None]
        if len(used) != len(set(used)):
            raise ValueError("cp_high_channel, cp_low_channel and pp_channel must differ")


@dataclass(frozen=True)
class GpioConnectorLockOptions:
    """Config of the "gpio" connector lock (see ``hal.gpio.lock``)."""

    lock_pin: int | str = field(metadata=check(_gpio_pin))
    unlock_pin: int | str = field(metadata=check(_gpio_pin))
    feedback_pin: int | str | None = field(default=None, metadata=check(_gpio_pin))
    motor_active_high: bool = True
    feedback_active_high: bool = True
    pulse_s: float = field(default=0.3, metadata=check(positive))
    timeout_s: float = field(default=1.0, metadata=check(positive))

    def __post_init__(self) -> None:
        _distinct_pins(self.lock_pin, self.unlock_pin, self.feedback_pin)
        if self.timeout_s < self.pulse_s:
            raise ValueError("timeout_s must be >= pulse_s")


@dataclass(frozen=True)
class GpioStatusIndicatorOptions:
    """Config of the "gpio" status lamps (see ``hal.gpio.indicator``)."""

    available_pin: int | str | None = field(default=None, metadata=check(_gpio_pin))
    occupied_pin: int | str | None = field(default=None, metadata=check(_gpio_pin))
    charging_pin: int | str | None = field(default=None, metadata=check(_gpio_pin))
    fault_pin: int | str | None = field(default=None, metadata=check(_gpio_pin))
    active_high: bool = True

    def __post_init__(self) -> None:
        pins = (self.available_pin, self.occupied_pin, self.charging_pin, self.fault_pin)
        if all(pin is None for pin in pins):
            raise ValueError("at least one lamp pin is needed")
        _distinct_pins(*pins)


def _need_pins(role: str, ctx: BackendContext) -> Any:
    if ctx.pin_factory is None:
        raise BackendError(f"{role} backend 'gpio' needs a GPIO pin factory (none configured)")
    return ctx.pin_factory


def _build_gpio_pilot(options: GpioControlPilotOptions, ctx: BackendContext) -> object:
    pin_factory = _need_pins("pilot", ctx)
    from dataclasses import asdict

    from hal.gpio.pilot import GpioControlPilot

    return GpioControlPilot(pin_factory=pin_factory, **asdict(options))


def _build_gpio_lock(options: GpioConnectorLockOptions, ctx: BackendContext) -> object:
    pin_factory = _need_pins("lock", ctx)
    from dataclasses import asdict

    from hal.gpio.lock import GpioConnectorLock

    return GpioConnectorLock(pin_factory=pin_factory, **asdict(options))


def _build_gpio_indicator(options: GpioStatusIndicatorOptions, ctx: BackendContext) -> object:
    pin_factory = _need_pins("indicator", ctx)
    from dataclasses import asdict

    from hal.gpio.indicator import GpioStatusIndicator

    return GpioStatusIndicator(pin_factory=pin_factory, **asdict(options))


def _can_interface(value: Any) -> str | None:
    from can.interfaces import VALID_INTERFACES

    known = ", ".join(sorted(VALID_INTERFACES))
    return None if value in VALID_INTERFACES else f"unknown python-can interface (known: {known})"


def _can_channel(value: Any) -> str | None:
    return None if value else "must name a CAN channel (e.g. can0)"


def _byte_current(value: Any) -> str | None:
    return None if 1 <= value <= 255 else "must be 1..255 A (one CHAdeMO byte)"


def _word_voltage(value: Any) -> str | None:
    return None if 1 <= value <= 65535 else "must be 1..65535 V"


@dataclass(frozen=True)
class ChademoCanPilotOptions:
    """Config of the "chademo-can" pilot (see ``hal.can.chademo_pilot``): the CHAdeMO
    vehicle link on a CAN interface, driven by the core like a CP line."""

    interface: str = field(default="socketcan", metadata=check(_can_interface))
    channel: str = field(default="can0", metadata=check(_can_channel))
    bitrate: int = field(default=500_000, metadata=check(positive))
    max_voltage_v: int = field(default=500, metadata=check(_word_voltage))
    max_current_a: int = field(default=125, metadata=check(_byte_current))
    timeout_s: float = field(default=1.0, metadata=check(positive))


def _build_chademo_can_pilot(options: ChademoCanPilotOptions, ctx: BackendContext) -> object:
    del ctx
    from hal.can.chademo_pilot import ChademoCanPilot
    from hal.can.endpoint import open_bus

    return ChademoCanPilot(
        open_bus=lambda: open_bus(options.interface, options.channel, options.bitrate),
        max_voltage_v=options.max_voltage_v,
        max_current_a=options.max_current_a,
        timeout_s=options.timeout_s,
        name=f"chademo-{options.channel}",
    )


def _whole_amps(value: Any) -> str | None:
    return None if isinstance(value, int) and 6 <= value <= 80 else "must be whole amps, 6..80"


def _heartbeat_timeout(value: Any) -> str | None:
    ok = isinstance(value, int) and 1 <= value <= 65535
    return None if ok else "must be whole seconds, 1..65535"


@dataclass(frozen=True)
class RapiOptions:
    """Config of the "openevse-rapi" pilot and contactor (see ``hal.rapi``): an
    OpenEVSE controller on a serial port. Every role on one port must give the
    same values (the port has one owner, ``hal.rapi.controller.RapiLinks``)."""

    port: str = field(metadata=check(_serial_port))
    baudrate: int = field(default=115200, metadata=check(positive))
    timeout_s: float = field(default=0.5, metadata=check(positive))
    heartbeat_interval_s: float = field(default=2.0, metadata=check(positive))
    heartbeat_timeout_s: int = field(default=10, metadata=check(_heartbeat_timeout))
    safe_current_a: int = field(default=6, metadata=check(_whole_amps))
    fault_after_s: float = field(default=3.0, metadata=check(positive))


@dataclass(frozen=True)
class RapiMeterOptions(RapiOptions):
    """Config of the "openevse-rapi" meter: the link keys plus polling."""

    phases: int = field(
        default=1, metadata=check(lambda v: None if v in (1, 2, 3) else "must be 1, 2 or 3")
    )
    poll_interval_s: float = field(default=1.0, metadata=check(positive))
    meter_fault_after_s: float = field(default=5.0, metadata=check(positive))


def _rapi_controller(role: str, options: RapiOptions, ctx: BackendContext) -> Any:
    from hal.rapi.controller import RapiController, RapiSettings

    if options.heartbeat_interval_s >= options.heartbeat_timeout_s:
        raise BackendError(
            f"{role} backend 'openevse-rapi': heartbeat_interval_s must be below "
            "heartbeat_timeout_s, or the controller falls back between pulses"
        )
    settings = RapiSettings(
        port=options.port,
        baudrate=options.baudrate,
        timeout_s=options.timeout_s,
        heartbeat_interval_s=options.heartbeat_interval_s,
        heartbeat_timeout_s=options.heartbeat_timeout_s,
        safe_current_a=options.safe_current_a,
        fault_after_s=options.fault_after_s,
    )
    if ctx.rapi_links is None:
        return RapiController(settings)
    try:
        return ctx.rapi_links.controller(settings)
    except ValueError as exc:
        raise BackendError(f"{role} backend 'openevse-rapi': {exc}") from exc


def _build_rapi_pilot(options: RapiOptions, ctx: BackendContext) -> object:
    from hal.rapi.roles import RapiControlPilot

    return RapiControlPilot(_rapi_controller("pilot", options, ctx))


def _build_rapi_contactor(options: RapiOptions, ctx: BackendContext) -> object:
    from hal.rapi.roles import RapiContactor

    return RapiContactor(_rapi_controller("contactor", options, ctx))


def _build_rapi_meter(options: RapiMeterOptions, ctx: BackendContext) -> object:
    from hal.rapi.roles import RapiPowerMeter

    return RapiPowerMeter(
        _rapi_controller("meter", options, ctx),
        phases=options.phases,
        poll_interval_s=options.poll_interval_s,
        fault_after_s=options.meter_fault_after_s,
    )


def builtin_backends() -> list[BackendSpec]:
    """The backends shipped with the agent ("sim" ones are built by SimEvseRig)."""
    return [
        BackendSpec("meter", "modbus-tcp", _build_modbus_tcp_meter, ModbusTcpMeterOptions),
        BackendSpec("meter", "modbus-rtu", _build_modbus_rtu_meter, ModbusRtuMeterOptions),
        BackendSpec("contactor", "gpio", _build_gpio_contactor, GpioContactorOptions),
        BackendSpec("pilot", "gpio", _build_gpio_pilot, GpioControlPilotOptions),
        BackendSpec("lock", "gpio", _build_gpio_lock, GpioConnectorLockOptions),
        BackendSpec("indicator", "gpio", _build_gpio_indicator, GpioStatusIndicatorOptions),
        BackendSpec("pilot", "chademo-can", _build_chademo_can_pilot, ChademoCanPilotOptions),
        BackendSpec("pilot", "openevse-rapi", _build_rapi_pilot, RapiOptions),
        BackendSpec("contactor", "openevse-rapi", _build_rapi_contactor, RapiOptions),
        BackendSpec("meter", "openevse-rapi", _build_rapi_meter, RapiMeterOptions),
    ]


def default_registry() -> Registry:
    """A new registry holding the built-in backends (entry points not loaded yet)."""
    registry = Registry()
    for spec in builtin_backends():
        registry.register(spec)
    return registry
