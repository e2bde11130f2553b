"""Tables for the pure 1.6 <-> engine smart-charging mapping (agent.ocpp.v16.charging)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agent.ocpp.v16 import charging
from agent.smart_charging import (
    ChargingProfile,
    ChargingSchedule,
    ClearCriteria,
    CompositePeriod,
    CompositeSchedule,
    Kind,
    Purpose,
    RateUnit,
    Recurrency,
    SchedulePeriod,
)

NOW = datetime(2024, 6, 3, 7, 30, tzinfo=UTC)


def _raw(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "charging_profile_id": 7,
        "stack_level": 1,
        "charging_profile_purpose": "TxDefaultProfile",
        "charging_profile_kind": "Relative",
        "charging_schedule": {
            "charging_rate_unit": "A",
            "charging_schedule_period": [
                {"start_period": 0, "limit": 16},
                {"start_period": 3600, "limit": 8.5, "number_phases": 1},
            ],
        },
    }
    raw.update(overrides)
    return raw


def _expected(**overrides: Any) -> ChargingProfile:
    base = ChargingProfile(
        profile_id=7,
        stack_level=1,
        purpose=Purpose.TX_DEFAULT,
        kind=Kind.RELATIVE,
        schedule=ChargingSchedule(
            rate_unit=RateUnit.A,
            periods=(SchedulePeriod(0, 16.0), SchedulePeriod(3600, 8.5, 1)),
        ),
        evse_id=1,
    )
    schedule_overrides = overrides.pop("schedule", {})
    return ChargingProfile(
        **{
            **{f: getattr(base, f) for f in base.__slots__},
            **overrides,
            "schedule": ChargingSchedule(
                **{
                    **{f: getattr(base.schedule, f) for f in base.schedule.__slots__},
                    **schedule_overrides,
                }
            ),
        }
    )


_SCHED = _raw()["charging_schedule"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(_raw(), _expected(), id="relative-minimal"),
        pytest.param(
            _raw(charging_profile_kind="Absolute"),
            _expected(kind=Kind.ABSOLUTE, schedule={"start_schedule": NOW}),
            id="absolute-without-start-starts-now",
        ),
        pytest.param(
            _raw(
                charging_profile_kind="Recurring",
                recurrency_kind="Daily",
                valid_from="2024-01-01T00:00:00Z",
                valid_to="2024-12-31T00:00:00+01:00",
                charging_schedule={
                    **_SCHED,
                    "start_schedule": "2024-01-01T00:00:00.000Z",
                    "duration": 86400,
                    "min_charging_rate": 6.1,
                },
            ),
            _expected(
                kind=Kind.RECURRING,
                recurrency=Recurrency.DAILY,
                valid_from=datetime(2024, 1, 1, tzinfo=UTC),
                valid_to=datetime(2024, 12, 30, 23, tzinfo=UTC),
                schedule={
                    "start_schedule": datetime(2024, 1, 1, tzinfo=UTC),
                    "duration_s": 86400,
                    "min_charging_rate": 6.1,
                },
            ),
            id="recurring-all-fields",
        ),
        pytest.param(
            _raw(charging_profile_purpose="TxProfile", transaction_id=42),
            _expected(purpose=Purpose.TX, transaction_id="42"),
            id="tx-profile-transaction-id-as-text",
        ),
        pytest.param(
            _raw(charging_schedule={**_SCHED, "charging_rate_unit": "W"}),
            _expected(schedule={"rate_unit": RateUnit.W}),
            id="watts",
        ),
    ],
)
def test_profile_from_16(raw: dict[str, Any], expected: ChargingProfile) -> None:
    assert charging.profile_from_16(1, raw, now=NOW) == expected


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param(
            {k: v for k, v in _raw().items() if k != "stack_level"}, "stack_level", id="missing"
        ),
        pytest.param(_raw(stack_level="1"), "stackLevel", id="string-int"),
        pytest.param(_raw(charging_profile_purpose="Bogus"), "Bogus", id="purpose"),
        pytest.param(_raw(valid_from="yesterday"), "validFrom", id="bad-time"),
        pytest.param(
            _raw(charging_schedule={**_SCHED, "charging_schedule_period": [{"limit": 1}]}),
            "start_period",
            id="period-without-start",
        ),
        pytest.param(_raw(charging_schedule=[]), "chargingSchedule", id="schedule-not-object"),
    ],
)
def test_malformed_profile_is_a_value_error_naming_the_field(
    raw: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        charging.profile_from_16(1, raw, now=NOW)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((None, None, None, None), ClearCriteria()),
        ((5, 1, "TxProfile", 2), ClearCriteria(5, 1, Purpose.TX, 2)),
        ((None, 0, "TxDefaultProfile", None), ClearCriteria(None, 0, Purpose.TX_DEFAULT, None)),
        ((None, None, None, 0), ClearCriteria(stack_level=0)),
    ],
)
def test_clear_criteria_from_16(
    args: tuple[int | None, int | None, str | None, int | None], expected: ClearCriteria
) -> None:
    assert charging.clear_criteria_from_16(*args) == expected


@pytest.mark.parametrize(
    ("unit", "expected"), [(None, RateUnit.A), ("A", RateUnit.A), ("W", RateUnit.W)]
)
def test_rate_unit_from_16(unit: str | None, expected: RateUnit) -> None:
    assert charging.rate_unit_from_16(unit) is expected


def test_rate_unit_from_16_refuses_others() -> None:
    with pytest.raises(ValueError):
        charging.rate_unit_from_16("kW")


def test_composite_to_16_matches_the_reference_example() -> None:
    schedule = CompositeSchedule(
        NOW,
        7200,
        RateUnit.A,
        (CompositePeriod(0, 16.0, 3), CompositePeriod(3600, 8.0, 3)),
    )
    assert charging.composite_to_16(schedule) == {
        "duration": 7200,
        "start_schedule": "2024-06-03T07:30:00.000Z",
        "charging_rate_unit": "A",
        "charging_schedule_period": [
            {"start_period": 0, "limit": 16.0, "number_phases": 3},
            {"start_period": 3600, "limit": 8.0, "number_phases": 3},
        ],
    }


def test_composite_to_16_refuses_a_period_without_limit() -> None:
    schedule = CompositeSchedule(NOW, 60, RateUnit.A, (CompositePeriod(0, None, None),))
    with pytest.raises(ValueError):
        charging.composite_to_16(schedule)
