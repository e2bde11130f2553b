"""A recorder of meter callbacks shared by the meter driver tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hal.types import FaultReport, MeterReading

GUARD_S = 5.0  # generous guard on waits for events; never a pacing delay


class Recorder:
    """Collects meter callbacks in order and lets a test wait for a condition."""

    def __init__(self) -> None:
        self.events: list[MeterReading | FaultReport] = []
        self._changed = asyncio.Event()

    @property
    def readings(self) -> list[MeterReading]:
        return [e for e in self.events if isinstance(e, MeterReading)]

    @property
    def faults(self) -> list[FaultReport]:
        return [e for e in self.events if isinstance(e, FaultReport)]

    def on_reading(self, reading: MeterReading) -> None:
        self.events.append(reading)
        self._changed.set()

    def on_fault(self, report: FaultReport) -> None:
        self.events.append(report)
        self._changed.set()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        async def _wait() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), GUARD_S)
