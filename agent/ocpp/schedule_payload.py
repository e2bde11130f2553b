"""``chargingSchedule`` payloads, for both versions' smart-charging mappings.

OCPP 1.6 (``ChargingSchedule``) and 2.0.1 (``ChargingScheduleType``) spell a schedule's
``chargingRateUnit``, ``duration`` (s), ``startSchedule``, ``minChargingRate`` and its
periods the same: ``startPeriod`` (s), ``limit`` (A per phase or W, in the rate unit) and
an optional ``numberPhases``. The ``ocpp`` library hands them over and takes them back as
snake_case dicts. What differs (profile ids and purposes, the 2.0.1 schedule id, the
composite schedule's start and EVSE) stays in ``v16/charging.py`` / ``v201/charging.py``.
Pure: no I/O, no ``ocpp`` import.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from agent.ocpp.fields import field_dict, field_int, field_number, field_opt_int, field_opt_time
from agent.smart_charging.composite import CompositePeriod
from agent.smart_charging.profiles import ChargingSchedule, RateUnit, SchedulePeriod


def schedule_from_payload(
    raw: dict[str, Any], *, default_start: datetime | None = None
) -> ChargingSchedule:
    """A request's ``charging_schedule`` (one schedule, snake_case) as the engine's.

    Args:
        raw: The schedule as the library hands it.
        default_start: The start when the schedule names none (1.6 leaves an Absolute
            schedule's start open: the time of receipt); None keeps it open.

    Raises:
        KeyError: ``charging_rate_unit``, ``charging_schedule_period`` or a period's
            required field is missing.
        TypeError: A field has the wrong type (the message names it).
        ValueError: An unknown rate unit, or a start that is not a date-time.
    """
    start = field_opt_time(raw.get("start_schedule"), "startSchedule")
    min_rate = raw.get("min_charging_rate")
    return ChargingSchedule(
        rate_unit=RateUnit(raw["charging_rate_unit"]),
        periods=periods_from_payload(raw["charging_schedule_period"]),
        start_schedule=default_start if start is None else start,
        duration_s=field_opt_int(raw.get("duration"), "duration"),
        min_charging_rate=None if min_rate is None else field_number(min_rate, "minChargingRate"),
    )


def periods_from_payload(raw: Any) -> tuple[SchedulePeriod, ...]:
    """A request's ``charging_schedule_period`` list as engine periods, in its order.

    Args:
        raw: The list as the library hands it (snake_case dicts; limits may be
            ``Decimal``).

    Raises:
        KeyError: A period lacks ``start_period`` or ``limit``.
        TypeError: ``raw`` is not iterable, or a period or one of its fields has the
            wrong type (the message names the field).
    """
    return tuple(
        SchedulePeriod(
            start_period_s=field_int(p["start_period"], "startPeriod"),
            limit=field_number(p["limit"], "limit"),
            number_phases=field_opt_int(p.get("number_phases"), "numberPhases"),
        )
        for p in (field_dict(x, "chargingSchedulePeriod") for x in raw)
    )


def periods_to_payload(
    periods: Iterable[SchedulePeriod | CompositePeriod],
) -> list[dict[str, Any]]:
    """Periods as a ``charging_schedule_period`` list (snake_case); ``number_phases`` only
    where the period names it.

    Args:
        periods: Installed-profile or composite-schedule periods, in order.

    Raises:
        ValueError: A (composite) period has no limit: the caller fills such gaps
            first (the smart-charging service uses the hardware limit).
    """
    items: list[dict[str, Any]] = []
    for period in periods:
        if period.limit is None:
            raise ValueError(f"period at {period.start_period_s} s has no limit")
        item: dict[str, Any] = {"start_period": period.start_period_s, "limit": period.limit}
        if period.number_phases is not None:
            item["number_phases"] = period.number_phases
        items.append(item)
    return items


__all__ = ["periods_from_payload", "periods_to_payload", "schedule_from_payload"]
