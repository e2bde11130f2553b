"""GpioContactor: a contactor coil on a GPIO output, with an optional mirror contact input."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from gpiozero import DigitalInputDevice, DigitalOutputDevice

from hal._threading import call_in_loop
from hal.faults import FaultLatch
from hal.types import FaultCode, FaultReport

WELDED = "welded"
STUCK_OPEN = "stuck open"


class GpioContactor:
    """A contactor driven through gpiozero (implements ``hal.contactor.Contactor``).

    The coil is a ``DigitalOutputDevice``; the mirror contact, if wired, a
    ``DigitalInputDevice`` that is active while the main contacts are closed.

    Feedback supervision (only with ``feedback_pin``): ``feedback_settle_s`` after
    every ``switch`` and after every feedback edge (also one nobody commanded,
    e.g. contacts opening while on), the mirror contact is compared with the last
    *requested* state:

        * requested off, contacts closed: ``POWER_SWITCH_FAILURE`` "welded";
        * requested on, contacts open: ``POWER_SWITCH_FAILURE`` "stuck open", and
          the coil is forced off (``is_on`` turns False);
        * agreement again (e.g. the controller switches off after a stuck-open
          fault, or welded contacts open): the fault is cleared.

    Safety inputs (optional): an RCD trip contact (``rcd_pin``) and an
    emergency-stop button (``estop_pin``). An active input switches the coil off
    at once, in the gpiozero callback itself (no loop hop before the coil is
    off), keeps it off (``switch(True)`` is ignored while any input is active)
    and reports ``FaultCode.GROUND_FAILURE`` / ``FaultCode.EMERGENCY_STOP``;
    releasing the input clears that fault (the coil stays off until the next
    ``switch(True)``). An input already active at ``start`` is reported then.

    Faults are reported through ``on_fault`` in the loop thread. gpiozero calls
    back from its own thread on real pins (synchronously on mock pins); both hop
    into the loop through ``hal._threading.call_in_loop``.

    Args:
        coil_pin: gpiozero pin name/number of the coil driver.
        feedback_pin: Pin of the mirror contact, or None without feedback.
        pin_factory: The gpiozero pin factory (never the global default).
        coil_active_high: True when a high output energises the coil.
        feedback_active_high: True when a high input means "contacts closed"
            (the input gets a pull-down; active-low inputs get a pull-up).
        feedback_settle_s: Time the contacts need to follow the coil, s.
        rcd_pin: Input of the RCD trip contact, or None.
        rcd_active_high: True when a high input means "RCD tripped".
        estop_pin: Input of the emergency-stop button, or None.
        estop_active_high: True when a high input means "emergency stop pressed".
            Inputs get a pull-down when active-high, a pull-up when active-low.

    Raises:
        gpiozero.GPIOZeroError: A pin is invalid or already in use.
    """

    def __init__(
        self,
        *,
        coil_pin: int | str,
        feedback_pin: int | str | None,
        pin_factory: Any,
        coil_active_high: bool = True,
        feedback_active_high: bool = True,
        feedback_settle_s: float = 0.1,
        rcd_pin: int | str | None = None,
        rcd_active_high: bool = True,
        estop_pin: int | str | None = None,
        estop_active_high: bool = True,
    ) -> None:
        if feedback_settle_s < 0:
            raise ValueError("feedback_settle_s must be >= 0")
        self._settle_s = feedback_settle_s
        self._coil = DigitalOutputDevice(
            coil_pin,
            active_high=coil_active_high,
            initial_value=False,
            pin_factory=pin_factory,
        )
        self._feedback: Any = None
        # safety inputs by fault code; the lock makes "check inputs, drive coil" atomic
        # against the gpiozero thread switching the coil off
        self._safety: dict[FaultCode, Any] = {}
        self._safety_latches: dict[FaultCode, FaultLatch] = {}
        self._coil_lock = threading.Lock()
        inputs = (
            (FaultCode.GROUND_FAILURE, rcd_pin, rcd_active_high),
            (FaultCode.EMERGENCY_STOP, estop_pin, estop_active_high),
        )
        try:
            if feedback_pin is not None:
                self._feedback = DigitalInputDevice(
                    feedback_pin,
                    pull_up=not feedback_active_high,
                    pin_factory=pin_factory,
                )
            for code, pin, active_high in inputs:
                if pin is not None:
                    self._safety[code] = DigitalInputDevice(
                        pin, pull_up=not active_high, pin_factory=pin_factory
                    )
        except Exception:
            for device in (*self._safety.values(), self._feedback, self._coil):
                if device is not None:
                    device.close()
            raise
        self._requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fault: FaultLatch | None = None
        self._check_timer: asyncio.TimerHandle | None = None
        self._settled = asyncio.Event()
        self._settled.set()
        self._closed = False

    @property
    def is_on(self) -> bool:
        """The state the coil is driven to (False after a forced off)."""
        return bool(self._coil.value) if not self._closed else False

    @property
    def feedback_closed(self) -> bool | None:
        """Mirror contact: True when the main contacts are closed; None without feedback."""
        if self._feedback is None or self._closed:
            return None
        return bool(self._feedback.value)

    @property
    def fault_active(self) -> bool:
        """True while ``POWER_SWITCH_FAILURE`` is raised."""
        return self._fault is not None and self._fault.active

    @property
    def safety_input_active(self) -> bool:
        """True while the RCD or the emergency stop input is active (coil held off)."""
        return any(bool(device.value) for device in self._safety.values()) and not self._closed

    def switch(self, on: bool) -> None:
        """Drive the coil at once and schedule the feedback check. Idempotent, cheap.

        Call it from the loop thread. Safe before ``start`` (no supervision then)
        and after ``stop`` (ignored).
        """
        if self._closed:
            return
        with self._coil_lock:
            if on and self.safety_input_active:
                on = False  # held off by the RCD / emergency stop
            self._requested = on
            if on:
                self._coil.on()
            else:
                self._coil.off()
        self._schedule_check()

    async def start(self, on_fault: Callable[[FaultReport], None]) -> None:
        """Capture the loop, hook the feedback input and check it once."""
        if self._loop is not None:
            raise RuntimeError("GpioContactor already started")
        self._loop = asyncio.get_running_loop()
        self._fault = FaultLatch(FaultCode.POWER_SWITCH_FAILURE, on_fault)
        if self._feedback is not None:
            self._feedback.when_activated = self._on_feedback_edge
            self._feedback.when_deactivated = self._on_feedback_edge
        for code, device in self._safety.items():
            self._safety_latches[code] = FaultLatch(code, on_fault)
            device.when_activated = lambda code=code: self._on_safety_edge(code, True)
            device.when_deactivated = lambda code=code: self._on_safety_edge(code, False)
            if device.value:
                self._on_safety_edge(code, True)
        self._schedule_check()

    async def stop(self) -> None:
        """Switch the coil off and release both pins. Idempotent."""
        if self._closed:
            return
        self._requested = False
        self._coil.off()
        self._closed = True
        if self._check_timer is not None:
            self._check_timer.cancel()
            self._check_timer = None
        self._settled.set()
        if self._feedback is not None:
            self._feedback.close()  # also drops the when_* callbacks
        for device in self._safety.values():
            device.close()
        self._coil.close()

    async def wait_settled(self) -> bool:
        """Wait until the pending feedback check (if any) has run.

        Returns:
            True when the contacts agree with the requested state (always True
            without feedback), False when a fault is active.
        """
        await self._settled.wait()
        return not self.fault_active

    def _on_safety_edge(self, code: FaultCode, active: bool) -> None:
        """gpiozero callback (any thread): coil off first, then tell the loop."""
        if active:
            with self._coil_lock:
                if not self._closed:
                    self._requested = False
                    self._coil.off()
        loop = self._loop
        if loop is not None:
            call_in_loop(loop, self._safety_changed, code, active)

    def _safety_changed(self, code: FaultCode, active: bool) -> None:
        latch = self._safety_latches.get(code)
        if latch is None or self._closed:
            return
        if active:  # edges arrive in order; a short press is reported as raise + clear
            latch.raise_("RCD tripped" if code is FaultCode.GROUND_FAILURE else "emergency stop")
            self._schedule_check()
        else:
            latch.clear("released")

    def _on_feedback_edge(self) -> None:
        """gpiozero callback: any thread; hop into the loop."""
        loop = self._loop
        if loop is not None:
            call_in_loop(loop, self._schedule_check)

    def _schedule_check(self) -> None:
        if self._feedback is None or self._loop is None or self._closed:
            return
        if self._check_timer is not None:
            self._check_timer.cancel()
        self._settled.clear()
        self._check_timer = self._loop.call_later(self._settle_s, self._check)

    def _check(self) -> None:
        self._check_timer = None
        if self._closed or self._fault is None:
            return
        closed = bool(self._feedback.value)
        if closed == self._requested:
            self._fault.clear("contacts follow the coil again")
        elif closed:
            self._coil.off()  # already off when requested off; kept for clarity
            self._fault.raise_(WELDED)
        else:
            self._coil.off()
            self._fault.raise_(STUCK_OPEN)
        self._settled.set()
