"""The reservation service: the book made durable, expiring on time, applied to the EVSEs.

* Durable: the book is one JSON value in the settings table (``STORE_KEY``); a
  ReserveNow is answered Accepted only after it is on disk, so reservations
  survive a reboot. Expired ones are dropped when loaded.
* On time: one timer (``loop.call_later``) for the earliest expiry, computed
  from the agent clock (``agent.clock.Clock``, which the CSMS may correct); it
  fires at the expiry and is re-armed after every change. No polling.
* Applied: after every change and every status or transaction event of the
  station, the held connectors are recomputed and each EVSE controller whose
  hold changed gets ``charger.ReservationChanged``. Reservations end when a
  transaction uses them (its journal record names the reservation), when their
  connector becomes Faulted or Unavailable, or on expiry/cancel (1.6 5.13).
* Observable: ``subscribe_ended`` tells who cares (the 2.0.1 ReservationStatusUpdate)
  when the station itself ends a reservation: it expired, or its connector became
  unusable. Cancels and uses are the CSMS's and the transaction's own news.

Runs in the event loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Mapping
from enum import StrEnum

from agent.clock import Clock
from agent.evse import charger
from agent.evse.charger import ChargerState
from agent.evse.controller import EvseController
from agent.persistence.settings_store import JSONValue, SettingsStore
from agent.reservations.book import (
    Admission,
    Occupancy,
    Reservation,
    ReservationBook,
    ReserveStatus,
    from_json,
    to_json,
)
from agent.settings import Settings

__all__ = ["STORE_KEY", "EndedListener", "ReservationEnd", "ReservationService", "occupancy_of"]

log = logging.getLogger(__name__)

STORE_KEY = "reservations"


class ReservationEnd(StrEnum):
    """Why the station itself ended a reservation (2.0.1 ReservationUpdateStatus spelling)."""

    EXPIRED = "Expired"
    """Its expiry passed (also while the station was down)."""
    REMOVED = "Removed"
    """Its connector (or, for connector 0, the station) became Faulted or Unavailable."""


EndedListener = Callable[[Reservation, ReservationEnd], None]


def occupancy_of(state: ChargerState) -> Occupancy:
    """What an EVSE is doing, for the reservation book (same precedence as its status)."""
    if state.faulted:
        return Occupancy.FAULTED
    if state.tx_active:
        return Occupancy.OCCUPIED
    if not state.operative:
        return Occupancy.UNAVAILABLE
    if state.plugged or state.finishing or state.authorized_id is not None:
        return Occupancy.OCCUPIED
    if state.pending_auth is not None:
        return Occupancy.AUTHORIZING
    return Occupancy.AVAILABLE


class ReservationService:
    """Owns the reservation book of the station.

    Args:
        controllers: The EVSE controllers by id (connector id = EVSE id).
        settings: Read for ``reserve_connector_zero_supported``.
        settings_store: Where the book is persisted (key ``STORE_KEY``).
        clock: The agent clock: expiry times are compared with ``clock.now()``.
        station_operative: Whether the station as a whole (connector 0) is operative.
    """

    def __init__(
        self,
        *,
        controllers: Mapping[int, EvseController],
        settings: Settings,
        settings_store: SettingsStore,
        clock: Clock,
        station_operative: Callable[[], bool],
    ) -> None:
        self._controllers = controllers
        self._settings = settings
        self._settings_store = settings_store
        self._clock = clock
        self._station_operative = station_operative
        self._book = ReservationBook()
        self._posted: dict[int, bool] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._saver: asyncio.Task[None] | None = None
        self._dirty = False
        self._stopped = False
        self._ended_listeners: list[EndedListener] = []

    def subscribe_ended(self, listener: EndedListener) -> Callable[[], None]:
        """Be called (in the loop thread, synchronously) for every reservation the
        station ends by itself: expired or removed (see ``ReservationEnd``); returns
        a function that unsubscribes. Expiries found by ``start`` are told to the
        listeners subscribed before it."""
        self._ended_listeners.append(listener)
        return lambda: self._ended_listeners.remove(listener)

    def _tell_ended(self, gone: Collection[Reservation], why: ReservationEnd) -> None:
        for reservation in gone:
            for listener in list(self._ended_listeners):
                listener(reservation, why)

    @property
    def book(self) -> ReservationBook:
        """The reservations in force now."""
        return self._book

    async def start(
        self, persisted: JSONValue | None, used_ids: Collection[int] = frozenset()
    ) -> None:
        """Adopt the persisted book (``settings_store.load()[STORE_KEY]``), dropping
        expired entries, entries for connectors that no longer exist and ``used_ids``,
        and apply it.

        ``used_ids``: reservations used by the transactions a power cut interrupted
        (``Station.recover_interrupted``): their start was journalled, but the write
        that ends the reservation may not have been, and a used reservation must not
        hold the connector again.

        A corrupt value is logged and replaced by an empty book.
        """
        book = ReservationBook()
        corrupt = False
        if persisted is not None:
            try:
                book = from_json(persisted)
            except ValueError as e:
                log.error("persisted reservations unusable, dropped: %s", e)
                corrupt = True
        book, expired = book.expire(self._clock.now())
        for r in expired:
            log.info("reservation %d expired while the station was down", r.reservation_id)
        self._tell_ended(expired, ReservationEnd.EXPIRED)
        used = []
        for reservation_id in sorted(set(used_ids)):
            book, gone = book.remove(reservation_id)
            if gone is not None:
                used.append(gone)
                log.info("reservation %d was used by an interrupted transaction", reservation_id)
        self._book = book
        if expired or corrupt or used:
            self._save()
        self.refresh()

    async def stop(self) -> None:
        """Cancel the expiry timer and finish the last write."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        saver = self._saver
        if saver is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(saver)

    # -------------------------------------------------------------- commands

    async def reserve(self, request: Reservation) -> ReserveStatus:
        """ReserveNow (1.6 5.13): place or replace ``request``; Accepted once durable.

        Raises:
            Exception: The store failed (the book is left as it was).
        """
        book, status = self._book.reserve(
            request,
            self.occupancy(),
            now=self._clock.now(),
            station_operative=self._station_operative(),
            connector_zero_supported=self._settings.get_bool("reserve_connector_zero_supported"),
        )
        log.info(
            "ReserveNow %d on connector %d for %s until %s: %s",
            request.reservation_id,
            request.connector_id,
            request.id_tag,
            request.expiry.isoformat(),
            status,
        )
        if status is ReserveStatus.ACCEPTED:
            await self._commit(book)
        return status

    async def cancel(self, reservation_id: int) -> bool:
        """CancelReservation (1.6 5.3): True when the reservation existed (now gone).

        Raises:
            Exception: The store failed (the book is left as it was).
        """
        book, gone = self._book.remove(reservation_id)
        if gone is None:
            return False
        log.info("reservation %d cancelled", reservation_id)
        await self._commit(book)
        return True

    def admit(
        self, evse_id: int, id_tag: str, parent_id_tag: str | None, *, parent_known: bool = True
    ) -> Admission:
        """May ``id_tag`` start on ``evse_id`` now, and with which reservation."""
        return self._book.admit(
            evse_id, id_tag, parent_id_tag, self.occupancy(), parent_known=parent_known
        )

    def occupancy(self) -> dict[int, Occupancy]:
        """Every connector's occupancy now."""
        return {i: occupancy_of(c.state) for i, c in self._controllers.items()}

    # ------------------------------------------------------------ reactions

    def refresh(self) -> None:
        """Re-derive everything from the EVSE states: end used and unusable
        reservations, post the holds that changed, re-arm the expiry timer.

        Cheap; the station calls it on every status change and transaction message.
        """
        if self._stopped:
            return
        occupancy = self.occupancy()
        book, gone = self._book.terminate_unusable(
            occupancy, station_operative=self._station_operative()
        )
        for r in gone:
            log.info("reservation %d ended: connector unusable", r.reservation_id)
        self._tell_ended(gone, ReservationEnd.REMOVED)
        for ctl in self._controllers.values():
            tx = ctl.transaction
            if tx is not None and tx.reservation_id is not None:
                book, used = book.remove(tx.reservation_id)
                if used is not None:
                    log.info("reservation %d used by transaction %s", used.reservation_id, tx.tx_id)
        if book is not self._book:
            self._book = book
            self._save()
        held = book.held(occupancy)
        for evse_id, ctl in self._controllers.items():
            want = evse_id in held
            if self._posted.get(evse_id, False) != want:
                self._posted[evse_id] = want
                ctl.post(charger.ReservationChanged(want))
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        expiry = self._book.next_expiry()
        if expiry is None or self._stopped:
            return
        delay_s = max(0.0, (expiry - self._clock.now()).total_seconds())
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        book, gone = self._book.expire(self._clock.now())
        for r in gone:
            log.info("reservation %d expired", r.reservation_id)
        self._tell_ended(gone, ReservationEnd.EXPIRED)
        if gone:
            self._book = book
            self._save()
        self.refresh()  # re-arms (also when the clock was moved back meanwhile)

    # ----------------------------------------------------------- persistence

    async def _commit(self, book: ReservationBook) -> None:
        previous = self._book
        self._book = book
        try:
            await self._save_and_wait()
        except Exception:
            # the write failed: nothing changed on disk, so nothing changes here
            # (a cancelled caller leaves the shielded write running: keep the book)
            if self._book is book:
                self._book = previous
            raise
        self.refresh()

    def _save(self) -> None:
        """Write the book soon (latest state wins; writes never overlap)."""
        self._dirty = True
        if self._saver is None or self._saver.done():
            self._saver = asyncio.create_task(self._save_loop(), name="reservations-save")
            self._saver.add_done_callback(_log_failure)

    async def _save_and_wait(self) -> None:
        self._save()
        saver = self._saver
        assert saver is not None
        await asyncio.shield(saver)

    async def _save_loop(self) -> None:
        while self._dirty:
            self._dirty = False
            await self._settings_store.set(STORE_KEY, to_json(self._book))


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("saving the reservations failed: %r", task.exception())
