"""PowerMeter role: an energy meter that the station reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from hal.types import FaultReport, MeterReading


class PowerMeter(Protocol):
    """An energy meter polled by its backend.

    Contract:
        * ``start`` begins polling every ``poll_interval_s`` (backend config) and
          returns once the first poll has been attempted; it never raises for an
          absent meter, it reports a fault instead.
        * ``on_reading`` and ``on_fault`` are called in the event loop thread.
        * A reading carries the monotonic time the meter *answered*. A meter that
          stops answering, or whose values stay frozen while power flows, raises
          ``FaultCode.POWER_METER_FAILURE`` after the backend's debounce
          (``fault_after_s``); the first good answer afterwards clears it.
        * ``energy_import_wh`` is monotonic: a backwards step is dropped as a bad
          reading, never passed on.
        * ``stop`` cancels polling and closes the link; it is idempotent.
    """

    @property
    def latest(self) -> MeterReading | None:
        """The last good reading, or None before the first one."""
        ...

    async def start(
        self,
        on_reading: Callable[[MeterReading], None],
        on_fault: Callable[[FaultReport], None],
    ) -> None: ...

    async def stop(self) -> None: ...
