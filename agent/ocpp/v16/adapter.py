"""OCPP 1.6J adapter: projects the station core onto OCPP 1.6 (Core, RemoteTrigger,
SmartCharging, LocalAuthListManagement, Reservation).

One ``V16Adapter`` lives as long as the agent; each WebSocket connection gets a
fresh ``_Session`` (an ``ocpp.v16.ChargePoint`` plus the tasks that send our
requests). Rules kept here (OCPP 1.6 4.2, 3.7; OCPP-J 4):

* BootNotification first; nothing else is sent until Accepted. While Pending we
  answer the CSMS but refuse remote start/stop; while Rejected we answer nothing
  and retry after the interval.
* One outstanding CALL per direction: the library's call lock serializes our
  calls; handlers never await a call (they would deadlock the receive loop).
* Transaction messages come from the persisted journal in order, each mapped at
  send time so the CSMS transaction id is filled in once it is known.
* A CALL timeout means the link is dead: the connection is closed and the
  supervisor reconnects. "Online" requires a recent round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import ocpp.messages
from ocpp import routing
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import NotSupportedError, OCPPError
from ocpp.messages import Call, CallError, CallResult, unpack
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.exceptions import ConnectionClosed

from agent.authorization.authorizer import Authorizer, IdTagInfo
from agent.authorization.local_list import ListEntry, LocalAuthList, UpdateStatus, UpdateType
from agent.clock import Clock, parse_iso, to_iso
from agent.events import (
    AuthorizationStatus,
    EvseStatusChanged,
    MeterSample,
    ReadingContext,
    StopReason,
)
from agent.ocpp.outbox import OutboxDelivery, SendOutcome
from agent.ocpp.v16 import charging, keys, mapping
from agent.ocpp.v16 import firmware as fw16
from agent.reservations.book import Reservation, ReserveStatus
from agent.settings import Settings
from agent.smart_charging import ChargingProfile, Purpose
from agent.station import ResetKind, Station
from agent.transactions.journal import QueuedTxMessage, TransactionJournal
from firmware_update.diagnostics import DiagnosticsService, UploadRequest
from firmware_update.journal import UpdateRequest
from firmware_update.manager import FirmwareManager
from firmware_update.status import LogKind, UploadStatus

log = logging.getLogger(__name__)

# Validate payloads inline: the library's default runs every validation in a
# thread pool, which costs a thread hop per message and leaves threads behind.
ocpp.messages.ASYNC_VALIDATION = False

SUBPROTOCOL = "ocpp1.6"
TRIGGERABLE = frozenset(
    {
        "BootNotification",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StatusNotification",
    }
)
DATA_TRANSFER_VENDOR = "org.evse-agent"
SAMPLES_KEPT = 32
"""Non-transaction MeterValues kept while offline (oldest dropped first)."""

_F = TypeVar("_F", bound=Callable[..., Any])


def on(action: Action) -> Callable[[_F], _F]:
    """``ocpp.routing.on`` with a type (the library ships none)."""
    return cast(Callable[[_F], _F], routing.on(action))


def after(action: Action) -> Callable[[_F], _F]:
    """``ocpp.routing.after`` with a type."""
    return cast(Callable[[_F], _F], routing.after(action))


Trace = Callable[[str, str], None]
"""(direction "send" | "recv", raw OCPP-J frame) -> None."""


class LinkDead(Exception):
    """The CSMS did not answer a CALL in time; the connection must be dropped."""


@dataclass(frozen=True, slots=True)
class BootInfo:
    """What BootNotification reports."""

    vendor: str
    model: str
    serial_number: str
    firmware_version: str


class V16Adapter:
    """The OCPP 1.6J side of the agent.

    Args:
        station: The core.
        settings: Live settings (the 1.6 keys map onto them).
        journal: Persisted transaction messages.
        authorizer: Gets this adapter attached as its online authorizer.
        clock: Set from the CSMS's time.
        boot: Identity for BootNotification.
        boot_retry_s: Retry delay after Pending/Rejected when the CSMS gives interval 0.
        trace: Optional raw-frame hook (demo timeline, diagnostics).
        local_list: The Local Authorization List (SendLocalList / GetLocalListVersion).
    """

    subprotocol = SUBPROTOCOL

    def __init__(
        self,
        *,
        station: Station,
        settings: Settings,
        journal: TransactionJournal,
        authorizer: Authorizer,
        clock: Clock,
        boot: BootInfo,
        call_timeout_s: float = 30.0,
        boot_retry_s: float = 30.0,
        trace: Trace | None = None,
        local_list: LocalAuthList | None = None,
        firmware: FirmwareManager | None = None,
        diagnostics: DiagnosticsService | None = None,
        accept_unsigned_updates: bool = False,
    ) -> None:
        self.station = station
        self.settings = settings
        self.journal = journal
        self.authorizer = authorizer
        self.clock = clock
        self.boot = boot
        self.call_timeout_s = call_timeout_s
        self.boot_retry_s = boot_retry_s
        self.trace = trace
        self.local_list = local_list
        # FirmwareManagement + whitepaper secure update / logging (agent/ocpp/v16/firmware.py)
        self.firmware = firmware
        self.diagnostics = diagnostics
        self.accept_unsigned_updates = accept_unsigned_updates
        self.outbox = OutboxDelivery(journal, settings)
        self._pending_status: dict[int, EvseStatusChanged] = {}
        self._status_event = asyncio.Event()
        # meter samples outside transactions (clock-aligned), sent best effort
        self._pending_samples: deque[tuple[int, MeterSample]] = deque(maxlen=SAMPLES_KEPT)
        self._samples_event = asyncio.Event()
        self._session: _Session | None = None
        self.registered = asyncio.Event()  # set on every Accepted boot (tests, bench)
        station.subscribe_status(self._on_status)
        station.subscribe_tx_messages(self.outbox.wake)
        station.subscribe_samples(self._on_sample)
        authorizer.attach(self)

    # --------------------------------------------------- core -> adapter

    def _on_status(self, event: EvseStatusChanged) -> None:
        self._pending_status[event.evse_id] = event
        self._status_event.set()

    def _on_sample(self, connector_id: int, sample: MeterSample) -> None:
        self._pending_samples.append((connector_id, sample))
        self._samples_event.set()

    # ----------------------------------------------------- OnlineAuthorizer

    @property
    def online(self) -> bool:
        session = self._session
        return session is not None and session.online

    async def authorize_online(self, id_tag: str) -> IdTagInfo | None:
        session = self._session
        if session is None or not session.online:
            return None
        return await session.authorize(id_tag)

    # ------------------------------------------------------------ sessions

    async def run_session(self, ws: Any, charge_point_id: str) -> None:
        """Run OCPP over an open WebSocket until it closes or the link dies."""
        session = _Session(self, ws, charge_point_id)
        self._session = session
        try:
            await session.run()
        finally:
            self._session = None


class _ChargePoint(ChargePoint):  # type: ignore[misc]  # ocpp ships no type hints
    """The ocpp-library object of one connection; handlers delegate to the session."""

    def __init__(self, session: _Session, charge_point_id: str, ws: Any, timeout_s: float):
        super().__init__(charge_point_id, ws, response_timeout=timeout_s)
        self.session = session

    # --- frames in and out (CALLERRORs in 1.6 spelling; trace hook)

    async def _send(self, message: str) -> None:
        if self.session.adapter.trace is not None:
            self.session.adapter.trace("send", message)
        await super()._send(message)

    async def route_message(self, raw_msg: str) -> None:
        adapter = self.session.adapter
        if adapter.trace is not None:
            adapter.trace("recv", raw_msg)
        try:
            msg = unpack(raw_msg)
        except OCPPError as e:
            # OCPP-J 4.2.3: answer what cannot be parsed; with no readable id, "-1".
            # 1.6 4.2: while Rejected the charger answers nothing at all.
            if not self.session.rejected:
                await self._send_error(_message_id(raw_msg), e)
            return
        if isinstance(msg, Call):
            if self.session.rejected:
                return  # 1.6 4.2: while Rejected the CP does not answer anything
            if msg.action not in self.route_map:
                await self._send_error(msg.unique_id, _unknown_action_error(msg.action))
                return
            try:
                await self._handle_call(msg)
            except OCPPError as e:
                await self._send_error(msg.unique_id, e)
        else:
            self.session.on_result(msg)
            self._response_queue.put_nowait(msg)

    async def _send_error(self, unique_id: str, error: OCPPError) -> None:
        description = error.description or error.__class__.__name__
        details = {"cause": str(error.details.get("cause", ""))[:200]} if error.details else {}
        frame = CallError(unique_id, mapping.error_code_16(error.code), description, details)
        await self._send(frame.to_json())

    # --- CSMS -> charger handlers (never await self.call in here)

    @on(Action.remote_start_transaction)
    def on_remote_start(
        self, id_tag: str, connector_id: int | None = None, charging_profile: Any = None
    ) -> Any:
        return self.session.remote_start(id_tag, connector_id, charging_profile)

    @on(Action.remote_stop_transaction)
    async def on_remote_stop(self, transaction_id: int) -> Any:
        return await self.session.remote_stop(transaction_id)

    @on(Action.change_availability)
    async def on_change_availability(self, connector_id: int, type: str) -> Any:
        result = await self.session.adapter.station.change_availability(
            connector_id, operative=(type == "Operative")
        )
        return call_result.ChangeAvailability(status=result.value)

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None) -> Any:
        return self.session.get_configuration(key)

    @on(Action.change_configuration)
    async def on_change_configuration(self, key: str, value: str) -> Any:
        result = await keys.change(self.session.adapter.settings, key, value)
        log.info("ChangeConfiguration %s: %s", key, result)
        return call_result.ChangeConfiguration(status=result.value)

    @on(Action.clear_cache)
    async def on_clear_cache(self) -> Any:
        await self.session.adapter.station.clear_cache()
        return call_result.ClearCache(status="Accepted")

    @on(Action.reset)
    def on_reset(self, type: str) -> Any:
        # a firmware install being applied is never interrupted half-way
        blocked = self.session.adapter.station.reset_blocked()
        return call_result.Reset(status="Rejected" if blocked else "Accepted")

    @after(Action.reset)
    async def after_reset(self, type: str) -> None:
        if self.session.adapter.station.reset_blocked():
            return
        kind = ResetKind.HARD if type == "Hard" else ResetKind.SOFT
        await self.session.adapter.station.reset(kind)

    @on(Action.unlock_connector)
    async def on_unlock_connector(self, connector_id: int) -> Any:
        result = await self.session.adapter.station.unlock(connector_id)
        return call_result.UnlockConnector(status=result.value)

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None) -> Any:
        ok = self.session.can_trigger(requested_message, connector_id)
        return call_result.TriggerMessage(status="Accepted" if ok else "Rejected")

    @after(Action.trigger_message)
    def after_trigger_message(
        self, requested_message: str, connector_id: int | None = None
    ) -> None:
        # 1.6 5.17: the requested message follows the TriggerMessage answer
        if self.session.can_trigger(requested_message, connector_id):
            self.session.spawn(self.session.send_triggered(requested_message, connector_id))

    @on(Action.set_charging_profile)
    async def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: Any) -> Any:
        return await self.session.set_charging_profile(connector_id, cs_charging_profiles)

    @on(Action.clear_charging_profile)
    async def on_clear_charging_profile(
        self,
        id: int | None = None,
        connector_id: int | None = None,
        charging_profile_purpose: str | None = None,
        stack_level: int | None = None,
    ) -> Any:
        return await self.session.clear_charging_profile(
            id, connector_id, charging_profile_purpose, stack_level
        )

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(
        self, connector_id: int, duration: int, charging_rate_unit: str | None = None
    ) -> Any:
        return self.session.get_composite_schedule(connector_id, duration, charging_rate_unit)

    @on(Action.get_local_list_version)
    async def on_get_local_list_version(self) -> Any:
        return call_result.GetLocalListVersion(list_version=await self.session.local_list_version())

    @on(Action.send_local_list)
    async def on_send_local_list(
        self,
        list_version: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
    ) -> Any:
        status = await self.session.send_local_list(
            list_version, update_type, local_authorization_list or []
        )
        return call_result.SendLocalList(status=status)

    @on(Action.reserve_now)
    async def on_reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None = None,
    ) -> Any:
        status = await self.session.reserve_now(
            connector_id, expiry_date, id_tag, reservation_id, parent_id_tag
        )
        return call_result.ReserveNow(status=status)

    @on(Action.cancel_reservation)
    async def on_cancel_reservation(self, reservation_id: int) -> Any:
        ok = await self.session.adapter.station.cancel_reservation(reservation_id)
        return call_result.CancelReservation(status="Accepted" if ok else "Rejected")

    @on(Action.update_firmware)
    def on_update_firmware(
        self,
        location: str,
        retrieve_date: str,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> Any:
        adapter = self.session.adapter
        self.session.firmware_request = fw16.update_firmware(
            adapter.firmware,
            adapter.accept_unsigned_updates,
            location,
            retrieve_date,
            retries,
            retry_interval,
        )
        return call_result.UpdateFirmware()

    @after(Action.update_firmware)
    async def after_update_firmware(self, **_: Any) -> None:
        await self.session.start_firmware_request()

    @on(Action.signed_update_firmware)
    def on_signed_update_firmware(
        self,
        request_id: int,
        firmware: dict[str, Any],
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> Any:
        status, self.session.firmware_request = fw16.signed_update_firmware(
            self.session.adapter.firmware, request_id, firmware, retries, retry_interval
        )
        return call_result.SignedUpdateFirmware(status=status)

    @after(Action.signed_update_firmware)
    async def after_signed_update_firmware(self, **_: Any) -> None:
        # after the answer: no status of the new update may overtake it
        await self.session.start_firmware_request()

    @on(Action.get_diagnostics)
    async def on_get_diagnostics(
        self,
        location: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        start_time: str | None = None,
        stop_time: str | None = None,
    ) -> Any:
        return await self.session.start_upload(
            LogKind.DIAGNOSTICS, location, 0, retries, retry_interval, start_time, stop_time
        )

    @on(Action.get_log)
    async def on_get_log(
        self,
        log: dict[str, Any],
        log_type: str,
        request_id: int,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> Any:
        return await self.session.start_upload(
            LogKind(log_type),
            str(log.get("remote_location", "")),
            request_id,
            retries,
            retry_interval,
            log.get("oldest_timestamp"),
            log.get("latest_timestamp"),
        )

    @on(Action.extended_trigger_message)
    def on_extended_trigger_message(
        self, requested_message: str, connector_id: int | None = None
    ) -> Any:
        ok = self.session.can_extended_trigger(requested_message, connector_id)
        return call_result.ExtendedTriggerMessage(status="Accepted" if ok else "Rejected")

    @after(Action.extended_trigger_message)
    def after_extended_trigger_message(
        self, requested_message: str, connector_id: int | None = None
    ) -> None:
        if self.session.can_extended_trigger(requested_message, connector_id):
            self.session.spawn(
                self.session.send_extended_triggered(requested_message, connector_id)
            )

    @on(Action.data_transfer)
    def on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: str | None = None
    ) -> Any:
        if vendor_id != DATA_TRANSFER_VENDOR:
            return call_result.DataTransfer(status="UnknownVendorId")
        return call_result.DataTransfer(status="UnknownMessageId")


def _message_id(raw: str) -> str:
    try:
        parsed = json.loads(raw)
    except (ValueError, TypeError):
        return "-1"
    if isinstance(parsed, list) and len(parsed) > 1 and isinstance(parsed[1], str):
        return parsed[1][:36]
    return "-1"


def _unknown_action_error(action: str) -> OCPPError:
    # OCPP-J 1.6 4.2.3: NotImplemented = action not known; NotSupported = known but
    # not supported by this charger.
    try:
        Action(action)
    except ValueError:
        return OcppNotImplemented(details={"cause": f"unknown action {action}"})
    return NotSupportedError(details={"cause": f"{action} is not supported"})


class _Session:
    """One connection: boot, then heartbeat, status and transaction senders."""

    def __init__(self, adapter: V16Adapter, ws: Any, charge_point_id: str) -> None:
        self.adapter = adapter
        self.ws = ws
        self.cp = _ChargePoint(self, charge_point_id, ws, adapter.call_timeout_s)
        self.accepted = False
        self.pending = False
        self.rejected = False
        self._boot_uid: str | None = None
        # transaction message id -> the queued message, while in flight
        self._tx_calls: dict[str, QueuedTxMessage] = {}
        # answered transaction messages the sender has not acknowledged yet, by id
        self._answered: dict[str, QueuedTxMessage] = {}
        # start acknowledgements begun in the receive path, by message id
        self._acks: dict[str, asyncio.Task[None]] = {}
        # CSMS transaction ids learned in the receive path, before the journal has them
        self.answered_starts: dict[int, str] = {}
        self._last_round_trip_s: float | None = None
        self._heartbeat_changed = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._unsubscribe = adapter.settings.subscribe(self._on_setting)
        # an update request answered but not yet handed to the firmware manager
        self.firmware_request: UpdateRequest | None = None

    def _on_setting(self, name: str, value: object) -> None:
        if name == "heartbeat_interval_s":
            self._heartbeat_changed.set()

    @property
    def online(self) -> bool:
        if not self.accepted or self._last_round_trip_s is None:
            return False
        window_s = 2 * self.adapter.settings.get_int("heartbeat_interval_s") + (
            self.adapter.call_timeout_s
        )
        return self.adapter.clock.monotonic() - self._last_round_trip_s < window_s

    # -------------------------------------------------------------- run

    async def run(self) -> None:
        """Receive and send until the connection closes or the link is declared dead.

        A TaskGroup: whichever task fails first (the socket closed under the
        receiver, a CALL timed out) cancels the other, and both are finished
        before this returns, even if the caller is cancelled meanwhile.
        """
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self.cp.start(), name="ocpp-recv")
                group.create_task(self._main(), name="ocpp-main")
        except* (ConnectionClosed, LinkDead) as ended:
            log.info("OCPP session ended: %s", ended.exceptions[0])
        finally:
            self._unsubscribe()
            self.adapter.journal.connectivity.set_online(False)  # later events: offline
            # Answers read whose sender never resumed (the link dropped): journal them,
            # or the messages would be sent again.
            journal = self.adapter.journal
            late = [journal.acknowledge(m.seq) for m in self._answered.values()]
            if self._acks or late:
                await asyncio.shield(
                    asyncio.gather(*self._acks.values(), *late, return_exceptions=True)
                )

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as part of this session (finished or cancelled with it)."""
        if self._group is None:
            coro.close()
            return
        try:
            self._group.create_task(coro)
        except RuntimeError:  # the session is already shutting down
            coro.close()

    def on_result(self, msg: Any) -> None:
        """Look at a CALLRESULT in the receive path, before the caller resumes.

        The CSMS may send its next CALL right behind an answer; registration state
        and CSMS transaction ids must already apply to it (OCPP 1.6 4.2: nothing is
        answered while Rejected; RemoteStop may name a transaction just started).
        """
        if not isinstance(msg, CallResult) or not isinstance(msg.payload, dict):
            return
        if msg.unique_id == self._boot_uid:
            status = msg.payload.get("status")
            self.accepted = status == "Accepted"
            self.pending = status == "Pending"
            self.rejected = status == "Rejected"
        queued = self._tx_calls.pop(msg.unique_id, None)
        if queued is None:
            return
        # From here the message counts as delivered: if the link drops before the
        # sender resumes, the session's finally journals it (no second send).
        if queued.kind != "start":
            self._answered[msg.unique_id] = queued
            return
        csms_tx_id = msg.payload.get("transactionId")
        if not isinstance(csms_tx_id, int):
            return  # not a usable answer: the sender reports the violation
        self.answered_starts[csms_tx_id] = queued.tx_id
        info = msg.payload.get("idTagInfo")
        status = str(info.get("status", "Invalid")) if isinstance(info, dict) else "Invalid"
        # A start is journalled at once: RemoteStop and later messages need its id.
        self._acks[msg.unique_id] = asyncio.create_task(
            self.adapter.journal.acknowledge_start(queued.seq, csms_tx_id, status)
        )

    async def _call(self, payload: Any, unique_id: str | None = None) -> Any:
        """Send one CALL; raise LinkDead on timeout, OCPPError on CALLERROR."""
        try:
            result = await self.cp.call(payload, suppress=False, unique_id=unique_id)
            _raise_if_cancelling()
        except TimeoutError:
            log.warning(
                "no answer to %s within %.0f s: link dead",
                type(payload).__name__,
                self.adapter.call_timeout_s,
            )
            await self.ws.close()
            raise LinkDead(type(payload).__name__) from None
        self._last_round_trip_s = self.adapter.clock.monotonic()
        return result

    async def _main(self) -> None:
        await self._boot()
        self.adapter.journal.connectivity.set_online(True)
        self.adapter.registered.set()
        for status in self.adapter.station.all_statuses():
            self.adapter._on_status(status)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._heartbeat_loop(), name="ocpp-heartbeat")
            group.create_task(self._status_loop(), name="ocpp-status")
            group.create_task(self._outbox_loop(), name="ocpp-outbox")
            if self.adapter.firmware is not None:
                group.create_task(
                    fw16.deliver_reports(self.adapter.firmware, self._call), name="ocpp-firmware"
                )
            group.create_task(self._samples_loop(), name="ocpp-samples")

    async def _boot(self) -> None:
        while True:
            result = await self._send_boot()
            if result.status == "Accepted":
                return
            interval_s = int(result.interval)
            retry_s = interval_s if interval_s > 0 else self.adapter.boot_retry_s
            log.warning("BootNotification %s; retrying in %.0f s", result.status, retry_s)
            await asyncio.sleep(retry_s)

    async def _send_boot(self) -> Any:
        """One BootNotification; an Accepted answer sets the clock and heartbeat."""
        boot = self.adapter.boot
        self._boot_uid = str(uuid.uuid4())
        result = await self._call(
            call.BootNotification(
                charge_point_vendor=boot.vendor,
                charge_point_model=boot.model,
                charge_point_serial_number=boot.serial_number or None,
                firmware_version=boot.firmware_version,
            ),
            unique_id=self._boot_uid,
        )
        # accepted / pending / rejected were set by on_result in the receive path
        if result.status == "Accepted":
            with contextlib.suppress(ValueError):
                self.adapter.clock.set_utc(parse_iso(result.current_time))
            interval_s = int(result.interval)
            if interval_s > 0:
                await self.adapter.settings.set("heartbeat_interval_s", interval_s)
            log.info("BootNotification accepted; heartbeat every %d s", interval_s)
        return result

    async def _heartbeat_loop(self) -> None:
        while True:
            interval_s = self.adapter.settings.get_int("heartbeat_interval_s")
            self._heartbeat_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._heartbeat_changed.wait(), interval_s)
                _raise_if_cancelling()
                continue  # interval changed: start a new wait with the new value
            await self._send_heartbeat()

    async def _send_heartbeat(self) -> None:
        result = await self._call(call.Heartbeat())
        with contextlib.suppress(ValueError):
            self.adapter.clock.set_utc(parse_iso(result.current_time))

    # ------------------------------------------------------- TriggerMessage

    def can_trigger(self, message: str, connector_id: int | None) -> bool:
        """Whether TriggerMessage(message, connector_id) is Accepted (1.6 5.17).

        Every message the 1.6 schema allows can be triggered; an unknown connector
        is Rejected, and so is MeterValues for connector 0 (no station meter).
        """
        if message not in TRIGGERABLE or self.rejected:
            return False
        if connector_id is None:
            return True
        if connector_id == 0:
            return message != "MeterValues"
        return connector_id in self.adapter.station.controllers

    async def send_triggered(self, message: str, connector_id: int | None) -> None:
        """Send the triggered message (after the TriggerMessage answer went out)."""
        station = self.adapter.station
        match message:
            case "BootNotification":
                await self._send_boot()
            case "Heartbeat":
                await self._send_heartbeat()
            case "StatusNotification":
                for status in station.all_statuses():
                    if connector_id is None or status.evse_id == connector_id:
                        await self._call(
                            call.StatusNotification(**mapping.status_notification(status))
                        )
            case "MeterValues":
                for evse_id in sorted(station.controllers):
                    if connector_id in (None, evse_id):
                        await self._send_triggered_meter_values(evse_id)
            case "DiagnosticsStatusNotification":  # Idle when no upload runs (1.6 4.4)
                upload = UploadStatus.IDLE
                if self.adapter.diagnostics is not None:
                    upload, _ = self.adapter.diagnostics.status_now()
                diagnostics = fw16.DIAGNOSTICS_STATUS[upload]
                await self._call(call.DiagnosticsStatusNotification(status=diagnostics))
            case "FirmwareStatusNotification":  # Idle when no update runs (1.6 4.5)
                firmware = self.adapter.firmware
                plain = fw16.trigger_status(firmware.status_now()) if firmware else "Idle"
                await self._call(call.FirmwareStatusNotification(status=plain))

    # ------------------------------------------- firmware and diagnostics

    async def start_firmware_request(self) -> None:
        """Hand the update request just answered to the manager."""
        request, self.firmware_request = self.firmware_request, None
        if request is not None and self.adapter.firmware is not None:
            await self.adapter.firmware.request(request)

    def can_extended_trigger(self, message: str, connector_id: int | None) -> bool:
        """ExtendedTriggerMessage (whitepaper 5.x): the 1.6 triggers plus the signed
        firmware status and LogStatusNotification; certificates are not supported."""
        if message in ("FirmwareStatusNotification", "LogStatusNotification"):
            return not self.rejected
        return self.can_trigger(message, connector_id)

    async def send_extended_triggered(self, message: str, connector_id: int | None) -> None:
        """Send what ExtendedTriggerMessage asked for (after its answer went out)."""
        adapter = self.adapter
        match message:
            case "FirmwareStatusNotification":
                firmware = adapter.firmware
                status = firmware.status_now().value if firmware else "Idle"
                request_id = firmware.request_id if firmware else None
                # whitepaper: requestId only while an update runs
                await self._call(
                    call.SignedFirmwareStatusNotification(
                        status=status, request_id=request_id if status != "Idle" else None
                    )
                )
            case "LogStatusNotification":
                upload, log_request = UploadStatus.IDLE, None
                if adapter.diagnostics is not None:
                    upload, log_request = adapter.diagnostics.status_now()
                await self._call(
                    call.LogStatusNotification(
                        status=fw16.LOG_STATUS[upload], request_id=log_request
                    )
                )
            case _:
                await self.send_triggered(message, connector_id)

    async def start_upload(
        self,
        kind: LogKind,
        location: str,
        request_id: int,
        retries: int | None,
        retry_interval_s: int | None,
        oldest: str | None,
        latest: str | None,
    ) -> Any:
        """GetDiagnostics (1.6 5.8: fileName) and GetLog (whitepaper: status + filename)."""
        service = self.adapter.diagnostics
        name: str | None = None
        cancelled = False
        if service is not None:
            try:
                request = UploadRequest(
                    kind=kind,
                    location=location,
                    request_id=request_id,
                    retries=1 if retries is None else max(0, retries),
                    retry_interval_s=float(30 if retry_interval_s is None else retry_interval_s),
                    oldest=parse_iso(oldest) if oldest else None,
                    latest=parse_iso(latest) if latest else None,
                )
            except ValueError as e:
                log.warning("%s refused: %s", kind, e)
            else:
                name, cancelled = await service.request(request)
        if kind is LogKind.DIAGNOSTICS:
            return call_result.GetDiagnostics(file_name=name)
        if name is None:
            return call_result.GetLog(status="Rejected")
        return call_result.GetLog(
            status="AcceptedCanceled" if cancelled else "Accepted", filename=name
        )

    async def _send_triggered_meter_values(self, evse_id: int) -> None:
        ctl = self.adapter.station.controllers[evse_id]
        sample = ctl.sample_now(ReadingContext.TRIGGER)
        if sample is None:
            return  # no reading yet: nothing to report
        csms_tx_id = None
        if ctl.transaction is not None:
            record = await self.adapter.journal.get(ctl.transaction.tx_id)
            csms_tx_id = record.csms_tx_id if record is not None else None
        await self._call(
            call.MeterValues(
                connector_id=evse_id,
                transaction_id=csms_tx_id,
                meter_value=[mapping.meter_value(sample)],
            )
        )

    async def _status_loop(self) -> None:
        pending = self.adapter._pending_status
        while True:
            await self.adapter._status_event.wait()
            self.adapter._status_event.clear()
            while pending:
                evse_id = min(pending)
                event = pending[evse_id]
                try:
                    await self._call(call.StatusNotification(**mapping.status_notification(event)))
                except OCPPError as e:
                    log.warning("StatusNotification refused: %s", e)
                if pending.get(evse_id) is event:
                    del pending[evse_id]

    async def _outbox_loop(self) -> None:
        await self.adapter.outbox.run(self._send_tx_message)

    async def _samples_loop(self) -> None:
        """MeterValues without a transaction (clock-aligned data of idle connectors and
        connector 0). Not transaction-related (1.6 3.7): not journalled; the last
        ``SAMPLES_KEPT`` wait in memory for a connection, older ones are dropped."""
        pending = self.adapter._pending_samples
        while True:
            await self.adapter._samples_event.wait()
            self.adapter._samples_event.clear()
            while pending:
                item = pending[0]
                connector_id, sample = item
                try:
                    await self._call(
                        call.MeterValues(
                            connector_id=connector_id, meter_value=[mapping.meter_value(sample)]
                        )
                    )
                except OCPPError as e:
                    log.warning("MeterValues of connector %d refused: %s", connector_id, e)
                if pending and pending[0] is item:
                    pending.popleft()

    # ----------------------------------------------------- transactions

    async def _send_tx_message(self, msg: QueuedTxMessage) -> SendOutcome:
        rec = msg.record
        if msg.kind == "update":
            # a transaction update (charging state, late authorization) has no 1.6
            # message: consumed without sending (queued by 2.0.1 before a move to 1.6)
            return SendOutcome.done(asyncio.create_task(self.adapter.journal.acknowledge(msg.seq)))
        if msg.kind != "start" and rec.csms_tx_id is None:
            return SendOutcome.unaddressable("its StartTransaction was never accepted")
        uid = str(uuid.uuid4())
        self._tx_calls[uid] = msg
        try:
            result = await self._call(self._tx_payload(msg), unique_id=uid)
        except OCPPError as e:
            if uid not in self._acks and uid not in self._answered:
                return SendOutcome.refused(str(e))  # a CALLERROR: an attempt failed
            # A CALLRESULT the schema refused: the CSMS has the message all the same.
            log.warning("%s of %s: malformed answer (%s)", msg.kind, msg.tx_id, e)
            result = None
        finally:
            self._tx_calls.pop(uid, None)
        ack = self._acks.pop(uid, None)
        if msg.kind == "start":
            if ack is None:
                return SendOutcome.refused("StartTransaction answer without a transactionId")
            await asyncio.shield(ack)
            # the journal has the CSMS id now: RemoteStop finds it there
            for csms_id in [k for k, v in self.answered_starts.items() if v == rec.tx_id]:
                del self.answered_starts[csms_id]
            if result is not None:
                info = _id_tag_info(result.id_tag_info)
                await self.adapter.authorizer.remember(rec.id_tag, info)
                self._check_deauthorized(rec.tx_id, info.status)
            return SendOutcome.started()
        self._answered.pop(uid, None)
        # the commit runs on the DB thread while the next message is on the wire
        acknowledged = asyncio.create_task(self.adapter.journal.acknowledge(msg.seq))
        if msg.kind == "stop" and result is not None and result.id_tag_info:
            await self.adapter.authorizer.remember(rec.id_tag, _id_tag_info(result.id_tag_info))
        return SendOutcome.done(acknowledged)

    def _tx_payload(self, msg: QueuedTxMessage) -> Any:
        """The 1.6 message for a journal record, with the CSMS transaction id as now known."""
        rec = msg.record
        if msg.kind == "start":
            return call.StartTransaction(
                connector_id=rec.connector_id,
                id_tag=rec.id_tag,
                meter_start=rec.meter_start_wh,
                timestamp=rec.start_time,
                reservation_id=rec.reservation_id,
            )
        assert rec.csms_tx_id is not None
        if msg.kind == "meter":
            return call.MeterValues(
                connector_id=rec.connector_id,
                transaction_id=rec.csms_tx_id,
                meter_value=[mapping.meter_value(s) for s in msg.samples],
            )
        assert rec.stop_time is not None and rec.meter_stop_wh is not None
        return call.StopTransaction(
            meter_stop=rec.meter_stop_wh,
            timestamp=rec.stop_time,
            transaction_id=rec.csms_tx_id,
            reason=mapping.stop_reason(rec.stop_reason or StopReason.LOCAL),
            id_tag=rec.id_tag,
            transaction_data=[mapping.meter_value(s) for s in msg.samples] or None,
        )

    def _check_deauthorized(self, tx_id: str, status: AuthorizationStatus) -> None:
        # 1.6 3.5.4: an offline-started transaction whose id the CSMS rejects
        if status == AuthorizationStatus.ACCEPTED:
            return
        stop = self.adapter.settings.get_bool("stop_transaction_on_invalid_id")
        if stop and self.adapter.station.stop_transaction(tx_id, StopReason.DEAUTHORIZED):
            log.warning("transaction %s deauthorized by the CSMS (%s)", tx_id, status)

    async def authorize(self, id_tag: str) -> IdTagInfo | None:
        try:
            result = await self._call(call.Authorize(id_tag=id_tag))
        except (OCPPError, LinkDead) as e:
            log.warning("Authorize %s failed: %s", id_tag, e)
            return None
        except Exception as e:  # connection closed under us: treat as offline
            log.warning("Authorize %s: no link (%r)", id_tag, e)
            return None
        return _id_tag_info(result.id_tag_info)

    # ------------------------------------------------------- CS -> CP

    def remote_start(self, id_tag: str, connector_id: int | None, profile: Any) -> Any:
        result = call_result.RemoteStartTransaction
        if not self.accepted or connector_id == 0:
            return result(status="Rejected")  # not while Pending (1.6 4.2)
        station = self.adapter.station
        tx_profile = None
        if profile is not None:
            tx_profile = self._remote_start_profile(connector_id, profile)
            if tx_profile is None:
                return result(status="Rejected")
        service = station.smart_charging
        # Before the start reaches the EVSE, so its first PWM already obeys the profile.
        if (
            tx_profile is not None
            and service is not None
            and not service.expect_tx_profile(tx_profile.evse_id, id_tag, tx_profile)
        ):
            return result(status="Rejected")
        ok = station.remote_start(
            connector_id,
            id_tag,
            authorize=self.adapter.settings.get_bool("authorize_remote_tx_requests"),
            remote_start_id=None,
        )
        if not ok and tx_profile is not None and service is not None:
            service.forget_tx_profile(tx_profile.evse_id)
        return result(status="Accepted" if ok else "Rejected")

    def _remote_start_profile(self, connector_id: int | None, raw: Any) -> ChargingProfile | None:
        """The TxProfile of a RemoteStartTransaction, or None when it must be Rejected
        (not a TxProfile, no smart charging, malformed, or no single connector)."""
        station = self.adapter.station
        if connector_id is None and len(station.controllers) == 1:
            connector_id = next(iter(station.controllers))
        if station.smart_charging is None or connector_id is None:
            return None
        try:
            profile = charging.profile_from_16(connector_id, raw, now=self.adapter.clock.now())
        except ValueError as e:
            log.warning("RemoteStartTransaction chargingProfile unusable: %s", e)
            return None
        return profile if profile.purpose is Purpose.TX else None

    # ------------------------------------------------------ reservations

    async def reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None,
    ) -> str:
        """ReserveNow (1.6 5.13): the ReservationStatus; Rejected while not registered
        or for an unreadable expiryDate."""
        if not self.accepted:
            return ReserveStatus.REJECTED.value
        try:
            expiry = parse_iso(expiry_date)
        except ValueError:
            log.warning("ReserveNow %d: bad expiryDate %r", reservation_id, expiry_date)
            return ReserveStatus.REJECTED.value
        request = Reservation(reservation_id, connector_id, id_tag, expiry, parent_id_tag)
        return (await self.adapter.station.reserve_now(request)).value

    # ------------------------------------------------------ local list

    def _local_list_enabled(self) -> bool:
        return self.adapter.local_list is not None and self.adapter.settings.get_bool(
            "local_auth_list_enabled"
        )

    async def local_list_version(self) -> int:
        """GetLocalListVersion (1.6 5.10): -1 when the list is not enabled."""
        if not self._local_list_enabled():
            return -1
        assert self.adapter.local_list is not None
        return await self.adapter.local_list.version()

    async def send_local_list(
        self, version: int, update_type: str, raw_entries: list[dict[str, Any]]
    ) -> str:
        """SendLocalList (1.6 5.15): the UpdateStatus; NotSupported when not enabled."""
        local_list = self.adapter.local_list
        if local_list is None or not self._local_list_enabled():
            return UpdateStatus.NOT_SUPPORTED.value
        entries = [
            ListEntry(
                str(entry.get("id_tag", "")),
                _id_tag_info(entry["id_tag_info"]) if entry.get("id_tag_info") else None,
            )
            for entry in raw_entries
        ]
        status = await local_list.update(version, UpdateType(update_type), entries)
        log.info(
            "SendLocalList %s v%d (%d entries): %s", update_type, version, len(entries), status
        )
        return status.value

    # ------------------------------------------------------ smart charging

    async def set_charging_profile(self, connector_id: int, raw: Any) -> Any:
        """SetChargingProfile (1.6 §5.16): Accepted once installed and persisted."""
        result = call_result.SetChargingProfile
        service = self.adapter.station.smart_charging
        if service is None:
            return result(status="NotSupported")
        try:
            profile = charging.profile_from_16(connector_id, raw, now=self.adapter.clock.now())
        except ValueError as e:
            log.warning("SetChargingProfile rejected: %s", e)
            return result(status="Rejected")
        if not await self._tx_id_matches(profile):
            log.warning(
                "SetChargingProfile rejected: transactionId %s not running on %d",
                profile.transaction_id,
                connector_id,
            )
            return result(status="Rejected")
        outcome = await service.install(profile)
        if not outcome.accepted:
            log.warning("SetChargingProfile rejected: %s", "; ".join(outcome.problems))
        return result(status="Accepted" if outcome.accepted else "Rejected")

    async def _tx_id_matches(self, profile: ChargingProfile) -> bool:
        """A TxProfile naming a transactionId must name the one running on its connector."""
        if profile.purpose is not Purpose.TX or profile.transaction_id is None:
            return True
        ctl = self.adapter.station.controllers.get(profile.evse_id)
        if ctl is None or ctl.transaction is None:
            return True  # validation rejects it with the reason
        tx_id = ctl.transaction.tx_id
        known = {str(k) for k, v in self.answered_starts.items() if v == tx_id}
        record = await self.adapter.journal.get(tx_id)
        if record is not None and record.csms_tx_id is not None:
            known.add(str(record.csms_tx_id))
        return profile.transaction_id in known

    async def clear_charging_profile(
        self,
        profile_id: int | None,
        connector_id: int | None,
        purpose: str | None,
        stack_level: int | None,
    ) -> Any:
        """ClearChargingProfile (1.6 §5.5, errata 3.25): Accepted or Unknown."""
        result = call_result.ClearChargingProfile
        service = self.adapter.station.smart_charging
        if service is None:
            return result(status="Unknown")
        try:
            criteria = charging.clear_criteria_from_16(
                profile_id, connector_id, purpose, stack_level
            )
        except ValueError:
            return result(status="Unknown")
        cleared = await service.clear(criteria)
        return result(status="Accepted" if cleared else "Unknown")

    def get_composite_schedule(self, connector_id: int, duration_s: int, unit: str | None) -> Any:
        """GetCompositeSchedule (1.6 §5.7): the schedule from now, or Rejected."""
        result = call_result.GetCompositeSchedule
        service = self.adapter.station.smart_charging
        if service is None:
            return result(status="Rejected")
        try:
            schedule = service.composite(connector_id, duration_s, charging.rate_unit_from_16(unit))
        except ValueError as e:
            log.info("GetCompositeSchedule rejected: %s", e)
            return result(status="Rejected")
        return result(
            status="Accepted",
            connector_id=connector_id,
            schedule_start=to_iso(schedule.start),
            charging_schedule=charging.composite_to_16(schedule),
        )

    async def remote_stop(self, transaction_id: int) -> Any:
        result = call_result.RemoteStopTransaction
        if not self.accepted:
            return result(status="Rejected")
        tx_id = self.answered_starts.get(transaction_id)
        if tx_id is None:
            record = await self.adapter.journal.find_by_csms_id(transaction_id)
            tx_id = record.tx_id if record is not None else None
        ok = tx_id is not None and self.adapter.station.remote_stop(tx_id)
        return result(status="Accepted" if ok else "Rejected")

    def get_configuration(self, requested: list[str] | None) -> Any:
        settings = self.adapter.settings
        ctx = keys.KeyContext(number_of_connectors=len(self.adapter.station.controllers))
        found: list[dict[str, Any]] = []
        unknown: list[str] = []
        names = requested if requested else [k.name for k in keys.KEYS]
        for name in names:
            key = keys.find(name)
            if key is None:
                unknown.append(name)
                continue
            kv = keys.read(key, settings, ctx)
            item: dict[str, Any] = {"key": kv.key, "readonly": kv.readonly}
            if kv.value is not None:
                item["value"] = kv.value
            found.append(item)
        return call_result.GetConfiguration(
            configuration_key=found or None, unknown_key=unknown or None
        )


def _raise_if_cancelling() -> None:
    """Restore a cancellation that ``asyncio.wait_for`` lost (Python 3.11: when the
    awaited result and the cancel arrive in the same loop iteration, wait_for
    returns the result and the task never sees CancelledError). The ocpp library
    waits for every answer with wait_for, so a session could not be stopped."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _id_tag_info(raw: Any) -> IdTagInfo:
    """Parse idTagInfo (the library hands nested fields over as dicts)."""
    data = raw if isinstance(raw, dict) else getattr(raw, "__dict__", {})
    expiry = None
    if data.get("expiry_date"):
        with contextlib.suppress(ValueError):
            expiry = parse_iso(str(data["expiry_date"]))
    return IdTagInfo(
        status=mapping.authorization_status(str(data.get("status", "Invalid"))),
        expiry=expiry,
        parent_id_tag=data.get("parent_id_tag"),
    )
