"""Pure mapping between OCPP 1.6 smart-charging payloads and the neutral engine types.

The ``ocpp`` library hands nested request fields over as snake_case dicts
(``charging_schedule``, ``charging_schedule_period``, ``start_period``) and turns
snake_case dicts in our answers back into camelCase. Nothing here does I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agent.clock import to_iso
from agent.ocpp.fields import field_dict, field_int, field_opt_time
from agent.ocpp.schedule_payload import periods_to_payload, schedule_from_payload
from agent.smart_charging.composite import CompositeSchedule
from agent.smart_charging.profiles import (
    ChargingProfile,
    ClearCriteria,
    Kind,
    Purpose,
    RateUnit,
    Recurrency,
)


def profile_from_16(connector_id: int, raw: Any, *, now: datetime) -> ChargingProfile:
    """Map a 1.6 ``csChargingProfiles`` / RemoteStart ``chargingProfile`` onto the engine.

    Args:
        connector_id: The connector the request names (0 = the whole station).
        raw: The profile as the library hands it (snake_case dict).
        now: Time of receipt: the start of an Absolute schedule without
            ``startSchedule`` (1.6 leaves it open; the engine needs one).

    Returns:
        The profile; ``transactionId`` becomes its decimal text.

    Raises:
        ValueError: A field is missing, has the wrong type or an unknown value; the
            message names the field.
    """
    try:
        data = field_dict(raw, "csChargingProfiles")
        sched = field_dict(data["charging_schedule"], "chargingSchedule")
        kind = Kind(data["charging_profile_kind"])
        schedule = schedule_from_payload(
            sched, default_start=now if kind is Kind.ABSOLUTE else None
        )
        recurrency = data.get("recurrency_kind")
        tx_id = data.get("transaction_id")
        return ChargingProfile(
            profile_id=field_int(data["charging_profile_id"], "chargingProfileId"),
            stack_level=field_int(data["stack_level"], "stackLevel"),
            purpose=Purpose(data["charging_profile_purpose"]),
            kind=kind,
            schedule=schedule,
            evse_id=connector_id,
            recurrency=None if recurrency is None else Recurrency(recurrency),
            valid_from=field_opt_time(data.get("valid_from"), "validFrom"),
            valid_to=field_opt_time(data.get("valid_to"), "validTo"),
            transaction_id=None if tx_id is None else str(field_int(tx_id, "transactionId")),
        )
    except KeyError as exc:
        raise ValueError(f"missing field {exc}") from None
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def clear_criteria_from_16(
    profile_id: int | None,
    connector_id: int | None,
    purpose: str | None,
    stack_level: int | None,
) -> ClearCriteria:
    """ClearChargingProfile fields -> criteria (id wins; the others are ANDed).

    Raises:
        ValueError: ``purpose`` is not a 1.6 purpose.
    """
    return ClearCriteria(
        profile_id=profile_id,
        evse_id=connector_id,
        purpose=None if purpose is None else Purpose(purpose),
        stack_level=stack_level,
    )


def rate_unit_from_16(unit: str | None) -> RateUnit:
    """GetCompositeSchedule ``chargingRateUnit`` (absent = amperes).

    Raises:
        ValueError: not ``A`` or ``W``.
    """
    return RateUnit.A if unit is None else RateUnit(unit)


def composite_to_16(schedule: CompositeSchedule) -> dict[str, Any]:
    """A composite schedule as the GetCompositeSchedule ``chargingSchedule`` (snake_case).

    Periods without a limit are left out of the answer's limits by the caller's choice:
    here every period must carry one (the service fills gaps with the hardware limit).

    Raises:
        ValueError: a period has no limit.
    """
    return {
        "duration": schedule.duration_s,
        "start_schedule": to_iso(schedule.start),
        "charging_rate_unit": schedule.rate_unit.value,
        "charging_schedule_period": periods_to_payload(schedule.periods),
    }
