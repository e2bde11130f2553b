"""ConnectorLock role (optional): the motor that locks a Type 2 socket."""

from __future__ import annotations

from typing import Protocol


class ConnectorLock(Protocol):
    """A connector lock.

    Contract: ``lock``/``unlock`` return True when the feedback confirms the new
    position within the backend's timeout, False otherwise (the caller raises
    ``FaultCode.CONNECTOR_LOCK_FAILURE``). They never leave the motor running,
    also not when cancelled. ``is_locked`` is the confirmed state. ``stop``
    stops the motor and releases the hardware (the lock stays where it is).
    The core locks before it closes the contactor and unlocks after the
    contactor opened at the end of a session (REFERENCE 1.4).
    """

    @property
    def is_locked(self) -> bool: ...

    async def lock(self) -> bool: ...

    async def unlock(self) -> bool: ...

    async def stop(self) -> None: ...
