"""The version-neutral chargingSchedule payload helpers (agent.ocpp.schedule_payload)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from agent.ocpp.schedule_payload import (
    periods_from_payload,
    periods_to_payload,
    schedule_from_payload,
)
from agent.smart_charging import CompositePeriod, RateUnit, SchedulePeriod

NOW = datetime(2024, 6, 3, 7, 30, tzinfo=UTC)


def _sched(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "charging_rate_unit": "A",
        "charging_schedule_period": [
            {"start_period": 0, "limit": Decimal("16.5")},
            {"start_period": 600, "limit": 10, "number_phases": 1},
        ],
    }
    raw.update(overrides)
    return raw


def test_periods_round_trip_keeps_order_and_leaves_out_unset_phases() -> None:
    periods = periods_from_payload(_sched()["charging_schedule_period"])
    assert periods == (SchedulePeriod(0, 16.5), SchedulePeriod(600, 10.0, 1))
    assert periods_to_payload(periods) == [
        {"start_period": 0, "limit": 16.5},
        {"start_period": 600, "limit": 10.0, "number_phases": 1},
    ]


@pytest.mark.parametrize(
    ("period", "error", "match"),
    [
        ({"limit": 6}, KeyError, "start_period"),
        ({"start_period": 1.5, "limit": 6}, TypeError, "startPeriod"),
        ({"start_period": 0, "limit": "6"}, TypeError, "limit"),
        ({"start_period": 0, "limit": 6, "number_phases": True}, TypeError, "numberPhases"),
        ("0,6", TypeError, "chargingSchedulePeriod"),
    ],
)
def test_bad_periods_name_the_field(period: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        periods_from_payload([period])


def test_composite_period_without_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="period at 60 s has no limit"):
        periods_to_payload([CompositePeriod(0, 16.0, 3), CompositePeriod(60, None, None)])


def test_schedule_start_falls_back_to_the_default_only_when_absent() -> None:
    given = _sched(start_schedule="2024-06-03T06:00:00Z", duration=3600, min_charging_rate=6)
    schedule = schedule_from_payload(given, default_start=NOW)
    assert schedule.start_schedule == datetime(2024, 6, 3, 6, 0, tzinfo=UTC)
    assert (schedule.rate_unit, schedule.duration_s, schedule.min_charging_rate) == (
        RateUnit.A,
        3600,
        6.0,
    )
    assert schedule_from_payload(_sched(), default_start=NOW).start_schedule == NOW
    open_start = schedule_from_payload(_sched())
    assert open_start.start_schedule is None
    assert open_start.duration_s is None
    assert open_start.min_charging_rate is None


def test_schedule_with_unknown_rate_unit_is_refused() -> None:
    with pytest.raises(ValueError):
        schedule_from_payload(_sched(charging_rate_unit="kW"))
