"""The smart-charging engine: REFERENCE 3.5 number for number, rule tables, the store, and a
hypothesis property against a brute force written separately below."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from agent.smart_charging import (
    ChargingProfile,
    ChargingSchedule,
    ClearCriteria,
    CompositePeriod,
    Kind,
    Limit,
    ProfileStore,
    Purpose,
    RateUnit,
    Recurrency,
    SchedulePeriod,
    composite_schedule,
    limit_at,
)
from agent.smart_charging.sharing import share_station_limit

A, W = RateUnit.A, RateUnit.W
CPMAX, TXDEF, TX = Purpose.CHARGE_POINT_MAX, Purpose.TX_DEFAULT, Purpose.TX


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def sched(
    unit: RateUnit,
    *periods: tuple[int, float] | tuple[int, float, int],
    start: datetime | None = None,
    duration_s: int | None = None,
) -> ChargingSchedule:
    return ChargingSchedule(
        rate_unit=unit,
        periods=tuple(SchedulePeriod(*p) for p in periods),
        start_schedule=start,
        duration_s=duration_s,
    )


def profile(
    profile_id: int,
    purpose: Purpose,
    kind: Kind,
    schedule: ChargingSchedule,
    *,
    evse_id: int = 0,
    stack_level: int = 0,
    **kwargs: object,
) -> ChargingProfile:
    return ChargingProfile(
        profile_id=profile_id,
        stack_level=stack_level,
        purpose=purpose,
        kind=kind,
        schedule=schedule,
        evse_id=evse_id,
        **kwargs,  # type: ignore[arg-type]
    )


def periods(*rows: tuple[int, float | None, int | None]) -> tuple[CompositePeriod, ...]:
    return tuple(CompositePeriod(*row) for row in rows)


# ------------------------------------------------------- REFERENCE 3.5, number for number

TX_START = utc("2024-06-03T07:30:00")
NEW_YEAR = utc("2024-01-01T00:00:00")
P1 = profile(1, CPMAX, Kind.ABSOLUTE, sched(W, (0, 11040.0, 3), start=NEW_YEAR))
P2 = profile(
    2,
    TXDEF,
    Kind.RECURRING,
    sched(A, (0, 32.0), (25200, 10.0), (79200, 32.0), start=NEW_YEAR, duration_s=86400),
    recurrency=Recurrency.DAILY,
)
P3 = profile(
    3,
    TXDEF,
    Kind.ABSOLUTE,
    sched(A, (0, 20.0), start=utc("2024-06-03T08:30:00")),
    stack_level=1,
    valid_from=utc("2024-06-03T08:30:00"),
    valid_to=utc("2024-06-03T18:00:00"),
)
P4 = profile(4, TX, Kind.RELATIVE, sched(A, (0, 25.0), (3600, 8.0)), evse_id=1, transaction_id="42")
EXAMPLE = (P1, P2, P3, P4)


def example(profiles: tuple[ChargingProfile, ...], unit: RateUnit) -> tuple[CompositePeriod, ...]:
    result = composite_schedule(
        profiles,
        evse_id=1,
        start=TX_START,
        duration_s=7200,
        rate_unit=unit,
        tx_start=TX_START,
        nominal_voltage_v=230,
        transaction_id="42",
    )
    assert (result.start, result.duration_s, result.rate_unit) == (TX_START, 7200, unit)
    return result.periods


def test_worked_example_with_tx_profile_in_amperes() -> None:
    # Step 4: min(P1 = 16 A, P4 = 25 A) then min(16 A, 8 A); TxDefault ignored.
    assert example(EXAMPLE, A) == periods((0, 16.0, 3), (3600, 8.0, 3))


def test_worked_example_with_tx_profile_in_watts() -> None:
    # 8 A * 230 V * 3 = 5520 W; P1 11 040 W < 25 A * 230 V * 3 = 17 250 W.
    assert example(EXAMPLE, W) == periods((0, 11040.0, 3), (3600, 5520.0, 3))


def test_worked_example_without_tx_profile() -> None:
    # TxDefault: P2 = 10 A until P3 (stack 1) takes over at 08:30 with 20 A, capped at 16 A.
    assert example((P1, P2, P3), A) == periods((0, 10.0, 3), (3600, 16.0, 3))
    assert example((P1, P2, P3), W) == periods((0, 6900.0, 3), (3600, 11040.0, 3))


def test_worked_example_single_phase_station_max() -> None:
    # 11 040 W / 230 V = 48 A: the Tx values set the minimum; the lowest numberPhases is kept.
    single = replace(P1, schedule=sched(W, (0, 11040.0, 1), start=NEW_YEAR))
    assert example((single, P2, P3, P4), A) == periods((0, 25.0, 1), (3600, 8.0, 1))


@pytest.mark.parametrize(
    ("at", "expected_a"),
    [("07:30:00", 16.0), ("08:29:59", 16.0), ("08:30:00", 8.0), ("23:00:00", 8.0)],
)
def test_worked_example_limit_for_the_pwm(at: str, expected_a: float) -> None:
    limit = limit_at(
        EXAMPLE,
        evse_id=1,
        at=utc(f"2024-06-03T{at}"),
        tx_start=TX_START,
        nominal_voltage_v=230,
        transaction_id="42",
    )
    assert limit == Limit(expected_a, A, 3)


def _own_a(evse_id: int, at: datetime, tx_start: datetime, transaction_id: str | None) -> float:
    """The EVSE's own limit (station max left out), capped by the 32 A hardware."""
    limit = limit_at(
        EXAMPLE,
        evse_id=evse_id,
        at=at,
        tx_start=tx_start,
        nominal_voltage_v=230,
        transaction_id=transaction_id,
        include_station_max=False,
    )
    return min(32.0, math.inf if limit is None else limit.limit)


def _station_a(at: datetime) -> float:
    limit = limit_at(EXAMPLE, evse_id=0, at=at, tx_start=None, nominal_voltage_v=230)
    assert limit is not None
    return limit.limit


@pytest.mark.parametrize(("at", "expected_a"), [("07:30:00", 16.0), ("08:30:00", 8.0)])
def test_worked_example_through_the_shared_station_limit(at: str, expected_a: float) -> None:
    # Step 5 the way the service computes the PWM limit: the EVSE's own limit (P4: 25 A,
    # then 8 A), then its share of the station limit (P1: 16 A). One connector: the same
    # numbers as the plain composite.
    t = utc(f"2024-06-03T{at}")
    own = {1: _own_a(1, t, TX_START, "42")}
    assert share_station_limit(_station_a(t), own, [1]) == {1: expected_a}


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # 07:30: connector 1 wants 25 A (P4), connector 2 10 A (P2): 16 A / 2 = 8 A each
        ("07:30:00", {1: 8.0, 2: 8.0}),
        # 08:30: connector 1 wants 8 A (P4), connector 2 20 A (P3): 8 A each again
        ("08:30:00", {1: 8.0, 2: 8.0}),
        # 22:00: connector 1 still 8 A, connector 2 32 A (P2): the 8 A left go to 2
        ("22:00:00", {1: 8.0, 2: 8.0}),
    ],
)
def test_worked_example_with_a_second_connector(at: str, expected: dict[int, float]) -> None:
    # REFERENCE 3.5 extended: a second connector charges (TxDefault only) from 07:30 too.
    # P1 bounds the sum of both: 16 A.
    t = utc(f"2024-06-03T{at}")
    own = {1: _own_a(1, t, TX_START, "42"), 2: _own_a(2, t, TX_START, None)}
    shares = share_station_limit(_station_a(t), own, [1, 2])
    assert shares == expected
    assert sum(shares.values()) <= 16.0


def test_worked_example_clear_charging_profile() -> None:
    store = ProfileStore(EXAMPLE)
    after, cleared = store.clear(ClearCriteria(evse_id=0, purpose=TXDEF))
    assert cleared == (2, 3)
    assert after.profiles == (P1, P4)
    after, cleared = store.clear(ClearCriteria(stack_level=0))
    assert cleared == (1, 2, 4)
    assert after.profiles == (P3,)


# --------------------------------------------------------------------------- rule tables


def limit(
    profiles: tuple[ChargingProfile, ...],
    at: str,
    *,
    evse_id: int = 1,
    tx_start: datetime | None = None,
    transaction_id: str | None = None,
    unit: RateUnit = A,
) -> float | None:
    result = limit_at(
        profiles,
        evse_id=evse_id,
        at=utc(at),
        tx_start=tx_start,
        nominal_voltage_v=230,
        rate_unit=unit,
        transaction_id=transaction_id,
    )
    return None if result is None else result.limit


NIGHT = profile(
    10,
    TXDEF,
    Kind.RECURRING,
    # 22:00 10 A, 23:00 20 A, 00:00 6 A, until 06:00.
    sched(
        A, (0, 10.0), (3600, 20.0), (7200, 6.0), start=utc("2024-01-01T22:00:00"), duration_s=28800
    ),
    recurrency=Recurrency.DAILY,
)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2024-01-01T21:59:59", None),  # before the first occurrence
        ("2024-01-01T22:00:00", 10.0),
        ("2024-06-03T05:59:59", 6.0),  # the occurrence of 06-02 22:00, across midnight
        ("2024-06-03T06:00:00", None),  # its duration is over
        ("2024-06-03T21:59:59", None),
        ("2024-06-03T22:00:00", 10.0),
        ("2024-06-03T23:00:00", 20.0),
        ("2024-06-04T00:00:00", 6.0),
    ],
)
def test_recurring_daily_alignment(at: str, expected: float | None) -> None:
    assert limit((NIGHT,), at) == expected


def test_recurring_daily_composite_across_midnight() -> None:
    result = composite_schedule(
        (NIGHT,),
        evse_id=1,
        start=utc("2024-06-03T21:00:00"),
        duration_s=36000,
        rate_unit=A,
        tx_start=None,
        nominal_voltage_v=230,
    )
    assert result.periods == periods(
        (0, None, None), (3600, 10.0, 3), (7200, 20.0, 3), (10800, 6.0, 3), (32400, None, None)
    )


WEEKLY = profile(
    11,
    TXDEF,
    Kind.RECURRING,
    # Monday 00:00 16 A; Saturday 00:00 32 A.
    sched(A, (0, 16.0), (5 * 86400, 32.0), start=utc("2024-01-01T00:00:00")),
    recurrency=Recurrency.WEEKLY,
)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2023-12-31T23:59:59", None),
        ("2024-06-07T23:59:59", 16.0),  # Friday
        ("2024-06-08T00:00:00", 32.0),  # Saturday
        ("2024-06-09T23:59:59", 32.0),  # Sunday
        ("2024-06-10T00:00:00", 16.0),  # Monday: the week restarts
    ],
)
def test_recurring_weekly_alignment(at: str, expected: float | None) -> None:
    assert limit((WEEKLY,), at) == expected


def test_recurring_duration_longer_than_the_recurrence_is_cut_by_the_next_occurrence() -> None:
    long = replace(NIGHT, schedule=replace(NIGHT.schedule, duration_s=100_000))
    assert limit((long,), "2024-06-03T21:59:59") == 6.0
    assert limit((long,), "2024-06-03T22:00:00") == 10.0


RELATIVE = profile(12, TXDEF, Kind.RELATIVE, sched(A, (0, 32.0), (3600, 6.0)))


@pytest.mark.parametrize(
    ("tx_start", "at", "expected"),
    [
        (None, "2024-06-03T10:30:00", None),  # no transaction: a Relative profile is idle
        (utc("2024-06-03T10:00:00"), "2024-06-03T09:59:59", None),
        (utc("2024-06-03T10:00:00"), "2024-06-03T10:00:00", 32.0),
        (utc("2024-06-03T10:00:00"), "2024-06-03T10:59:59", 32.0),
        (utc("2024-06-03T10:00:00"), "2024-06-03T11:00:00", 6.0),
    ],
)
def test_relative_follows_the_transaction(
    tx_start: datetime | None, at: str, expected: float | None
) -> None:
    assert limit((RELATIVE,), at, tx_start=tx_start) == expected


def test_tx_profile_needs_a_transaction() -> None:
    tx = profile(13, TX, Kind.ABSOLUTE, sched(A, (0, 7.0), start=NEW_YEAR), evse_id=1)
    assert limit((tx,), "2024-06-03T10:00:00") is None
    assert limit((tx,), "2024-06-03T10:00:00", tx_start=utc("2024-06-03T09:00:00")) == 7.0


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2024-06-03T07:59:59", None),
        ("2024-06-03T08:00:00", 12.0),  # validFrom is inclusive
        ("2024-06-03T08:59:59", 12.0),
        ("2024-06-03T09:00:00", None),  # validTo is exclusive
    ],
)
def test_valid_from_and_valid_to_edges(at: str, expected: float | None) -> None:
    bounded = profile(
        14,
        TXDEF,
        Kind.ABSOLUTE,
        sched(A, (0, 12.0), start=NEW_YEAR),
        valid_from=utc("2024-06-03T08:00:00"),
        valid_to=utc("2024-06-03T09:00:00"),
    )
    assert limit((bounded,), at) == expected


BASE = profile(20, TXDEF, Kind.ABSOLUTE, sched(A, (0, 10.0), start=NEW_YEAR))
HOUR = profile(
    21,
    TXDEF,
    Kind.ABSOLUTE,
    sched(A, (0, 20.0), start=utc("2024-06-03T08:00:00"), duration_s=3600),
    stack_level=1,
)
LATER = profile(
    22,
    TXDEF,
    Kind.ABSOLUTE,
    sched(A, (0, 30.0), start=NEW_YEAR),
    stack_level=2,
    valid_from=utc("2024-06-03T12:00:00"),
)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2024-06-03T07:59:59", 10.0),
        ("2024-06-03T08:00:00", 20.0),  # higher level wins even with a higher limit
        ("2024-06-03T09:00:00", 10.0),  # its duration is over: the gap shows level 0
        ("2024-06-03T11:59:59", 10.0),  # level 2 not valid yet: a gap
        ("2024-06-03T12:00:00", 30.0),
    ],
)
def test_stack_level_precedence_with_gaps(at: str, expected: float) -> None:
    assert limit((BASE, HOUR, LATER), at) == expected


def test_stack_level_composite() -> None:
    result = composite_schedule(
        (BASE, HOUR, LATER),
        evse_id=1,
        start=utc("2024-06-03T07:00:00"),
        duration_s=6 * 3600,
        rate_unit=A,
        tx_start=None,
        nominal_voltage_v=230,
    )
    assert result.periods == periods(
        (0, 10.0, 3), (3600, 20.0, 3), (7200, 10.0, 3), (18000, 30.0, 3)
    )


def test_tx_profile_overrides_tx_default_while_it_has_a_period() -> None:
    tx = profile(
        30,
        TX,
        Kind.RELATIVE,
        sched(A, (0, 25.0), duration_s=1800),
        evse_id=1,
        transaction_id="7",
    )
    tx_start = utc("2024-06-03T10:00:00")
    # Higher than TxDefault and still wins: Tx replaces TxDefault, it is not a min.
    assert limit((BASE, tx), "2024-06-03T10:00:00", tx_start=tx_start) == 25.0
    assert limit((BASE, tx), "2024-06-03T10:30:00", tx_start=tx_start) == 10.0
    # A TxProfile of another transaction does not apply.
    other = "8"
    assert limit((BASE, tx), "2024-06-03T10:00:00", tx_start=tx_start, transaction_id=other) == 10.0


def test_tx_default_on_an_evse_replaces_the_station_wide_one_there_only() -> None:
    on_evse_2 = profile(
        31, TXDEF, Kind.ABSOLUTE, sched(A, (0, 16.0), start=NEW_YEAR), evse_id=2, stack_level=0
    )
    high_station_wide = replace(BASE, stack_level=5)
    both = (high_station_wide, on_evse_2)
    assert limit(both, "2024-06-03T10:00:00", evse_id=1) == 10.0
    assert limit(both, "2024-06-03T10:00:00", evse_id=2) == 16.0


def test_station_max_caps_every_evse() -> None:
    station = profile(40, CPMAX, Kind.ABSOLUTE, sched(A, (0, 16.0), start=NEW_YEAR))
    evse1 = profile(41, TXDEF, Kind.ABSOLUTE, sched(A, (0, 32.0), start=NEW_YEAR), evse_id=1)
    evse2 = profile(42, TXDEF, Kind.ABSOLUTE, sched(A, (0, 10.0), start=NEW_YEAR), evse_id=2)
    profiles = (station, evse1, evse2)
    assert limit(profiles, "2024-06-03T10:00:00", evse_id=1) == 16.0
    assert limit(profiles, "2024-06-03T10:00:00", evse_id=2) == 10.0
    assert limit(profiles, "2024-06-03T10:00:00", evse_id=3) == 16.0
    assert limit(profiles, "2024-06-03T10:00:00", evse_id=0) == 16.0  # the station limit alone


@pytest.mark.parametrize(
    ("watts", "phases", "expected_a"),
    [(11040.0, 3, 16.0), (11000.0, 3, 15.9), (7400.0, 1, 32.1), (1.0, 3, 0.0)],
)
def test_power_to_current_is_rounded_down(watts: float, phases: int, expected_a: float) -> None:
    # 11 000 / 690 = 15.94..; 7 400 / 230 = 32.17..: never report more than allowed.
    station = profile(50, CPMAX, Kind.ABSOLUTE, sched(W, (0, watts, phases), start=NEW_YEAR))
    assert limit((station,), "2024-06-03T10:00:00") == expected_a


def test_default_phases_apply_to_periods_without_number_phases() -> None:
    result = limit_at(
        (BASE,),
        evse_id=1,
        at=utc("2024-06-03T10:00:00"),
        tx_start=None,
        nominal_voltage_v=230,
        phases=1,
        rate_unit=W,
    )
    assert result == Limit(2300.0, W, 1)


def test_sub_second_parts_are_dropped() -> None:
    start = utc("2024-06-03T07:59:59.750000")
    result = composite_schedule(
        (BASE, HOUR),
        evse_id=1,
        start=start,
        duration_s=10,
        rate_unit=A,
        tx_start=None,
        nominal_voltage_v=230,
    )
    assert result.start == utc("2024-06-03T07:59:59")
    assert result.periods == periods((0, 10.0, 3), (1, 20.0, 3))


def test_no_profile_gives_no_limit_and_no_periods() -> None:
    assert limit((), "2024-06-03T10:00:00") is None
    result = composite_schedule(
        (HOUR,),
        evse_id=1,
        start=utc("2024-06-03T10:00:00"),
        duration_s=600,
        rate_unit=A,
        tx_start=None,
        nominal_voltage_v=230,
    )
    assert result.periods == ()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"duration_s": 0},
        {"start": datetime(2024, 6, 3)},  # naive
        {"nominal_voltage_v": 0},
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "evse_id": 1,
        "start": NEW_YEAR,
        "duration_s": 60,
        "rate_unit": A,
        "tx_start": None,
        "nominal_voltage_v": 230,
    }
    with pytest.raises(ValueError):
        composite_schedule((BASE,), **(args | kwargs))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- store


def test_install_replaces_same_id_or_same_purpose_stack_and_evse() -> None:
    store, replaced = ProfileStore().install(BASE)
    assert replaced == ()
    store, replaced = store.install(replace(BASE, schedule=sched(A, (0, 6.0), start=NEW_YEAR)))
    assert replaced == (20,)  # same id
    same_slot = replace(BASE, profile_id=99)
    store, replaced = store.install(same_slot)
    assert replaced == (20,)  # same purpose, stack level and EVSE
    assert store.profiles == (same_slot,)
    other_evse = replace(BASE, profile_id=100, evse_id=1)
    other_level = replace(BASE, profile_id=101, stack_level=1)
    other_purpose = replace(BASE, profile_id=102, purpose=CPMAX)
    for extra in (other_evse, other_level, other_purpose):
        store, replaced = store.install(extra)
        assert replaced == ()
    assert [p.profile_id for p in store.profiles] == [99, 100, 101, 102]


def test_remote_start_tx_profile_is_replaced_by_the_one_with_the_transaction_id() -> None:
    from_remote_start = profile(60, TX, Kind.RELATIVE, sched(A, (0, 10.0)), evse_id=1)
    with_tx_id = replace(from_remote_start, profile_id=61, transaction_id="5")
    store, _ = ProfileStore().install(from_remote_start)
    store, replaced = store.install(with_tx_id)
    assert replaced == (60,)
    assert store.profiles == (with_tx_id,)
    store, removed = store.end_transaction(evse_id=1)
    assert (store.profiles, removed) == ((), (61,))


@pytest.mark.parametrize(
    ("criteria", "cleared"),
    [
        (ClearCriteria(), (1, 2, 3, 4)),  # no criteria: all
        (ClearCriteria(profile_id=3), (3,)),
        (ClearCriteria(profile_id=3, purpose=CPMAX), (3,)),  # the id takes precedence
        (ClearCriteria(profile_id=77), ()),  # nothing matched: Unknown
        (ClearCriteria(evse_id=1), (4,)),
        (ClearCriteria(purpose=TXDEF), (2, 3)),
        (ClearCriteria(purpose=TXDEF, stack_level=1), (3,)),
        (ClearCriteria(evse_id=1, purpose=TXDEF), ()),  # AND, not OR
    ],
)
def test_clear_charging_profile_matching(criteria: ClearCriteria, cleared: tuple[int, ...]) -> None:
    store, removed = ProfileStore(EXAMPLE).clear(criteria)
    assert removed == cleared
    assert {p.profile_id for p in store.profiles} == {1, 2, 3, 4} - set(cleared)


def test_for_evse_keeps_its_own_and_station_wide_profiles() -> None:
    assert ProfileStore(EXAMPLE).for_evse(2) == (P1, P2, P3)


# ------------------------------------------------------ hypothesis against a brute force

GRID_S = 900
"""Every generated boundary is on this grid, so checking every grid point checks everything."""
T0 = utc("2024-06-03T00:00:00")


def on_grid(lo: int, hi: int) -> st.SearchStrategy[datetime]:
    return st.integers(lo, hi).map(lambda k: T0 + timedelta(seconds=k * GRID_S))


@st.composite
def random_profile(draw: st.DrawFn) -> ChargingProfile:
    purpose = draw(st.sampled_from(Purpose))
    kinds = [Kind.ABSOLUTE, Kind.RECURRING] if purpose is CPMAX else list(Kind)
    kind = draw(st.sampled_from(kinds))
    evse_id = {
        CPMAX: 0,
        TX: draw(st.integers(1, 2)),
        TXDEF: draw(st.integers(0, 2)),
        Purpose.EXTERNAL: draw(st.integers(0, 2)),
    }[purpose]
    unit = draw(st.sampled_from(RateUnit))
    tenths = st.integers(0, 700) if unit is A else st.integers(0, 300_000)
    offsets = draw(st.lists(st.integers(1, 200), max_size=3, unique=True))
    schedule = ChargingSchedule(
        rate_unit=unit,
        periods=tuple(
            SchedulePeriod(
                start * GRID_S, draw(tenths) / 10, draw(st.sampled_from([None, 1, 2, 3]))
            )
            for start in [0, *sorted(offsets)]
        ),
        start_schedule=None if kind is Kind.RELATIVE else draw(on_grid(-1000, 200)),
        duration_s=draw(st.none() | st.integers(1, 250).map(lambda k: k * GRID_S)),
    )
    valid_from = draw(st.none() | on_grid(-200, 200))
    valid_to = draw(st.none() | st.integers(1, 300).map(lambda k: timedelta(seconds=k * GRID_S)))
    return ChargingProfile(
        profile_id=draw(st.integers(0, 12)),
        stack_level=draw(st.integers(0, 3)),
        purpose=purpose,
        kind=kind,
        schedule=schedule,
        evse_id=evse_id,
        recurrency=draw(st.sampled_from(Recurrency)) if kind is Kind.RECURRING else None,
        valid_from=valid_from,
        valid_to=None if valid_to is None else (valid_from or T0) + valid_to,
        transaction_id=draw(st.sampled_from([None, "t1", "t2"])) if purpose is TX else None,
    )


def brute_period(
    p: ChargingProfile, t: datetime, tx_start: datetime | None
) -> SchedulePeriod | None:
    """The period of ``p`` in force at ``t``, straight from the rules."""
    if p.valid_from is not None and t < p.valid_from:
        return None
    if p.valid_to is not None and t >= p.valid_to:
        return None
    s = p.schedule
    length = s.duration_s
    if p.kind is Kind.ABSOLUTE:
        origin = s.start_schedule
    elif p.kind is Kind.RELATIVE:
        origin = tx_start
    else:
        assert s.start_schedule is not None and p.recurrency is not None
        step = 86400 if p.recurrency is Recurrency.DAILY else 604800
        length = step if length is None else min(length, step)
        origin = s.start_schedule
        while origin + timedelta(seconds=step) <= t:
            origin += timedelta(seconds=step)
    if origin is None or t < origin:
        return None
    elapsed = (t - origin).total_seconds()
    if length is not None and elapsed >= length:
        return None
    found = None
    for period in s.periods:
        if period.start_period_s <= elapsed:
            found = period
    return found


def brute_limit(
    profiles: tuple[ChargingProfile, ...],
    *,
    evse_id: int,
    t: datetime,
    tx_start: datetime | None,
    transaction_id: str | None,
    unit: RateUnit,
    volts: int,
    phases: int,
) -> tuple[float, int] | None:
    ext = Purpose.EXTERNAL
    groups = [
        [p for p in profiles if p.purpose is CPMAX],
        [p for p in profiles if p.purpose is ext and p.evse_id == 0],  # caps like CPMAX
        [p for p in profiles if p.purpose is ext and p.evse_id == evse_id],
    ]
    tx_layer = [
        [
            p
            for p in profiles
            if p.purpose is TX
            and p.evse_id == evse_id
            and tx_start
            and (transaction_id is None or p.transaction_id in (None, transaction_id))
        ],
        [p for p in profiles if p.purpose is TXDEF and p.evse_id == evse_id],
        [p for p in profiles if p.purpose is TXDEF and p.evse_id == 0],
    ]
    values: list[tuple[Fraction, int]] = []
    for index, group in enumerate(groups + tx_layer):
        best = None
        for p in group:
            period = brute_period(p, t, tx_start)
            if period is not None and (best is None or p.stack_level > best[0].stack_level):
                best = (p, period)
        if best is None:
            continue
        p, period = best
        n = period.number_phases or phases
        value = Fraction(str(period.limit))
        if p.schedule.rate_unit is A and unit is W:
            value = value * volts * n
        if p.schedule.rate_unit is W and unit is A:
            value = value / (volts * n)
        values.append((value, n))
        if index >= len(groups):
            break  # the first Tx-layer group with a period wins
    if not values:
        return None
    return math.floor(min(v for v, _ in values) * 10) / 10, min(n for _, n in values)


@settings(max_examples=300, deadline=None)
@given(
    generated=st.lists(random_profile(), max_size=6),
    evse_id=st.integers(1, 2),
    start=on_grid(-200, 200),
    start_jitter_s=st.integers(0, GRID_S - 1),
    duration_steps=st.integers(1, 200),
    tx_start=st.none() | on_grid(-200, 100),
    transaction_id=st.sampled_from([None, "t1"]),
    unit=st.sampled_from(RateUnit),
    volts=st.sampled_from([230, 120, 240]),
    phases=st.sampled_from([1, 3]),
)
def test_composite_equals_the_brute_force_minimum(
    generated: list[ChargingProfile],
    evse_id: int,
    start: datetime,
    start_jitter_s: int,
    duration_steps: int,
    tx_start: datetime | None,
    transaction_id: str | None,
    unit: RateUnit,
    volts: int,
    phases: int,
) -> None:
    store = ProfileStore()
    for p in generated:
        store, _ = store.install(p)
    profiles = store.profiles
    begin = start + timedelta(seconds=start_jitter_s)
    duration_s = duration_steps * GRID_S
    common = {
        "evse_id": evse_id,
        "tx_start": tx_start,
        "nominal_voltage_v": volts,
        "phases": phases,
        "transaction_id": transaction_id,
    }
    result = composite_schedule(
        profiles,
        start=begin,
        duration_s=duration_s,
        rate_unit=unit,
        **common,  # type: ignore[arg-type]
    )

    # Shape: ordered, contiguous from 0, inside the duration, neighbours differ.
    starts = [p.start_period_s for p in result.periods]
    if starts:
        assert starts[0] == 0
        assert starts == sorted(set(starts))
        assert starts[-1] < duration_s
    for before, after in zip(result.periods, result.periods[1:], strict=False):
        assert (before.limit, before.number_phases) != (after.limit, after.number_phases)

    # Value: at the start, every grid point and the second before it (the limit is constant
    # between grid points), the composite period in force equals the brute force.
    first = (begin - T0) // timedelta(seconds=GRID_S) + 1
    instants = {begin, begin + timedelta(seconds=duration_s - 1)}
    for k in range(first, first + duration_steps + 1):
        grid_point = T0 + timedelta(seconds=k * GRID_S)
        instants |= {grid_point, grid_point - timedelta(seconds=1)}
    for t in sorted(i for i in instants if begin <= i < begin + timedelta(seconds=duration_s)):
        expected = brute_limit(
            profiles,
            evse_id=evse_id,
            t=t,
            tx_start=tx_start,
            transaction_id=transaction_id,
            unit=unit,
            volts=volts,
            phases=phases,
        )
        offset_s = (t - begin).total_seconds()
        if not result.periods:
            assert expected is None
        else:
            in_force = [p for p in result.periods if p.start_period_s <= offset_s][-1]
            assert (in_force.limit, in_force.number_phases) == (expected or (None, None))
        direct = limit_at(profiles, at=t, rate_unit=unit, **common)  # type: ignore[arg-type]
        assert (None if direct is None else (direct.limit, direct.number_phases)) == expected
