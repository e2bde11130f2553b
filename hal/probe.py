"""Optional self-description of a backend for ``evse-agent hal check``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Probeable(Protocol):
    """A backend that can say what it found on the wire.

    ``probe`` is called after ``start`` and before ``stop``. It returns
    (ok, one-line detail), e.g. ``(True, "OpenEVSE firmware 8.2.1, RAPI 5.1.0")``,
    and never raises for a device problem (that is ``(False, reason)``). It
    must not switch power on.
    """

    async def probe(self) -> tuple[bool, str]: ...
