"""One OCPP 2.0.1 connection: boot, then the heartbeat, status, sample, event,
reservation, transaction and firmware-report senders, and what the CSMS's requests
need from the session.

The version-neutral parts (task group, CALL wrapper, boot retry, heartbeat,
liveness) are ``agent.ocpp.session.OcppSession``; the CSMS -> station routing is
``handlers.ChargePoint201``; device-model requests are ``reports``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import TYPE_CHECKING, Any

from ocpp.charge_point import camel_to_snake_case
from ocpp.exceptions import OCPPError
from ocpp.v201 import call, call_result

from agent.authorization.authorizer import IdTagInfo
from agent.events import (
    AuthorizationStatus,
    EvseStatusChanged,
    MeterSample,
    ReadingContext,
    StopReason,
)
from agent.evse.controller import EvseController
from agent.ocpp.outbox import SendOutcome
from agent.ocpp.session import OcppSession
from agent.ocpp.v201 import authorization as auth201
from agent.ocpp.v201 import firmware as fw201
from agent.ocpp.v201 import mapping, transactions
from agent.ocpp.v201.handlers import ChargePoint201
from agent.ocpp.v201.reports import DeviceModelRequests
from agent.ocpp.v201.smart_charging import SmartCharging201
from agent.transactions.journal import QueuedTxMessage
from firmware_update.journal import UpdateRequest
from firmware_update.status import FirmwareStatus, UploadStatus

if TYPE_CHECKING:
    from agent.ocpp.v201.adapter import V201Adapter

log = logging.getLogger(__name__)


class Session201(OcppSession):
    """One connection: boot, then heartbeat, status and event senders.

    Args:
        adapter: The adapter (settings, station, journal, queues), read at use.
        ws: The open WebSocket.
        charge_point_id: Our identity.
    """

    refusal = OCPPError
    task_prefix = "ocpp201"
    label = "OCPP 2.0.1"
    adapter: V201Adapter

    def __init__(self, adapter: V201Adapter, ws: Any, charge_point_id: str) -> None:
        super().__init__(adapter, ws)
        self.cp = ChargePoint201(self, charge_point_id, ws, adapter.call_timeout_s, adapter.trace)
        # B05-B08: GetVariables / SetVariables / reports (pages prepared per request)
        self.device_model_requests = DeviceModelRequests(
            adapter.device_model, adapter.settings, adapter.clock
        )
        # K: smart charging requests (ReportChargingProfiles pages prepared per request)
        self.smart = SmartCharging201(adapter.station, self.device_model_requests.items_per_message)
        # an UpdateFirmware answered but not yet handed to the firmware manager
        self.firmware_request: UpdateRequest | None = None

    async def _teardown(self) -> None:
        if self.adapter.journal is not None:
            self.adapter.journal.connectivity.set_online(False)  # later events: offline
        await self._settle_acks()  # answered messages must be journalled as delivered

    def on_result(self, unique_id: str, payload: dict[str, Any]) -> None:
        """See a CALLRESULT in the receive path, before the caller resumes: the CSMS
        may send its next CALL right behind the boot answer (B02/B03 apply at once)."""
        self._note_boot_answer(unique_id, payload)
        queued = self._tx_calls.pop(unique_id, None)
        if queued is not None and self.adapter.journal is not None:
            # From here the message counts as delivered, even if the link drops now.
            self._acks[unique_id] = asyncio.create_task(
                self.adapter.journal.acknowledge(queued.seq)
            )

    async def _main(self) -> None:
        await self._boot(lambda: self._send_boot(self.adapter.boot_reason), wake_on_accept=True)
        if self.adapter.journal is not None:
            self.adapter.journal.connectivity.set_online(True)
        self.adapter.registered.set()
        # B01.FR.?? / G01: the status of every connector after the boot
        self.adapter.queue_all_statuses()
        sent: dict[int, str] = {}  # connectorStatus last sent in this session
        adapter = self.adapter
        async with asyncio.TaskGroup() as group:
            group.create_task(self._heartbeat_loop(), name="ocpp201-heartbeat")
            group.create_task(
                adapter.statuses.drain(lambda evse_id, event: self._send_status(sent, event)),
                name="ocpp201-status",
            )
            group.create_task(adapter.events.drain(self._send_event), name="ocpp201-events")
            group.create_task(adapter.samples.drain(self._send_sample), name="ocpp201-samples")
            group.create_task(
                adapter.reservation_updates.run(self._send_reservation_update),
                name="ocpp201-reservations",
            )
            if adapter.firmware is not None:  # L01/N01 reports, security events
                group.create_task(
                    fw201.deliver_reports(adapter.firmware, self._call),
                    name="ocpp201-firmware",
                )
            if adapter.outbox is not None:
                group.create_task(adapter.outbox.run(self._send_tx_message), name="ocpp201-tx")

    # ------------------------------------------------------------- boot

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
        return await self._call_boot(
            call.BootNotification(charging_station=station, reason=reason.value)
        )

    def _heartbeat_request(self) -> Any:
        return call.Heartbeat()

    # ----------------------------------------------------- status, events

    async def _send_status(self, sent: dict[int, str], event: EvseStatusChanged) -> None:
        """G01: a connector's status goes out when it changes (every connector once per
        session, at boot). Neutral statuses that project onto the same 2.0.1 status
        (Preparing, Charging, Suspended*, Finishing are all Occupied) are not repeated
        (``sent``: connectorStatus last sent in this session, by EVSE); TriggerMessage
        sends its own."""
        fields = mapping.status_notification(event)
        if fields is None or sent.get(event.evse_id) == fields["connector_status"]:
            return
        payload = call.StatusNotification(**fields)
        if await self._call_or_warn(payload, "StatusNotification") is not None:
            sent[event.evse_id] = fields["connector_status"]

    async def _send_sample(self, item: tuple[int, MeterSample]) -> None:
        """J01 MeterValues outside a transaction (clock-aligned data of idle EVSEs; evse 0
        = the station total). Not transaction-related: the last ``SAMPLES_KEPT`` wait in
        memory for a connection, older ones are dropped."""
        evse_id, sample = item
        payload = call.MeterValues(evse_id=evse_id, meter_value=[mapping.meter_value(sample)])
        await self._call_or_warn(payload, f"MeterValues of evse {evse_id}")

    async def _send_event(self, data: dict[str, Any]) -> None:
        """N07 NotifyEvent, one event per message. seqNo numbers the parts of one
        message split with tbc (Part 2 NotifyEventRequest), so each is 0."""
        payload = call.NotifyEvent(
            generated_at=self.adapter.clock.iso_now(), seq_no=0, event_data=[data]
        )
        await self._call_or_warn(payload, "NotifyEvent")

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
        payload = call.DataTransfer(vendor_id=vendor_id, message_id=message_id, data=data)
        result = await self._call_or_warn(payload, "DataTransfer")
        if result is None:
            return None
        return str(result.status), result.data

    # ------------------------------------------------------- authorization

    async def authorize(self, id_tag: str) -> IdTagInfo | None:
        """C01: ask the CSMS; None when the answer is a CALLERROR."""
        payload = call.Authorize(id_token=mapping.id_token(id_tag))
        result = await self._call_or_warn(payload, "Authorize")
        if result is None:
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
        payload = call.ReservationStatusUpdate(
            reservation_id=reservation_id, reservation_update_status=status
        )
        # refused: a retry would be refused again
        await self._call_or_warn(payload, f"ReservationStatusUpdate {reservation_id}")

    # ------------------------------------------------------- device model

    def send_prepared_report(self, request_id: int) -> None:
        """Send the pages of a report answered Accepted (after that answer went out)."""
        items = self.device_model_requests.take_report(request_id)
        if items is not None:
            self.spawn(self.device_model_requests.send_report(request_id, items, self._call))

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
            case "MeterValues" if evse_id == 0:  # the station: the sum of the EVSE meters
                total = station.station_sample(
                    ReadingContext.TRIGGER, adapter.settings.get_list("meter_values_sampled_data")
                )
                if total is not None:
                    await self._call(
                        call.MeterValues(evse_id=0, meter_value=[mapping.meter_value(total)])
                    )
            case "MeterValues":
                for ctl_id in sorted(station.controllers):
                    if evse_id in (None, ctl_id):
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


_CAPITAL = re.compile(r"(?<!^)(?=[A-Z])")


def _top_level_snake_case(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload's top-level keys as the library's dataclass fields; nested dicts keep
    their JSON (camelCase) keys, which the library's own snake-to-camel pass leaves as
    they are. A deep conversion both ways costs ~60 us per TransactionEvent."""
    return {_CAPITAL.sub("_", key).lower(): value for key, value in payload.items()}
