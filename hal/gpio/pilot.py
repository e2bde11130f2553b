"""GpioControlPilot: CP output from a PWM pin, CP/PP sensing through an MCP3008/MCP3208."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from gpiozero import MCP3008, MCP3208, PWMOutputDevice

from hal._threading import call_in_loop
from hal.faults import FaultLatch
from hal.gpio.cp_levels import (
    DIODE_FAULT_ABOVE_V,
    cable_rating_a,
    classify_cp,
    pp_resistance_ohm,
)
from hal.pilot import PilotMode, PilotOutput
from hal.types import CpState, FaultCode, FaultReport

log = logging.getLogger(__name__)

ADC_MODELS: dict[str, Any] = {"mcp3008": MCP3008, "mcp3208": MCP3208}
DIODE_FAULT = "DiodeFault"
DIODE_CHECK_INTERVAL_S = 0.02
"""Period of the negative-plateau read: the diode check need not run at the CP state
rate (it gates closing, and its debounce adds one period); the CP state read does."""
ADC_FAILURE = "CP ADC read failed"


class GpioControlPilot:
    """A directly driven CP line (implements ``hal.pilot.ControlPilot``).

    Output: one PWM pin (``gpiozero.PWMOutputDevice`` at ``pwm_frequency_hz``,
    1 kHz for IEC 61851-1) feeds a +-12 V driver: pin value 1.0 (duty 100 %) is
    steady +12 V (X1), 0.0 is -12 V (state F), anything between is the 1 kHz
    PWM whose duty encodes the current limit. The pin starts at F, so CP says
    "EVSE not available" until the agent commands otherwise, and the driver
    falls back to F when the process dies (the pin floats low: the board's
    pull-down must hold the driver at -12 V).

    Duty resolution depends on the pin factory: ``lgpio`` takes whole percent
    (software-timed PWM: fine for bring-up, not for certification), ``pigpio``
    on a hardware PWM pin (GPIO12/13/18/19) is finer (1/1000 of the range or
    better) and jitter-free, ``MockFactory`` with a ``MockPWMPin`` stores the
    float as given. The exact 1 kHz waveform with us edges is the driver
    hardware's job (REFERENCE 6.4); Python only sets the duty.

    Sensing: an MCP3008 (10 bit) or MCP3208 (12 bit) on SPI. A Python SPI read
    cannot hit the PWM plateaus of a 1 kHz signal, so the analog front end
    presents them as DC: ``cp_high_channel`` carries the positive plateau
    (peak detector / sample-and-hold on the rising edge), ``cp_low_channel``
    the negative one (for the diode check; None: no diode check). ADC volts
    map to CP volts as ``cp_v = adc_v * cp_gain + cp_offset_v``. The high
    plateau maps to A-F at the mid-points between the nominal levels
    (REFERENCE 1.1) with ``hysteresis_v``; a new state is reported after
    ``debounce_samples`` equal readings in a row, i.e. within
    ``poll_interval_s * debounce_samples`` plus one read (5 ms * 2 by default,
    far below the 50 ms detection budget of REFERENCE 1.4).

    The MCP3x08 has no data-ready interrupt, so a thread polls it every
    ``poll_interval_s`` (SPI reads block; the loop never does) and hands
    changes to the loop through ``hal._threading.call_in_loop``: ``on_state``
    and ``on_fault`` run in the loop thread.

    Diode check (REFERENCE 1.4): while PWM runs and CP is not shorted (E), the
    negative plateau must stay below -10 V. Otherwise the backend drives F at
    once, reports ``FaultCode.DIODE_FAULT``
    and, after ``diode_fault_hold_s``, re-applies the commanded output to check
    again (F again while the fault persists). The fault clears when a check
    under PWM passes or the EV is unplugged (state A).

    PP (optional ``pp_channel``): the PP-PE resistor against a pull-up of
    ``pp_pullup_ohm`` to the ADC reference is read every ``pp_interval_s`` and
    coded into ``cable_max_current_a`` (REFERENCE 1.3); None without a valid
    cable. With an EV connected (CP B, C or D) and no valid cable (open PP, a
    resistor outside the coded ranges, a cable pulled from the socket mid-session)
    ``FaultCode.CABLE_FAULT`` is raised ("no charging", REFERENCE 1.3); a valid
    reading or the unplug (A) clears it. Without ``pp_channel`` (a tethered cable)
    nothing is checked.

    ADC read errors raise ``FaultCode.INTERNAL_ERROR`` (cleared by the next
    good read); the sensed state is then kept, the controller opens the
    contactor on the fault.

    Args:
        pwm_pin: The PWM output pin.
        pin_factory: gpiozero pin factory for every pin including the SPI ones.
        adc_model: "mcp3008" or "mcp3208".
        cp_high_channel: ADC channel of the positive CP plateau.
        cp_low_channel: ADC channel of the negative plateau, or None.
        pp_channel: ADC channel of PP, or None without PP.
        spi_clock_pin, spi_mosi_pin, spi_miso_pin, spi_select_pin: SPI pins
            (default SPI0 with CE0; on a Pi those use the kernel driver).
        adc_vref_v: The ADC reference, V.
        cp_gain: CP volts per ADC volt of the divider.
        cp_offset_v: CP volts at 0 V ADC input.
        hysteresis_v: State threshold hysteresis, CP volts.
        debounce_samples: Equal readings needed to report a change.
        poll_interval_s: Sampling period, s.
        pp_pullup_ohm: PP pull-up resistor, ohm.
        pp_interval_s: PP sampling period, s.
        pwm_frequency_hz: PWM frequency, Hz (IEC 61851-1: 1000).
        diode_fault_hold_s: How long F is held after a diode fault before
            checking again, s.

    Raises:
        ValueError: An option out of range.
        gpiozero.GPIOZeroError: A pin is invalid or in use.
    """

    def __init__(
        self,
        *,
        pwm_pin: int | str,
        pin_factory: Any,
        adc_model: str = "mcp3008",
        cp_high_channel: int = 0,
        cp_low_channel: int | None = 1,
        pp_channel: int | None = None,
        spi_clock_pin: int | str = 11,
        spi_mosi_pin: int | str = 10,
        spi_miso_pin: int | str = 9,
        spi_select_pin: int | str = 8,
        adc_vref_v: float = 3.3,
        cp_gain: float = 10.0,
        cp_offset_v: float = -15.0,
        hysteresis_v: float = 0.5,
        debounce_samples: int = 2,
        poll_interval_s: float = 0.005,
        pp_pullup_ohm: float = 1000.0,
        pp_interval_s: float = 0.1,
        pwm_frequency_hz: float = 1000.0,
        diode_fault_hold_s: float = 2.0,
    ) -> None:
        if adc_model not in ADC_MODELS:
            raise ValueError(f"adc_model must be one of {', '.join(ADC_MODELS)}")
        if debounce_samples < 1 or poll_interval_s <= 0 or pp_interval_s <= 0:
            raise ValueError("debounce_samples >= 1, poll_interval_s and pp_interval_s > 0")
        if hysteresis_v < 0 or diode_fault_hold_s < 0 or adc_vref_v <= 0:
            raise ValueError("hysteresis_v, diode_fault_hold_s >= 0 and adc_vref_v > 0")
        self._gain = cp_gain
        self._offset_v = cp_offset_v
        self._vref_v = adc_vref_v
        self._hysteresis_v = hysteresis_v
        self._debounce = debounce_samples
        self._poll_s = poll_interval_s
        self._pp_pullup_ohm = pp_pullup_ohm
        self._pp_interval_s = pp_interval_s
        self._hold_s = diode_fault_hold_s
        self._devices: list[Any] = []
        try:
            self._pwm = PWMOutputDevice(
                pwm_pin, frequency=pwm_frequency_hz, initial_value=0.0, pin_factory=pin_factory
            )
            self._devices.append(self._pwm)
            adc_class = ADC_MODELS[adc_model]

            def adc(channel: int) -> Any:
                device = adc_class(
                    channel=channel,
                    clock_pin=spi_clock_pin,
                    mosi_pin=spi_mosi_pin,
                    miso_pin=spi_miso_pin,
                    select_pin=spi_select_pin,
                    max_voltage=adc_vref_v,
                    pin_factory=pin_factory,
                )
                self._devices.append(device)
                return device

            self._high_adc = adc(cp_high_channel)
            self._low_adc = adc(cp_low_channel) if cp_low_channel is not None else None
            self._pp_adc = adc(pp_channel) if pp_channel is not None else None
        except Exception:
            self._close_devices()
            raise
        self._output = PilotOutput.error()  # commanded
        self._applied = PilotOutput.error()  # on the pin (F while a diode fault holds)
        self._forced_f = False
        self._reported: CpState | None = None
        self._cable_a: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_state: Callable[[CpState], None] | None = None
        self._diode: FaultLatch | None = None
        self._cable_fault: FaultLatch | None = None
        self._adc_fault: FaultLatch | None = None
        self._hold_timer: asyncio.TimerHandle | None = None
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- ControlPilot -----------------------------------------------------------------

    @property
    def state(self) -> CpState:
        """The last state delivered to ``on_state`` (F before start)."""
        return self._reported if self._reported is not None else CpState.F

    @property
    def output(self) -> PilotOutput:
        """The output last commanded (the pin may hold F during a diode fault)."""
        return self._output

    @property
    def applied_output(self) -> PilotOutput:
        """What the PWM pin drives now."""
        return self._applied

    @property
    def cable_max_current_a(self) -> float | None:
        """Cable rating coded by PP, A; None without PP, without a cable or invalid."""
        return self._cable_a

    @property
    def diode_fault_active(self) -> bool:
        """True while the diode fault is raised."""
        return self._diode is not None and self._diode.active

    def set_output(self, output: PilotOutput) -> None:
        """Apply a CP output at once (loop thread). Kept as F while a diode fault holds.

        Raises:
            ValueError: A PWM duty outside 0..100 %.
        """
        if not 0.0 <= output.duty_pct <= 100.0:
            raise ValueError(f"duty_pct must be 0..100, got {output.duty_pct}")
        self._output = output
        if not self._forced_f:
            self._apply(output)

    async def start(
        self,
        on_state: Callable[[CpState], None],
        on_fault: Callable[[FaultReport], None],
    ) -> None:
        """Read CP once, report it, then poll in a thread until ``stop``.

        Raises:
            RuntimeError: Started twice or after ``stop``.
        """
        if self._loop is not None or self._closed:
            raise RuntimeError("GpioControlPilot already started")
        self._loop = asyncio.get_running_loop()
        self._diode = FaultLatch(FaultCode.DIODE_FAULT, on_fault)
        self._cable_fault = FaultLatch(FaultCode.CABLE_FAULT, on_fault)
        self._adc_fault = FaultLatch(FaultCode.INTERNAL_ERROR, on_fault)
        first = await asyncio.to_thread(self._read_high_state, None)
        self._on_state = on_state
        self._reported = first
        on_state(first)
        self._thread = threading.Thread(
            target=self._poll, args=(first,), name="cp-adc", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        """Drive F, stop polling, release the pins. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._on_state = None
        self._output = PilotOutput.error()
        self._apply(self._output)
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        self._stop_event.set()
        thread = self._thread
        if thread is not None:
            await asyncio.to_thread(thread.join)
        self._close_devices()

    # --- output -----------------------------------------------------------------------

    def _apply(self, output: PilotOutput) -> None:
        if output.mode is PilotMode.STEADY:
            value = 1.0
        elif output.mode is PilotMode.ERROR:
            value = 0.0
        else:
            value = output.duty_pct / 100.0
        self._pwm.value = value
        self._applied = output

    # --- sampling thread --------------------------------------------------------------

    def _cp_v(self, device: Any) -> float:
        return float(device.value) * self._vref_v * self._gain + self._offset_v

    def _read_high_state(self, previous: CpState | None) -> CpState:
        return classify_cp(self._cp_v(self._high_adc), previous, self._hysteresis_v)

    def _poll(self, reported: CpState) -> None:
        """Sampling thread: debounce states and diode checks, hop edges into the loop."""
        loop = self._loop
        assert loop is not None
        candidate, count = reported, 0
        diode_bad, diode_count = False, 0
        cable_bad = False
        read_ok = True
        next_pp_s = 0.0
        next_diode_s = 0.0
        # fixed rate: the period includes the SPI reads (a late sample is not made up)
        next_s = time.monotonic() + self._poll_s
        while not self._stop_event.wait(max(0.0, next_s - time.monotonic())):
            elapsed_s = time.monotonic()
            next_s += self._poll_s
            if next_s < elapsed_s:  # overrun (a slow read, a busy CPU): start afresh
                next_s = elapsed_s + self._poll_s
            try:
                state = self._read_high_state(reported)
                diode: tuple[bool | None, float] | None = None  # None: not sampled now
                if elapsed_s >= next_diode_s or state is CpState.A:
                    next_diode_s = elapsed_s + DIODE_CHECK_INTERVAL_S
                    diode = self._diode_bad(state)
                # CP state: report after `debounce` equal readings that differ from the last
                if state == reported:
                    candidate, count = state, 0
                elif state == candidate:
                    count += 1
                else:
                    candidate, count = state, 1
                report = count >= self._debounce
                # PP: periodically, and right before a new CP state (e.g. the plug-in)
                # is reported, so the cable rating is known when the core hears of it
                if self._pp_adc is not None and (report or elapsed_s >= next_pp_s):
                    next_pp_s = elapsed_s + self._pp_interval_s
                    self._cable_a = self._read_cable_a(self._pp_adc)
            except Exception as exc:  # an SPI error must not kill supervision
                if read_ok:
                    read_ok = False
                    call_in_loop(loop, self._adc_failed, f"{ADC_FAILURE}: {exc}")
                continue
            if not read_ok:
                read_ok = True
                call_in_loop(loop, self._adc_recovered)
            if report:
                reported, count = state, 0
                call_in_loop(loop, self._deliver, state)
            if self._pp_adc is not None:
                ev_connected = reported in (CpState.B, CpState.C, CpState.D)
                bad = ev_connected and self._cable_a is None
                if bad != cable_bad:
                    cable_bad = bad
                    call_in_loop(loop, self._cable_changed, bad)
            # diode: the same debounce, edges only; bad_now None = cannot tell now
            if diode is None:
                continue
            bad_now, low_v = diode
            if bad_now is None or (bad_now == diode_bad and not (bad_now and self._pin_is_pwm())):
                diode_count = 0
                continue
            diode_count += 1
            if diode_count >= self._debounce:
                # an edge, or still bad once the hold ended and PWM is back: force F again
                diode_bad, diode_count = bad_now, 0
                call_in_loop(loop, self._diode_changed, diode_bad, low_v)

    def _read_cable_a(self, pp_adc: Any) -> float | None:
        adc_v = float(pp_adc.value) * self._vref_v
        return cable_rating_a(pp_resistance_ohm(adc_v, self._vref_v, self._pp_pullup_ohm))

    def _pin_is_pwm(self) -> bool:
        return not self._forced_f and self._applied.mode is PilotMode.PWM

    def _diode_bad(self, state: CpState) -> tuple[bool | None, float]:
        """(bad, negative plateau V): bad is None when the diode cannot be judged now."""
        nan = float("nan")
        if state is CpState.A:
            return False, nan  # no EV, no EV diode: a fault ends with the unplug
        if self._low_adc is None or not self._pin_is_pwm() or state is CpState.E:
            return None, nan  # E: CP shorted to PE, not a diode problem
        low_v = self._cp_v(self._low_adc)
        return low_v > DIODE_FAULT_ABOVE_V, low_v

    # --- in the loop --------------------------------------------------------------------

    def _deliver(self, state: CpState) -> None:
        on_state = self._on_state
        if on_state is None or state == self._reported:
            return
        self._reported = state
        on_state(state)

    def _diode_changed(self, bad: bool, low_v: float) -> None:
        if self._closed or self._diode is None or self._loop is None:
            return
        if not bad:
            self._diode.clear("EV diode present")
            return
        self._forced_f = True
        self._apply(PilotOutput.error())  # safe output first
        self._diode.raise_(f"{DIODE_FAULT}: CP low level {low_v:.1f} V")
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        self._hold_timer = self._loop.call_later(self._hold_s, self._end_hold)

    def _cable_changed(self, bad: bool) -> None:
        if self._closed or self._cable_fault is None:
            return
        if bad:
            self._cable_fault.raise_("PP: no valid cable in the socket")
        else:
            self._cable_fault.clear("PP: valid cable or unplugged")

    def _end_hold(self) -> None:
        self._hold_timer = None
        if self._closed:
            return
        self._forced_f = False
        self._apply(self._output)  # check again under the commanded output

    def _adc_failed(self, detail: str) -> None:
        if self._adc_fault is not None and not self._closed:
            self._adc_fault.raise_(detail)

    def _adc_recovered(self) -> None:
        if self._adc_fault is not None and not self._closed:
            self._adc_fault.clear("CP ADC reads again")

    def _close_devices(self) -> None:
        for device in reversed(self._devices):
            device.close()
        self._devices.clear()
