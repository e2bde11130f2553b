"""The station core: all EVSE controllers and the commands a CSMS may give.

Version-neutral: the OCPP adapters call these methods (``StationCommands``) and
subscribe to status changes. Nothing here knows an OCPP message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

from agent.authorization.authorizer import Authorizer
from agent.authorization.master_pass import is_master_pass
from agent.clock import Clock
from agent.events import (
    ConnectorStatus,
    EvseStatusChanged,
    MeterSample,
    ReadingContext,
    StopReason,
)
from agent.evse import charger
from agent.evse.controller import EvseController
from agent.evse.sampling import station_sample
from agent.persistence.settings_store import SettingsStore
from agent.reservations.book import Admission, Reservation, ReserveStatus
from agent.transactions.journal import TransactionJournal, TxRecord

if TYPE_CHECKING:
    from agent.reservations.service import ReservationService
    from agent.smart_charging.service import SmartChargingService

log = logging.getLogger(__name__)

AVAILABILITY_KEY = "availability.evse.{}"  # persisted per EVSE; 0 = whole station


class AvailabilityResult(StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    SCHEDULED = "Scheduled"


class UnlockResult(StrEnum):
    UNLOCKED = "Unlocked"
    UNLOCK_FAILED = "UnlockFailed"
    NOT_SUPPORTED = "NotSupported"


class ResetKind(StrEnum):
    SOFT = "Soft"
    HARD = "Hard"


StatusListener = Callable[[EvseStatusChanged], None]
SampleListener = Callable[[int, MeterSample], None]


class Station:
    """Owns the controllers; answers CSMS commands; reports connector 0.

    Args:
        controllers: By EVSE id (1..N).
        journal: The transaction journal (for power-loss recovery and lookups).
        settings_store: Where availability is persisted.
        authorizer: For ClearCache and CSMS verdicts.
        clock: Time source.
        request_restart: Called with the reset kind once transactions are stopped.
        availability: Persisted availability by EVSE id (0 = station).

    Attributes:
        smart_charging: The charging-profile service, once the composition root has
            attached it (None = the station does no smart charging).
        reservations: The reservation service, once attached with
            ``attach_reservations`` (None = every ReserveNow is Rejected).
    """

    def __init__(
        self,
        *,
        controllers: dict[int, EvseController],
        journal: TransactionJournal,
        settings_store: SettingsStore,
        authorizer: Authorizer,
        clock: Clock,
        request_restart: Callable[[ResetKind], None],
        availability: dict[int, bool] | None = None,
    ) -> None:
        self.controllers = controllers
        self.journal = journal
        self.authorizer = authorizer
        self._settings_store = settings_store
        self._clock = clock
        self._request_restart = request_restart
        # requested availability per EVSE id, 0 = the whole station (persisted)
        self._operative = {0: True, **{i: True for i in controllers}, **(availability or {})}
        # a firmware install is pending: idle EVSEs Unavailable, not persisted
        self._maintenance = False
        # True while a Reset must be refused (a firmware install is being applied)
        self.reset_blocked: Callable[[], bool] = lambda: False
        self._listeners: list[StatusListener] = []
        self._tx_listeners: list[Callable[[], None]] = []
        self._sample_listeners: list[SampleListener] = []
        self.smart_charging: SmartChargingService | None = None
        self.reservations: ReservationService | None = None
        # MasterPass group (setting master_pass_group_id, "" = none), read per token
        self.master_pass_group: Callable[[], str] = lambda: ""

    # ------------------------------------------------------------ status

    def subscribe_status(self, listener: StatusListener) -> Callable[[], None]:
        """Receive every status change; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def subscribe_tx_messages(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Be told when a transaction message was queued; returns an unsubscriber."""
        self._tx_listeners.append(listener)
        return lambda: self._tx_listeners.remove(listener)

    def publish(self, event: EvseStatusChanged) -> None:
        """Fan a status change out to the listeners (controllers call this)."""
        for listener in list(self._listeners):
            listener(event)

    def tx_message_queued(self) -> None:
        for listener in list(self._tx_listeners):
            listener()

    def subscribe_samples(self, listener: SampleListener) -> Callable[[], None]:
        """Receive ``(connector_id, sample)`` for every meter sample taken outside a
        transaction (clock-aligned data; connector 0 = the station total); returns
        a function that unsubscribes. Transaction samples go through the journal."""
        self._sample_listeners.append(listener)
        return lambda: self._sample_listeners.remove(listener)

    def publish_sample(self, connector_id: int, sample: MeterSample) -> None:
        """Fan a non-transaction meter sample out (controllers and the aligned sampler)."""
        for listener in list(self._sample_listeners):
            listener(connector_id, sample)

    def station_sample(
        self, context: ReadingContext, measurands: Sequence[str]
    ) -> MeterSample | None:
        """Connector / EVSE 0 now: the sum over every EVSE meter (``station_sample``).

        Returns:
            The sample, or None until every meter has answered (a sum over some of
            them would be a wrong station total) or when no summable measurand is
            configured.
        """
        return station_sample(
            [ctl.hw.meter.latest for ctl in self.controllers.values()],
            measurands,
            context=context,
            timestamp=self._clock.iso_now(),
        )

    def station_status(self) -> EvseStatusChanged:
        """Connector 0: only Available, Unavailable or Faulted (OCPP 1.6 4.9)."""
        status = ConnectorStatus.AVAILABLE if self._operative[0] else ConnectorStatus.UNAVAILABLE
        return EvseStatusChanged(0, status, None, None, self._clock.iso_now())

    def all_statuses(self) -> list[EvseStatusChanged]:
        """Connector 0 and every EVSE's current status."""
        out = [self.station_status()]
        out.extend(c.status for c in self.controllers.values() if c.status is not None)
        return out

    # ------------------------------------------------------- power loss

    async def recover_interrupted(self) -> list[TxRecord]:
        """End transactions left running by a crash or power cut (reason PowerLoss).

        Must run before the controllers start. The stop carries the last meter
        value and time that were made durable before the cut, and the transaction
        data (StopTxnSampledData / StopTxnAlignedData samples) journalled until then;
        there is no Transaction.End sample, the meter was not read at the cut.
        """
        ended = []
        for tx in await self.journal.running():
            stop_wh = tx.last_meter_wh if tx.last_meter_wh is not None else tx.meter_start_wh
            when = tx.last_meter_time or tx.start_time
            ended.append(
                await self.journal.end(
                    tx.tx_id, reason=StopReason.POWER_LOSS, meter_stop_wh=stop_wh, timestamp=when
                )
            )
            log.warning("transaction %s interrupted: stopped with PowerLoss", tx.tx_id)
        return ended

    # --------------------------------------------------------- commands

    def controller(self, evse_id: int) -> EvseController | None:
        return self.controllers.get(evse_id)

    def remote_start(
        self, evse_id: int | None, id_tag: str, *, authorize: bool, remote_start_id: int | None
    ) -> bool:
        """Start a session for ``id_tag``; False when it cannot start now.

        ``evse_id`` None picks the first EVSE that can start (plugged first).
        """
        if evse_id is None:
            candidates = self._start_candidates(id_tag)
        else:
            ctl = self.controllers.get(evse_id)
            candidates = [ctl] if ctl is not None else []
        for ctl in candidates:
            if not self._can_start(ctl):
                continue
            # 1.6 5.13: a reserved connector takes only its tag (or, once an
            # Authorize told the parent, its parentIdTag's group)
            admission = self._admit_remote(ctl.evse_id, id_tag)
            if admission.allowed or admission.needs_parent:
                ctl.post(
                    charger.RemoteStartRequested(
                        id_tag,
                        authorize or admission.needs_parent,
                        remote_start_id,
                        admission.reservation_id,
                    )
                )
                return True
        return False

    def _start_candidates(self, id_tag: str) -> list[EvseController]:
        # a connector reserved for this tag first, then plugged ones
        def key(c: EvseController) -> tuple[bool, bool]:
            reserved_for_tag = self._admit_remote(c.evse_id, id_tag).reservation_id is not None
            return (not reserved_for_tag, not c.state.plugged)

        return sorted(self.controllers.values(), key=key)

    def _admit_remote(self, evse_id: int, id_tag: str) -> Admission:
        if self.reservations is None:
            return Admission(True)
        return self.reservations.admit(evse_id, id_tag, None, parent_known=False)

    def admit_start(self, evse_id: int, id_tag: str, parent_id_tag: str | None) -> Admission:
        """May an authorized ``id_tag`` (with its parent) start on ``evse_id``, using
        which reservation (the controllers ask after every accepted authorization).

        A MasterPass token (its parent is ``master_pass_group``, 2.0.1 C16) starts
        nothing: it stops every transaction of the station (reason MasterPass)."""
        if is_master_pass(parent_id_tag, self.master_pass_group()):
            stopping = [c for c in self.controllers.values() if c.state.tx_active]
            log.warning(
                "MasterPass %s on evse %d: stopping %d transaction(s)",
                id_tag,
                evse_id,
                len(stopping),
            )
            for ctl in stopping:
                ctl.post(charger.StopRequested(StopReason.MASTER_PASS))
            return Admission(False)
        if self.reservations is None:
            return Admission(True)
        return self.reservations.admit(evse_id, id_tag, parent_id_tag)

    # ---------------------------------------------------------- reservations

    def attach_reservations(self, service: ReservationService) -> None:
        """Use ``service`` for ReserveNow/CancelReservation and start admission; it
        follows every status change and transaction message from now on."""
        self.reservations = service
        self.subscribe_status(lambda _event: service.refresh())
        self.subscribe_tx_messages(service.refresh)

    async def reserve_now(self, request: Reservation) -> ReserveStatus:
        """Place or replace a reservation (1.6 5.13); Rejected without the service."""
        if self.reservations is None:
            return ReserveStatus.REJECTED
        return await self.reservations.reserve(request)

    async def cancel_reservation(self, reservation_id: int) -> bool:
        """Cancel a reservation (1.6 5.3); False when there is no such reservation."""
        if self.reservations is None:
            return False
        return await self.reservations.cancel(reservation_id)

    def _can_start(self, ctl: EvseController) -> bool:
        s = ctl.state
        return (
            s.operative
            and not s.blocked  # EV-side errors too, as the machine does
            and (not s.tx_active or s.awaiting_id)  # a cable-first one takes the id
            and s.pending_auth is None
            and s.authorized_id is None
        )

    def remote_stop(self, tx_id: str) -> bool:
        """Stop the transaction with journal id ``tx_id``; False when none runs."""
        return self.stop_transaction(tx_id, StopReason.REMOTE)

    def stop_transaction(self, tx_id: str, reason: StopReason) -> bool:
        for ctl in self.controllers.values():
            if ctl.transaction is not None and ctl.transaction.tx_id == tx_id:
                ctl.post(charger.StopRequested(reason))
                return True
        return False

    def running_transactions(self) -> list[TxRecord]:
        return [c.transaction for c in self.controllers.values() if c.transaction is not None]

    async def change_availability(self, evse_id: int, operative: bool) -> AvailabilityResult:
        """Set an EVSE (or with 0 the whole station) operative or not; persisted.

        Returns Scheduled when a transaction runs on an affected EVSE: the change
        takes effect when it ends (OCPP 1.6 5.2).
        """
        if evse_id != 0 and evse_id not in self.controllers:
            return AvailabilityResult.REJECTED
        await self._settings_store.set(AVAILABILITY_KEY.format(evse_id), operative)
        self._operative[evse_id] = operative
        if evse_id == 0:
            self.publish(self.station_status())
        affected = self.controllers.values() if evse_id == 0 else [self.controllers[evse_id]]
        busy = False
        for ctl in affected:
            ctl.post(charger.AvailabilityChanged(self.effective_operative(ctl.evse_id)))
            busy = busy or ctl.transaction is not None
        return AvailabilityResult.SCHEDULED if busy else AvailabilityResult.ACCEPTED

    def effective_operative(self, evse_id: int) -> bool:
        """An EVSE is operative when it and the whole station are."""
        return self._operative[0] and self._operative.get(evse_id, True) and not self._maintenance

    async def hold_for_maintenance(self) -> None:
        """Firmware install pending (whitepaper L01.FR.06/07): idle EVSEs become
        Unavailable, running transactions finish first. Not persisted: a reboot
        ends the hold.

        Returns once every controller has processed the hold and what was queued
        before it (a start already in an inbox has begun its transaction by then,
        which ``wait_no_transaction`` sees)."""
        self._maintenance = True
        for ctl in self.controllers.values():
            ctl.post(charger.AvailabilityChanged(self.effective_operative(ctl.evse_id)))
        await self._drain()

    async def _drain(self) -> None:
        """Wait until every controller processed the events posted so far."""
        await asyncio.gather(*(c.drain() for c in self.controllers.values()))

    def release_maintenance(self) -> None:
        """End ``hold_for_maintenance``: back to the persisted availability."""
        if not self._maintenance:
            return
        self._maintenance = False
        for ctl in self.controllers.values():
            ctl.post(charger.AvailabilityChanged(self.effective_operative(ctl.evse_id)))

    async def wait_no_transaction(self) -> None:
        """Return once no EVSE runs a transaction.

        Drains the inboxes first, so a start queued before this call (remote start,
        authorization answer, plug-in) counts as a running transaction."""
        await self._drain()
        await asyncio.gather(*(c.wait_no_transaction() for c in self.controllers.values()))

    def hal_ok(self) -> bool:
        """True when no EVSE is faulted (post-update health check)."""
        return not any(c.state.faulted for c in self.controllers.values())

    async def reset(self, kind: ResetKind) -> None:
        """Stop every transaction with SoftReset/HardReset, then request a restart."""
        reason = StopReason.SOFT_RESET if kind == ResetKind.SOFT else StopReason.HARD_RESET
        for ctl in self.controllers.values():
            if ctl.state.tx_active:  # also one decided but not yet journalled
                ctl.post(charger.StopRequested(reason))
        # the stops are journalled before the restart
        await asyncio.gather(*(c.wait_no_transaction() for c in self.controllers.values()))
        log.warning("%s reset: restarting", kind)
        self._request_restart(kind)

    async def reset_evse(self, evse_id: int, kind: ResetKind) -> None:
        """Reset one EVSE; the others and the process keep running.

        HARD stops its transaction (HardReset; the contactor opens first), SOFT waits
        for it to end by itself. Then the EVSE's session restarts: an Unavailable step
        drops any authorization or pending start, and the EVSE returns to its
        persisted availability. The controller task and its hardware stay up (the
        HAL has no per-EVSE power cycle). Returns once that is done.

        Raises:
            KeyError: No such EVSE.
        """
        ctl = self.controllers[evse_id]
        if kind == ResetKind.HARD and ctl.state.tx_active:
            ctl.post(charger.StopRequested(StopReason.HARD_RESET))
        await ctl.drain()  # a start queued before this counts as a transaction
        await ctl.wait_no_transaction()
        log.warning("evse %d: %s reset", evse_id, kind)
        ctl.post(charger.AvailabilityChanged(False))
        ctl.post(charger.AvailabilityChanged(self.effective_operative(evse_id)))
        await ctl.drain()

    async def unlock(self, evse_id: int) -> UnlockResult:
        """Stop a running transaction (UnlockCommand) and release the connector.

        Without a connector lock (a tethered cable) the answer is NotSupported; with
        one, Unlocked once the lock confirms it (after the stop, which opens the
        contactor first), else UnlockFailed.
        """
        ctl = self.controllers.get(evse_id)
        if ctl is None:
            return UnlockResult.UNLOCK_FAILED
        if ctl.transaction is not None:
            ctl.post(charger.StopRequested(StopReason.UNLOCK_COMMAND))
        if not ctl.has_lock:
            return UnlockResult.NOT_SUPPORTED
        unlocked = await ctl.release_connector()  # queued behind the stop
        return UnlockResult.UNLOCKED if unlocked else UnlockResult.UNLOCK_FAILED

    async def clear_cache(self) -> None:
        await self.authorizer.clear_cache()
