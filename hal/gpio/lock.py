"""GpioConnectorLock: a Type 2 socket lock motor on two GPIO outputs, with a position input."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from gpiozero import DigitalInputDevice, DigitalOutputDevice

from hal._threading import call_in_loop
from hal.types import FaultCode, FaultReport


class GpioConnectorLock:
    """A connector lock driven through gpiozero (implements ``hal.lock.ConnectorLock``).

    Hardware: an H-bridge with one input per direction (``lock_pin`` drives the
    motor towards "locked", ``unlock_pin`` towards "unlocked"; never both) and
    an optional position switch (``feedback_pin``, active while locked).

    ``lock``/``unlock`` drive the motor for ``pulse_s`` (the actuator's travel
    time; the motor is never left on, also not when the call is cancelled),
    then wait until the position switch confirms, at most ``timeout_s`` from
    the start of the pulse. They return True when confirmed, False otherwise;
    the caller raises ``FaultCode.CONNECTOR_LOCK_FAILURE``. Without a position
    switch the pulse is trusted (True). Both are idempotent: a confirmed
    position is not driven again. Call them from the loop thread, one at a time.

    Position edges come from gpiozero's thread on real pins (synchronously on
    mock pins) and reach the loop through ``hal._threading.call_in_loop``.

    Supervision (after ``start``): an edge outside a move that takes the switch
    away from the commanded position reports ``FaultCode.CONNECTOR_LOCK_FAILURE``
    through ``on_fault`` in the loop thread; the switch back at the commanded
    position (an edge, or a later move that confirms it) clears it. Edges while
    a move runs (from its start until it returns) are the move's own and are
    not reported.

    Args:
        lock_pin: Output driving the motor to "locked".
        unlock_pin: Output driving the motor to "unlocked".
        feedback_pin: Position switch input, or None.
        pin_factory: The gpiozero pin factory.
        motor_active_high: True when a high output drives the motor.
        feedback_active_high: True when a high input means "locked".
        pulse_s: Motor pulse, s.
        timeout_s: Time from the start of the pulse until the position must be
            confirmed, s (>= pulse_s).

    Raises:
        ValueError: pulse_s <= 0 or timeout_s < pulse_s.
        gpiozero.GPIOZeroError: A pin is invalid or in use.
    """

    def __init__(
        self,
        *,
        lock_pin: int | str,
        unlock_pin: int | str,
        feedback_pin: int | str | None,
        pin_factory: Any,
        motor_active_high: bool = True,
        feedback_active_high: bool = True,
        pulse_s: float = 0.3,
        timeout_s: float = 1.0,
    ) -> None:
        if pulse_s <= 0 or timeout_s < pulse_s:
            raise ValueError("pulse_s must be > 0 and timeout_s >= pulse_s")
        self._pulse_s = pulse_s
        self._timeout_s = timeout_s
        devices: list[Any] = []
        try:
            for pin in (lock_pin, unlock_pin):
                devices.append(
                    DigitalOutputDevice(
                        pin,
                        active_high=motor_active_high,
                        initial_value=False,
                        pin_factory=pin_factory,
                    )
                )
            self._feedback: Any = None
            if feedback_pin is not None:
                self._feedback = DigitalInputDevice(
                    feedback_pin, pull_up=not feedback_active_high, pin_factory=pin_factory
                )
        except Exception:
            for device in devices:
                device.close()
            raise
        self._lock_motor, self._unlock_motor = devices
        self._commanded_locked = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._moved = asyncio.Event()
        self._moving = False  # a lock/unlock move runs: its edges are not supervised
        self._on_fault: Callable[[FaultReport], None] | None = None
        self._fault_active = False  # CONNECTOR_LOCK_FAILURE reported by the supervision
        self._closed = False

    @property
    def is_locked(self) -> bool:
        """The confirmed position (the last command without a position switch)."""
        if self._closed:
            return False
        if self._feedback is None:
            return self._commanded_locked
        return bool(self._feedback.value)

    async def start(self, on_fault: Callable[[FaultReport], None]) -> None:
        """Supervise the position switch from now on (see the class docstring).

        Args:
            on_fault: Called in the loop thread with CONNECTOR_LOCK_FAILURE raised
                or cleared.
        """
        self._on_fault = on_fault
        self._hook_feedback()

    async def lock(self) -> bool:
        """Lock the connector; True when the position switch confirms in time."""
        return await self._move(True)

    async def unlock(self) -> bool:
        """Unlock the connector; True when the position switch confirms in time."""
        return await self._move(False)

    async def stop(self) -> None:
        """Stop the motor and release the pins (the lock stays where it is). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for device in (self._lock_motor, self._unlock_motor, self._feedback):
            if device is not None:
                device.close()

    async def _move(self, locked: bool) -> bool:
        if self._closed:
            return False
        self._hook_feedback()
        self._moving = True
        try:
            confirmed = await self._drive(locked)
        finally:
            self._moving = False
        if confirmed:
            self._supervise()  # a confirmed position clears a supervision fault
        return confirmed

    async def _drive(self, locked: bool) -> bool:
        self._commanded_locked = locked
        if self._feedback is not None and self.is_locked == locked:
            return True
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + self._timeout_s
        motor = self._lock_motor if locked else self._unlock_motor
        (self._unlock_motor if locked else self._lock_motor).off()
        motor.on()
        try:
            await asyncio.sleep(self._pulse_s)  # the actuator's travel time
        finally:
            motor.off()
        if self._feedback is None:
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline_s):
                while self.is_locked != locked:
                    self._moved.clear()
                    await self._moved.wait()
        return self.is_locked == locked

    def _hook_feedback(self) -> None:
        if self._loop is not None or self._feedback is None:
            return
        self._loop = asyncio.get_running_loop()
        self._feedback.when_activated = self._on_edge
        self._feedback.when_deactivated = self._on_edge

    def _on_edge(self) -> None:
        """gpiozero callback: any thread; hop into the loop, telling whether the
        edge came while a move ran (read here, at the edge, not when it arrives)."""
        loop = self._loop
        if loop is not None:
            call_in_loop(loop, self._on_position, self._moving)

    def _on_position(self, during_move: bool) -> None:
        """In the loop: wake a waiting move; outside moves, supervise."""
        self._moved.set()
        if not during_move and not self._moving:
            self._supervise()

    def _supervise(self) -> None:
        """Report the switch leaving the commanded position, or returning to it."""
        on_fault = self._on_fault
        if on_fault is None or self._feedback is None or self._closed:
            return
        away = self.is_locked != self._commanded_locked
        if away == self._fault_active:
            return
        self._fault_active = away
        want = "locked" if self._commanded_locked else "unlocked"
        detail = f"lock left the {want} position" if away else f"lock {want} again"
        on_fault(FaultReport(FaultCode.CONNECTOR_LOCK_FAILURE, away, detail))
