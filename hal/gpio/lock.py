"""GpioConnectorLock: a Type 2 socket lock motor on two GPIO outputs, with a position input."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from gpiozero import DigitalInputDevice, DigitalOutputDevice

from hal._threading import call_in_loop


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
        self._closed = False

    @property
    def is_locked(self) -> bool:
        """The confirmed position (the last command without a position switch)."""
        if self._closed:
            return False
        if self._feedback is None:
            return self._commanded_locked
        return bool(self._feedback.value)

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
        """gpiozero callback: any thread; hop into the loop."""
        loop = self._loop
        if loop is not None:
            call_in_loop(loop, self._moved.set)
