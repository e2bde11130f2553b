"""The analog side of a GPIO control pilot, simulated behind gpiozero mock pins.

A real board (``hal.gpio.pilot.GpioControlPilot``) drives CP from a PWM pin
through a +-12 V driver and reads it back through a divider into an MCP3008 or
MCP3208 on SPI: one channel holds the positive plateau (peak detector), one the
negative plateau (for the diode check), an optional one the PP resistor. Here:

    GpioControlPilot --PWM pin (SimCpPwmPin)--> SimCpBoard --> SimEv (via a SimControlPilot line)
    GpioControlPilot <--SPI (MCP3x08 protocol)-- SimMcp3x08 <-- SimCpBoard (CP/PP volts)

so tests and the bench drive the real driver code from the simulated EV.

``SimBoardFactory`` is a ``MockFactory`` whose pre-wired pins (the PWM pin, the
SPI pins, a coil wired to its mirror contact, a lock actuator) are handed to any
device that asks for them, whatever pin class the device would have created:
gpiozero's ``MockFactory`` refuses to give a ``MockPWMPin`` to a device that
asked for a plain pin and vice versa, but a board is wired once and every
driver uses it. ``SimGpioBoard`` is a whole EVSE board built on it (the GPIO
system test and ``hil.bench``'s ``safety_open_ms_*_gpio``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, ClassVar

from gpiozero import Device, OutputDevice
from gpiozero.devices import SharedMixin
from gpiozero.pins import SPI
from gpiozero.pins.mock import (
    MockConnectedPin,
    MockFactory,
    MockPin,
    MockPWMPin,
    MockSPIDevice,
    MockSPIInterface,
)
from gpiozero.pins.spi import SPISoftwareBus

from hal.pilot import PilotMode, PilotOutput
from hal.sim.pilot import SimControlPilot
from hal.sim.plant import SimEv
from hal.types import CpState

CP_LEVEL_V: dict[CpState, float] = {
    CpState.A: 12.0,
    CpState.B: 9.0,
    CpState.C: 6.0,
    CpState.D: 3.0,
    CpState.E: 0.0,
    CpState.F: -12.0,
}
"""Nominal positive CP level seen at the EVSE per state, V (REFERENCE 1.1)."""

PP_NOMINAL_OHM: dict[float, float] = {13.0: 1500.0, 20.0: 680.0, 32.0: 220.0, 63.0: 100.0}
"""Nominal PP-PE resistor of a cable per rating, ohm (REFERENCE 1.3)."""


class _FactoryDefault(Device):  # type: ignore[misc]
    """Sits between ``SPISoftwareBus`` and ``Device`` in the MRO: gpiozero 2.0.1's bus
    calls ``Device.__init__()`` without its pin factory, which would create (and
    need) gpiozero's global default factory."""

    _bound_factory: Any = None

    def __init__(self, *, pin_factory: Any = None) -> None:
        super().__init__(pin_factory=pin_factory or self._bound_factory)


class _SimSpiBus(SPISoftwareBus, _FactoryDefault):  # type: ignore[misc]
    """A software SPI bus bound to its own factory (and shared only within it)."""

    def __init__(self, clock_pin: Any, mosi_pin: Any, miso_pin: Any, *, pin_factory: Any):
        self._bound_factory = pin_factory
        SPISoftwareBus.__init__(self, clock_pin, mosi_pin, miso_pin, pin_factory=pin_factory)

    @classmethod
    def _shared_key(
        cls, clock_pin: Any, mosi_pin: Any, miso_pin: Any, *, pin_factory: Any = None
    ) -> tuple[Any, ...]:
        return (id(pin_factory), clock_pin, mosi_pin, miso_pin)


class _SimSpi(MockSPIInterface):  # type: ignore[misc]
    """``MockSPIInterface`` on a ``_SimSpiBus`` (the same set-up as ``SPISoftware``)."""

    def __init__(
        self, clock_pin: Any, mosi_pin: Any, miso_pin: Any, select_pin: Any, *, pin_factory: Any
    ) -> None:
        self._bus: Any = None
        self._select: Any = None
        SPI.__init__(self, pin_factory=pin_factory)
        try:
            self._clock_phase = False
            self._lsb_first = False
            self._bits_per_word = 8
            self._bus = _SimSpiBus(clock_pin, mosi_pin, miso_pin, pin_factory=pin_factory)
            self._select = OutputDevice(select_pin, active_high=False, pin_factory=pin_factory)
        except Exception:
            self.close()
            raise
        self._bit_banged = bool(getattr(pin_factory, "bit_banged_spi", True))

    def transfer(self, data: list[int]) -> list[int]:
        """Bit-banged on the mock pins, or (``bit_banged_spi=False``) the same bits
        handed straight to the mock device: the device's protocol code runs either way,
        the word-level path just skips ~100 pin toggles per read, like spidev on a Pi."""
        device = getattr(self._select.pin, "spi_device", None)
        if self._bit_banged or device is None:
            return list(super().transfer(data))
        with self._bus.lock:
            device.on_start()  # select asserted
            result = []
            for word in data:
                read_word = 0
                for shift in reversed(range(self._bits_per_word)):  # MSB first, mode 0
                    device.rx_bit += 1
                    device.rx_buf.append((word >> shift) & 1)
                    bit = device.tx_buf.pop(0) if device.tx_buf else 0
                    read_word = read_word << 1 | bit
                    device.on_bit()
                result.append(read_word)
            return result


class _SimSpiShared(SharedMixin, _SimSpi):  # type: ignore[misc]
    """The shared flavour (``MCP3xxx`` asks for it): shared per factory, clock and select."""

    @classmethod
    def _shared_key(
        cls, clock_pin: Any, mosi_pin: Any, miso_pin: Any, select_pin: Any, *, pin_factory: Any
    ) -> tuple[Any, ...]:
        return (id(pin_factory), clock_pin, select_pin)


class SimBoardFactory(MockFactory):  # type: ignore[misc]
    """A ``MockFactory`` that hands pre-wired pins to any device asking for them.

    Pins not created beforehand are created as ``MockFactory`` would. Its software
    SPI never touches gpiozero's global default factory (so no
    ``GPIOZERO_PIN_FACTORY`` is needed) and is not shared with other factories.

    Args:
        bit_banged_spi: True: SPI reads toggle the mock clock/MOSI/MISO pins bit by
            bit through gpiozero's software SPI (~0.4 ms a read here); False: the
            same bits go straight to the mock device (~20 us, as fast as a Pi's
            hardware SPI, so latency benchmarks are not dominated by the mock).
    """

    def __init__(self, *, bit_banged_spi: bool = False) -> None:
        super().__init__()
        self.bit_banged_spi = bit_banged_spi

    def _get_spi_class(self, shared: bool, hardware: bool) -> Any:
        del hardware  # every mock SPI is bit-banged
        return _SimSpiShared if shared else _SimSpi

    def pin(self, name: Any, pin_class: Any = None, **kwargs: Any) -> Any:
        for _header, info in self.board_info.find_pin(name):
            existing = self.pins.get(info)
            if existing is not None:
                return existing
            break
        return super().pin(name, pin_class, **kwargs)

    def wire(self, output_pin: int | str, input_pin: int | str) -> None:
        """Wire ``output_pin`` to ``input_pin`` (e.g. a coil to its mirror contact)."""
        target = super().pin(input_pin)
        super().pin(output_pin, pin_class=MockConnectedPin, input_pin=target)

    def wire_lock(
        self, lock_pin: int | str, unlock_pin: int | str, switch_pin: int | str
    ) -> SimLockActuator:
        """A lock actuator whose motor pins move its position switch (high = locked)."""
        return SimLockActuator(self, lock_pin, unlock_pin, switch_pin)


class SimLockActuator:
    """A connector lock actuator on mock pins: a pulse on the lock (unlock) motor
    pin moves the position switch to locked (unlocked) unless ``jammed``.

    Create it with ``SimBoardFactory.wire_lock``; the switch input is active-high.
    """

    def __init__(self, factory: MockFactory, lock_pin: Any, unlock_pin: Any, switch_pin: Any):
        self.jammed = False
        self.switch: Any = MockFactory.pin(factory, switch_pin)
        for pin, locked in ((lock_pin, True), (unlock_pin, False)):
            motor = MockFactory.pin(factory, pin, pin_class=_SimMotorPin)
            motor.on_drive = self._driver(locked)

    def _driver(self, locked: bool) -> Callable[[], None]:
        def drive() -> None:
            if self.jammed or self.switch.function != "input":
                return
            if locked:
                self.switch.drive_high()
            else:
                self.switch.drive_low()

        return drive


class _SimMotorPin(MockPin):  # type: ignore[misc]
    """An output pin that runs ``on_drive`` each time it goes high."""

    on_drive: Callable[[], None] | None = None

    def _change_state(self, value: Any) -> bool:
        changed = bool(super()._change_state(value))
        if changed and value and self.on_drive is not None:
            self.on_drive()
        return changed


class SimCpPwmPin(MockPWMPin):  # type: ignore[misc]
    """A PWM pin that tells an observer its value (0..1) on every change."""

    def __init__(self, factory: Any, info: Any) -> None:
        super().__init__(factory, info)
        self.observer: Callable[[float], None] | None = None

    def _change_state(self, value: Any) -> bool:
        changed = bool(super()._change_state(value))
        observer = self.observer
        if observer is not None:
            observer(float(value))
        return changed


def output_of_pwm_value(value: float) -> PilotOutput:
    """What the +-12 V driver makes of a PWM pin value: 1.0 = steady +12 V, 0.0 = -12 V (F)."""
    if value >= 1.0:
        return PilotOutput.steady()
    if value <= 0.0:
        return PilotOutput.error()
    return PilotOutput.pwm(value * 100.0)


class SimMcp3x08(MockSPIDevice):  # type: ignore[misc]
    """The SPI slave side of an MCP3008 (10 bit) or MCP3208 (12 bit), single-ended only.

    Args:
        pin_factory: The mock factory the ADC's pins live on.
        channels: channel -> callable returning the input voltage, V (called
            in whatever thread reads the ADC). Unconnected channels read 0 V.
        bits: 10 (MCP3008) or 12 (MCP3208).
        vref_v: Reference voltage, V (the driver's ``max_voltage``).
        clock_pin, mosi_pin, miso_pin, select_pin: SPI pins (default SPI0, CE0).
    """

    def __init__(
        self,
        *,
        pin_factory: Any,
        channels: dict[int, Callable[[], float]],
        bits: int = 10,
        vref_v: float = 3.3,
        clock_pin: int | str = 11,
        mosi_pin: int | str = 10,
        miso_pin: int | str = 9,
        select_pin: int | str = 8,
    ) -> None:
        if bits not in (10, 12):
            raise ValueError("bits must be 10 (MCP3008) or 12 (MCP3208)")
        super().__init__(clock_pin, mosi_pin, miso_pin, select_pin, pin_factory=pin_factory)
        self.bits = bits
        self.vref_v = vref_v
        self.channels = dict(channels)
        self.conversions = 0

    def on_start(self) -> None:
        super().on_start()
        self._command: list[int] | None = None

    def on_bit(self) -> None:
        bits = self.rx_buf
        if self._command is None:
            if 1 not in bits:
                return
            start = bits.index(1)
            if len(bits) - start - 1 < 4:  # single/diff bit + 3 channel bits
                return
            self._command = bits[start + 1 : start + 5]
            channel = self._command[1] << 2 | self._command[2] << 1 | self._command[3]
            self.conversions += 1
            # a sample bit and a null bit, then the result MSB first
            self.tx_word(self._code(channel), self.bits + 2)

    def _code(self, channel: int) -> int:
        source = self.channels.get(channel)
        volts = source() if source is not None else 0.0
        full = (1 << self.bits) - 1
        # gpiozero reads code c as vref * (2c + 1) / (2^(bits+1) - 1): invert that
        code = round((volts / self.vref_v * (2 * full + 1) - 1) / 2)
        return max(0, min(full, code))


class SimCpBoard:
    """The CP/PP analog front end of one EVSE, computed from a ``SimEv``.

    Builds the EV's view of the line (a ``SimControlPilot`` that is never
    started: the EV presents its state on it and reads the output from it), a
    ``SimCpPwmPin`` whose value drives that line, and a ``SimMcp3x08`` whose
    channels carry the CP plateaus and PP as ADC volts.

    The ADC volts are the inverse of the driver's scaling ``cp_v = adc_v *
    cp_gain + cp_offset_v``; PP is a pull-up of ``pp_pullup_ohm`` to
    ``vref_v`` against the cable resistor.

    Args:
        pin_factory: A ``SimBoardFactory``.
        pwm_pin: The PWM pin the driver will use.
        cp_high_channel, cp_low_channel, pp_channel: ADC channels (pp optional).
        cp_gain, cp_offset_v: Divider scaling, as the driver is configured.
        pp_pullup_ohm: PP pull-up resistor, ohm.
        bits, vref_v: The ADC (10 or 12 bit), reference, V.
        spi_pins: (clock, mosi, miso, select).
        ev_kwargs: Passed to ``SimEv`` (max_current_a, phases, ...).
    """

    def __init__(
        self,
        *,
        pin_factory: Any,
        pwm_pin: int | str = 18,
        cp_high_channel: int = 0,
        cp_low_channel: int = 1,
        pp_channel: int | None = 2,
        cp_gain: float = 10.0,
        cp_offset_v: float = -15.0,
        pp_pullup_ohm: float = 1000.0,
        bits: int = 10,
        vref_v: float = 3.3,
        spi_pins: tuple[int, int, int, int] = (11, 10, 9, 8),
        **ev_kwargs: Any,
    ) -> None:
        self._gain = cp_gain
        self._offset_v = cp_offset_v
        self._pullup_ohm = pp_pullup_ohm
        self._vref_v = vref_v
        self.cable_ohm: float | None = PP_NOMINAL_OHM[32.0]
        self._ventilation_required = bool(ev_kwargs.get("ventilation_required", False))
        self.line = SimControlPilot()
        self.line.set_output(PilotOutput.error())  # the driver starts at F
        self.ev = SimEv(pilot=self.line, **ev_kwargs)
        self.pwm_pin: SimCpPwmPin = pin_factory.pin(pwm_pin, pin_class=SimCpPwmPin)
        self.pwm_pin.observer = self._on_pwm
        channels: dict[int, Callable[[], float]] = {
            cp_high_channel: lambda: self._to_adc(self.cp_high_v()),
            cp_low_channel: lambda: self._to_adc(self.cp_low_v()),
        }
        if pp_channel is not None:
            channels[pp_channel] = self.pp_adc_v
        clock, mosi, miso, select = spi_pins
        self.adc = SimMcp3x08(
            pin_factory=pin_factory,
            channels=channels,
            bits=bits,
            vref_v=vref_v,
            clock_pin=clock,
            mosi_pin=mosi,
            miso_pin=miso,
            select_pin=select,
        )

    # --- the analog levels ----------------------------------------------------------

    def _ev_load_state(self) -> CpState:
        """The state the EV's resistors present, ignoring the output and a diode fault."""
        ev = self.ev
        if "cp-error" in ev.faults:
            return CpState.E
        if not ev.plugged:
            return CpState.A
        if ev.requesting:
            return CpState.D if self._ventilation_required else CpState.C
        return CpState.B

    def cp_high_v(self) -> float:
        """The positive plateau of CP, V."""
        output = self.line.output
        if output.mode is PilotMode.ERROR:
            return CP_LEVEL_V[CpState.F]
        return CP_LEVEL_V[self._ev_load_state()]

    def cp_low_v(self) -> float:
        """The negative plateau of CP while PWM runs (the high level otherwise), V."""
        output = self.line.output
        if output.mode is PilotMode.STEADY:
            return self.cp_high_v()
        state = self._ev_load_state()
        if state is CpState.E:
            return 0.0
        if output.mode is PilotMode.PWM and "diode" in self.ev.faults and self.ev.plugged:
            return -CP_LEVEL_V[state]  # no diode: the EV loads the negative half too
        return CP_LEVEL_V[CpState.F]

    def pp_adc_v(self) -> float:
        """The PP divider's output, V (open cable: the pull-up voltage)."""
        if self.cable_ohm is None or not self.ev.plugged:
            return self._vref_v
        return self._vref_v * self.cable_ohm / (self.cable_ohm + self._pullup_ohm)

    def _to_adc(self, cp_v: float) -> float:
        return (cp_v - self._offset_v) / self._gain

    # --- wiring ----------------------------------------------------------------------

    def _on_pwm(self, value: float) -> None:
        output = output_of_pwm_value(value)
        if output != self.line.output:
            self.line.set_output(output)  # the EV reacts at once

    def close(self) -> None:
        """Detach the ADC from its pins."""
        self.pwm_pin.observer = None
        self.adc.close()


class SimGpioBoard:
    """One EVSE's whole GPIO board on mock pins, with the simulated EV behind it.

    For system tests and the bench: the agent's real drivers run against it
    through the ``evse_tables()`` config (pilot, contactor, lock, indicator = "gpio"; the
    meter is "modbus-tcp" against a ``SimModbusMeterServer`` on loopback fed
    from the same EV). Pass ``factory`` to ``App(real_pin_factory=...)``.

        PWM pin 18 -> SimCpBoard -> SimEv; MCP3008 on SPI0 (CP high ch 0, low ch 1, PP ch 2)
        coil 17 --wire--> mirror contact 27; RCD input 22; emergency stop 23
        lock motor 5 / unlock motor 6 -> SimLockActuator -> position switch 13
        status lamps: available 19, occupied 20, charging 21, fault 26

    Args:
        poll_interval_s: The pilot's ADC sampling period in ``evse_tables``, s.
        tick_interval_s: EV clock: energy integration and meter registers, s.
        meter_model: Register map the simulated meter speaks.
        ev_kwargs: Passed to ``SimEv``.
    """

    PWM_PIN = 18
    COIL_PIN = 17
    FEEDBACK_PIN = 27
    RCD_PIN = 22
    ESTOP_PIN = 23
    LOCK_PIN = 5
    UNLOCK_PIN = 6
    LOCK_SWITCH_PIN = 13
    LAMP_PINS: ClassVar[dict[str, int]] = {
        "available": 19,
        "occupied": 20,
        "charging": 21,
        "fault": 26,
    }

    def __init__(
        self,
        *,
        poll_interval_s: float = 0.005,
        tick_interval_s: float = 0.2,
        meter_model: str = "sdm630",
        **ev_kwargs: Any,
    ) -> None:
        from hal.modbus.registers import load_register_map
        from hal.sim.modbus_server import SimModbusMeterServer

        self._poll_interval_s = poll_interval_s
        self._tick_interval_s = tick_interval_s
        self._meter_model = meter_model
        self.factory = SimBoardFactory()
        self.factory.wire(self.COIL_PIN, self.FEEDBACK_PIN)
        self.lock = self.factory.wire_lock(self.LOCK_PIN, self.UNLOCK_PIN, self.LOCK_SWITCH_PIN)
        self.cp = SimCpBoard(pin_factory=self.factory, pwm_pin=self.PWM_PIN, **ev_kwargs)
        self.ev = self.cp.ev
        self.ev.connect_contactor_probe(self.contacts_closed)
        self.meter_server = SimModbusMeterServer(load_register_map(meter_model))
        self._clock: asyncio.Task[None] | None = None

    def coil_is_on(self) -> bool:
        """The contactor coil pin is driven."""
        return bool(self.factory.pin(self.COIL_PIN).state)

    def contacts_closed(self) -> bool:
        """The mirror contact reads closed (power flows to the EV)."""
        return bool(self.factory.pin(self.FEEDBACK_PIN).state)

    def pin(self, number: int) -> Any:
        """The mock pin ``number`` (drive the RCD / emergency stop inputs with it)."""
        return self.factory.pin(number)

    def evse_tables(self) -> dict[str, Any]:
        """The [[evse]] role tables of this board (call after ``start``)."""
        return {
            "meter": {
                "backend": "modbus-tcp",
                "host": "127.0.0.1",
                "port": self.meter_server.port,
                "model": self._meter_model,
                "poll_interval_s": 0.2,
                "timeout_s": 0.5,
            },
            "contactor": {
                "backend": "gpio",
                "coil_pin": self.COIL_PIN,
                "feedback_pin": self.FEEDBACK_PIN,
                "feedback_settle_s": 0.05,
                "rcd_pin": self.RCD_PIN,
                "estop_pin": self.ESTOP_PIN,
            },
            "pilot": {
                "backend": "gpio",
                "pwm_pin": self.PWM_PIN,
                "pp_channel": 2,
                "poll_interval_s": self._poll_interval_s,
            },
            "lock": {
                "backend": "gpio",
                "lock_pin": self.LOCK_PIN,
                "unlock_pin": self.UNLOCK_PIN,
                "feedback_pin": self.LOCK_SWITCH_PIN,
                "pulse_s": 0.02,
                "timeout_s": 0.2,
            },
            "indicator": {
                "backend": "gpio",
                **{f"{lamp}_pin": pin for lamp, pin in self.LAMP_PINS.items()},
            },
        }

    def lamps_lit(self) -> set[str]:
        """Names of the status lamps whose pins are driven high."""
        return {lamp for lamp, pin in self.LAMP_PINS.items() if self.factory.pin(pin).state}

    async def start(self) -> None:
        """Open the meter server (loopback, ephemeral port) and start the EV clock."""
        self.meter_server.update(self.ev.meter_values())
        await self.meter_server.start()
        self._clock = asyncio.get_running_loop().create_task(self._run_clock())

    async def stop(self) -> None:
        """Stop the EV clock and the meter server; detach the ADC. Idempotent."""
        clock, self._clock = self._clock, None
        if clock is not None:
            clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await clock
        await self.meter_server.stop()
        self.cp.close()

    async def _run_clock(self) -> None:
        last_s = time.monotonic()
        while True:
            await asyncio.sleep(self._tick_interval_s)  # the EV's clock, not a wait for a race
            now_s = time.monotonic()
            self.ev.tick(now_s - last_s)
            last_s = now_s
            self.meter_server.update(self.ev.meter_values())
