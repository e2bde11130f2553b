"""OCPP 2.0.1 adapter: projects the station core onto OCPP 2.0.1 (blocks B, G, F,
P and the device model; authorization C01 online; N07 fault events).

One ``V201Adapter`` lives as long as the agent; each WebSocket connection gets a
fresh ``_Session`` (an ``ocpp.v201.ChargePoint`` plus the tasks that send our
requests). Rules kept here (2.0.1 Part 2 B01-B04, Part 4 OCPP-J):

* BootNotification first. While Pending the station answers the CSMS (device
  model, TriggerMessage(BootNotification), ...) but sends nothing else and refuses
  RequestStart/StopTransaction (B02.FR.02/03); it retries the boot after the
  interval. While Rejected it answers nothing and retries after the interval (B03).
* One outstanding CALL per direction: the library's call lock serializes our
  calls; handlers never await a call (the receive loop would deadlock): what
  follows an answer (NotifyReport pages, a triggered message, a Reset) is spawned
  in the session's TaskGroup from an ``@after`` handler.
* Malformed frames and unknown actions are answered with a 2.0.1 CALLERROR
  (message id "-1" when none can be read); the library itself answers neither
  correctly (it drops unparsable frames and swaps NotImplemented/NotSupported).
* A CALL timeout means the link is dead: the socket is closed and the supervisor
  reconnects.

* Transaction events (E) come from the persisted journal through the shared outbox
  (``agent.ocpp.outbox``: order, MessageAttempts / MessageAttemptInterval), each
  projected at send time by ``agent.ocpp.v201.transactions``. A message counts as
  delivered the moment its CALLRESULT is read (acknowledged in the receive path), so
  a link that drops before the sender resumes does not send it twice.

* Smart charging (K) is ``agent.ocpp.v201.smart_charging`` on the shared engine.

* Authorization, local list and reservation (C, D, H): thin handlers over
  ``agent.ocpp.v201.authorization`` and ``agent.ocpp.v201.reservation``; the
  reservation service's "ended by the station" news becomes ReservationStatusUpdate,
  queued in the adapter while no session runs.

* Firmware (L01), GetLog (N01) and SecurityEventNotification: ``firmware.py``; the
  reports come from the firmware journal's persisted queue. SetNetworkProfile (B09):
  ``network.py`` onto ``agent.network_profiles`` (the supervisor switches, B10).

Not yet here: certificates (A/M).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from ocpp import routing
from ocpp.charge_point import camel_to_snake_case
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import (
    NotSupportedError,
    OccurrenceConstraintViolationError,
    OCPPError,
)
from ocpp.messages import Call, CallError, CallResult, unpack
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action
from websockets.exceptions import ConnectionClosed

from agent.authorization.authorizer import Authorizer, IdTagInfo
from agent.authorization.local_list import LocalAuthList
from agent.clock import Clock, parse_iso
from agent.events import (
    AuthorizationStatus,
    ConnectorStatus,
    EvseStatusChanged,
    FaultCode,
    MeterSample,
    ReadingContext,
    StopReason,
)
from agent.evse.controller import EvseController
from agent.network_profiles import NetworkProfileStore
from agent.ocpp.outbox import OutboxDelivery, SendOutcome
from agent.ocpp.v201 import authorization as auth201
from agent.ocpp.v201 import firmware as fw201
from agent.ocpp.v201 import mapping, transactions
from agent.ocpp.v201 import network as net201
from agent.ocpp.v201 import reservation as res201
from agent.ocpp.v201.device_model import (
    Attribute,
    Component,
    ComponentCriterion,
    DeviceModel,
    GetStatus,
    ReportBase,
    ReportItem,
    pages,
)
from agent.ocpp.v201.smart_charging import SmartCharging201
from agent.settings import NETWORK_PROFILE_SLOTS, Settings
from agent.station import Station
from agent.transactions.journal import QueuedTxMessage, TransactionJournal
from firmware_update.diagnostics import DiagnosticsService
from firmware_update.journal import UpdateRequest
from firmware_update.manager import FirmwareManager
from firmware_update.status import FirmwareStatus, UploadStatus

log = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp2.0.1"
DATA_TRANSFER_VENDOR = "org.evse-agent"
ITEMS_PER_MESSAGE_SETTING = "device_model_items_per_message"
EVENTS_KEPT = 64
"""NotifyEvents kept while offline (oldest dropped first): not transaction-related."""

SAMPLES_KEPT = 32
"""J01 MeterValues without a transaction kept while offline (oldest dropped first)."""

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
    """What BootNotification reports as ``chargingStation``."""

    vendor: str
    model: str
    serial_number: str
    firmware_version: str


class V201Adapter:
    """The OCPP 2.0.1 side of the agent.

    Args:
        station: The core.
        settings: Live settings (the device model writes through them).
        device_model: The station's variables (``build_device_model``).
        authorizer: Gets this adapter attached as its online authorizer when
            ``attach_authorizer`` (with version "auto" the composition root attaches
            whichever adapter is online).
        clock: Set from the CSMS's time (BootNotification, Heartbeat).
        boot: Identity for BootNotification.
        boot_reason: Reason of the first BootNotification of this process
            (``mapping.boot_reason``); later boots in the same process say the same,
            a triggered one says Triggered.
        call_timeout_s: Longest wait for an answer to one of our CALLs, s; a timeout
            closes the connection.
        boot_retry_s: Retry delay after Pending/Rejected when the CSMS gives interval 0.
        trace: Optional raw-frame hook.
        firmware: For FirmwareStatusNotification triggers (Idle without).
        diagnostics: For LogStatusNotification triggers (Idle without).
        reset_supported_per_evse: Whether a Reset of one EVSE is possible (B12);
            without it such a Reset is Rejected.
        journal: The persisted transaction messages, delivered as TransactionEvents
            (None: no transaction messages are sent).
    """

    subprotocol = SUBPROTOCOL

    def __init__(
        self,
        *,
        station: Station,
        settings: Settings,
        device_model: DeviceModel,
        authorizer: Authorizer,
        clock: Clock,
        boot: BootInfo,
        boot_reason: mapping.BootReason = mapping.BootReason.POWER_UP,
        call_timeout_s: float = 30.0,
        boot_retry_s: float = 30.0,
        trace: Trace | None = None,
        firmware: FirmwareManager | None = None,
        diagnostics: DiagnosticsService | None = None,
        attach_authorizer: bool = True,
        reset_supported_per_evse: bool = False,
        journal: TransactionJournal | None = None,
    ) -> None:
        self.station = station
        self.settings = settings
        self.device_model = device_model
        self.authorizer = authorizer
        self.clock = clock
        self.boot = boot
        self.boot_reason = boot_reason
        self.call_timeout_s = call_timeout_s
        self.boot_retry_s = boot_retry_s
        self.trace = trace
        self.firmware = firmware
        self.diagnostics = diagnostics
        self.reset_supported_per_evse = reset_supported_per_evse
        self.journal = journal
        # UpdateFirmware without signature ([firmware] accept_unsigned_updates)
        self.accept_unsigned_updates = False
        # B09 SetNetworkProfile target (None: Rejected); set by the composition root
        self.network_profiles: NetworkProfileStore | None = None
        self.outbox = OutboxDelivery(journal, settings) if journal is not None else None
        # D: the Local Authorization List (build_v201_adapter sets it; None: no list)
        # and who keeps LocalAuthListCtrlr.Entries current after a SendLocalList
        self.local_list: LocalAuthList | None = None
        self.local_list_size: Callable[[int], None] = lambda _entries: None
        # H: ReservationStatusUpdates (expired / removed by the station) to send
        self.reservation_updates = res201.ReservationUpdates()
        if station.reservations is not None:
            station.reservations.subscribe_ended(self.reservation_updates.push)
        # idToken type a RequestStartTransaction named, by token (for its Started event)
        self.remote_token_types: dict[str, str] = {}
        self._pending_status: dict[int, EvseStatusChanged] = {}
        self._status_event = asyncio.Event()
        # J01: clock-aligned samples of idle EVSEs and the station (evse 0)
        self._pending_samples: deque[tuple[int, MeterSample]] = deque(maxlen=SAMPLES_KEPT)
        self._samples_event = asyncio.Event()
        # N07: fault raised/cleared events waiting for a connection (in order)
        self._pending_events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self._events_event = asyncio.Event()
        self._active_faults: dict[int, FaultCode] = {}
        self._next_event_id = 1
        self._session: _Session | None = None
        self.registered = asyncio.Event()  # set on every Accepted boot (tests, bench)
        for status in station.all_statuses():
            self._track_fault(status)
        station.subscribe_status(self._on_status)
        station.subscribe_samples(self._on_sample)
        if self.outbox is not None:
            station.subscribe_tx_messages(self.outbox.wake)
        if attach_authorizer:
            authorizer.attach(self)

    # --------------------------------------------------- core -> adapter

    def _on_sample(self, evse_id: int, sample: MeterSample) -> None:
        self._pending_samples.append((evse_id, sample))
        self._samples_event.set()

    def _on_status(self, event: EvseStatusChanged) -> None:
        self._track_fault(event)
        if event.evse_id == 0:
            return  # 2.0.1 has no connector 0: the EVSEs report the change themselves
        self._pending_status[event.evse_id] = event
        self._status_event.set()

    def _track_fault(self, event: EvseStatusChanged) -> None:
        """N07: a fault code appearing or going away on an EVSE is a NotifyEvent."""
        if event.evse_id == 0:
            return
        previous = self._active_faults.get(event.evse_id)
        current = event.error_code if event.status == ConnectorStatus.FAULTED else None
        if current is None and event.error_code is not None:
            current = event.error_code  # a warning: the fault without the Faulted status
        if current == previous:
            return
        if previous is not None:
            self._queue_fault_event(event.evse_id, previous, cleared=True, when=event.timestamp)
        if current is not None:
            self._queue_fault_event(event.evse_id, current, cleared=False, when=event.timestamp)
            self._active_faults[event.evse_id] = current
        else:
            del self._active_faults[event.evse_id]

    def _queue_fault_event(
        self, evse_id: int, code: FaultCode, *, cleared: bool, when: str
    ) -> None:
        self._pending_events.append(
            mapping.fault_event(
                event_id=self._next_event_id,
                evse_id=evse_id,
                code=code,
                cleared=cleared,
                timestamp=when,
            )
        )
        self._next_event_id += 1
        self._events_event.set()

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

    async def data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: Any = None
    ) -> tuple[str, Any] | None:
        """P02: send a DataTransfer to the CSMS.

        Returns:
            (status, data) of the answer; None when offline or the CSMS answered a
            CALLERROR.

        Raises:
            LinkDead: no answer within ``call_timeout_s`` (the session ends).
        """
        session = self._session
        if session is None or not session.accepted:
            return None
        return await session.data_transfer(vendor_id, message_id, data)

    # ------------------------------------------------------------ sessions

    async def run_session(self, ws: Any, charge_point_id: str) -> None:
        """Run OCPP 2.0.1 over an open WebSocket until it closes or the link dies."""
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
            # OCPP-J 2.0.1 4.2.3: answer what cannot be parsed; no readable id -> "-1".
            if not self.session.rejected:
                await self._send_error(_message_id(raw_msg), e)
            return
        if isinstance(msg, Call):
            if self.session.rejected:
                return  # B03: while Rejected the station answers nothing
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
        frame = CallError(unique_id, mapping.error_code_201(error.code), description, details)
        await self._send(frame.to_json())

    # --- CSMS -> station handlers (never await self.call in here)

    @on(Action.get_variables)
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        return self.session.get_variables(get_variable_data)

    @on(Action.set_variables)
    async def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        return await self.session.set_variables(set_variable_data)

    @on(Action.get_base_report)
    def on_get_base_report(self, request_id: int, report_base: str, **_: Any) -> Any:
        return self.session.prepare_report(request_id, report_base=report_base)

    @after(Action.get_base_report)
    def after_get_base_report(self, request_id: int, **_: Any) -> None:
        self.session.send_prepared_report(request_id)

    @on(Action.get_report)
    def on_get_report(
        self,
        request_id: int,
        component_variable: list[dict[str, Any]] | None = None,
        component_criteria: list[str] | None = None,
        **_: Any,
    ) -> Any:
        return self.session.prepare_report(
            request_id, component_variable=component_variable, criteria=component_criteria
        )

    @after(Action.get_report)
    def after_get_report(self, request_id: int, **_: Any) -> None:
        self.session.send_prepared_report(request_id)

    @on(Action.change_availability)
    async def on_change_availability(
        self, operational_status: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> Any:
        return await self.session.change_availability(operational_status, evse)

    @on(Action.reset)
    def on_reset(self, type: str, evse_id: int | None = None, **_: Any) -> Any:
        return self.session.answer_reset(type, evse_id)

    @after(Action.reset)
    def after_reset(self, type: str, evse_id: int | None = None, **_: Any) -> None:
        self.session.start_reset(type, evse_id)

    @on(Action.trigger_message)
    def on_trigger_message(
        self, requested_message: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> Any:
        status = self.session.trigger_status(requested_message, evse)
        return call_result.TriggerMessage(status=status)

    @after(Action.trigger_message)
    def after_trigger_message(
        self, requested_message: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> None:
        # F06: the requested message follows the TriggerMessage answer
        if self.session.trigger_status(requested_message, evse) == "Accepted":
            evse_id = evse.get("id") if evse else None
            self.session.spawn(self.session.send_triggered(requested_message, evse_id))

    @on(Action.unlock_connector)
    async def on_unlock_connector(self, evse_id: int, connector_id: int, **_: Any) -> Any:
        return await self.session.unlock(evse_id, connector_id)

    @on(Action.request_start_transaction)
    def on_request_start_transaction(
        self,
        id_token: dict[str, Any],
        remote_start_id: int,
        evse_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        return self.session.request_start(id_token, remote_start_id, evse_id, charging_profile)

    @on(Action.request_stop_transaction)
    def on_request_stop_transaction(self, transaction_id: str, **_: Any) -> Any:
        return self.session.request_stop(transaction_id)

    @on(Action.get_transaction_status)
    async def on_get_transaction_status(self, transaction_id: str | None = None, **_: Any) -> Any:
        return await self.session.get_transaction_status(transaction_id)

    @on(Action.data_transfer)
    def on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: Any = None, **_: Any
    ) -> Any:
        # P01: no vendor extension is implemented yet
        if vendor_id != DATA_TRANSFER_VENDOR:
            return call_result.DataTransfer(status="UnknownVendorId")
        return call_result.DataTransfer(status="UnknownMessageId")

    @on(Action.send_local_list)
    async def on_send_local_list(
        self,
        version_number: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> Any:
        answer = await self.session.send_local_list(
            version_number, update_type, local_authorization_list
        )
        return call_result.SendLocalList(**answer.fields())

    @on(Action.get_local_list_version)
    async def on_get_local_list_version(self, **_: Any) -> Any:
        adapter = self.session.adapter
        version = await auth201.get_local_list_version(
            adapter.local_list, enabled=adapter.settings.get_bool("local_auth_list_enabled")
        )
        return call_result.GetLocalListVersion(version_number=version)

    @on(Action.reserve_now)
    async def on_reserve_now(
        self,
        id: int,
        expiry_date_time: str,
        id_token: dict[str, Any],
        evse_id: int | None = None,
        group_id_token: dict[str, Any] | None = None,
        connector_type: str | None = None,
        **_: Any,
    ) -> Any:
        adapter = self.session.adapter
        status = await res201.reserve_now(
            adapter.station,
            adapter.device_model,
            accepted_boot=self.session.accepted,
            reservation_id=id,
            expiry_date_time=expiry_date_time,
            id_token=id_token,
            evse_id=evse_id,
            group_id_token=group_id_token,
            connector_type=connector_type,
        )
        return call_result.ReserveNow(status=status.value)

    @on(Action.cancel_reservation)
    async def on_cancel_reservation(self, reservation_id: int, **_: Any) -> Any:
        ok = await self.session.adapter.station.cancel_reservation(reservation_id)
        return call_result.CancelReservation(status="Accepted" if ok else "Rejected")

    @on(Action.clear_cache)
    async def on_clear_cache(self, **_: Any) -> Any:
        await self.session.adapter.station.clear_cache()
        return call_result.ClearCache(status="Accepted")

    # --- K: smart charging (agent.ocpp.v201.smart_charging)

    @on(Action.set_charging_profile)
    async def on_set_charging_profile(
        self, evse_id: int, charging_profile: dict[str, Any], **_: Any
    ) -> Any:
        return await self.session.smart.set_charging_profile(evse_id, charging_profile)

    @on(Action.get_charging_profiles)
    def on_get_charging_profiles(
        self,
        request_id: int,
        charging_profile: dict[str, Any],
        evse_id: int | None = None,
        **_: Any,
    ) -> Any:
        return self.session.smart.get_charging_profiles(request_id, evse_id, charging_profile)

    @after(Action.get_charging_profiles)
    def after_get_charging_profiles(self, request_id: int, **_: Any) -> None:
        self.session.spawn(self.session.smart.send_report(request_id, self.session._call))

    @on(Action.clear_charging_profile)
    async def on_clear_charging_profile(
        self,
        charging_profile_id: int | None = None,
        charging_profile_criteria: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        return await self.session.smart.clear_charging_profile(
            charging_profile_id, charging_profile_criteria
        )

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(
        self, duration: int, evse_id: int, charging_rate_unit: str | None = None, **_: Any
    ) -> Any:
        return self.session.smart.get_composite_schedule(duration, evse_id, charging_rate_unit)

    @on(Action.set_network_profile)
    async def on_set_network_profile(
        self, configuration_slot: int, connection_data: dict[str, Any], **_: Any
    ) -> Any:
        adapter = self.session.adapter
        fields = await net201.set_network_profile(
            adapter.network_profiles,
            NETWORK_PROFILE_SLOTS,
            configuration_slot,
            connection_data,
        )
        return call_result.SetNetworkProfile(**fields)

    @on(Action.update_firmware)
    def on_update_firmware(
        self,
        request_id: int,
        firmware: dict[str, Any],
        retries: int | None = None,
        retry_interval: int | None = None,
        **_: Any,
    ) -> Any:
        adapter = self.session.adapter
        status, self.session.firmware_request = fw201.update_firmware(
            adapter.firmware,
            request_id,
            firmware,
            retries,
            retry_interval,
            accept_unsigned=adapter.accept_unsigned_updates,
        )
        return call_result.UpdateFirmware(status=status)

    @after(Action.update_firmware)
    async def after_update_firmware(self, **_: Any) -> None:
        # L01: after the answer, so no status of the new update can overtake it
        request, self.session.firmware_request = self.session.firmware_request, None
        if request is not None and self.session.adapter.firmware is not None:
            await self.session.adapter.firmware.request(request)

    @on(Action.get_log)
    async def on_get_log(
        self,
        log: dict[str, Any],
        log_type: str,
        request_id: int,
        retries: int | None = None,
        retry_interval: int | None = None,
        **_: Any,
    ) -> Any:
        service, name, cancelled = self.session.adapter.diagnostics, None, False
        if service is not None:
            try:
                upload = fw201.log_request(log_type, log, request_id, retries, retry_interval)
            except (ValueError, KeyError) as e:
                logging.getLogger(__name__).warning("GetLog %d rejected: %s", request_id, e)
            else:
                name, cancelled = await service.request(upload)
        return call_result.GetLog(**fw201.get_log_answer(name, cancelled))


def _message_id(raw: str) -> str:
    try:
        parsed = json.loads(raw)
    except (ValueError, TypeError):
        return "-1"
    if isinstance(parsed, list) and len(parsed) > 1 and isinstance(parsed[1], str):
        return parsed[1][:36]
    return "-1"


def _unknown_action_error(action: str) -> OCPPError:
    # OCPP-J 2.0.1 4.3: NotImplemented = action not known; NotSupported = known but
    # not supported by this station.
    try:
        Action(action)
    except ValueError:
        return OcppNotImplemented(details={"cause": f"unknown action {action}"})
    return NotSupportedError(details={"cause": f"{action} is not supported"})


@dataclass(frozen=True, slots=True)
class _PreparedReport:
    items: list[ReportItem]


class _Session:
    """One connection: boot, then heartbeat, status and event senders."""

    def __init__(self, adapter: V201Adapter, ws: Any, charge_point_id: str) -> None:
        self.adapter = adapter
        self.ws = ws
        self.cp = _ChargePoint(self, charge_point_id, ws, adapter.call_timeout_s)
        self.accepted = False
        self.pending = False
        self.rejected = False
        self._accepted = asyncio.Event()
        self._boot_uid: str | None = None
        self._last_round_trip_s: float | None = None
        self._heartbeat_changed = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._reports: dict[int, _PreparedReport] = {}
        # transaction message id -> the queued message, while in flight
        self._tx_calls: dict[str, QueuedTxMessage] = {}
        # acknowledgements begun in the receive path, by message id
        self._acks: dict[str, asyncio.Task[None]] = {}
        self._report_lock = asyncio.Lock()  # NotifyReport pages of one report stay together
        # K: smart charging requests (ReportChargingProfiles pages prepared per request)
        self.smart = SmartCharging201(adapter.station, self._items_per_message)
        # an UpdateFirmware answered but not yet handed to the firmware manager
        self.firmware_request: UpdateRequest | None = None
        self._unsubscribe = adapter.settings.subscribe(self._on_setting)

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
        """Receive and send until the connection closes or the link is declared dead."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self.cp.start(), name="ocpp201-recv")
                group.create_task(self._main(), name="ocpp201-main")
        except* (ConnectionClosed, LinkDead) as ended:
            log.info("OCPP 2.0.1 session ended: %s", ended.exceptions[0])
        finally:
            self._unsubscribe()
            if self.adapter.journal is not None:
                self.adapter.journal.connectivity.set_online(False)  # later events: offline
            if self._acks:  # answered messages must be journalled as delivered
                await asyncio.shield(asyncio.gather(*self._acks.values(), return_exceptions=True))

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
        """See a CALLRESULT in the receive path, before the caller resumes: the CSMS
        may send its next CALL right behind the boot answer (B02/B03 apply at once)."""
        if not isinstance(msg, CallResult) or not isinstance(msg.payload, dict):
            return
        if msg.unique_id == self._boot_uid:
            status = msg.payload.get("status")
            self.accepted = status == "Accepted"
            self.pending = status == "Pending"
            self.rejected = status == "Rejected"
            if self.accepted:
                self._accepted.set()
        queued = self._tx_calls.pop(msg.unique_id, None)
        if queued is not None and self.adapter.journal is not None:
            # From here the message counts as delivered, even if the link drops now.
            self._acks[msg.unique_id] = asyncio.create_task(
                self.adapter.journal.acknowledge(queued.seq)
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
        if self.adapter.journal is not None:
            self.adapter.journal.connectivity.set_online(True)
        self.adapter.registered.set()
        # B01.FR.?? / G01: the status of every connector after the boot
        for status in self.adapter.station.all_statuses():
            self.adapter._on_status(status)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._heartbeat_loop(), name="ocpp201-heartbeat")
            group.create_task(self._status_loop(), name="ocpp201-status")
            group.create_task(self._events_loop(), name="ocpp201-events")
            group.create_task(self._samples_loop(), name="ocpp201-samples")
            group.create_task(
                self.adapter.reservation_updates.run(self._send_reservation_update),
                name="ocpp201-reservations",
            )
            if self.adapter.firmware is not None:  # L01/N01 reports, security events
                group.create_task(
                    fw201.deliver_reports(self.adapter.firmware, self._call),
                    name="ocpp201-firmware",
                )
            if self.adapter.outbox is not None:
                group.create_task(self.adapter.outbox.run(self._send_tx_message), name="ocpp201-tx")

    # ------------------------------------------------------------- boot

    async def _boot(self) -> None:
        while True:
            result = await self._send_boot(self.adapter.boot_reason)
            if result.status == "Accepted":
                return
            interval_s = int(result.interval)
            retry_s = interval_s if interval_s > 0 else self.adapter.boot_retry_s
            log.warning("BootNotification %s; retrying in %.0f s", result.status, retry_s)
            # B02: a BootNotification triggered while Pending may be Accepted meanwhile
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._accepted.wait(), retry_s)
                _raise_if_cancelling()
                return

    async def _send_boot(self, reason: mapping.BootReason) -> Any:
        """One BootNotification; an Accepted answer sets the clock and heartbeat."""
        boot = self.adapter.boot
        station: dict[str, Any] = {
            "model": boot.model[:20],
            "vendor_name": boot.vendor[:50],
            "firmware_version": boot.firmware_version[:50],
        }
        if boot.serial_number:
            station["serial_number"] = boot.serial_number[:25]
        self._boot_uid = str(uuid.uuid4())
        result = await self._call(
            call.BootNotification(charging_station=station, reason=reason.value),
            unique_id=self._boot_uid,
        )
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

    # ----------------------------------------------------- status, events

    async def _status_loop(self) -> None:
        """G01: a connector's status goes out when it changes (every connector once per
        session, at boot). Neutral statuses that project onto the same 2.0.1 status
        (Preparing, Charging, Suspended*, Finishing are all Occupied) are not repeated;
        TriggerMessage sends its own."""
        pending = self.adapter._pending_status
        sent: dict[int, str] = {}  # connectorStatus last sent in this session
        while True:
            await self.adapter._status_event.wait()
            self.adapter._status_event.clear()
            while pending:
                evse_id = min(pending)
                event = pending[evse_id]
                fields = mapping.status_notification(event)
                if fields is not None and sent.get(evse_id) != fields["connector_status"]:
                    try:
                        await self._call(call.StatusNotification(**fields))
                        sent[evse_id] = fields["connector_status"]
                    except OCPPError as e:
                        log.warning("StatusNotification refused: %s", e)
                if pending.get(evse_id) is event:
                    del pending[evse_id]

    async def _samples_loop(self) -> None:
        """J01 MeterValues outside a transaction (clock-aligned data of idle EVSEs; evse 0
        = the station total). Not transaction-related: the last ``SAMPLES_KEPT`` wait in
        memory for a connection, older ones are dropped."""
        pending = self.adapter._pending_samples
        while True:
            await self.adapter._samples_event.wait()
            self.adapter._samples_event.clear()
            while pending:
                item = pending[0]
                evse_id, sample = item
                try:
                    await self._call(
                        call.MeterValues(evse_id=evse_id, meter_value=[mapping.meter_value(sample)])
                    )
                except OCPPError as e:
                    log.warning("MeterValues of evse %d refused: %s", evse_id, e)
                if pending and pending[0] is item:
                    pending.popleft()

    async def _events_loop(self) -> None:
        """N07 NotifyEvent, one event per message. seqNo numbers the parts of one
        message split with tbc (Part 2 NotifyEventRequest), so each is 0."""
        pending = self.adapter._pending_events
        while True:
            await self.adapter._events_event.wait()
            self.adapter._events_event.clear()
            while pending:
                data = pending[0]
                try:
                    await self._call(
                        call.NotifyEvent(
                            generated_at=self.adapter.clock.iso_now(),
                            seq_no=0,
                            event_data=[data],
                        )
                    )
                except OCPPError as e:
                    log.warning("NotifyEvent refused: %s", e)
                if pending and pending[0] is data:
                    pending.popleft()

    # -------------------------------------------------------- transactions

    async def _send_tx_message(self, msg: QueuedTxMessage) -> SendOutcome:
        """One TransactionEvent (E01-E13) for one journal row."""
        record = msg.record
        token_type = None
        if record.remote_start_id is not None:
            token_type = self.adapter.remote_token_types.get(record.id_tag)
        try:
            payload = transactions.transaction_event(
                msg, record, seq_no=msg.seq_no, offline=msg.offline, id_token_type=token_type
            )
        except ValueError as e:
            return SendOutcome.unaddressable(str(e))
        uid = str(uuid.uuid4())
        self._tx_calls[uid] = msg
        try:
            result = await self._call(
                call.TransactionEvent(**_top_level_snake_case(payload)), unique_id=uid
            )
        except OCPPError as e:
            self._tx_calls.pop(uid, None)
            ack = self._acks.pop(uid, None)
            if ack is None:
                return SendOutcome.refused(str(e))  # a CALLERROR: an attempt failed
            # A CALLRESULT the schema refused: the CSMS has the message all the same.
            log.warning("%s of %s: malformed answer (%s)", msg.kind, msg.tx_id, e)
            return SendOutcome.done(ack)
        ack = self._acks.pop(uid, None)
        if ack is None:  # pragma: no cover - on_result always runs before the caller
            assert self.adapter.journal is not None
            ack = asyncio.create_task(self.adapter.journal.acknowledge(msg.seq))
        info = result.id_token_info if isinstance(result.id_token_info, dict) else None
        if info is not None and "idToken" in payload:  # Started, or Updated(Authorized)
            self._check_deauthorized(msg.tx_id, str(info.get("status", "Invalid")))
        return SendOutcome.done(ack)

    async def get_transaction_status(self, transaction_id: str | None) -> Any:
        """E14: is that transaction ongoing, are messages (of it) still queued."""
        journal = self.adapter.journal
        record = None
        count = 0
        if journal is not None:
            if transaction_id is not None:
                record = await journal.get(transaction_id)
            count = await journal.pending_count(transaction_id)
        payload = transactions.get_transaction_status(
            record, transaction_id=transaction_id, messages_in_queue=count
        )
        return call_result.GetTransactionStatus(**camel_to_snake_case(payload))

    def _check_deauthorized(self, tx_id: str, status_text: str) -> None:
        # E05 / TxCtrlr.StopTxOnInvalidId: a token the CSMS does not accept
        status = mapping.authorization_status(status_text)
        if status == AuthorizationStatus.ACCEPTED:
            return
        stop = self.adapter.settings.get_bool("stop_transaction_on_invalid_id")
        if stop and self.adapter.station.stop_transaction(tx_id, StopReason.DEAUTHORIZED):
            log.warning("transaction %s deauthorized by the CSMS (%s)", tx_id, status_text)

    async def data_transfer(
        self, vendor_id: str, message_id: str | None, data: Any
    ) -> tuple[str, Any] | None:
        try:
            result = await self._call(
                call.DataTransfer(vendor_id=vendor_id, message_id=message_id, data=data)
            )
        except OCPPError as e:
            log.warning("DataTransfer refused: %s", e)
            return None
        return str(result.status), result.data

    # ------------------------------------------------------- authorization

    async def authorize(self, id_tag: str) -> IdTagInfo | None:
        """C01: ask the CSMS; None when the answer is a CALLERROR."""
        try:
            result = await self._call(call.Authorize(id_token=mapping.id_token(id_tag)))
        except OCPPError as e:
            log.warning("Authorize refused: %s", e)
            return None
        info = result.id_token_info if isinstance(result.id_token_info, dict) else {}
        return auth201.authorize_answer(info)

    async def send_local_list(
        self,
        version_number: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None,
    ) -> auth201.LocalListAnswer:
        """D01: applied (durably) before the answer; Entries follows the new size."""
        adapter = self.adapter
        answer = await auth201.send_local_list(
            adapter.local_list,
            enabled=adapter.settings.get_bool("local_auth_list_enabled"),
            version_number=version_number,
            update_type=update_type,
            local_authorization_list=local_authorization_list,
        )
        if answer.status == "Accepted" and adapter.local_list is not None:
            adapter.local_list_size(await adapter.local_list.size())
        return answer

    # --------------------------------------------------------- reservation

    async def _send_reservation_update(self, reservation_id: int, status: str) -> None:
        """H: a reservation the station ended (Expired / Removed)."""
        try:
            await self._call(
                call.ReservationStatusUpdate(
                    reservation_id=reservation_id, reservation_update_status=status
                )
            )
        except OCPPError as e:  # refused: a retry would be refused again
            log.warning("ReservationStatusUpdate %d refused: %s", reservation_id, e)

    # ------------------------------------------------------- device model

    def _items_per_message(self) -> int:
        return max(1, self.adapter.settings.get_int(ITEMS_PER_MESSAGE_SETTING))

    def _check_item_count(self, count: int, what: str) -> None:
        # B05.FR.?? / B06.FR.??: more items than ItemsPerMessage may be refused as a
        # whole with OccurrenceConstraintViolation.
        limit = self._items_per_message()
        if count > limit:
            raise OccurrenceConstraintViolationError(
                details={"cause": f"{count} {what} items; ItemsPerMessage is {limit}"}
            )

    def get_variables(self, data: list[dict[str, Any]]) -> Any:
        """B06: one result per requested item, in request order."""
        self._check_item_count(len(data), "GetVariables")
        model = self.adapter.device_model
        results = []
        for item in data:
            component, variable = item["component"], item["variable"]
            attribute = Attribute(item.get("attribute_type", "Actual"))
            got = model.get(
                _component(component), variable["name"], variable.get("instance"), attribute
            )
            result: dict[str, Any] = {
                "attribute_status": got.status.value,
                "component": component,
                "variable": variable,
            }
            if "attribute_type" in item:
                result["attribute_type"] = item["attribute_type"]
            if got.status == GetStatus.ACCEPTED:
                result["attribute_value"] = got.value
            if got.reason:
                result["attribute_status_info"] = {"reason_code": got.reason[:20]}
            results.append(result)
        return call_result.GetVariables(get_variable_result=results)

    async def set_variables(self, data: list[dict[str, Any]]) -> Any:
        """B05: each item is stored (persisted) before the answer goes out."""
        self._check_item_count(len(data), "SetVariables")
        model = self.adapter.device_model
        results = []
        for item in data:
            component, variable = item["component"], item["variable"]
            attribute = Attribute(item.get("attribute_type", "Actual"))
            done = await model.set(
                _component(component),
                variable["name"],
                str(item["attribute_value"]),
                variable.get("instance"),
                attribute,
            )
            result: dict[str, Any] = {
                "attribute_status": done.status.value,
                "component": component,
                "variable": variable,
            }
            if "attribute_type" in item:
                result["attribute_type"] = item["attribute_type"]
            if done.reason:
                info: dict[str, Any] = {"reason_code": done.reason[:20]}
                if done.detail:
                    info["additional_info"] = done.detail[:512]
                result["attribute_status_info"] = info
            results.append(result)
        return call_result.SetVariables(set_variable_result=results)

    def prepare_report(
        self,
        request_id: int,
        *,
        report_base: str | None = None,
        component_variable: list[dict[str, Any]] | None = None,
        criteria: list[str] | None = None,
    ) -> Any:
        """B07/B08: answer Accepted (pages follow) or EmptyResultSet / NotSupported."""
        model = self.adapter.device_model
        if report_base is not None:
            try:
                base = ReportBase(report_base)
            except ValueError:
                return call_result.GetBaseReport(status="NotSupported")
            items = model.base_report(base)
            status = "Accepted" if items else "EmptyResultSet"
            if items:
                self._reports[request_id] = _PreparedReport(items)
            return call_result.GetBaseReport(status=status)
        requested = component_variable or []
        self._check_item_count(len(requested), "GetReport")
        try:
            wanted = [ComponentCriterion(c) for c in criteria or []]
        except ValueError:
            return call_result.GetReport(status="NotSupported")
        items = model.custom_report(
            [
                (
                    _component(cv["component"]),
                    cv.get("variable", {}).get("name"),
                    cv.get("variable", {}).get("instance"),
                )
                for cv in requested
            ],
            wanted,
        )
        if not items:
            return call_result.GetReport(status="EmptyResultSet")
        self._reports[request_id] = _PreparedReport(items)
        return call_result.GetReport(status="Accepted")

    def send_prepared_report(self, request_id: int) -> None:
        """Send the pages of a report answered Accepted (after that answer went out)."""
        report = self._reports.pop(request_id, None)
        if report is not None:
            self.spawn(self._send_report(request_id, report.items))

    async def _send_report(self, request_id: int, items: list[ReportItem]) -> None:
        chunks = list(pages(items, self._items_per_message()))
        generated_at = self.adapter.clock.iso_now()
        async with self._report_lock:
            for seq_no, chunk in enumerate(chunks):
                try:
                    await self._call(
                        call.NotifyReport(
                            request_id=request_id,
                            generated_at=generated_at,
                            seq_no=seq_no,
                            tbc=seq_no < len(chunks) - 1,
                            report_data=[_report_data(item) for item in chunk],
                        )
                    )
                except OCPPError as e:
                    log.warning("NotifyReport %d/%d refused: %s", request_id, seq_no, e)

    # ------------------------------------------------------- availability

    async def change_availability(
        self, operational_status: str, evse: dict[str, Any] | None
    ) -> Any:
        """G03/G04: station (no evse), EVSE, or connector (connector 1 = its EVSE)."""
        station = self.adapter.station
        evse_id = int(evse["id"]) if evse else 0
        connector_id = evse.get("connector_id") if evse else None
        if evse_id != 0 and evse_id not in station.controllers:
            return call_result.ChangeAvailability(status="Rejected")
        if connector_id is not None and int(connector_id) != mapping.CONNECTOR_ID:
            return call_result.ChangeAvailability(status="Rejected")
        result = await station.change_availability(
            evse_id, operative=mapping.operative(operational_status)
        )
        return call_result.ChangeAvailability(status=mapping.change_availability_status(result))

    # -------------------------------------------------------------- reset

    def _reset_refusal(self, evse_id: int | None) -> str | None:
        station = self.adapter.station
        if station.reset_blocked():
            return "firmware install in progress"
        if evse_id is not None:
            if evse_id not in station.controllers:
                return "unknown EVSE"
            if not self.adapter.reset_supported_per_evse:
                return "EVSE reset not supported"
        return None

    def answer_reset(self, reset_type: str, evse_id: int | None) -> Any:
        """B11/B12: Accepted, Scheduled (OnIdle while a transaction runs) or Rejected."""
        refusal = self._reset_refusal(evse_id)
        if refusal is not None:
            info = {"reason_code": "UnsupportedRequest", "additional_info": refusal}
            return call_result.Reset(status="Rejected", status_info=info)
        station = self.adapter.station
        if evse_id is None:
            busy = bool(station.running_transactions())
        else:  # B12: only that EVSE's transaction matters
            busy = station.controllers[evse_id].transaction is not None
        status = "Scheduled" if reset_type == "OnIdle" and busy else "Accepted"
        return call_result.Reset(status=status)

    def start_reset(self, reset_type: str, evse_id: int | None) -> None:
        if self._reset_refusal(evse_id) is None:
            self.spawn(self._reset(reset_type, evse_id))

    async def _reset(self, reset_type: str, evse_id: int | None = None) -> None:
        station = self.adapter.station
        if evse_id is not None:  # B12: that EVSE only (OnIdle: after its transaction)
            await station.reset_evse(evse_id, mapping.reset_kind(reset_type))
            return
        if reset_type == "OnIdle":
            await station.wait_no_transaction()  # B11.FR.?? OnIdle: after the transactions
        await station.reset(mapping.reset_kind(reset_type))

    # ------------------------------------------------------- TriggerMessage

    def trigger_status(self, message: str, evse: dict[str, Any] | None) -> str:
        evse_id = evse.get("id") if evse else None
        if message == "BootNotification" and self.accepted:
            return "Rejected"  # F06.FR.17: no boot again once Accepted
        ids = frozenset(self.adapter.station.controllers)
        status = mapping.trigger_status(message, evse_id, ids)
        if status == "Accepted" and message == "TransactionEvent" and not self._tx_targets(evse_id):
            return "Rejected"  # F06: no transaction to report on
        return status

    def _tx_targets(self, evse_id: int | None) -> list[EvseController]:
        controllers = self.adapter.station.controllers
        return [
            ctl
            for n, ctl in sorted(controllers.items())
            if evse_id in (None, 0, n) and ctl.transaction is not None
        ]

    async def send_triggered(self, message: str, evse_id: int | None) -> None:
        """Send the triggered message (after the TriggerMessage answer went out)."""
        adapter = self.adapter
        station = adapter.station
        match message:
            case "BootNotification":
                await self._send_boot(mapping.BootReason.TRIGGERED)
            case "Heartbeat":
                await self._send_heartbeat()
            case "StatusNotification":
                ctl = station.controllers.get(evse_id or 0)
                if ctl is not None and ctl.status is not None:
                    fields = mapping.status_notification(ctl.status)
                    if fields is not None:
                        await self._call(call.StatusNotification(**fields))
            case "MeterValues":
                for ctl_id in sorted(station.controllers):
                    if evse_id in (None, 0, ctl_id):
                        sample = station.controllers[ctl_id].sample_now(ReadingContext.TRIGGER)
                        if sample is not None:
                            await self._call(
                                call.MeterValues(
                                    evse_id=ctl_id, meter_value=[mapping.meter_value(sample)]
                                )
                            )
            case "TransactionEvent":
                # an Updated event (triggerReason Trigger) through the journal, in order
                for ctl in self._tx_targets(evse_id):
                    await ctl.record_sample(ReadingContext.TRIGGER)
            case "FirmwareStatusNotification":
                firmware = adapter.firmware
                fields = fw201.trigger_firmware_status(
                    firmware.status_now() if firmware else FirmwareStatus.IDLE,
                    firmware.request_id if firmware else None,
                )
                await self._call(call.FirmwareStatusNotification(**fields))
            case "LogStatusNotification":
                upload, request_id = UploadStatus.IDLE, None
                if adapter.diagnostics is not None:
                    upload, request_id = adapter.diagnostics.status_now()
                fields = fw201.trigger_log_status(upload, request_id)
                await self._call(call.LogStatusNotification(**fields))

    # ------------------------------------------------------ remote control

    async def unlock(self, evse_id: int, connector_id: int) -> Any:
        """F05: never unlock under an authorized transaction (OngoingAuthorizedTransaction)."""
        station = self.adapter.station
        ctl = station.controllers.get(evse_id)
        if ctl is None or connector_id != mapping.CONNECTOR_ID:
            return call_result.UnlockConnector(status="UnknownConnector")
        if ctl.transaction is not None:
            return call_result.UnlockConnector(status="OngoingAuthorizedTransaction")
        result = await station.unlock(evse_id)
        return call_result.UnlockConnector(status=mapping.unlock_status(result))

    def request_start(
        self,
        id_token: dict[str, Any],
        remote_start_id: int,
        evse_id: int | None,
        charging_profile: dict[str, Any] | None = None,
    ) -> Any:
        """F01/F02: hand the start to the core; Rejected while not Accepted (B02).
        A TxProfile in the request is expected before the start is posted (K05), so the
        first PWM of the transaction obeys it."""
        if not self.accepted:
            return call_result.RequestStartTransaction(status="Rejected")
        authorize = self.adapter.settings.get_bool("authorize_remote_tx_requests")
        token = str(id_token.get("id_token", ""))
        profile_evse = None
        if charging_profile is not None:
            profile_evse = self.smart.expect_remote_start_profile(evse_id, token, charging_profile)
            if profile_evse is None:
                return call_result.RequestStartTransaction(status="Rejected")
        self.adapter.remote_token_types[token] = str(id_token.get("type", "Central"))
        ok = self.adapter.station.remote_start(
            evse_id,
            str(id_token.get("id_token", "")),
            authorize=authorize,
            remote_start_id=remote_start_id,
        )
        if not ok and profile_evse is not None:
            self.smart.forget_remote_start_profile(profile_evse)
        # F01 cable first: the transaction already runs, its id goes in the answer
        ctl = self.adapter.station.controllers.get(evse_id) if ok and evse_id else None
        running = ctl.transaction if ctl is not None else None
        return call_result.RequestStartTransaction(
            status="Accepted" if ok else "Rejected",
            transaction_id=running.tx_id if running is not None else None,
        )

    def request_stop(self, transaction_id: str) -> Any:
        """F03: the transactionId is the station's own (the journal id)."""
        if not self.accepted:
            return call_result.RequestStopTransaction(status="Rejected")
        ok = self.adapter.station.remote_stop(transaction_id)
        return call_result.RequestStopTransaction(status="Accepted" if ok else "Rejected")


def _raise_if_cancelling() -> None:
    """Restore a cancellation that ``asyncio.wait_for`` lost (Python 3.11: when the
    awaited result and the cancel arrive in the same loop iteration, wait_for returns
    the result and the task never sees CancelledError; the ocpp library waits for
    every answer with wait_for, so a session could not be stopped)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _component(raw: dict[str, Any]) -> Component:
    evse = raw.get("evse")
    evse_id = connector_id = None
    if isinstance(evse, dict):
        evse_id = evse.get("id")
        connector_id = evse.get("connector_id")
    return Component(raw["name"], raw.get("instance"), evse_id, connector_id)


def _component_out(component: Component) -> dict[str, Any]:
    out: dict[str, Any] = {"name": component.name}
    if component.instance is not None:
        out["instance"] = component.instance
    if component.evse_id is not None:
        evse: dict[str, Any] = {"id": component.evse_id}
        if component.connector_id is not None:
            evse["connector_id"] = component.connector_id
        out["evse"] = evse
    return out


def _report_data(item: ReportItem) -> dict[str, Any]:
    """ReportDataType of one item (WriteOnly values are left out by the engine)."""
    variable = item.variable
    var_out: dict[str, Any] = {"name": variable.name}
    if variable.instance is not None:
        var_out["instance"] = variable.instance
    attributes = []
    for attribute in item.attributes:
        entry: dict[str, Any] = {
            "type": attribute.type.value,
            "mutability": attribute.mutability.value,
            "persistent": attribute.persistent,
            "constant": attribute.constant,
        }
        if attribute.value is not None:
            entry["value"] = attribute.value
        attributes.append(entry)
    c = variable.characteristics
    characteristics: dict[str, Any] = {
        # 2.0.1 DataEnumType has no passwordString (OCPP 2.1 added it): a string here
        "data_type": mapping.data_type(c.data_type.value),
        "supports_monitoring": c.supports_monitoring,
    }
    if c.unit is not None:
        characteristics["unit"] = c.unit
    if c.min_limit is not None:
        characteristics["min_limit"] = c.min_limit
    if c.max_limit is not None:
        characteristics["max_limit"] = c.max_limit
    if c.values_list is not None:
        characteristics["values_list"] = ",".join(c.values_list)[:1000]
    return {
        "component": _component_out(variable.component),
        "variable": var_out,
        "variable_attribute": attributes,
        "variable_characteristics": characteristics,
    }


_CAPITAL = re.compile(r"(?<!^)(?=[A-Z])")


def _top_level_snake_case(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload's top-level keys as the library's dataclass fields; nested dicts keep
    their JSON (camelCase) keys, which the library's own snake-to-camel pass leaves as
    they are. A deep conversion both ways costs ~60 us per TransactionEvent."""
    return {_CAPITAL.sub("_", key).lower(): value for key, value in payload.items()}
