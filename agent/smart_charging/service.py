"""Smart charging at run time: keeps the profile store and applies its limits to the EVSEs.

The pure engine (``profiles``, ``validation``, ``composite``) decides; this service owns
the one mutable ``ProfileStore``, persists it (one JSON value under ``STORE_KEY`` in the
settings table) before a change is acknowledged, and pushes the limit in force to each
EVSE controller with ``set_limit(SOURCE, limit_a)``. One loop timer fires at the next
period boundary of any EVSE (looked up over ``HORIZON_S``) and re-applies; transaction
starts and ends re-apply too (Relative and TxProfiles start with the transaction, and a
TxProfile is dropped when its transaction ends). Version-neutral: no OCPP here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
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
    RateUnit,
    from_json,
    to_json,
)
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
SUPPORTED_UNITS: tuple[RateUnit, ...] = (RateUnit.A,)
"""Rate units accepted in profiles and composite requests. AC hardware limits in amperes
per phase (PWM); a W profile would depend on a phase count the EV decides."""


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

        Persisted before it returns, so an accepted answer survives a power cut.

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

    def expect_tx_profile(self, evse_id: int, id_tag: str, profile: ChargingProfile) -> None:
        """Install ``profile`` (a TxProfile from a remote start) when the next transaction
        of ``id_tag`` starts on ``evse_id``; it is validated then (1.6 §5.11)."""
        self._pending[evse_id] = _PendingTxProfile(id_tag, replace(profile, evse_id=evse_id))

    def composite(self, evse_id: int, duration_s: int, rate_unit: RateUnit) -> CompositeSchedule:
        """The composite schedule of ``evse_id`` (0 = station limit) from now.

        Intervals without a profile in force carry the hardware limit of the EVSE
        (converted with its phases for W), so every period has a limit.

        Raises:
            ValueError: unknown EVSE, unsupported unit, or ``duration_s`` <= 0.
        """
        if evse_id != 0 and evse_id not in self._controllers:
            raise ValueError(f"unknown EVSE {evse_id}")
        if rate_unit not in SUPPORTED_UNITS:
            raise ValueError(f"rate unit {rate_unit} is not supported")
        ctl = self._controllers.get(evse_id)
        tx = ctl.transaction if ctl is not None else None
        phases = self._phases.get(evse_id, 3)
        schedule = composite_schedule(
            self._store.profiles,
            evse_id=evse_id,
            start=self._clock.now(),
            duration_s=duration_s,
            rate_unit=rate_unit,
            tx_start=_tx_start(tx),
            nominal_voltage_v=self._voltage_v,
            phases=phases,
        )
        default = self._max_a.get(evse_id, max(self._max_a.values(), default=32.0))
        if rate_unit is RateUnit.W:
            default = default * self._voltage_v * phases
        periods = schedule.periods or (CompositePeriod(0, None, None),)
        filled: list[CompositePeriod] = []
        for period in periods:
            if period.limit is None:
                period = CompositePeriod(period.start_period_s, float(default), phases)
            if filled and (filled[-1].limit, filled[-1].number_phases) == (
                period.limit,
                period.number_phases,
            ):
                continue
            filled.append(period)
        return replace(schedule, periods=tuple(filled))

    # ------------------------------------------------------------ applying

    def apply(self) -> None:
        """Set every EVSE's smart-charging limit for now and re-arm the boundary timer."""
        if not self._running:
            return
        now = self._clock.now()
        next_change: datetime | None = None
        for evse_id, ctl in self._controllers.items():
            tx_start = _tx_start(ctl.transaction)
            phases = self._phases.get(evse_id, 3)
            limit = limit_at(
                self._store.profiles,
                evse_id=evse_id,
                at=now,
                tx_start=tx_start,
                nominal_voltage_v=self._voltage_v,
                phases=phases,
                rate_unit=RateUnit.A,
            )
            limit_a = None if limit is None else limit.limit
            if evse_id not in self._applied_a or self._applied_a[evse_id] != limit_a:
                self._applied_a[evse_id] = limit_a
                ctl.set_limit(SOURCE, limit_a)
            schedule = composite_schedule(
                self._store.profiles,
                evse_id=evse_id,
                start=now,
                duration_s=HORIZON_S,
                rate_unit=RateUnit.A,
                tx_start=tx_start,
                nominal_voltage_v=self._voltage_v,
                phases=phases,
            )
            for period in schedule.periods:
                if period.start_period_s > 0:
                    boundary = schedule.start + timedelta(seconds=period.start_period_s)
                    if next_change is None or boundary < next_change:
                        next_change = boundary
                    break
        self._arm(now, next_change)

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
                if pending is not None and pending.id_tag == tx.id_tag:
                    self._spawn(self._install_pending(pending.profile))
        if changed:
            self.apply()

    async def _end_transaction(self, evse_id: int) -> None:
        async with self._lock:
            store, removed = self._store.end_transaction(evse_id)
            if removed:
                await self._commit(store)
                log.info("evse %d: TxProfiles %s ended with the transaction", evse_id, removed)
        self.apply()

    async def _install_pending(self, profile: ChargingProfile) -> None:
        result = await self.install(profile)
        if not result.accepted:
            log.warning("RemoteStart charging profile rejected: %s", "; ".join(result.problems))

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
