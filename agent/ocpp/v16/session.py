"""One OCPP 1.6J connection: boot, then the heartbeat, status, sample, transaction
and firmware-report senders, and what the CSMS's requests need from the session.

The version-neutral parts (task group, CALL wrapper, boot retry, heartbeat,
liveness) are ``agent.ocpp.session.OcppSession``; the CSMS -> charger routing is
``handlers.ChargePoint16``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, Any

from ocpp.exceptions import OCPPError
from ocpp.v16 import call, call_result

from agent.authorization.authorizer import IdTagInfo
from agent.authorization.local_list import ListEntry, UpdateStatus, UpdateType
from agent.clock import parse_iso
from agent.events import (
    AuthorizationStatus,
    EvseStatusChanged,
    MeterSample,
    ReadingContext,
    StopReason,
)
from agent.ocpp.outbox import SendOutcome
from agent.ocpp.session import LinkDead, OcppSession
from agent.ocpp.v16 import firmware as fw16
from agent.ocpp.v16 import keys, mapping
from agent.ocpp.v16.handlers import ChargePoint16
from agent.ocpp.v16.smart_charging import SmartCharging16
from agent.reservations.book import Reservation, ReserveStatus
from agent.transactions.journal import QueuedTxMessage
from firmware_update.diagnostics import UploadRequest
from firmware_update.journal import UpdateRequest
from firmware_update.status import LogKind, UploadStatus

if TYPE_CHECKING:
    from agent.ocpp.v16.adapter import V16Adapter

log = logging.getLogger(__name__)

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


class Session16(OcppSession):
    """One connection: boot, then heartbeat, status and transaction senders.

    Args:
        adapter: The adapter (settings, station, journal, queues), read at use.
        ws: The open WebSocket.
        charge_point_id: Our identity.
    """

    refusal = OCPPError
    task_prefix = "ocpp"
    label = "OCPP"
    adapter: V16Adapter

    def __init__(self, adapter: V16Adapter, ws: Any, charge_point_id: str) -> None:
        super().__init__(adapter, ws)
        self.cp = ChargePoint16(self, charge_point_id, ws, adapter.call_timeout_s, adapter.trace)
        # answered transaction messages the sender has not acknowledged yet, by id
        self._answered: dict[str, QueuedTxMessage] = {}
        # CSMS transaction ids learned in the receive path, before the journal has them
        self.answered_starts: dict[int, str] = {}
        # SmartCharging: Set/Clear/GetCompositeSchedule, RemoteStart's TxProfile
        self.smart = SmartCharging16(
            adapter.station, adapter.clock, adapter.journal, self.answered_starts
        )
        # an update request answered but not yet handed to the firmware manager
        self.firmware_request: UpdateRequest | None = None

    async def _teardown(self) -> None:
        self.adapter.journal.connectivity.set_online(False)  # later events: offline
        # Answers read whose sender never resumed (the link dropped): journal them,
        # or the messages would be sent again.
        journal = self.adapter.journal
        await self._settle_acks(*(journal.acknowledge(m.seq) for m in self._answered.values()))

    def on_result(self, unique_id: str, payload: dict[str, Any]) -> None:
        """Look at a CALLRESULT in the receive path, before the caller resumes.

        The CSMS may send its next CALL right behind an answer; registration state
        and CSMS transaction ids must already apply to it (OCPP 1.6 4.2: nothing is
        answered while Rejected; RemoteStop may name a transaction just started).
        """
        self._note_boot_answer(unique_id, payload)
        queued = self._tx_calls.pop(unique_id, None)
        if queued is None:
            return
        # From here the message counts as delivered: if the link drops before the
        # sender resumes, the session's teardown journals it (no second send).
        if queued.kind != "start":
            self._answered[unique_id] = queued
            return
        csms_tx_id = payload.get("transactionId")
        if not isinstance(csms_tx_id, int):
            return  # not a usable answer: the sender reports the violation
        self.answered_starts[csms_tx_id] = queued.tx_id
        info = payload.get("idTagInfo")
        status = str(info.get("status", "Invalid")) if isinstance(info, dict) else "Invalid"
        # A start is journalled at once: RemoteStop and later messages need its id.
        self._acks[unique_id] = asyncio.create_task(
            self.adapter.journal.acknowledge_start(queued.seq, csms_tx_id, status)
        )

    async def _main(self) -> None:
        await self._boot(self._send_boot, wake_on_accept=False)
        self.adapter.journal.connectivity.set_online(True)
        self.adapter.registered.set()
        self.adapter.queue_all_statuses()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._heartbeat_loop(), name="ocpp-heartbeat")
            group.create_task(self.adapter.statuses.drain(self._send_status), name="ocpp-status")
            group.create_task(self._outbox_loop(), name="ocpp-outbox")
            if self.adapter.firmware is not None:
                group.create_task(
                    fw16.deliver_reports(self.adapter.firmware, self._call), name="ocpp-firmware"
                )
            group.create_task(self.adapter.samples.drain(self._send_sample), name="ocpp-samples")

    async def _send_boot(self) -> Any:
        """One BootNotification; an Accepted answer sets the clock and heartbeat."""
        boot = self.adapter.boot
        return await self._call_boot(
            call.BootNotification(
                charge_point_vendor=boot.vendor,
                charge_point_model=boot.model,
                charge_point_serial_number=boot.serial_number or None,
                firmware_version=boot.firmware_version,
            )
        )

    def _heartbeat_request(self) -> Any:
        return call.Heartbeat()

    # ------------------------------------------------------- TriggerMessage

    def can_trigger(self, message: str, connector_id: int | None) -> bool:
        """Whether TriggerMessage(message, connector_id) is Accepted (1.6 5.17).

        Every message the 1.6 schema allows can be triggered; an unknown connector
        is Rejected. MeterValues for connector 0 is the station total (the sum of
        the EVSE meters, ``station_sample``).
        """
        if message not in TRIGGERABLE or self.rejected:
            return False
        if connector_id is None or connector_id == 0:
            return True
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
            case "MeterValues" if connector_id == 0:
                await self._send_station_meter_values()
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

    async def _send_station_meter_values(self) -> None:
        """Connector 0: the sum over every EVSE meter (nothing before all answered)."""
        sample = self.adapter.station.station_sample(
            ReadingContext.TRIGGER, self.adapter.settings.get_list("meter_values_sampled_data")
        )
        if sample is not None:
            await self._call(
                call.MeterValues(connector_id=0, meter_value=[mapping.meter_value(sample)])
            )

    async def _send_status(self, connector_id: int, event: EvseStatusChanged) -> None:
        payload = call.StatusNotification(**mapping.status_notification(event))
        await self._call_or_warn(payload, "StatusNotification")

    async def _outbox_loop(self) -> None:
        await self.adapter.outbox.run(self._send_tx_message)

    async def _send_sample(self, item: tuple[int, MeterSample]) -> None:
        """MeterValues without a transaction (clock-aligned data of idle connectors and
        connector 0). Not transaction-related (1.6 3.7): not journalled; the last
        ``SAMPLES_KEPT`` wait in memory for a connection, older ones are dropped."""
        connector_id, sample = item
        payload = call.MeterValues(
            connector_id=connector_id, meter_value=[mapping.meter_value(sample)]
        )
        await self._call_or_warn(payload, f"MeterValues of connector {connector_id}")

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
            tx_profile = self.smart.remote_start_profile(connector_id, profile)
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
