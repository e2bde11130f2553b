"""The limit in force and the composite schedule of one EVSE, computed from profiles. Pure.

No clock and no I/O: "now" is the ``at`` / ``start`` argument. The rules (REFERENCE 3.2,
OCPP 1.6 §3.13, 2.0.1 K08) as implemented here:

* **Schedule start.** Absolute: ``start_schedule``. Relative: ``tx_start``, the start of
  the transaction running on the EVSE; without one a Relative profile is not in force.
  Recurring: the latest ``start_schedule + k * 24 h`` (Daily) or ``* 7 d`` (Weekly),
  ``k >= 0``, not after the instant; before ``start_schedule`` it is not in force.
* **Period in force.** The last period whose ``start_period_s`` has been reached; it
  runs until the next period starts or ``duration_s`` ends the schedule (for Recurring,
  a new occurrence also ends the previous one). Outside ``valid_from <= t < valid_to``
  the profile is not in force.
* **Stack levels.** Within a purpose, among the profiles *with a period in force at
  that instant*, the highest stack level wins. A higher level that has ended, not yet
  started or is outside its validity leaves a gap through which the next lower level
  shows (REFERENCE 3.2.1: "a replacement with a future validFrom leaves a gap").
* **Tx over TxDefault**, instant by instant (as libocpp combines them): the EVSE's
  TxProfile (only while a transaction runs on it, and only one whose ``transaction_id``
  is None or that transaction's) wins where it has a period in force; otherwise the
  TxDefaultProfile installed on this EVSE; otherwise the station-wide TxDefaultProfile
  (evse 0), which "a profile on connector > 0 replaces for that connector only"
  (REFERENCE 3.1).
* **Station max.** ChargePointMaxProfile (evse 0) caps every EVSE: each EVSE's
  composite is at most the station limit (``include_station_max=False`` leaves it
  out). Dividing the station limit between EVSEs (it bounds their *sum*) is
  ``sharing``'s job, not this module's. For ``evse_id == 0`` the result is the
  station limit alone.
* **External constraints** (2.0.1 ChargingStationExternalConstraints, set by the
  station's energy manager): on evse 0 they cap like the station max (and are left out
  with it); on an EVSE they cap that EVSE's own limit. Within each, the highest stack
  level in force wins.
* **Across purposes** the minimum wins. Each limit is first converted into the requested
  unit with its own ``number_phases`` (``phases`` when the period has none):
  ``P[W] = I[A] * V * n``. The reported ``number_phases`` is the lowest of the
  contributing periods (libocpp). Limits are computed exactly (rationals) and then
  rounded *down* to 0.1, the resolution of an OCPP limit, so a conversion never
  reports more than the profile allows.
* **Time resolution** is one second, as for ``startPeriod`` and ``duration``: the
  sub-second part of every datetime is dropped before computing.
* **No limit.** ``limit_at`` returns None; a composite interval with no profile in
  force has ``limit=None`` (OCPP 1.6 has no "no limit" value: the adapter substitutes
  its default, e.g. the hardware rating), and a composite with no limit anywhere has
  no periods.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

from agent.smart_charging.profiles import (
    ChargingProfile,
    Kind,
    Purpose,
    RateUnit,
    SchedulePeriod,
)

DEFAULT_NUMBER_PHASES = 3
"""numberPhases when a period does not say (OCPP 1.6 §7.13, 2.0.1 ChargingSchedulePeriod)."""


@dataclass(frozen=True, slots=True)
class Limit:
    """The smart-charging limit in force at one instant.

    Attributes:
        limit: In ``rate_unit`` (A per phase, or W), rounded down to 0.1.
        rate_unit: The unit asked for.
        number_phases: The lowest phase count of the contributing periods.
    """

    limit: float
    rate_unit: RateUnit
    number_phases: int


@dataclass(frozen=True, slots=True)
class CompositePeriod:
    """One period of a composite schedule.

    Attributes:
        start_period_s: Offset from ``CompositeSchedule.start``, seconds.
        limit: In the schedule's unit, rounded down to 0.1; None = no profile in force.
        number_phases: As ``Limit.number_phases``; None when ``limit`` is None.
    """

    start_period_s: int
    limit: float | None
    number_phases: int | None


@dataclass(frozen=True, slots=True)
class CompositeSchedule:
    """The limits of one EVSE over ``[start, start + duration_s)``.

    Attributes:
        start: Start of the schedule (the requested start without its sub-second part).
        duration_s: Length of the schedule, seconds.
        rate_unit: Unit of every limit.
        periods: Contiguous, ordered, the first at 0, consecutive periods differ; empty
            when no profile is in force anywhere in the interval.
    """

    start: datetime
    duration_s: int
    rate_unit: RateUnit
    periods: tuple[CompositePeriod, ...]


def limit_at(
    profiles: Iterable[ChargingProfile],
    *,
    evse_id: int,
    at: datetime,
    tx_start: datetime | None,
    nominal_voltage_v: float,
    phases: int = DEFAULT_NUMBER_PHASES,
    rate_unit: RateUnit = RateUnit.A,
    transaction_id: str | None = None,
    include_station_max: bool = True,
) -> Limit | None:
    """The composite limit of ``evse_id`` at the instant ``at`` (rules: module docstring).

    Args:
        profiles: All installed profiles (others' EVSEs are ignored).
        evse_id: The EVSE (1.6 connector); 0 = the station limit alone.
        at: The instant, timezone-aware.
        tx_start: Start of the transaction running on ``evse_id``; None = none running
            (then TxProfiles and Relative profiles are not in force).
        nominal_voltage_v: Phase voltage used to convert between A and W.
        phases: Phase count assumed for periods without ``number_phases``.
        rate_unit: Unit of the result.
        transaction_id: The running transaction; TxProfiles bound to another one are
            ignored. None = do not filter on it.
        include_station_max: False leaves the ChargePointMaxProfile out: the EVSE's own
            limit, for a caller that shares the station limit between EVSEs itself.

    Returns:
        The limit, or None when no profile is in force.

    Raises:
        ValueError: ``at`` or ``tx_start`` is naive, or voltage/phases are not positive.
    """
    _check_args(at, tx_start, nominal_voltage_v, phases)
    layers = _layers(tuple(profiles), evse_id, tx_start, transaction_id, include_station_max)
    return _limit(
        layers, _whole_s(at), _opt_whole_s(tx_start), nominal_voltage_v, phases, rate_unit
    )


def composite_schedule(
    profiles: Iterable[ChargingProfile],
    *,
    evse_id: int,
    start: datetime,
    duration_s: int,
    rate_unit: RateUnit,
    tx_start: datetime | None,
    nominal_voltage_v: float,
    phases: int = DEFAULT_NUMBER_PHASES,
    transaction_id: str | None = None,
    include_station_max: bool = True,
) -> CompositeSchedule:
    """The composite schedule of ``evse_id`` from ``start`` for ``duration_s`` seconds.

    Its boundaries are the union of every relevant profile's boundaries (validity, each
    occurrence's start and end, each period start) inside the interval; the limit of
    each interval is ``limit_at`` its first instant, and equal neighbours are merged.
    Arguments as for ``limit_at``.

    Raises:
        ValueError: ``duration_s`` is not positive, or as ``limit_at``.
    """
    _check_args(start, tx_start, nominal_voltage_v, phases)
    if duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    begin = _whole_s(start)
    end = begin + timedelta(seconds=duration_s)
    tx_begin = _opt_whole_s(tx_start)
    layers = _layers(tuple(profiles), evse_id, tx_start, transaction_id, include_station_max)
    caps, evse = layers
    instants = {begin}
    for profile in (*(p for cap in caps for p in cap), *evse):
        instants.update(t for t in _boundaries(profile, begin, end, tx_begin) if begin < t < end)
    periods: list[CompositePeriod] = []
    for instant in sorted(instants):
        limit = _limit(layers, instant, tx_begin, nominal_voltage_v, phases, rate_unit)
        period = CompositePeriod(
            start_period_s=int((instant - begin).total_seconds()),
            limit=None if limit is None else limit.limit,
            number_phases=None if limit is None else limit.number_phases,
        )
        if periods and (periods[-1].limit, periods[-1].number_phases) == (
            period.limit,
            period.number_phases,
        ):
            continue
        periods.append(period)
    if all(p.limit is None for p in periods):
        periods = []
    return CompositeSchedule(begin, duration_s, rate_unit, tuple(periods))


# ------------------------------------------------------------------- internals

_Layer = tuple[ChargingProfile, ...]
_Layers = tuple[tuple[_Layer, ...], _Layer]
"""(caps: groups that each bound the limit, EVSE layer walked by precedence)."""


def _check_args(
    at: datetime, tx_start: datetime | None, nominal_voltage_v: float, phases: int
) -> None:
    if at.tzinfo is None or (tx_start is not None and tx_start.tzinfo is None):
        raise ValueError("datetimes must be timezone-aware")
    if nominal_voltage_v <= 0 or phases <= 0:
        raise ValueError("nominal_voltage_v and phases must be > 0")


def _whole_s(value: datetime) -> datetime:
    return value.replace(microsecond=0)


def _opt_whole_s(value: datetime | None) -> datetime | None:
    return None if value is None else _whole_s(value)


def _layers(
    profiles: tuple[ChargingProfile, ...],
    evse_id: int,
    tx_start: datetime | None,
    transaction_id: str | None,
    include_station_max: bool = True,
) -> _Layers:
    """(caps, EVSE layer in order of precedence: Tx, TxDefault here, TxDefault 0).

    Caps: the station max, the station-wide external constraints and the EVSE's own
    external constraints, each group bounding the limit by its winner. The station-wide
    caps are left out when ``include_station_max`` is False (and ``evse_id`` > 0). The
    EVSE layer is returned flattened; ``_limit`` walks it by precedence.
    """
    station = tuple(p for p in profiles if p.purpose is Purpose.CHARGE_POINT_MAX and p.evse_id == 0)
    external = tuple(p for p in profiles if p.purpose is Purpose.EXTERNAL and p.evse_id == 0)
    caps: tuple[_Layer, ...] = (station, external)
    if not include_station_max and evse_id != 0:
        caps = ()
    if evse_id == 0:
        return caps, ()
    own_external = tuple(
        p for p in profiles if p.purpose is Purpose.EXTERNAL and p.evse_id == evse_id
    )
    tx = tuple(
        p
        for p in profiles
        if p.purpose is Purpose.TX
        and p.evse_id == evse_id
        and tx_start is not None
        and (transaction_id is None or p.transaction_id in (None, transaction_id))
    )
    defaults = tuple(
        p for p in profiles if p.purpose is Purpose.TX_DEFAULT and p.evse_id in (0, evse_id)
    )
    return (*caps, own_external), tx + defaults


def _precedence(profile: ChargingProfile) -> int:
    """Rank of a profile's group inside the EVSE layer; lower wins."""
    if profile.purpose is Purpose.TX:
        return 0
    return 1 if profile.evse_id != 0 else 2


def _limit(
    layers: _Layers,
    at: datetime,
    tx_start: datetime | None,
    nominal_voltage_v: float,
    phases: int,
    rate_unit: RateUnit,
) -> Limit | None:
    caps, evse = layers
    candidates: list[tuple[Fraction, int]] = []
    for cap in caps:
        cap_winner = _winner(cap, at, tx_start, nominal_voltage_v, phases, rate_unit)
        if cap_winner is not None:
            candidates.append(cap_winner)
    for rank in (0, 1, 2):
        group = tuple(p for p in evse if _precedence(p) == rank)
        winner = _winner(group, at, tx_start, nominal_voltage_v, phases, rate_unit)
        if winner is not None:
            candidates.append(winner)
            break
    if not candidates:
        return None
    value = min(v for v, _ in candidates)
    return Limit(
        limit=float(Fraction(math.floor(value * 10), 10)),
        rate_unit=rate_unit,
        number_phases=min(n for _, n in candidates),
    )


def _winner(
    group: _Layer,
    at: datetime,
    tx_start: datetime | None,
    nominal_voltage_v: float,
    phases: int,
    rate_unit: RateUnit,
) -> tuple[Fraction, int] | None:
    """(limit in ``rate_unit``, phases) of the highest stack level in force, or None.

    Two profiles on the same level cannot coexist in a store; if a caller passes some
    anyway, the most restrictive one wins.
    """
    in_force: list[tuple[ChargingProfile, SchedulePeriod]] = []
    for profile in group:
        period = period_in_force(profile, at, tx_start)
        if period is not None:
            in_force.append((profile, period))
    if not in_force:
        return None
    top = max(p.stack_level for p, _ in in_force)
    return min(
        _converted(period, p.schedule.rate_unit, rate_unit, nominal_voltage_v, phases)
        for p, period in in_force
        if p.stack_level == top
    )


def _converted(
    period: SchedulePeriod,
    from_unit: RateUnit,
    to_unit: RateUnit,
    nominal_voltage_v: float,
    phases: int,
) -> tuple[Fraction, int]:
    """The period's limit in ``to_unit``, exactly, with its phase count."""
    number_phases = period.number_phases or phases
    value = Fraction(str(period.limit))
    volt_phases = Fraction(str(nominal_voltage_v)) * number_phases
    if from_unit is RateUnit.A and to_unit is RateUnit.W:
        value *= volt_phases
    elif from_unit is RateUnit.W and to_unit is RateUnit.A:
        value /= volt_phases
    return value, number_phases


def period_in_force(
    profile: ChargingProfile, at: datetime, tx_start: datetime | None
) -> SchedulePeriod | None:
    """The period of ``profile`` in force at ``at``, ignoring purpose and EVSE.

    Args:
        profile: The profile.
        at: The instant (sub-second part ignored).
        tx_start: Start of the transaction, the origin of a Relative schedule.

    Returns:
        The period, or None outside validity, before the schedule starts, after its
        duration, or for a Relative profile without a transaction.
    """
    at = _whole_s(at)
    if profile.valid_from is not None and at < _whole_s(profile.valid_from):
        return None
    if profile.valid_to is not None and at >= _whole_s(profile.valid_to):
        return None
    origin = _occurrence_start(profile, at, _opt_whole_s(tx_start))
    if origin is None or at < origin:
        return None
    offset_s = int((at - origin).total_seconds())
    length_s = _occurrence_length_s(profile)
    if length_s is not None and offset_s >= length_s:
        return None
    started = [p for p in profile.schedule.periods if p.start_period_s <= offset_s]
    return max(started, key=lambda p: p.start_period_s) if started else None


def _occurrence_start(
    profile: ChargingProfile, at: datetime, tx_start: datetime | None
) -> datetime | None:
    """Start of the schedule occurrence that holds ``at`` (None = no occurrence)."""
    start_schedule = _opt_whole_s(profile.schedule.start_schedule)
    if profile.kind is Kind.RELATIVE:
        return tx_start
    if profile.kind is Kind.ABSOLUTE:
        return start_schedule
    if start_schedule is None or profile.recurrency is None or at < start_schedule:
        return None
    period = timedelta(seconds=profile.recurrency.period_s)
    return start_schedule + ((at - start_schedule) // period) * period


def _occurrence_length_s(profile: ChargingProfile) -> int | None:
    """How long one occurrence lasts: ``duration_s``, cut by the next recurrence."""
    duration_s = profile.schedule.duration_s
    if profile.kind is not Kind.RECURRING or profile.recurrency is None:
        return duration_s
    period_s = profile.recurrency.period_s
    return period_s if duration_s is None else min(duration_s, period_s)


def _boundaries(
    profile: ChargingProfile, begin: datetime, end: datetime, tx_start: datetime | None
) -> Iterator[datetime]:
    """Every instant in ``[begin, end)`` at which ``profile``'s contribution may change."""
    for value in (profile.valid_from, profile.valid_to):
        if value is not None:
            yield _whole_s(value)
    length_s = _occurrence_length_s(profile)
    for origin in _occurrences(profile, begin, end, tx_start):
        yield origin
        for period in profile.schedule.periods:
            yield origin + timedelta(seconds=period.start_period_s)
        if length_s is not None:
            yield origin + timedelta(seconds=length_s)


def _occurrences(
    profile: ChargingProfile, begin: datetime, end: datetime, tx_start: datetime | None
) -> Iterator[datetime]:
    """Starts of the schedule occurrences that can overlap ``[begin, end)``."""
    if profile.kind is not Kind.RECURRING:
        origin = _occurrence_start(profile, begin, tx_start)
        if origin is not None:
            yield origin
        return
    start_schedule = _opt_whole_s(profile.schedule.start_schedule)
    if start_schedule is None or profile.recurrency is None:
        return
    origin = _occurrence_start(profile, max(begin, start_schedule), tx_start)
    step = timedelta(seconds=profile.recurrency.period_s)
    while origin is not None and origin < end:
        yield origin
        origin += step
