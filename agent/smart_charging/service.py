"""Smart charging at run time: keeps the profile store and applies its limits to the EVSEs.

The pure engine (``profiles``, ``validation``, ``composite``, ``sharing``) decides; this
service owns the one mutable ``ProfileStore``, persists it (one JSON value under
``STORE_KEY`` in the settings table) before a change is acknowledged, and pushes the limit
in force to each EVSE controller with ``set_limit(SOURCE, limit_a)``:

* each EVSE's own limit (its composite without the station limit); for an EVSE without
  a transaction the limit a transaction starting *now* would get, so the first PWM of a
  session already obeys a Relative profile or the TxProfile of a remote start;
* then, while a ChargePointMaxProfile is in force, its share of the station limit
  (``sharing``: max-min fair among the running transactions, earliest first, 6 A floor).

One loop timer fires at the next period boundary of any EVSE or of the station (looked
up over ``HORIZON_S``) and re-applies; transaction starts and ends re-apply too (Relative
and TxProfiles start with the transaction, the shares change, and a TxProfile is dropped
when its transaction ends). Version-neutral: no OCPP here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any, Protocol

from agent.clock import Clock, parse_iso
from agent.persistence.settings_store import SettingsStore
from agent.smart_charging.composite import (
    CompositePeriod,
    CompositeSchedule,
    composite_schedule,
    limit_at,
)
from agent.smart_charging.profiles import (
    ChargingProfile,
    ClearCriteria,
    ProfileStore,
    Purpose,
    RateUnit,
    from_json,
    to_json,
)
from agent.smart_charging.sharing import prospective_share, share_station_limit
from agent.smart_charging.validation import validate
from agent.transactions.journal import TxRecord

log = logging.getLogger(__name__)

SOURCE = "smart_charging"
"""The ``set_limit`` source name of this service."""
STORE_KEY = "charging_profiles"
"""Settings key holding the persisted ``ProfileStore`` (``profiles.to_json``)."""
HORIZON_S = 86_400
"""How far ahead the next period boundary is looked for; the timer fires at least this often."""
TIMER_MARGIN_S = 0.01
"""Added to every timer so it fires just after the boundary, never just before."""
MAX_STACK_LEVEL = 10
"""Highest stack level accepted (1.6 ChargeProfileMaxStackLevel)."""
MAX_PERIODS = 24
"""Most periods per schedule (1.6 ChargingScheduleMaxPeriods)."""
MAX_PROFILES_INSTALLED = 32
"""Most profiles installed at once (1.6 MaxChargingProfilesInstalled)."""
SUPPORTED_UNITS: tuple[RateUnit, ...] = (RateUnit.A, RateUnit.W)
"""Rate units accepted in profiles and composite requests. The PWM limits in amperes per
phase; W converts with the nominal voltage and the period's ``numberPhases`` (default 3):
``I = P / (V * n)`` (REFERENCE 3.3)."""


class LimitTarget(Protocol):
    """What the service needs of an EVSE controller."""

    @property
    def transaction(self) -> TxRecord | None: ...

    def set_limit(self, source: str, limit_a: float | None) -> None: ...


@dataclass(frozen=True, slots=True)
class InstallResult:
    """Outcome of ``install``.

    Attributes:
        accepted: The profile was installed (and persisted).
        problems: Why it was rejected (``"field: problem"``); empty when accepted.
        replaced: Ids of the profiles it superseded.
    """

    accepted: bool
    problems: tuple[str, ...] = ()
    replaced: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class _PendingTxProfile:
    id_tag: str
    profile: ChargingProfile


class SmartChargingService:
    """Owns the installed charging profiles and applies them to the EVSEs.

    Args:
        controllers: EVSE controllers by EVSE id (1..N).
        settings_store: Where the profile store is persisted (key ``STORE_KEY``).
        clock: Station time (profiles are in wall-clock time).
        nominal_voltage_v: Phase voltage for A <-> W conversion.
        phases_by_evse: Phases wired to each EVSE (default 3).
        max_current_a_by_evse: Hardware limit per EVSE id, 0 = the station; fills the
            intervals of a composite schedule where no profile is in force (1.6 has no
            "no limit" value).
        subscribe_tx: Registers a callback run whenever a transaction message was queued
            (a transaction started, sampled or ended); returns an unsubscriber.
    """

    def __init__(
        self,
        *,
        controllers: Mapping[int, LimitTarget],
        settings_store: SettingsStore,
        clock: Clock,
        nominal_voltage_v: float,
        phases_by_evse: Mapping[int, int],
        max_current_a_by_evse: Mapping[int, float],
        subscribe_tx: Callable[[Callable[[], None]], Callable[[], None]],
    ) -> None:
        self._controllers = controllers
        self._settings_store = settings_store
        self._clock = clock
        self._voltage_v = nominal_voltage_v
        self._phases = dict(phases_by_evse)
        self._max_a = dict(max_current_a_by_evse)
        self._subscribe_tx = subscribe_tx
        self._store = ProfileStore()
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._tx_seen: dict[int, str | None] = {}
        self._pending: dict[int, _PendingTxProfile] = {}
        self._installing: dict[int, ChargingProfile] = {}  # RemoteStart TxProfile in flight
        self._applied_a: dict[int, float | None] = {}  # last limit set per EVSE
        self._unsubscribe: Callable[[], None] | None = None
        self._running = False

    # ------------------------------------------------------------ life cycle

    @property
    def profiles(self) -> tuple[ChargingProfile, ...]:
        """The installed profiles, in installation order."""
        return self._store.profiles

    async def start(self) -> None:
        """Load the persisted profiles and apply them (before any transaction starts).

        A corrupt stored value is logged and replaced by an empty store: charging then
        runs unrestricted (1.6 §3.13.6), which is safer than not starting.
        """
        stored = (await self._settings_store.load()).get(STORE_KEY)
        if isinstance(stored, str):
            try:
                self._store = from_json(stored)
            except ValueError as exc:
                log.error("stored charging profiles unusable, starting without: %s", exc)
        self._running = True
        self._tx_seen = {i: _tx_id(c.transaction) for i, c in self._controllers.items()}
        # TxProfiles whose transaction ended while we were down (power loss) are stale
        store = self._store
        for evse_id, tx_id in self._tx_seen.items():
            if tx_id is None:
                store, _ = store.end_transaction(evse_id)
        if store != self._store:
            await self._commit(store)
        self._unsubscribe = self._subscribe_tx(self._on_tx_message)
        self.apply()

    async def stop(self) -> None:
        """Cancel the timer and pending work; limits already set stay as they are."""
        self._running = False
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------ commands

    def has_transaction_on(self, evse_id: int) -> bool:
        """Whether a transaction runs on ``evse_id``."""
        ctl = self._controllers.get(evse_id)
        return ctl is not None and ctl.transaction is not None

    def check(self, profile: ChargingProfile) -> list[str]:
        """Every reason ``validate`` (with this station's limits) finds to reject ``profile``."""
        return validate(
            profile,
            evse_count=len(self._controllers),
            has_transaction_on=self.has_transaction_on,
            supported_units=SUPPORTED_UNITS,
            max_periods=MAX_PERIODS,
            max_stack_level=MAX_STACK_LEVEL,
        )

    async def install(self, profile: ChargingProfile) -> InstallResult:
        """Validate, install and persist ``profile``, then apply the new limits.

        Persisted before it returns, so an accepted answer survives a power cut. Any
        purpose: the station's own energy manager installs ``Purpose.EXTERNAL``
        constraints here too (and removes them with ``ClearCriteria(external=True)``).

        Returns:
            Rejected with the reasons, or accepted with the ids it replaced. Also
            rejected when more than ``MAX_PROFILES_INSTALLED`` would be installed.

        Raises:
            StoreError, sqlite3.Error: persisting failed (nothing changed).
        """
        problems = self.check(profile)
        if problems:
            return InstallResult(False, tuple(problems))
        async with self._lock:
            store, replaced = self._store.install(profile)
            if len(store.profiles) > MAX_PROFILES_INSTALLED:
                return InstallResult(
                    False, (f"profiles: at most {MAX_PROFILES_INSTALLED} installed",)
                )
            await self._commit(store)
        self.apply()
        return InstallResult(True, replaced=replaced)

    async def clear(self, criteria: ClearCriteria) -> bool:
        """Remove the profiles ``criteria`` matches, persist, re-apply.

        Returns:
            False when nothing matched (1.6 ``Unknown``).
        """
        async with self._lock:
            store, removed = self._store.clear(criteria)
            if not removed:
                return False
            await self._commit(store)
        self.apply()
        return True

    def expect_tx_profile(self, evse_id: int, id_tag: str, profile: ChargingProfile) -> bool:
        """Install ``profile`` (a TxProfile from a remote start) when the next transaction
        of ``id_tag`` starts on ``evse_id`` (1.6 §5.11).

        Call it *before* the remote start reaches the EVSE: the limit of the idle EVSE
        already takes the profile into account (see ``apply``), so the first PWM of the
        transaction never offers more than the profile allows.

        Returns:
            False (and nothing is expected) when the profile would be rejected even with
            a transaction running; the reasons are logged.
        """
        profile = replace(profile, evse_id=evse_id)
        problems = validate(
            profile,
            evse_count=len(self._controllers),
            has_transaction_on=lambda i: i == evse_id or self.has_transaction_on(i),
            supported_units=SUPPORTED_UNITS,
            max_periods=MAX_PERIODS,
            max_stack_level=MAX_STACK_LEVEL,
        )
        if problems:
            log.warning("RemoteStart charging profile rejected: %s", "; ".join(problems))
            return False
        self._pending[evse_id] = _PendingTxProfile(id_tag, profile)
        self.apply()
        return True

    def forget_tx_profile(self, evse_id: int) -> None:
        """Drop the profile ``expect_tx_profile`` left for ``evse_id`` (the start failed)."""
        if self._pending.pop(evse_id, None) is not None:
            self.apply()

    def composite(self, evse_id: int, duration_s: int, rate_unit: RateUnit) -> CompositeSchedule:
        """The composite schedule of ``evse_id`` from now; 0 = the whole station.

        For an EVSE: its own profiles capped by the station limit. Intervals without a
        profile in force carry the hardware limit of the EVSE (converted with its phases
        for W), so every period has a limit.

        For 0 (1.6 §5.7 "total expected energy flow", REFERENCE 3.2.4): the sum of the
        EVSEs' own composites (each without the station limit), capped by the station
        limit where a ChargePointMaxProfile is in force.

        Raises:
            ValueError: unknown EVSE, unsupported unit, or ``duration_s`` <= 0.
        """
        if evse_id != 0 and evse_id not in self._controllers:
            raise ValueError(f"unknown EVSE {evse_id}")
        if rate_unit not in SUPPORTED_UNITS:
            raise ValueError(f"rate unit {rate_unit} is not supported")
        if evse_id == 0:
            return self._station_composite(duration_s, rate_unit)
        return self._evse_composite(evse_id, duration_s, rate_unit, include_station_max=True)

    def _evse_composite(
        self, evse_id: int, duration_s: int, rate_unit: RateUnit, *, include_station_max: bool
    ) -> CompositeSchedule:
        ctl = self._controllers[evse_id]
        phases = self._phases.get(evse_id, 3)
        store = self._store
        if ctl.transaction is not None and evse_id in self._installing:
            store, _ = store.install(self._installing[evse_id])  # in force already
        schedule = composite_schedule(
            store.profiles,
            evse_id=evse_id,
            start=self._clock.now(),
            duration_s=duration_s,
            rate_unit=rate_unit,
            tx_start=_tx_start(ctl.transaction),
            nominal_voltage_v=self._voltage_v,
            phases=phases,
            include_station_max=include_station_max,
        )
        default = self._max_a.get(evse_id, max(self._max_a.values(), default=32.0))
        if rate_unit is RateUnit.W:
            default = default * self._voltage_v * phases
        filled = [
            period
            if period.limit is not None
            else CompositePeriod(period.start_period_s, float(default), phases)
            for period in schedule.periods or (CompositePeriod(0, None, None),)
        ]
        return replace(schedule, periods=_merged(filled))

    def _station_composite(self, duration_s: int, rate_unit: RateUnit) -> CompositeSchedule:
        station = composite_schedule(
            self._store.profiles,
            evse_id=0,
            start=self._clock.now(),
            duration_s=duration_s,
            rate_unit=rate_unit,
            tx_start=None,
            nominal_voltage_v=self._voltage_v,
            phases=self._phases.get(0, 3),
        )
        evses = [
            self._evse_composite(i, duration_s, rate_unit, include_station_max=False)
            for i in sorted(self._controllers)
        ]
        starts = sorted({p.start_period_s for s in (station, *evses) for p in s.periods} | {0})
        periods: list[CompositePeriod] = []
        for start_s in starts:
            parts = [_period_at(s, start_s) for s in evses]
            total = sum((Fraction(str(p.limit)) for p in parts if p.limit is not None), Fraction())
            phases = [p.number_phases for p in parts if p.number_phases is not None]
            cap = _period_at(station, start_s)
            if cap.limit is not None:
                total = min(total, Fraction(str(cap.limit)))
                phases.append(cap.number_phases or 3)
            limit = float(Fraction(math.floor(total * 10), 10))
            periods.append(CompositePeriod(start_s, limit, min(phases, default=3)))
        return replace(station, periods=_merged(periods))

    # ------------------------------------------------------------ applying

    def apply(self) -> None:
        """Set every EVSE's smart-charging limit for now and re-arm the boundary timer.

        Each EVSE's own limit is its composite without the station limit; for an EVSE
        without a transaction it is the limit a transaction starting now would get
        (Relative profiles from now, and the lower of with / without a TxProfile
        expected from a remote start), so the first PWM of a new transaction is already
        right. A ChargePointMaxProfile in force is then shared between the EVSEs by
        ``sharing`` (earliest transaction first; an idle EVSE gets the share it would
        get as a newcomer). Lowered limits are set before raised ones.
        """
        if not self._running:
            return
        now = self._clock.now()
        own_a: dict[int, float | None] = {}
        for evse_id, ctl in self._controllers.items():
            own_a[evse_id] = self._own_limit_a(evse_id, ctl.transaction, now)
        cap = limit_at(
            self._store.profiles,
            evse_id=0,
            at=now,
            tx_start=None,
            nominal_voltage_v=self._voltage_v,
            phases=self._phases.get(0, 3),
            rate_unit=RateUnit.A,
        )
        limits_a: dict[int, float | None] = dict(own_a)
        if cap is not None:
            demands_a = {
                i: min(self._hardware_a(i), math.inf if a is None else a) for i, a in own_a.items()
            }
            sharing_ids = [
                i
                for i, _ in sorted(
                    (
                        (i, c.transaction)
                        for i, c in self._controllers.items()
                        if c.transaction is not None
                    ),
                    key=lambda item: (_tx_start(item[1]) or now, item[0]),
                )
            ]
            limits_a.update(share_station_limit(cap.limit, demands_a, sharing_ids))
            for i in self._controllers:
                if i not in sharing_ids:
                    limits_a[i] = prospective_share(cap.limit, demands_a, sharing_ids, i)
        changed = {
            i: limit
            for i, limit in limits_a.items()
            if i not in self._applied_a or self._applied_a[i] != limit
        }

        def raised_last(i: int) -> tuple[bool, int]:
            before, after = self._applied_a.get(i), changed[i]
            lowered = after is not None and (before is None or after < before)
            return (not lowered, i)

        for evse_id in sorted(changed, key=raised_last):
            self._applied_a[evse_id] = changed[evse_id]
            self._controllers[evse_id].set_limit(SOURCE, changed[evse_id])
        self._arm(now, self._next_change(now))

    def _hardware_a(self, evse_id: int) -> float:
        return self._max_a.get(evse_id, max(self._max_a.values(), default=32.0))

    def _own_limit_a(self, evse_id: int, tx: TxRecord | None, now: datetime) -> float | None:
        """The EVSE's limit without the station limit (for an idle EVSE: prospective)."""
        common: dict[str, Any] = {
            "evse_id": evse_id,
            "at": now,
            "tx_start": now if tx is None else _tx_start(tx),
            "nominal_voltage_v": self._voltage_v,
            "phases": self._phases.get(evse_id, 3),
            "rate_unit": RateUnit.A,
            "include_station_max": False,
        }
        store = self._store
        if tx is None:  # TxProfiles of an ended transaction may not be removed yet
            store = ProfileStore(tuple(p for p in store.profiles if p.purpose is not Purpose.TX))
        found = limit_at(store.profiles, **common)
        values = [math.inf if found is None else found.limit]
        expected = self._installing.get(evse_id) if tx is not None else None
        if tx is None and evse_id in self._pending:
            expected = self._pending[evse_id].profile
        if expected is not None:
            with_expected, _ = store.install(expected)
            found = limit_at(with_expected.profiles, **common)
            values.append(math.inf if found is None else found.limit)
        value = min(values)
        return None if value == math.inf else value

    def _next_change(self, now: datetime) -> datetime | None:
        """The next period boundary of any EVSE or of the station limit."""
        next_change: datetime | None = None
        for evse_id in (0, *self._controllers):
            ctl = self._controllers.get(evse_id)
            schedule = composite_schedule(
                self._store.profiles,
                evse_id=evse_id,
                start=now,
                duration_s=HORIZON_S,
                rate_unit=RateUnit.A,
                tx_start=_tx_start(ctl.transaction) if ctl is not None else None,
                nominal_voltage_v=self._voltage_v,
                phases=self._phases.get(evse_id, 3),
            )
            for period in schedule.periods:
                if period.start_period_s > 0:
                    boundary = schedule.start + timedelta(seconds=period.start_period_s)
                    if next_change is None or boundary < next_change:
                        next_change = boundary
                    break
        return next_change

    def _arm(self, now: datetime, next_change: datetime | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        delay_s = float(HORIZON_S)
        if next_change is not None:
            delay_s = max((next_change - now).total_seconds(), 0.0)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + delay_s + TIMER_MARGIN_S, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.apply()

    # ------------------------------------------------------------ transactions

    def _on_tx_message(self) -> None:
        changed = False
        for evse_id, ctl in self._controllers.items():
            tx = ctl.transaction
            tx_id = _tx_id(tx)
            previous = self._tx_seen.get(evse_id)
            if tx_id == previous:
                continue
            changed = True
            self._tx_seen[evse_id] = tx_id
            if previous is not None:
                self._spawn(self._end_transaction(evse_id))
            if tx is not None:
                pending = self._pending.pop(evse_id, None)
                if pending is not None and pending.id_tag.upper() == tx.id_tag.upper():
                    # counted in the limit until installed, so the limit never rises
                    # in between (see ``_own_limit_a``)
                    self._installing[evse_id] = pending.profile
                    self._spawn(self._install_pending(evse_id, pending.profile))
        if changed:
            self.apply()

    async def _end_transaction(self, evse_id: int) -> None:
        async with self._lock:
            store, removed = self._store.end_transaction(evse_id)
            if removed:
                await self._commit(store)
                log.info("evse %d: TxProfiles %s ended with the transaction", evse_id, removed)
        self.apply()

    async def _install_pending(self, evse_id: int, profile: ChargingProfile) -> None:
        try:
            result = await self.install(profile)
        finally:
            if self._installing.get(evse_id) is profile:
                del self._installing[evse_id]
        if not result.accepted:
            log.warning("RemoteStart charging profile rejected: %s", "; ".join(result.problems))
        self.apply()

    async def _commit(self, store: ProfileStore) -> None:
        """Persist ``store``, then make it current (caller holds the lock)."""
        await self._settings_store.set(STORE_KEY, to_json(store))
        self._store = store

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("smart charging: %r", task.exception())


def _period_at(schedule: CompositeSchedule, offset_s: int) -> CompositePeriod:
    """The period of ``schedule`` in force ``offset_s`` after its start."""
    found = CompositePeriod(0, None, None)
    for period in schedule.periods:
        if period.start_period_s > offset_s:
            break
        found = period
    return found


def _merged(periods: list[CompositePeriod]) -> tuple[CompositePeriod, ...]:
    """``periods`` without a period equal to the one before it."""
    out: list[CompositePeriod] = []
    for period in periods:
        if out and (out[-1].limit, out[-1].number_phases) == (
            period.limit,
            period.number_phases,
        ):
            continue
        out.append(period)
    return tuple(out)


def _tx_id(tx: TxRecord | None) -> str | None:
    return None if tx is None else tx.tx_id


def _tx_start(tx: TxRecord | None) -> datetime | None:
    if tx is None:
        return None
    with contextlib.suppress(ValueError):
        return parse_iso(tx.start_time)
    return None


__all__ = [
    "HORIZON_S",
    "MAX_PERIODS",
    "MAX_PROFILES_INSTALLED",
    "MAX_STACK_LEVEL",
    "SOURCE",
    "STORE_KEY",
    "SUPPORTED_UNITS",
    "InstallResult",
    "LimitTarget",
    "SmartChargingService",
]
