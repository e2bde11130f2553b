"""Helpers shared by HAL backends for raising and clearing device faults."""

from __future__ import annotations

from collections.abc import Callable

from hal.types import FaultCode, FaultReport


class HalError(Exception):
    """Base class of errors raised by HAL backends."""


class MeterError(HalError):
    """A meter did not answer a one-shot read, or answered garbage.

    The message is one line and says why (timeout, refused, exception code, decode).
    """


class FaultLatch:
    """Reports one fault code as raised or cleared, each edge exactly once.

    Backends call ``raise_`` whenever they see the fault condition and ``clear``
    whenever they see it gone; the latch turns that level into edges, so
    ``on_fault`` sees ``active=True`` once per episode and ``active=False`` once
    when it ends. A different detail while active is not a new episode.

    Args:
        code: The fault code this latch reports.
        on_fault: Where edges go; called synchronously from ``raise_``/``clear``
            (so in whatever thread calls those: backends call them in the loop).
    """

    def __init__(self, code: FaultCode, on_fault: Callable[[FaultReport], None]) -> None:
        self._code = code
        self._on_fault = on_fault
        self._detail: str | None = None

    @property
    def active(self) -> bool:
        """True while the fault is raised."""
        return self._detail is not None

    @property
    def detail(self) -> str | None:
        """The detail the fault was raised with, or None when not active."""
        return self._detail

    def raise_(self, detail: str) -> bool:
        """Raise the fault; returns True when this was a new episode (reported)."""
        if self._detail is not None:
            return False
        self._detail = detail
        self._on_fault(FaultReport(self._code, True, detail))
        return True

    def clear(self, detail: str = "") -> bool:
        """Clear the fault; returns True when it was active (reported)."""
        if self._detail is None:
            return False
        self._detail = None
        self._on_fault(FaultReport(self._code, False, detail))
        return True
