"""Pure mapping between OCPP 2.0.1 smart-charging payloads (K) and the neutral engine.

The ``ocpp`` library hands request fields to the handlers as snake_case, nested dicts
included (``charging_schedule``, ``charging_schedule_period``, ``start_period``), and
turns the snake_case dicts of our answers and requests back into camelCase. Numbers of
SetChargingProfile may arrive as ``Decimal``. Nothing here does I/O.

2.0.1 rules projected here, on top of ``agent.smart_charging.validation`` (REFERENCE 3.1,
3.4; the requirement ids are the 2.0.1 Part 2 K ones):

* ``ChargingStationExternalConstraints`` (``Purpose.EXTERNAL``) is set by the station's
  own energy manager, never by the CSMS: such a SetChargingProfile is Rejected, and a
  ClearChargingProfile naming that purpose clears nothing (K10.FR.04/06; the engine's
  ``ClearCriteria`` never matches them either). Their ``chargingLimitSource`` is
  ``EMS``; every other profile came from the CSMS: ``CSO``.
* One ``chargingSchedule`` per profile: 2.0.1 allows 1-3 only for ISO 15118 schedule
  offers, which this station does not make (a longer list is Rejected, TooManyElements).
* A TxProfile needs ``transactionId``, the station's own id of the transaction running on
  its EVSE (K01.FR.03/09/33).
* No two profiles of one purpose on one EVSE may share a stack level with overlapping
  validity but different ids (K01.FR.06); for TxProfiles: the same stack level for the
  same transaction (K01.FR.39). The same id replaces the installed profile (K01.FR.05).
  A TxProfile from a RequestStartTransaction (installed without a transaction id) may be
  replaced by one with the transaction's id on its stack level.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agent.clock import to_iso
from agent.ocpp.fields import (
    field_dict,
    field_int,
    field_opt_int,
    field_opt_time,
    field_str,
)
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

EXTERNAL_CONSTRAINTS = Purpose.EXTERNAL.value
"""The 2.0.1 purpose only the station itself sets."""
STATION_MAX = "ChargingStationMaxProfile"
"""2.0.1 spelling of ``Purpose.CHARGE_POINT_MAX``."""
CSMS_SOURCE = "CSO"
"""chargingLimitSource of the profiles the CSMS installed."""
EXTERNAL_SOURCE = "EMS"
"""chargingLimitSource of the external constraints (the station's energy manager)."""
MAX_SCHEDULES = 1
"""chargingSchedule entries accepted per profile (no ISO 15118 schedule offers)."""
REASON_CODE_MAX_CHARS = 20
ADDITIONAL_INFO_MAX_CHARS = 512


class ProfileRefused(ValueError):
    """A profile (or request) that must be answered Rejected.

    Attributes:
        reason_code: The 2.0.1 ``statusInfo.reasonCode`` (<= 20 characters).
        detail: Human-readable cause, the ``statusInfo.additionalInfo``.
    """

    def __init__(self, reason_code: str, detail: str) -> None:
        super().__init__(f"{reason_code}: {detail}")
        self.reason_code = reason_code
        self.detail = detail


def status_info(reason_code: str, detail: str) -> dict[str, str]:
    """A ``statusInfo`` (snake_case) with the 2.0.1 length limits applied."""
    info = {"reason_code": reason_code[:REASON_CODE_MAX_CHARS]}
    if detail:
        info["additional_info"] = detail[:ADDITIONAL_INFO_MAX_CHARS]
    return info


# ------------------------------------------------------------- SetChargingProfile


def profile_from_201(evse_id: int, raw: Any) -> ChargingProfile:
    """Map a 2.0.1 ``chargingProfile`` (SetChargingProfile, RequestStartTransaction).

    Args:
        evse_id: The EVSE the request names (0 = the whole station).
        raw: The ``ChargingProfileType`` as the library hands it (snake_case dict).

    Returns:
        The neutral profile (``transactionId`` kept as the station's string id).

    Raises:
        ProfileRefused: External constraints, more than one schedule, or a field
            missing, of the wrong type or with an unknown value.
    """
    try:
        data = field_dict(raw, "chargingProfile")
        purpose_name = data["charging_profile_purpose"]
        if purpose_name == EXTERNAL_CONSTRAINTS:
            raise ProfileRefused(
                "InvalidProfile", f"{EXTERNAL_CONSTRAINTS} are set by the station only"
            )
        schedules = data["charging_schedule"]
        if not isinstance(schedules, list) or not schedules:
            raise ProfileRefused("InvalidSchedule", "chargingSchedule: 1 schedule required")
        if len(schedules) > MAX_SCHEDULES:
            raise ProfileRefused(
                "TooManyElements",
                f"chargingSchedule: at most {MAX_SCHEDULES} (no ISO 15118), got {len(schedules)}",
            )
        sched = field_dict(schedules[0], "chargingSchedule")
        schedule = schedule_from_payload(sched)
        recurrency = data.get("recurrency_kind")
        tx_id = data.get("transaction_id")
        return ChargingProfile(
            profile_id=field_int(data["id"], "id"),
            stack_level=field_int(data["stack_level"], "stackLevel"),
            purpose=Purpose.from_spec(field_str(purpose_name, "chargingProfilePurpose")),
            kind=Kind(data["charging_profile_kind"]),
            schedule=schedule,
            evse_id=evse_id,
            recurrency=None if recurrency is None else Recurrency(recurrency),
            valid_from=field_opt_time(data.get("valid_from"), "validFrom"),
            valid_to=field_opt_time(data.get("valid_to"), "validTo"),
            transaction_id=None if tx_id is None else field_str(tx_id, "transactionId"),
        )
    except KeyError as exc:
        raise ProfileRefused("MissingParam", f"missing field {exc}") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ProfileRefused):
            raise
        raise ProfileRefused("InvalidValue", str(exc)) from None


def transaction_problem(profile: ChargingProfile, running_tx_id: str | None) -> str | None:
    """Why a SetChargingProfile TxProfile does not fit the EVSE's transaction, or None.

    Args:
        profile: The profile of a SetChargingProfile request.
        running_tx_id: The station's id of the transaction on ``profile.evse_id``.
    """
    if profile.purpose is not Purpose.TX:
        return None
    if profile.transaction_id is None:
        return "transaction_id: a TxProfile needs one"  # K01.FR.03
    if running_tx_id is not None and profile.transaction_id != running_tx_id:
        return f"transaction_id: {profile.transaction_id} is not running on EVSE {profile.evse_id}"
    return None


def conflict(profile: ChargingProfile, installed: Iterable[ChargingProfile]) -> str | None:
    """The duplicate-stack-level problem of installing ``profile``, or None (K01.FR.06/39).

    A profile with the same id is not a conflict: it is replaced (K01.FR.05).
    """
    for old in installed:
        if (
            old.profile_id == profile.profile_id
            or old.purpose is not profile.purpose
            or old.evse_id != profile.evse_id
            or old.stack_level != profile.stack_level
        ):
            continue
        if profile.purpose is Purpose.TX:
            if old.transaction_id is None or old.transaction_id != profile.transaction_id:
                continue  # the RequestStart profile of the transaction, or a stale one
        elif not _overlap(old, profile):
            continue
        return (
            f"stack_level: {profile.purpose} {old.profile_id} already on stack level "
            f"{profile.stack_level} of EVSE {profile.evse_id}"
        )
    return None


def reason_code(problem: str) -> str:
    """The ``statusInfo.reasonCode`` of a ``"field: problem"`` message."""
    field, _, text = problem.partition(":")
    if field == "evse_id" and "unknown" in text:
        return "UnknownEvse"
    if field == "purpose" and "without a transaction" in text:
        return "TxNotFound"
    if field == "transaction_id":
        return "UnknownTxId" if "not running" in text else "InvalidProfile"
    if field == "stack_level":
        return "DuplicateProfile" if "already" in text else "InvalidStackLevel"
    if field == "schedule.rate_unit":
        return "UnsupportedRateUnit"
    if field == "profiles":
        return "OutOfStorage"
    if field.startswith("schedule") or field == "recurrency":
        return "InvalidSchedule"
    return "InvalidProfile"


def _overlap(a: ChargingProfile, b: ChargingProfile) -> bool:
    a_from, a_to = a.valid_from, a.valid_to
    b_from, b_to = b.valid_from, b.valid_to
    return (a_to is None or b_from is None or b_from < a_to) and (
        b_to is None or a_from is None or a_from < b_to
    )


# ------------------------------------------------------------- ClearChargingProfile


def clear_criteria_from_201(
    charging_profile_id: int | None, criteria: dict[str, Any] | None
) -> ClearCriteria | None:
    """ClearChargingProfile fields -> criteria; the id wins (K10.FR.03), the rest ANDed.

    Returns:
        None when the request can clear nothing: it names the external-constraints
        purpose, which the CSMS may not clear (K10.FR.06).

    Raises:
        ValueError: an unknown purpose or a field of the wrong type.
    """
    if charging_profile_id is not None:
        return ClearCriteria(profile_id=field_int(charging_profile_id, "chargingProfileId"))
    fields = criteria or {}
    purpose = fields.get("charging_profile_purpose")
    if purpose == EXTERNAL_CONSTRAINTS:
        return None
    return ClearCriteria(
        evse_id=field_opt_int(fields.get("evse_id"), "evseId"),
        purpose=None if purpose is None else Purpose.from_spec(field_str(purpose, "purpose")),
        stack_level=field_opt_int(fields.get("stack_level"), "stackLevel"),
    )


# ------------------------------------------------------------- GetChargingProfiles


@dataclass(frozen=True, slots=True)
class ReportCriteria:
    """What a GetChargingProfiles request selects (every given field must match).

    Attributes:
        evse_id: None = every EVSE; 0 = the station-wide profiles; N = EVSE N's.
        purpose: None, or the neutral purpose.
        stack_level: None or the stack level.
        profile_ids: Empty = any id, else one of these.
        sources: Empty = any source, else the chargingLimitSource values wanted.
    """

    evse_id: int | None = None
    purpose: Purpose | None = None
    stack_level: int | None = None
    profile_ids: frozenset[int] = frozenset()
    sources: frozenset[str] = frozenset()

    def matches(self, profile: ChargingProfile) -> bool:
        """Whether ``profile`` is reported."""
        return (
            (self.evse_id is None or profile.evse_id == self.evse_id)
            and (self.purpose is None or profile.purpose is self.purpose)
            and (self.stack_level is None or profile.stack_level == self.stack_level)
            and (not self.profile_ids or profile.profile_id in self.profile_ids)
            and (not self.sources or limit_source(profile) in self.sources)
        )


def limit_source(profile: ChargingProfile) -> str:
    """The 2.0.1 ``chargingLimitSource`` of an installed profile."""
    return EXTERNAL_SOURCE if profile.purpose.is_external else CSMS_SOURCE


def report_criteria_from_201(evse_id: int | None, raw: Any) -> ReportCriteria:
    """GetChargingProfiles ``evseId`` + ``chargingProfile`` criterion -> criteria.

    Raises:
        ValueError: a field of the wrong type or an unknown purpose.
    """
    data = field_dict(raw if raw is not None else {}, "chargingProfile")
    purpose = data.get("charging_profile_purpose")
    ids = data.get("charging_profile_id") or []
    sources = data.get("charging_limit_source") or []
    if not isinstance(ids, list) or not isinstance(sources, list):
        raise ValueError("chargingProfileId / chargingLimitSource: expected lists")
    return ReportCriteria(
        evse_id=field_opt_int(evse_id, "evseId"),
        purpose=None
        if purpose is None
        else Purpose.from_spec(field_str(purpose, "chargingProfilePurpose")),
        stack_level=field_opt_int(data.get("stack_level"), "stackLevel"),
        profile_ids=frozenset(field_int(i, "chargingProfileId") for i in ids),
        sources=frozenset(field_str(s, "chargingLimitSource") for s in sources),
    )


@dataclass(frozen=True, slots=True)
class ReportPage:
    """One ReportChargingProfiles message: profiles of one EVSE and one source."""

    evse_id: int
    source: str
    profiles: tuple[ChargingProfile, ...]


def report_pages(
    profiles: Iterable[ChargingProfile], criteria: ReportCriteria, per_message: int
) -> list[ReportPage]:
    """The selected profiles in pages: by EVSE and source (ascending), at most
    ``per_message`` each.

    ReportChargingProfiles carries one ``evseId`` and one ``chargingLimitSource``, so
    profiles of different EVSEs or sources never share a page. Empty when nothing
    matches (answer NoProfiles).
    """
    size = max(1, per_message)
    groups: dict[tuple[int, str], list[ChargingProfile]] = {}
    for profile in profiles:
        if criteria.matches(profile):
            groups.setdefault((profile.evse_id, limit_source(profile)), []).append(profile)
    pages: list[ReportPage] = []
    for evse_id, source in sorted(groups):
        chosen = sorted(groups[evse_id, source], key=lambda p: p.profile_id)
        for first in range(0, len(chosen), size):
            pages.append(ReportPage(evse_id, source, tuple(chosen[first : first + size])))
    return pages


def report_request(request_id: int, page: ReportPage, *, tbc: bool) -> dict[str, Any]:
    """The ReportChargingProfiles fields (snake_case) of one page."""
    return {
        "request_id": request_id,
        "charging_limit_source": page.source,
        "evse_id": page.evse_id,
        "charging_profile": [profile_to_201(p) for p in page.profiles],
        "tbc": tbc,
    }


def profile_to_201(profile: ChargingProfile) -> dict[str, Any]:
    """A profile as a 2.0.1 ``ChargingProfileType`` (snake_case; schedule id = profile id)."""
    schedule = profile.schedule
    sched: dict[str, Any] = {
        "id": profile.profile_id,
        "charging_rate_unit": schedule.rate_unit.value,
        "charging_schedule_period": periods_to_payload(schedule.periods),
    }
    if schedule.start_schedule is not None:
        sched["start_schedule"] = to_iso(schedule.start_schedule)
    if schedule.duration_s is not None:
        sched["duration"] = schedule.duration_s
    if schedule.min_charging_rate is not None:
        sched["min_charging_rate"] = schedule.min_charging_rate
    purpose = STATION_MAX if profile.purpose is Purpose.CHARGE_POINT_MAX else profile.purpose.value
    out: dict[str, Any] = {
        "id": profile.profile_id,
        "stack_level": profile.stack_level,
        "charging_profile_purpose": purpose,
        "charging_profile_kind": profile.kind.value,
        "charging_schedule": [sched],
    }
    if profile.recurrency is not None:
        out["recurrency_kind"] = profile.recurrency.value
    if profile.valid_from is not None:
        out["valid_from"] = to_iso(profile.valid_from)
    if profile.valid_to is not None:
        out["valid_to"] = to_iso(profile.valid_to)
    if profile.transaction_id is not None:
        out["transaction_id"] = profile.transaction_id
    return out


# ------------------------------------------------------------- GetCompositeSchedule


def rate_unit_from_201(unit: str | None) -> RateUnit:
    """GetCompositeSchedule ``chargingRateUnit`` (absent = amperes).

    Raises:
        ValueError: not ``A`` or ``W``.
    """
    return RateUnit.A if unit is None else RateUnit(unit)


def composite_to_201(evse_id: int, schedule: CompositeSchedule) -> dict[str, Any]:
    """A composite schedule as the GetCompositeSchedule ``schedule`` (snake_case).

    Raises:
        ValueError: a period has no limit (the service fills gaps with the hardware limit).
    """
    return {
        "evse_id": evse_id,
        "duration": schedule.duration_s,
        "schedule_start": to_iso(schedule.start),
        "charging_rate_unit": schedule.rate_unit.value,
        "charging_schedule_period": periods_to_payload(schedule.periods),
    }


__all__ = [
    "CSMS_SOURCE",
    "EXTERNAL_CONSTRAINTS",
    "EXTERNAL_SOURCE",
    "MAX_SCHEDULES",
    "STATION_MAX",
    "ProfileRefused",
    "ReportCriteria",
    "ReportPage",
    "clear_criteria_from_201",
    "composite_to_201",
    "conflict",
    "limit_source",
    "profile_from_201",
    "rate_unit_from_201",
    "reason_code",
    "report_criteria_from_201",
    "report_pages",
    "report_request",
    "status_info",
    "transaction_problem",
]
