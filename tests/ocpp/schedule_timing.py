"""Timing checks of charging-schedule periods shared by the 1.6 and 2.0.1 tests."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from agent.clock import to_iso
from hal.sim.pilot import OutputChange

EARLY_S = 0.1
"""Slack for the wall clock to monotonic conversion and the timer resolution, s."""


@dataclass(frozen=True)
class ScheduleStart:
    """A startSchedule on the next whole second: ISO text and its monotonic time (s)."""

    iso: str
    monotonic_s: float


def next_whole_second() -> ScheduleStart:
    """A startSchedule on the next whole second, so every boundary is an agent timer."""
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    monotonic_s = time.monotonic() + (start - datetime.now(UTC)).total_seconds()
    return ScheduleStart(to_iso(start), monotonic_s)


def assert_periods_not_early(
    changes: Sequence[OutputChange], start: ScheduleStart, offsets_s: Sequence[float]
) -> None:
    """Each output change happened at its period's boundary or later, never before.

    How late a timer fires on a loaded machine is not a property of the code, so
    there is no upper bound.
    """
    assert len(changes) == len(offsets_s), changes
    for change, offset_s in zip(changes, offsets_s, strict=True):
        assert change.monotonic_s >= start.monotonic_s + offset_s - EARLY_S, (change, offset_s)
