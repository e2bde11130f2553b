"""ConnectorLock role (optional): the motor that locks a Type 2 socket."""

from __future__ import annotations

from typing import Protocol


class ConnectorLock(Protocol):
    """A connector lock.

    Contract: ``lock``/``unlock`` return True when the feedback confirms the new
    position within the backend's timeout, False otherwise (the caller raises
    ``FaultCode.CONNECTOR_LOCK_FAILURE``). ``is_locked`` is the confirmed state.
    """

    @property
    def is_locked(self) -> bool: ...

    async def lock(self) -> bool: ...

    async def unlock(self) -> bool: ...
