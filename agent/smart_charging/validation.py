"""Checks a charging profile against the spec and the station before it is installed. Pure.

``validate`` returns every problem it finds, each message starting with the field it is
about, so the adapter can log them and answer Rejected (2.0.1 can also put the first one
in ``statusInfo``). The checks are the union of OCPP 1.6 §5.16/§7.8-7.14 and 2.0.1 K01
(REFERENCE 3.1, 3.4); where 2.0.1 is stricter and 1.6 silent, the stricter rule is kept
because the engine needs it:

* Absolute and Recurring profiles need ``start_schedule`` (K01.FR.40). A 1.6 adapter that
  receives an Absolute profile without one sets it to the time of receipt first.
* A ChargePointMaxProfile may not be Relative (K01.FR.38): the station has no
  transaction to be relative to.
* A TxProfile needs a transaction running on its EVSE (1.6 §3.13.1, K01.FR.09/16). A
  TxProfile embedded in a RemoteStart is installed when its transaction starts, so the
  adapter validates it then.
* External constraints (``Purpose.EXTERNAL``) go on the station (0) or an EVSE; that
  the CSMS may not set them is the adapters' rule, not this module's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from datetime import datetime
from fractions import Fraction
from itertools import pairwise

from agent.smart_charging.profiles import (
    ChargingProfile,
    ChargingSchedule,
    Kind,
    Purpose,
    RateUnit,
)

VALID_NUMBER_PHASES = (1, 2, 3)


def validate(
    profile: ChargingProfile,
    *,
    evse_count: int,
    has_transaction_on: Callable[[int], bool],
    supported_units: Collection[RateUnit],
    max_periods: int,
    max_stack_level: int,
) -> list[str]:
    """Every reason to reject ``profile``; an empty list means it may be installed.

    Args:
        profile: The profile as received, already mapped onto the neutral model.
        evse_count: EVSEs of the station; valid EVSE ids are 0..evse_count.
        has_transaction_on: Whether a transaction is running on an EVSE id.
        supported_units: Rate units the station accepts (1.6
            ChargingScheduleAllowedChargingRateUnit, 2.0.1 SmartChargingCtrlr.RateUnit).
        max_periods: Most periods per schedule (ChargingScheduleMaxPeriods,
            PeriodsPerSchedule).
        max_stack_level: Highest stack level (ChargeProfileMaxStackLevel,
            ProfileStackLevel).

    Returns:
        Messages of the form ``"field: problem"``, in field order.
    """
    problems: list[str] = []
    if profile.profile_id < 0:
        problems.append(f"profile_id: must be >= 0, got {profile.profile_id}")
    if not 0 <= profile.stack_level <= max_stack_level:
        problems.append(f"stack_level: must be in 0..{max_stack_level}, got {profile.stack_level}")
    problems += _check_target(profile, evse_count, has_transaction_on)
    problems += _check_kind(profile)
    problems += _check_validity(profile)
    problems += _check_schedule(profile.schedule, supported_units, max_periods)
    return problems


def _check_target(
    profile: ChargingProfile, evse_count: int, has_transaction_on: Callable[[int], bool]
) -> list[str]:
    """Purpose on the right EVSE (REFERENCE 3.1 table)."""
    evse_id = profile.evse_id
    if not 0 <= evse_id <= evse_count:
        return [f"evse_id: unknown EVSE {evse_id} (station has 1..{evse_count})"]  # K01.FR.28
    problems: list[str] = []
    if profile.purpose is Purpose.CHARGE_POINT_MAX:
        if evse_id != 0:
            problems.append(f"evse_id: ChargePointMaxProfile must be on 0, got {evse_id}")
        if profile.kind is Kind.RELATIVE:
            problems.append("kind: ChargePointMaxProfile may not be Relative")  # K01.FR.38
    if profile.purpose is Purpose.TX:
        if evse_id == 0:
            problems.append("evse_id: TxProfile must be on an EVSE > 0")
        elif not has_transaction_on(evse_id):
            problems.append(f"purpose: TxProfile without a transaction on EVSE {evse_id}")
    elif profile.transaction_id is not None:
        problems.append(f"transaction_id: only a TxProfile has one ({profile.purpose})")
    return problems


def _check_kind(profile: ChargingProfile) -> list[str]:
    """Kind, recurrency and start_schedule belong together (K01.FR.40/41)."""
    problems: list[str] = []
    has_start = profile.schedule.start_schedule is not None
    if profile.kind is Kind.RECURRING and profile.recurrency is None:
        problems.append("recurrency: required for a Recurring profile")
    if profile.kind is not Kind.RECURRING and profile.recurrency is not None:
        problems.append(f"recurrency: only for a Recurring profile, not {profile.kind}")
    if profile.kind is Kind.RELATIVE and has_start:
        problems.append("schedule.start_schedule: not allowed for a Relative profile")
    if profile.kind is not Kind.RELATIVE and not has_start:
        problems.append(f"schedule.start_schedule: required for a {profile.kind} profile")
    return problems


def _check_validity(profile: ChargingProfile) -> list[str]:
    problems: list[str] = []
    named = (
        ("valid_from", profile.valid_from),
        ("valid_to", profile.valid_to),
        ("schedule.start_schedule", profile.schedule.start_schedule),
    )
    for name, value in named:
        if value is not None and not _is_aware(value):
            problems.append(f"{name}: must carry a timezone")
    if (
        profile.valid_from is not None
        and profile.valid_to is not None
        and _is_aware(profile.valid_from)
        and _is_aware(profile.valid_to)
        and profile.valid_from >= profile.valid_to
    ):
        problems.append("valid_to: must be after valid_from")
    return problems


def _check_schedule(
    schedule: ChargingSchedule, supported_units: Collection[RateUnit], max_periods: int
) -> list[str]:
    problems: list[str] = []
    if schedule.rate_unit not in supported_units:  # K01.FR.26
        problems.append(f"schedule.rate_unit: {schedule.rate_unit} is not supported")
    if schedule.duration_s is not None and schedule.duration_s <= 0:
        problems.append(f"schedule.duration_s: must be > 0, got {schedule.duration_s}")
    if schedule.min_charging_rate is not None and not _one_decimal(schedule.min_charging_rate):
        problems.append(
            "schedule.min_charging_rate: must be >= 0 with at most one decimal, "
            f"got {schedule.min_charging_rate}"
        )
    periods = schedule.periods
    if not periods:
        return [*problems, "schedule.periods: at least one period is required"]
    if len(periods) > max_periods:
        problems.append(f"schedule.periods: at most {max_periods}, got {len(periods)}")
    if periods[0].start_period_s != 0:  # K01.FR.31
        problems.append(
            f"schedule.periods[0].start_period_s: must be 0, got {periods[0].start_period_s}"
        )
    for index, (before, period) in enumerate(pairwise(periods), 1):
        if period.start_period_s <= before.start_period_s:  # K01.FR.35
            problems.append(
                f"schedule.periods[{index}].start_period_s: must be after "
                f"{before.start_period_s}, got {period.start_period_s}"
            )
    for index, period in enumerate(periods):
        if not _one_decimal(period.limit):
            problems.append(
                f"schedule.periods[{index}].limit: must be >= 0 with at most one decimal, "
                f"got {period.limit}"
            )
        if period.number_phases is not None and period.number_phases not in VALID_NUMBER_PHASES:
            problems.append(
                f"schedule.periods[{index}].number_phases: must be 1, 2 or 3, "
                f"got {period.number_phases}"
            )
    return problems


def _one_decimal(value: float) -> bool:
    """Non-negative, finite and a multiple of 0.1 as written (1.6 §7.13 "one digit")."""
    if not math.isfinite(value) or value < 0:
        return False
    return (Fraction(str(value)) * 10).denominator == 1


def _is_aware(value: datetime) -> bool:
    return value.tzinfo is not None and value.utcoffset() is not None
