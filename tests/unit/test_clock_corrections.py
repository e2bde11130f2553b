"""A CSMS clock correction (``Clock.set_utc``) is announced to subscribers, and the
clock-aligned timer re-aims at once instead of after its (60 s) recheck slice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.clock import Clock, CorrectionListener
from agent.evse.aligned import RECHECK_S, ClockAlignedTimer
from agent.settings import Settings

GUARD_S = 10.0
DAY = datetime(2026, 11, 24, tzinfo=UTC)


def at(hh: int, mm: int, ss: int = 0, us: int = 0) -> datetime:
    return DAY + timedelta(hours=hh, minutes=mm, seconds=ss, microseconds=us)


# ------------------------------------------------------------ the hook


def test_listeners_get_the_step_after_the_clock_has_moved() -> None:
    clock = Clock()
    clock.set_utc(at(10, 0))
    seen: list[tuple[timedelta, datetime]] = []
    clock.subscribe_corrections(lambda step: seen.append((step, clock.now())))

    clock.set_utc(at(10, 30))
    [(step, now_in_listener)] = seen
    assert abs(step - timedelta(minutes=30)) < timedelta(seconds=1)
    assert abs(now_in_listener - at(10, 30)) < timedelta(seconds=1)

    clock.set_utc(at(9, 0))  # set back: a negative step
    assert seen[1][0] < -timedelta(minutes=89)


def test_unsubscribe_stops_the_calls_and_is_idempotent() -> None:
    clock = Clock()
    calls: list[timedelta] = []
    unsubscribe = clock.subscribe_corrections(calls.append)
    clock.set_utc(at(1, 0))
    unsubscribe()
    unsubscribe()
    clock.set_utc(at(2, 0))
    assert len(calls) == 1


def test_a_failing_listener_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    later: list[timedelta] = []

    def broken(step: timedelta) -> None:
        raise RuntimeError("listener bug")

    clock.subscribe_corrections(broken)
    clock.subscribe_corrections(later.append)
    with caplog.at_level(logging.ERROR, logger="agent.clock"):
        clock.set_utc(at(3, 0))
    assert len(later) == 1
    assert abs(clock.now() - at(3, 0)) < timedelta(seconds=1)  # the correction stands
    assert "listener bug" in caplog.text


def test_a_naive_time_is_taken_as_utc() -> None:
    clock = Clock()
    clock.set_utc(datetime(2030, 1, 1, 12, 0))
    assert abs(clock.now() - datetime(2030, 1, 1, 12, 0, tzinfo=UTC)) < timedelta(seconds=1)


# ------------------------------------------------------------ the timer


class CountingClock(Clock):
    """The real clock, counting live correction subscriptions."""

    def __init__(self) -> None:
        super().__init__()
        self.subscribed = 0
        self.first_subscription = asyncio.Event()

    def subscribe_corrections(self, listener: CorrectionListener) -> Callable[[], None]:
        unsubscribe = super().subscribe_corrections(listener)
        self.subscribed += 1
        self.first_subscription.set()

        def counted() -> None:
            self.subscribed -= 1
            unsubscribe()

        return counted


class MemoryBackend:
    async def set(self, key: str, value: Any) -> None:
        del key, value


class Boundaries:
    """Collects boundaries; ``wait(n)`` returns once n have been seen."""

    def __init__(self) -> None:
        self.seen: list[datetime] = []
        self._changed = asyncio.Event()

    def __call__(self, boundary: datetime) -> None:
        self.seen.append(boundary)
        self._changed.set()

    async def wait(self, count: int) -> list[datetime]:
        async with asyncio.timeout(GUARD_S):
            while len(self.seen) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.seen


async def test_a_correction_rearms_the_timer_at_once() -> None:
    # The default recheck (60 s) is far beyond the guard: only the hook can make it in time.
    assert RECHECK_S > 2 * GUARD_S
    clock = CountingClock()
    clock.set_utc(at(10, 0))
    got = Boundaries()
    settings = Settings(MemoryBackend(), {}, {"clock_aligned_data_interval_s": 900})
    task = asyncio.create_task(
        ClockAlignedTimer(clock=clock, settings=settings, on_boundary=got).run()
    )
    try:
        # subscribed, then armed for 10:15 (a quarter of an hour away) before it yields
        await asyncio.wait_for(clock.first_subscription.wait(), GUARD_S)
        clock.set_utc(at(10, 14, 59, 800_000))  # the CSMS moves the clock forward
        assert await got.wait(1) == [at(10, 15)]
        assert clock.now() >= at(10, 15)  # never early
        clock.set_utc(at(9, 59, 59, 800_000))  # and back: 10:00 is now the next boundary
        assert await got.wait(2) == [at(10, 15), at(10, 0)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert clock.subscribed == 0  # the timer unsubscribed when it ended
