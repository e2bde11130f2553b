"""Charging profiles, version-neutral, and the pure store that installs and clears them.

The model follows OCPP 1.6 §7.8-7.14 and 2.0.1 K01 (REFERENCE 3.1). Enum values use the
1.6 spelling; the 2.0.1 adapter maps ``ChargingStationMaxProfile`` onto
``Purpose.CHARGE_POINT_MAX`` with ``Purpose.from_spec``. Datetimes are timezone-aware.

``ProfileStore`` is an immutable value: ``install`` and ``clear`` return a new store and
the ids that left it, so the caller decides when to persist (``to_json``/``from_json``).
Nothing here validates a profile against the station: that is ``validation.validate``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

JSON_FORMAT_VERSION = 1
"""Version of the ``to_json`` document; ``from_json`` refuses any other."""


class Purpose(StrEnum):
    """chargingProfilePurpose (1.6 spelling; ``EXTERNAL`` only exists in 2.0.1).

    ``EXTERNAL`` (2.0.1 ChargingStationExternalConstraints) is a limit set by the
    station's own energy manager or a grid operator signal, never by the CSMS: it
    caps like the station max (evse 0) or an EVSE's own limit (evse N), the CSMS
    cannot install or clear it (K01, K10.FR.04/06; the adapters refuse it), and
    its limit source is not the CSMS (``is_external``).
    """

    CHARGE_POINT_MAX = "ChargePointMaxProfile"
    TX_DEFAULT = "TxDefaultProfile"
    TX = "TxProfile"
    EXTERNAL = "ChargingStationExternalConstraints"

    @property
    def is_external(self) -> bool:
        """Whether profiles of this purpose come from outside the CSMS."""
        return self is Purpose.EXTERNAL

    @classmethod
    def from_spec(cls, name: str) -> Purpose:
        """Map a 1.6 or 2.0.1 purpose name onto the neutral purpose.

        Raises:
            ValueError: ``name`` is not a chargingProfilePurpose.
        """
        if name == "ChargingStationMaxProfile":  # OCPP 2.0.1 spelling
            return cls.CHARGE_POINT_MAX
        return cls(name)


class Kind(StrEnum):
    """chargingProfileKind."""

    ABSOLUTE = "Absolute"
    RECURRING = "Recurring"
    RELATIVE = "Relative"


class Recurrency(StrEnum):
    """recurrencyKind; the schedule restarts every day or every week."""

    DAILY = "Daily"
    WEEKLY = "Weekly"

    @property
    def period_s(self) -> int:
        """Length of one recurrence in seconds (86 400 or 604 800)."""
        return 86_400 if self is Recurrency.DAILY else 7 * 86_400


class RateUnit(StrEnum):
    """chargingRateUnit: amperes per phase or watts."""

    A = "A"
    W = "W"


@dataclass(frozen=True, slots=True)
class SchedulePeriod:
    """One chargingSchedulePeriod.

    Attributes:
        start_period_s: Offset from the schedule start, seconds.
        limit: Limit in the schedule's ``rate_unit`` (A per phase, or W).
        number_phases: Phases the limit assumes; None = the spec default (3).
    """

    start_period_s: int
    limit: float
    number_phases: int | None = None


@dataclass(frozen=True, slots=True)
class ChargingSchedule:
    """A chargingSchedule.

    Attributes:
        rate_unit: Unit of every period's limit.
        periods: Periods ordered by ``start_period_s``, the first at 0.
        start_schedule: Absolute start (Absolute and Recurring kinds); None for Relative.
        duration_s: Length of the schedule in seconds; None = the last period runs on.
        min_charging_rate: The EV's minimum useful rate, in ``rate_unit``; informative.
    """

    rate_unit: RateUnit
    periods: tuple[SchedulePeriod, ...]
    start_schedule: datetime | None = None
    duration_s: int | None = None
    min_charging_rate: float | None = None


@dataclass(frozen=True, slots=True)
class ChargingProfile:
    """A charging profile installed on the station (evse 0) or on one EVSE.

    Attributes:
        profile_id: chargingProfileId (2.0.1 ``id``); unique in a store.
        stack_level: Precedence within a purpose; higher wins.
        purpose: What the profile limits.
        kind: How ``schedule`` is anchored in time.
        schedule: The limits.
        evse_id: 0 = the whole station, otherwise the EVSE (1.6 connector) id.
        recurrency: Daily/Weekly for ``Kind.RECURRING``, else None.
        valid_from: The profile is ignored before this instant; None = always.
        valid_to: The profile is ignored from this instant on; None = forever.
        transaction_id: For a TxProfile, the transaction it belongs to (a neutral
            string: 1.6 integer ids are given as their decimal text); None = the
            transaction running on ``evse_id``.
    """

    profile_id: int
    stack_level: int
    purpose: Purpose
    kind: Kind
    schedule: ChargingSchedule
    evse_id: int = 0
    recurrency: Recurrency | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: str | None = None


@dataclass(frozen=True, slots=True)
class ClearCriteria:
    """What a ClearChargingProfile request names; every field is optional.

    Attributes:
        profile_id: Clear exactly this profile; the other fields are then ignored
            (2.0.1 K10.FR.03, REFERENCE 3.4).
        evse_id: Only profiles installed on this EVSE (0 = station-wide ones).
        purpose: Only profiles with this purpose.
        stack_level: Only profiles on this stack level.
        external: Whether external-constraint profiles may match at all: only the
            station's own energy manager clears them, never a CSMS request
            (2.0.1 K10.FR.04/06).
    """

    profile_id: int | None = None
    evse_id: int | None = None
    purpose: Purpose | None = None
    stack_level: int | None = None
    external: bool = False

    def matches(self, profile: ChargingProfile) -> bool:
        """Whether ``profile`` is cleared by these criteria.

        With ``profile_id`` only the id counts. Otherwise every given field must match
        (logical AND, OCPP 1.6 errata §3.25/3.26); no field at all matches everything.
        External-constraint profiles match only with ``external``.
        """
        if profile.purpose.is_external and not self.external:
            return False
        if self.profile_id is not None:
            return profile.profile_id == self.profile_id
        return (
            (self.evse_id is None or profile.evse_id == self.evse_id)
            and (self.purpose is None or profile.purpose == self.purpose)
            and (self.stack_level is None or profile.stack_level == self.stack_level)
        )


@dataclass(frozen=True, slots=True)
class ProfileStore:
    """The installed profiles, in installation order. Immutable; methods return new stores."""

    profiles: tuple[ChargingProfile, ...] = ()

    def install(self, profile: ChargingProfile) -> tuple[ProfileStore, tuple[int, ...]]:
        """Install ``profile``, replacing the profiles it supersedes.

        A profile is replaced when it has the same ``profile_id``, or the same purpose,
        stack level and EVSE (OCPP 1.6 §3.13.2, 2.0.1 K01.FR.05). That is also how a
        TxProfile embedded in a RemoteStart (no transaction id yet) is replaced by the
        later SetChargingProfile carrying the transaction id (1.6 §5.16.2).

        Returns:
            The new store and the ids of the replaced profiles, ascending.
        """
        kept: list[ChargingProfile] = []
        replaced: list[int] = []
        for old in self.profiles:
            if _supersedes(profile, old):
                replaced.append(old.profile_id)
            else:
                kept.append(old)
        kept.append(profile)
        return ProfileStore(tuple(kept)), tuple(sorted(replaced))

    def clear(self, criteria: ClearCriteria) -> tuple[ProfileStore, tuple[int, ...]]:
        """Remove the profiles ``criteria`` matches (see ``ClearCriteria.matches``).

        Returns:
            The new store and the ids removed, ascending; empty means the request
            matched nothing (1.6 ``Unknown``).
        """
        kept = tuple(p for p in self.profiles if not criteria.matches(p))
        removed = sorted(p.profile_id for p in self.profiles if criteria.matches(p))
        return ProfileStore(kept), tuple(removed)

    def end_transaction(self, evse_id: int) -> tuple[ProfileStore, tuple[int, ...]]:
        """Remove the TxProfiles of ``evse_id``: a TxProfile dies with its transaction.

        Returns:
            The new store and the ids removed, ascending.
        """
        return self.clear(ClearCriteria(evse_id=evse_id, purpose=Purpose.TX))

    def for_evse(self, evse_id: int) -> tuple[ChargingProfile, ...]:
        """The profiles that can bear on ``evse_id``: its own and the station-wide ones."""
        return tuple(p for p in self.profiles if p.evse_id in (0, evse_id))


def _supersedes(new: ChargingProfile, old: ChargingProfile) -> bool:
    return new.profile_id == old.profile_id or (
        new.purpose == old.purpose
        and new.stack_level == old.stack_level
        and new.evse_id == old.evse_id
    )


# ------------------------------------------------------------------ persistence


def to_json(store: ProfileStore) -> str:
    """Serialise ``store`` as a JSON document (datetimes as ISO 8601 with offset)."""
    document = {
        "version": JSON_FORMAT_VERSION,
        "profiles": [_profile_to_dict(p) for p in store.profiles],
    }
    return json.dumps(document, sort_keys=True)


def from_json(text: str) -> ProfileStore:
    """Rebuild a store written by ``to_json``.

    Raises:
        ValueError: The text is not a ``to_json`` document of this version, or a field
            is missing or has the wrong type; the message names the field.
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"profile store: not JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("version") != JSON_FORMAT_VERSION:
        raise ValueError(f"profile store: version must be {JSON_FORMAT_VERSION}")
    raw_profiles = document.get("profiles")
    if not isinstance(raw_profiles, list):
        raise ValueError("profile store: profiles must be a list")
    profiles = []
    for index, raw in enumerate(raw_profiles):
        try:
            profiles.append(_profile_from_dict(raw))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"profile store: profiles[{index}]: {exc!r}") from exc
    return ProfileStore(tuple(profiles))


def _dt_to_str(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt_from_str(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(_require(value, str))
    if parsed.tzinfo is None:
        raise ValueError(f"datetime without a timezone: {value}")
    return parsed


def _require(value: Any, kind: type) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"expected {kind.__name__}, got {value!r}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _optional(value: Any, kind: type) -> Any:
    return None if value is None else _require(value, kind)


def _profile_to_dict(profile: ChargingProfile) -> dict[str, Any]:
    schedule = profile.schedule
    return {
        "profile_id": profile.profile_id,
        "stack_level": profile.stack_level,
        "purpose": profile.purpose.value,
        "kind": profile.kind.value,
        "evse_id": profile.evse_id,
        "recurrency": None if profile.recurrency is None else profile.recurrency.value,
        "valid_from": _dt_to_str(profile.valid_from),
        "valid_to": _dt_to_str(profile.valid_to),
        "transaction_id": profile.transaction_id,
        "schedule": {
            "rate_unit": schedule.rate_unit.value,
            "start_schedule": _dt_to_str(schedule.start_schedule),
            "duration_s": schedule.duration_s,
            "min_charging_rate": schedule.min_charging_rate,
            "periods": [[p.start_period_s, p.limit, p.number_phases] for p in schedule.periods],
        },
    }


def _profile_from_dict(raw: Any) -> ChargingProfile:
    raw = _require(raw, dict)
    sched = _require(raw["schedule"], dict)
    periods = tuple(
        SchedulePeriod(
            start_period_s=_require(start, int),
            limit=_number(limit),
            number_phases=_optional(phases, int),
        )
        for start, limit, phases in _require(sched["periods"], list)
    )
    min_rate = sched["min_charging_rate"]
    schedule = ChargingSchedule(
        rate_unit=RateUnit(sched["rate_unit"]),
        periods=periods,
        start_schedule=_dt_from_str(sched["start_schedule"]),
        duration_s=_optional(sched["duration_s"], int),
        min_charging_rate=None if min_rate is None else _number(min_rate),
    )
    recurrency = raw["recurrency"]
    return ChargingProfile(
        profile_id=_require(raw["profile_id"], int),
        stack_level=_require(raw["stack_level"], int),
        purpose=Purpose(raw["purpose"]),
        kind=Kind(raw["kind"]),
        schedule=schedule,
        evse_id=_require(raw["evse_id"], int),
        recurrency=None if recurrency is None else Recurrency(recurrency),
        valid_from=_dt_from_str(raw["valid_from"]),
        valid_to=_dt_from_str(raw["valid_to"]),
        transaction_id=_optional(raw["transaction_id"], str),
    )


__all__ = [
    "ChargingProfile",
    "ChargingSchedule",
    "ClearCriteria",
    "Kind",
    "ProfileStore",
    "Purpose",
    "RateUnit",
    "Recurrency",
    "SchedulePeriod",
    "from_json",
    "to_json",
]
