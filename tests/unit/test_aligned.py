"""Clock-aligned data: boundary arithmetic (pure), the timer against an injected clock,
and what the station-wide sampler hands out at a boundary."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from agent.events import MeterReading, MeterSample, ReadingContext, SampledValue
from agent.evse.aligned import ClockAlignedSampler, ClockAlignedTimer, next_boundary
from agent.settings import Settings

GUARD_S = 10.0
DAY = datetime(2026, 11, 24, tzinfo=UTC)


def at(hh: int, mm: int, ss: int = 0, us: int = 0, *, day: datetime = DAY) -> datetime:
    return day + timedelta(hours=hh, minutes=mm, seconds=ss, microseconds=us)


@pytest.mark.parametrize(
    ("now", "interval_s", "expected"),
    [
        pytest.param(at(0, 14, 59, 900_000), 900, at(0, 15), id="quarter-hour"),
        pytest.param(at(0, 15), 900, at(0, 30), id="on-boundary-is-the-next"),
        pytest.param(at(0, 15, 0, 1), 900, at(0, 30), id="just-after"),
        pytest.param(at(13, 7, 12), 3600, at(14, 0), id="hourly"),
        pytest.param(at(23, 59, 59), 900, at(24, 0), id="midnight"),
        # 86400 / 7 is not whole: the day's last interval is shorter, counting restarts
        pytest.param(at(23, 59, 58), 7, at(24, 0), id="uneven-last-interval"),
        pytest.param(at(23, 59, 52), 7, at(23, 59, 54), id="uneven-before-last"),  # 7 * 12342 s
        pytest.param(at(0, 0, 0, 1), 7, at(0, 0, 7), id="uneven-restarts-at-midnight"),
        pytest.param(at(5, 0), 86400, at(24, 0), id="daily"),
        pytest.param(at(5, 0), 100_000, at(24, 0), id="longer-than-a-day"),
        pytest.param(
            datetime(2026, 11, 24, 1, 14, 59, tzinfo=timezone(timedelta(hours=1))),
            900,
            at(0, 15),
            id="offset-input-counted-in-utc",
        ),
    ],
)
def test_next_boundary(now: datetime, interval_s: int, expected: datetime) -> None:
    got = next_boundary(now, interval_s)
    assert got == expected
    assert got.tzinfo is not None and got.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("now", "interval_s"),
    [(at(1, 0), 0), (at(1, 0), -900), (datetime(2026, 11, 24, 1, 0), 900)],
    ids=["zero", "negative", "naive"],
)
def test_next_boundary_refuses(now: datetime, interval_s: int) -> None:
    with pytest.raises(ValueError):
        next_boundary(now, interval_s)


# ------------------------------------------------------------ the timer


class LoopClock:
    """A wall clock that runs with the event loop's clock from ``start``; ``set``
    moves it like a CSMS time correction."""

    def __init__(self, start: datetime) -> None:
        self._loop = asyncio.get_running_loop()
        self.set(start)

    def set(self, moment: datetime) -> None:
        self._base = moment
        self._t0 = self._loop.time()

    def now(self) -> datetime:
        return self._base + timedelta(seconds=self._loop.time() - self._t0)


class MemoryBackend:
    async def set(self, key: str, value: Any) -> None:
        del key, value


def settings(**values: Any) -> Settings:
    return Settings(MemoryBackend(), {}, values)


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


async def run_timer(timer: ClockAlignedTimer) -> asyncio.Task[None]:
    # Whether it arms before or after the test's next step does not matter: it reads
    # the interval and the clock when it arms, and re-reads both on every change.
    return asyncio.create_task(timer.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_fires_at_each_boundary_with_the_boundary_as_time() -> None:
    clock = LoopClock(at(0, 0, 0, 900_000))
    got = Boundaries()
    task = await run_timer(
        ClockAlignedTimer(
            clock=clock,
            settings=settings(clock_aligned_data_interval_s=1),
            on_boundary=got,
        )
    )
    try:
        seen = await got.wait(2)
        assert seen == [at(0, 0, 1), at(0, 0, 2)]
        assert clock.now() >= at(0, 0, 2)  # never early
    finally:
        await stop(task)


async def test_zero_disarms_and_a_change_rearms_at_the_new_interval() -> None:
    clock = LoopClock(at(0, 14, 59, 800_000))
    live = settings(clock_aligned_data_interval_s=0)
    got = Boundaries()
    task = await run_timer(ClockAlignedTimer(clock=clock, settings=live, on_boundary=got))
    try:
        assert got.seen == []
        await live.set("clock_aligned_data_interval_s", 900)
        assert await got.wait(1) == [at(0, 15)]
    finally:
        await stop(task)


async def test_a_clock_correction_reaims_the_pending_wait() -> None:
    # Armed for 10:15 (15 min away); the CSMS then sets the clock to 10:14:59.8, or
    # back to 09:59:59.8: the next boundary follows the corrected clock within a recheck.
    clock = LoopClock(at(10, 0))
    got = Boundaries()
    task = await run_timer(
        ClockAlignedTimer(
            clock=clock,
            settings=settings(clock_aligned_data_interval_s=900),
            on_boundary=got,
            recheck_s=0.05,
        )
    )
    try:
        clock.set(at(10, 14, 59, 800_000))
        assert await got.wait(1) == [at(10, 15)]
        clock.set(at(9, 59, 59, 800_000))  # set back: 10:30 is not the next boundary now
        assert await got.wait(2) == [at(10, 15), at(10, 0)]
    finally:
        await stop(task)


# ------------------------------------------------------------ the sampler


def reading(energy_wh: float, power_w: float = 1000.0) -> MeterReading:
    return MeterReading(
        energy_import_wh=energy_wh,
        power_w=power_w,
        current_a=(10.0,),
        voltage_v=(230.0,),
        frequency_hz=None,
        energy_export_wh=None,
        monotonic_s=0.0,
    )


class FakeEvse:
    def __init__(self, latest: MeterReading | None) -> None:
        self.meter_reading = latest
        self.posted: list[str] = []

    def post_clock_aligned(self, timestamp: str) -> None:
        self.posted.append(timestamp)


class NoClock:
    def now(self) -> datetime:
        raise AssertionError("on_boundary must not read the clock: the boundary is the time")


def make_sampler(
    evses: dict[int, FakeEvse], measurands: tuple[str, ...]
) -> tuple[ClockAlignedSampler, list[tuple[int, MeterSample]]]:
    published: list[tuple[int, MeterSample]] = []
    sampler = ClockAlignedSampler(
        clock=NoClock(),
        settings=settings(meter_values_aligned_data=list(measurands)),
        evses=evses,
        publish=lambda connector, sample: published.append((connector, sample)),
    )
    return sampler, published


def test_boundary_publishes_the_station_total_and_asks_every_evse() -> None:
    evses = {1: FakeEvse(reading(1000.4, 7000.0)), 2: FakeEvse(reading(2500.3, -50.0))}
    sampler, published = make_sampler(
        evses, ("Energy.Active.Import.Register", "Power.Active.Import", "Voltage")
    )
    sampler.on_boundary(at(0, 15))
    stamp = "2026-11-24T00:15:00.000Z"
    assert published == [
        (
            0,
            MeterSample(
                stamp,
                ReadingContext.SAMPLE_CLOCK,
                (
                    SampledValue("Energy.Active.Import.Register", 3501, "Wh"),
                    SampledValue("Power.Active.Import", 7000.0, "W"),  # export counts as 0
                ),
            ),
        )
    ]
    assert evses[1].posted == [stamp] and evses[2].posted == [stamp]


def test_no_station_total_while_a_meter_has_not_answered() -> None:
    evses = {1: FakeEvse(reading(1000.0)), 2: FakeEvse(None)}
    sampler, published = make_sampler(evses, ("Energy.Active.Import.Register",))
    sampler.on_boundary(at(0, 15))
    assert published == []  # a partial sum would be a wrong station total
    assert evses[1].posted == evses[2].posted == ["2026-11-24T00:15:00.000Z"]
