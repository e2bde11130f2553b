"""The GPIO backends a config can name ("gpio"): contactor, pilot, lock, status lamps.

Their option classes (the config keys, with checks) and factories. ``hal.registry``
imports this module when a config names one of them; gpiozero itself is imported
when a device is built.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hal.options import check, non_negative, positive
from hal.registry import BackendContext, BackendError, BackendSpec


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


def _build_gpio_contactor(options: GpioContactorOptions, ctx: BackendContext) -> object:
    pin_factory = _need_pins("contactor", ctx)
    from hal.gpio.contactor import GpioContactor

    return GpioContactor(
        coil_pin=options.coil_pin,
        feedback_pin=options.feedback_pin,
        pin_factory=pin_factory,
        coil_active_high=options.coil_active_high,
        feedback_active_high=options.feedback_active_high,
        feedback_settle_s=options.feedback_settle_s,
        rcd_pin=options.rcd_pin,
        rcd_active_high=options.rcd_active_high,
        estop_pin=options.estop_pin,
        estop_active_high=options.estop_active_high,
    )


def _build_gpio_pilot(options: GpioControlPilotOptions, ctx: BackendContext) -> object:
    pin_factory = _need_pins("pilot", ctx)
    from hal.gpio.pilot import GpioControlPilot

    return GpioControlPilot(pin_factory=pin_factory, **asdict(options))


def _build_gpio_lock(options: GpioConnectorLockOptions, ctx: BackendContext) -> object:
    pin_factory = _need_pins("lock", ctx)
    from hal.gpio.lock import GpioConnectorLock

    return GpioConnectorLock(pin_factory=pin_factory, **asdict(options))


def _build_gpio_indicator(options: GpioStatusIndicatorOptions, ctx: BackendContext) -> object:
    pin_factory = _need_pins("indicator", ctx)
    from hal.gpio.indicator import GpioStatusIndicator

    return GpioStatusIndicator(pin_factory=pin_factory, **asdict(options))


GPIO_CONTACTOR = BackendSpec("contactor", "gpio", _build_gpio_contactor, GpioContactorOptions)
GPIO_PILOT = BackendSpec("pilot", "gpio", _build_gpio_pilot, GpioControlPilotOptions)
GPIO_LOCK = BackendSpec("lock", "gpio", _build_gpio_lock, GpioConnectorLockOptions)
GPIO_INDICATOR = BackendSpec("indicator", "gpio", _build_gpio_indicator, GpioStatusIndicatorOptions)
