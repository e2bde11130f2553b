"""Contactor role: the power switch between the grid and the vehicle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from hal.types import FaultReport


class Contactor(Protocol):
    """A contactor with an optional mirror contact.

    Contract:
        * ``switch(on)`` drives the coil and returns at once (no awaiting, no I/O
          beyond the pin or one serial write), so the controller can open the
          contactor before doing anything else. It is idempotent.
        * ``is_on`` is the commanded coil state.
        * With feedback, after ``feedback_settle_s`` (backend config) the mirror
          contact must agree with the coil: still closed after an off command is
          a welded contactor, still open after an on command is a stuck one. Both
          report ``FaultCode.POWER_SWITCH_FAILURE`` through ``on_fault`` (in the
          loop thread) and the backend forces the coil off. Agreement again clears
          the fault.
        * ``stop`` switches the coil off and releases the pins.
    """

    @property
    def is_on(self) -> bool: ...

    def switch(self, on: bool) -> None: ...

    async def start(self, on_fault: Callable[[FaultReport], None]) -> None: ...

    async def stop(self) -> None: ...
