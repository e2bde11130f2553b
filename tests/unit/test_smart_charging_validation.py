"""Profile validation as a table (each rejection names its field), purpose mapping, and the
store's JSON persistence."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given

from agent.smart_charging import (
    ChargingProfile,
    ChargingSchedule,
    Kind,
    ProfileStore,
    Purpose,
    RateUnit,
    Recurrency,
    SchedulePeriod,
    from_json,
    to_json,
    validate,
)

START = datetime(2024, 6, 3, 8, 0, tzinfo=UTC)
SCHEDULE = ChargingSchedule(
    rate_unit=RateUnit.A,
    periods=(SchedulePeriod(0, 16.0), SchedulePeriod(3600, 8.5, 1)),
    start_schedule=START,
    duration_s=7200,
    min_charging_rate=6.0,
)
VALID = ChargingProfile(
    profile_id=1,
    stack_level=2,
    purpose=Purpose.TX_DEFAULT,
    kind=Kind.ABSOLUTE,
    schedule=SCHEDULE,
    evse_id=1,
    valid_from=START,
    valid_to=START + timedelta(hours=4),
)


def check(profile: ChargingProfile, *, running_on: frozenset[int] = frozenset({1})) -> list[str]:
    return validate(
        profile,
        evse_count=2,
        has_transaction_on=running_on.__contains__,
        supported_units={RateUnit.A},
        max_periods=3,
        max_stack_level=5,
    )


def with_schedule(**changes: Any) -> ChargingProfile:
    return replace(VALID, schedule=replace(SCHEDULE, **changes))


def periods(*rows: tuple[int, float] | tuple[int, float, int]) -> tuple[SchedulePeriod, ...]:
    return tuple(SchedulePeriod(*row) for row in rows)


RELATIVE_TX = replace(
    VALID,
    purpose=Purpose.TX,
    kind=Kind.RELATIVE,
    schedule=replace(SCHEDULE, start_schedule=None),
    transaction_id="9",
)


@pytest.mark.parametrize(
    "profile",
    [
        VALID,
        replace(VALID, evse_id=0),  # a station-wide TxDefault
        replace(VALID, purpose=Purpose.CHARGE_POINT_MAX, evse_id=0),
        replace(VALID, kind=Kind.RECURRING, recurrency=Recurrency.WEEKLY),
        RELATIVE_TX,
        replace(VALID, valid_from=None, valid_to=None),
        with_schedule(duration_s=None, min_charging_rate=None),
        with_schedule(periods=periods((0, 0.0), (1, 0.1), (2, 32.0))),
    ],
)
def test_valid_profiles_pass(profile: ChargingProfile) -> None:
    assert check(profile) == []


@pytest.mark.parametrize(
    ("profile", "field"),
    [
        (replace(VALID, profile_id=-1), "profile_id:"),
        (replace(VALID, stack_level=6), "stack_level:"),
        (replace(VALID, stack_level=-1), "stack_level:"),
        (replace(VALID, evse_id=3), "evse_id: unknown EVSE 3"),
        (replace(VALID, evse_id=-1), "evse_id: unknown EVSE -1"),
        (replace(VALID, purpose=Purpose.CHARGE_POINT_MAX), "evse_id: ChargePointMaxProfile"),
        (
            replace(RELATIVE_TX, purpose=Purpose.CHARGE_POINT_MAX, evse_id=0, transaction_id=None),
            "kind: ChargePointMaxProfile may not be Relative",
        ),
        (replace(RELATIVE_TX, evse_id=0), "evse_id: TxProfile must be on an EVSE > 0"),
        (replace(RELATIVE_TX, evse_id=2), "purpose: TxProfile without a transaction on EVSE 2"),
        (replace(VALID, transaction_id="9"), "transaction_id:"),
        (replace(VALID, kind=Kind.RECURRING), "recurrency: required"),
        (replace(VALID, recurrency=Recurrency.DAILY), "recurrency: only for a Recurring"),
        (replace(RELATIVE_TX, schedule=SCHEDULE), "schedule.start_schedule: not allowed"),
        (with_schedule(start_schedule=None), "schedule.start_schedule: required"),
        (replace(VALID, valid_to=START), "valid_to: must be after valid_from"),
        (replace(VALID, valid_from=datetime(2024, 6, 3)), "valid_from: must carry a timezone"),
        (with_schedule(start_schedule=datetime(2024, 6, 3)), "schedule.start_schedule: must"),
        (with_schedule(rate_unit=RateUnit.W), "schedule.rate_unit: W is not supported"),
        (with_schedule(duration_s=0), "schedule.duration_s:"),
        (with_schedule(min_charging_rate=6.05), "schedule.min_charging_rate:"),
        (with_schedule(periods=()), "schedule.periods: at least one"),
        (
            with_schedule(periods=periods((0, 1), (1, 1), (2, 1), (3, 1))),
            "schedule.periods: at most 3",
        ),
        (
            with_schedule(periods=periods((60, 16.0))),
            "schedule.periods[0].start_period_s: must be 0",
        ),
        (
            with_schedule(periods=periods((0, 16.0), (60, 8.0), (60, 6.0))),
            "schedule.periods[2].start_period_s: must be after 60",
        ),
        (
            with_schedule(periods=periods((0, 16.0), (60, 8.0), (30, 6.0))),
            "schedule.periods[2].start_period_s: must be after 60",
        ),
        (with_schedule(periods=periods((0, 16.05))), "schedule.periods[0].limit:"),
        (with_schedule(periods=periods((0, -1.0))), "schedule.periods[0].limit:"),
        (with_schedule(periods=periods((0, float("nan")))), "schedule.periods[0].limit:"),
        (with_schedule(periods=periods((0, float("inf")))), "schedule.periods[0].limit:"),
        (with_schedule(periods=periods((0, 16.0, 4))), "schedule.periods[0].number_phases:"),
    ],
)
def test_each_rejection_names_its_field(profile: ChargingProfile, field: str) -> None:
    problems = check(profile)
    assert len(problems) == 1, problems
    assert problems[0].startswith(field), problems


def test_every_problem_is_reported() -> None:
    bad = replace(
        VALID,
        stack_level=9,
        evse_id=0,
        purpose=Purpose.TX,
        schedule=replace(SCHEDULE, rate_unit=RateUnit.W, periods=periods((5, 1.25))),
    )
    fields = [problem.split(":")[0] for problem in check(bad)]
    assert fields == [
        "stack_level",
        "evse_id",
        "schedule.rate_unit",
        "schedule.periods[0].start_period_s",
        "schedule.periods[0].limit",
    ]


@given(tenths=st.integers(0, 10**7))
def test_any_limit_with_one_decimal_is_accepted(tenths: int) -> None:
    assert check(with_schedule(periods=periods((0, tenths / 10)))) == []


@pytest.mark.parametrize(
    ("name", "purpose"),
    [
        ("ChargePointMaxProfile", Purpose.CHARGE_POINT_MAX),
        ("ChargingStationMaxProfile", Purpose.CHARGE_POINT_MAX),  # 2.0.1 spelling
        ("TxDefaultProfile", Purpose.TX_DEFAULT),
        ("TxProfile", Purpose.TX),
    ],
)
def test_purpose_names_of_both_versions(name: str, purpose: Purpose) -> None:
    assert Purpose.from_spec(name) is purpose


def test_external_constraints_are_a_purpose_no_csms_sets() -> None:
    purpose = Purpose.from_spec("ChargingStationExternalConstraints")
    assert purpose is Purpose.EXTERNAL and purpose.is_external
    assert not any(p.is_external for p in Purpose if p is not Purpose.EXTERNAL)
    with pytest.raises(ValueError):
        Purpose.from_spec("NoSuchProfile")


# ------------------------------------------------------------------------- persistence


def test_json_round_trip_keeps_every_field() -> None:
    recurring = replace(
        VALID,
        profile_id=2,
        evse_id=0,
        kind=Kind.RECURRING,
        recurrency=Recurrency.DAILY,
        valid_from=datetime(2024, 6, 3, 10, 0, 0, 250_000, tzinfo=UTC),
    )
    store = ProfileStore((VALID, recurring, RELATIVE_TX))
    assert from_json(to_json(store)) == store
    assert from_json(to_json(ProfileStore())) == ProfileStore()


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"version": 2, "profiles": []}',
        '{"version": 1}',
        '{"version": 1, "profiles": [{}]}',
    ],
)
def test_json_refuses_what_it_did_not_write(text: str) -> None:
    with pytest.raises(ValueError):
        from_json(text)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('"profile_id": 1', '"profile_id": "1"'),
        ('"purpose": "TxDefaultProfile"', '"purpose": "Nope"'),
        ('"valid_from": "2024-06-03T08:00:00+00:00"', '"valid_from": "2024-06-03T08:00:00"'),
        ('"periods": [[0, 16.0, null]', '"periods": [[0, true, null]'),
    ],
)
def test_json_names_the_broken_profile(old: str, new: str) -> None:
    text = to_json(ProfileStore((VALID,)))
    assert old in text
    with pytest.raises(ValueError, match=r"profiles\[0\]"):
        from_json(text.replace(old, new))
