"""OCPP 2.0.1 projection of the firmware and log core (blocks L and N01).

Pure request -> neutral request and neutral report -> 2.0.1 CALL functions, plus
the delivery loop the 2.0.1 session runs for the reports the firmware manager and the
diagnostics service queue in the persisted journal outbox (the same queue the 1.6
session delivers from: a report queued before a reboot reaches the CSMS in whichever
version the next connection speaks). The core (``firmware_update``) never sees an
OCPP message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.v201 import call

from agent.ocpp.fields import field_iso_time
from agent.ocpp.firmware_reports import UPLOAD_LOG_STATUS, deliver_queued_reports
from firmware_update.diagnostics import UploadRequest
from firmware_update.journal import MessageKind, OutboxMessage, UpdateRequest
from firmware_update.manager import FirmwareManager
from firmware_update.status import (
    FirmwareStatus,
    LogKind,
    UpdateKind,
    UpdateResponse,
    UploadStatus,
)

log = logging.getLogger(__name__)

DEFAULT_RETRIES = 3
DEFAULT_RETRY_INTERVAL_S = 60
DEFAULT_LOG_RETRIES = 1
DEFAULT_LOG_RETRY_INTERVAL_S = 30

FIRMWARE_STATUS: dict[FirmwareStatus, str] = {s: s.value for s in FirmwareStatus}
"""2.0.1 FirmwareStatusEnumType has every neutral status with the same spelling."""

LOG_STATUS = UPLOAD_LOG_STATUS
"""2.0.1 UploadLogStatusEnumType (note: UploadFailure, not UploadFailed)."""

LOG_TYPES: dict[str, LogKind] = {
    "DiagnosticsLog": LogKind.DIAGNOSTICS_LOG,
    "SecurityLog": LogKind.SECURITY_LOG,
}
"""2.0.1 LogEnumType -> the neutral bundle kind."""


def _non_negative(value: int | None, default: int) -> int:
    return default if value is None else max(0, int(value))


def update_request(
    request_id: int, firmware: dict[str, Any], retries: int | None, retry_interval_s: int | None
) -> UpdateRequest:
    """The neutral request of an UpdateFirmware (L01; snake_case ``firmware`` dict).

    A request without signingCertificate and signature is a plain update (L01.FR.??:
    the station may accept it; the manager decides, ``evaluate``).

    Raises:
        ValueError: A time is not ISO 8601.
        KeyError: ``location`` or ``retrieve_date_time`` is missing.
    """
    install = firmware.get("install_date_time")
    certificate = firmware.get("signing_certificate")
    signature = firmware.get("signature")
    signed = certificate is not None or signature is not None
    return UpdateRequest(
        request_id=request_id,
        kind=UpdateKind.SIGNED if signed else UpdateKind.PLAIN,
        location=str(firmware["location"]),
        retrieve_at=field_iso_time(firmware["retrieve_date_time"], "retrieveDateTime"),
        install_at=field_iso_time(install, "installDateTime") if install else None,
        retries=_non_negative(retries, DEFAULT_RETRIES),
        retry_interval_s=float(_non_negative(retry_interval_s, DEFAULT_RETRY_INTERVAL_S)),
        signing_certificate=str(certificate) if certificate is not None else None,
        signature=str(signature) if signature is not None else None,
    )


def update_firmware(
    manager: FirmwareManager | None,
    request_id: int,
    firmware: dict[str, Any],
    retries: int | None,
    retry_interval_s: int | None,
    *,
    accept_unsigned: bool = False,
) -> tuple[str, UpdateRequest | None]:
    """UpdateFirmware (L01/L02): the answer and the request to start after it.

    Returns:
        (UpdateFirmwareStatusEnumType: Accepted, Rejected, AcceptedCanceled or
        InvalidCertificate; the request to hand to ``FirmwareManager.request`` once the
        answer went out, None when nothing is to be done). InvalidCertificate still
        returns the request: the manager then queues the security event
        InvalidFirmwareSigningCertificate (L01.FR.02) without downloading.
    """
    if manager is None:
        return UpdateResponse.REJECTED.value, None
    try:
        request = update_request(request_id, firmware, retries, retry_interval_s)
    except (ValueError, KeyError) as e:
        log.warning("UpdateFirmware %d rejected: %s", request_id, e)
        return UpdateResponse.REJECTED.value, None
    if request.kind is UpdateKind.PLAIN and not accept_unsigned:
        log.warning("UpdateFirmware %d rejected: no signature (secure update only)", request_id)
        return UpdateResponse.REJECTED.value, None
    answer = manager.evaluate(request)
    log.info("UpdateFirmware %d: %s", request_id, answer)
    return answer.value, None if answer is UpdateResponse.REJECTED else request


def log_request(
    log_type: str,
    log_parameters: dict[str, Any],
    request_id: int,
    retries: int | None,
    retry_interval_s: int | None,
) -> UploadRequest:
    """The neutral upload of a GetLog (N01; snake_case ``log`` dict).

    Raises:
        ValueError: Unknown logType or a time that is not ISO 8601.
        KeyError: ``remote_location`` is missing.
    """
    kind = LOG_TYPES.get(log_type)
    if kind is None:
        raise ValueError(f"logType {log_type!r} not supported")
    oldest = log_parameters.get("oldest_timestamp")
    latest = log_parameters.get("latest_timestamp")
    return UploadRequest(
        kind=kind,
        location=str(log_parameters["remote_location"]),
        request_id=request_id,
        retries=_non_negative(retries, DEFAULT_LOG_RETRIES),
        retry_interval_s=float(_non_negative(retry_interval_s, DEFAULT_LOG_RETRY_INTERVAL_S)),
        oldest=field_iso_time(oldest, "oldestTimestamp") if oldest else None,
        latest=field_iso_time(latest, "latestTimestamp") if latest else None,
    )


def get_log_answer(filename: str | None, cancelled: bool) -> dict[str, Any]:
    """GetLogResponse fields: Rejected without a file name (unusable location),
    AcceptedCanceled when an earlier upload was cancelled (N01.FR.12), else Accepted."""
    if filename is None:
        return {"status": "Rejected"}
    return {"status": "AcceptedCanceled" if cancelled else "Accepted", "filename": filename}


def trigger_firmware_status(status: FirmwareStatus, request_id: int | None) -> dict[str, Any]:
    """FirmwareStatusNotification fields for TriggerMessage (L01.FR.25/26: Idle, and no
    requestId, when no update runs)."""
    if status is FirmwareStatus.IDLE:
        return {"status": "Idle"}
    return {"status": FIRMWARE_STATUS[status], "request_id": request_id}


def trigger_log_status(status: UploadStatus, request_id: int | None) -> dict[str, Any]:
    """LogStatusNotification fields for TriggerMessage (N01.FR.?: Uploading with the
    requestId while an upload runs, else Idle without one)."""
    if status is UploadStatus.UPLOADING:
        return {"status": LOG_STATUS[status], "request_id": request_id}
    return {"status": "Idle"}


def outbox_call(msg: OutboxMessage) -> Any | None:
    """The 2.0.1 CALL of a queued report, or None when 2.0.1 has no such report."""
    payload = msg.payload
    match msg.kind:
        case MessageKind.FIRMWARE_STATUS:
            status = FirmwareStatus(payload["status"])
            request_id = payload.get("request_id")
            # requestId SHALL be there unless Idle (a 1.6 plain update queued before a
            # version switch has 0)
            return call.FirmwareStatusNotification(
                status=FIRMWARE_STATUS[status],
                request_id=None if request_id is None else int(request_id),
            )
        case MessageKind.SECURITY_EVENT:
            tech_info = payload.get("tech_info")
            return call.SecurityEventNotification(
                type=str(payload["type"])[:50],
                timestamp=str(payload["timestamp"]),
                tech_info=str(tech_info)[:255] if tech_info else None,
            )
        case MessageKind.LOG_STATUS:
            upload = UploadStatus(payload["status"])
            request_id = payload.get("request_id")
            return call.LogStatusNotification(
                status=LOG_STATUS[upload],
                request_id=None if request_id is None else int(request_id),
            )
    return None  # pragma: no cover


async def deliver_reports(manager: FirmwareManager, send: Callable[[Any], Awaitable[Any]]) -> None:
    """Send queued firmware, security and log reports in order while the session runs.

    A report leaves the queue once the CSMS answered it; a CALLERROR is logged and the
    report dropped (the same payload would be refused again). A dead link raises out
    of ``send`` and the report stays queued for the next connection.
    """
    await deliver_queued_reports(manager, send, outbox_call, OCPPError)
