"""ConnectorLock role (optional): the motor that locks a Type 2 socket."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from hal.types import FaultReport


class ConnectorLock(Protocol):
    """A connector lock.

    Contract: ``lock``/``unlock`` return True when the feedback confirms the new
    position within the backend's timeout, False otherwise (the caller raises
    ``FaultCode.CONNECTOR_LOCK_FAILURE``). They never leave the motor running,
    also not when cancelled. ``is_locked`` is the confirmed state. ``stop``
    stops the motor and releases the hardware (the lock stays where it is).
    The core locks before it closes the contactor and unlocks after the
    contactor opened at the end of a session (REFERENCE 1.4).

    Supervision: after ``start(on_fault)`` a backend with position feedback
    reports ``FaultCode.CONNECTOR_LOCK_FAILURE`` (active) through ``on_fault``,
    in the loop thread, when the feedback leaves the commanded position outside
    a ``lock``/``unlock`` move (forced open, broken actuator), and clears it when
    the feedback is back at the commanded position (by itself or confirmed by
    a later move). Edges during its own moves are not reported; a move that
    fails is reported by its caller. Without feedback there is nothing to
    supervise. ``lock``/``unlock`` also work without ``start``.
    """

    @property
    def is_locked(self) -> bool: ...

    async def start(self, on_fault: Callable[[FaultReport], None]) -> None: ...

    async def lock(self) -> bool: ...

    async def unlock(self) -> bool: ...

    async def stop(self) -> None: ...
