"""Clock-aligned meter data (OCPP 1.6 9.1 ClockAlignedDataInterval).

"The set of evenly spaced aggregation intervals per day, starting at 00:00:00
(midnight)": with 900 s, samples are due at :00, :15, :30 and :45 of every hour,
UTC (the station clock, which the CSMS may correct). An interval that does not
divide the day leaves a shorter last interval; the count restarts at midnight.

One timer for the whole station is armed at the next boundary (never a
fixed-period sleep, so nothing drifts); every sample carries the boundary as its
timestamp, whenever the loop got round to it. The wall clock can be corrected
under a pending timer: a CSMS correction (BootNotification, Heartbeat currentTime
through ``Clock.set_utc``) re-aims the wait at once; a step of the system clock
itself (NTP) announces nothing, so a long wait is also cut into ``recheck_s``
slices, each re-aimed at the boundary by the clock's reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from agent.clock import to_iso
from agent.events import MeterReading, MeterSample, ReadingContext
from agent.evse.sampling import station_sample
from agent.settings import Settings

log = logging.getLogger(__name__)

INTERVAL_SETTING = "clock_aligned_data_interval_s"
MEASURANDS_SETTING = "meter_values_aligned_data"
RECHECK_S = 60.0
"""Longest single wait: bounds how late a boundary is after an unannounced step of the
system clock (a ``Clock.set_utc`` correction re-aims at once)."""

_DAY = timedelta(days=1)
_US = timedelta(microseconds=1)


class WallClock(Protocol):
    """The station clock (``agent.clock.Clock``)."""

    def now(self) -> datetime: ...


@runtime_checkable
class CorrectableClock(Protocol):
    """A wall clock that announces its corrections (``agent.clock.Clock``)."""

    def now(self) -> datetime: ...

    def subscribe_corrections(
        self, listener: Callable[[timedelta], None]
    ) -> Callable[[], None]: ...


def next_boundary(now: datetime, interval_s: int) -> datetime:
    """The first aligned boundary strictly after ``now`` (pure).

    Args:
        now: A timezone-aware moment.
        interval_s: ClockAlignedDataInterval, s, > 0.

    Returns:
        The boundary, UTC: midnight + k * ``interval_s`` of ``now``'s UTC day, or
        the next midnight when no such boundary is left in the day.

    Raises:
        ValueError: ``interval_s`` is not positive or ``now`` is naive.
    """
    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    since_us = (now - midnight) // _US  # integers: no float rounding at the boundary
    interval_us = interval_s * 1_000_000
    boundary = midnight + (since_us // interval_us + 1) * interval_us * _US
    return min(boundary, midnight + _DAY)


class ClockAlignedTimer:
    """Calls ``on_boundary(boundary)`` at every aligned boundary while running.

    Follows ``clock_aligned_data_interval_s`` live: 0 disarms it, a change
    re-arms it at the next boundary of the new interval. A clock that announces
    corrections (:class:`CorrectableClock`) re-arms it at once when corrected.

    Args:
        clock: The station clock.
        settings: Live settings.
        on_boundary: Called in the loop with the boundary (UTC), at most once
            per boundary, at or just after it.
        recheck_s: Longest single wait, s (see the module docstring).
    """

    def __init__(
        self,
        *,
        clock: WallClock,
        settings: Settings,
        on_boundary: Callable[[datetime], None],
        recheck_s: float = RECHECK_S,
    ) -> None:
        self._clock = clock
        self._settings = settings
        self._on_boundary = on_boundary
        self._recheck_s = recheck_s
        self._wake = asyncio.Event()  # the interval changed or the clock was corrected
        self._interval_changed = False

    async def run(self) -> None:
        """Run until cancelled."""
        unsubscribe = self._settings.subscribe(self._on_setting)
        clock = self._clock
        unsubscribe_clock = (
            clock.subscribe_corrections(self._on_correction)
            if isinstance(clock, CorrectableClock)
            else None
        )
        last: datetime | None = None
        try:
            while True:
                self._interval_changed = False
                self._wake.clear()
                interval_s = self._settings.get_int(INTERVAL_SETTING)
                if interval_s <= 0:
                    await self._wake.wait()
                    continue
                boundary = await self._wait_next(interval_s)
                if boundary is not None and boundary != last:
                    last = boundary
                    self._on_boundary(boundary)
        finally:
            unsubscribe()
            if unsubscribe_clock is not None:
                unsubscribe_clock()

    async def _wait_next(self, interval_s: int) -> datetime | None:
        """Wait for the next boundary and return it; None when the interval changed."""
        boundary = next_boundary(self._clock.now(), interval_s)
        while True:
            if self._interval_changed:
                return None
            self._wake.clear()
            now = self._clock.now()
            # the clock was set back: aim at the boundary that is now the next one
            boundary = min(boundary, next_boundary(now, interval_s))
            remaining_s = (boundary - now).total_seconds()
            if remaining_s <= 0:
                return boundary
            # woken (setting or correction) or the recheck slice is over: look again
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining_s, self._recheck_s)):
                    await self._wake.wait()

    def _on_setting(self, name: str, value: object) -> None:
        del value
        if name == INTERVAL_SETTING:
            self._interval_changed = True
            self._wake.set()

    def _on_correction(self, step: timedelta) -> None:
        log.debug("clock corrected by %s: re-arming the clock-aligned timer", step)
        self._wake.set()


class AlignedEvse(Protocol):
    """What the sampler needs of an EVSE (``EvseController``)."""

    @property
    def meter_reading(self) -> MeterReading | None: ...

    def post_clock_aligned(self, timestamp: str) -> None: ...


class ClockAlignedSampler:
    """Clock-aligned samples for the whole station.

    At every boundary: the station total (connector 0, the sum of the EVSE
    meters) goes to ``publish``, and every EVSE is told to take its own sample
    (its controller journals it when a transaction runs, or publishes it).

    Args:
        clock: The station clock.
        settings: Live settings (interval and ``meter_values_aligned_data``).
        evses: The EVSE controllers by id.
        publish: Receives ``(0, sample)`` for the station total (no transaction).
        recheck_s: See :class:`ClockAlignedTimer`.
    """

    def __init__(
        self,
        *,
        clock: WallClock,
        settings: Settings,
        evses: Mapping[int, AlignedEvse],
        publish: Callable[[int, MeterSample], None],
        recheck_s: float = RECHECK_S,
    ) -> None:
        self._settings = settings
        self._evses = evses
        self._publish = publish
        self._timer = ClockAlignedTimer(
            clock=clock, settings=settings, on_boundary=self.on_boundary, recheck_s=recheck_s
        )

    async def run(self) -> None:
        """Run until cancelled."""
        await self._timer.run()

    def on_boundary(self, boundary: datetime) -> None:
        """Take the samples due at ``boundary``."""
        timestamp = to_iso(boundary)
        log.debug("clock-aligned sample at %s", timestamp)
        total = station_sample(
            [evse.meter_reading for evse in self._evses.values()],
            self._settings.get_list(MEASURANDS_SETTING),
            context=ReadingContext.SAMPLE_CLOCK,
            timestamp=timestamp,
        )
        if total is not None:
            self._publish(0, total)
        for evse in self._evses.values():
            evse.post_clock_aligned(timestamp)
