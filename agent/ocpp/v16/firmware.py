"""OCPP 1.6J projection of the firmware and diagnostics core (FirmwareManagement
profile + security whitepaper edition 2, section 4 and 5).

Pure mapping tables (version-neutral status -> 1.6 spelling) plus the small glue the
adapter's handlers and its delivery task call. The core (``firmware_update``) never
sees an OCPP message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ocpp.exceptions import NotSupportedError, OCPPError
from ocpp.v16 import call

from agent.ocpp.fields import field_iso_time
from agent.ocpp.firmware_reports import UPLOAD_LOG_STATUS, deliver_queued_reports
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

# 1.6 4.5 FirmwareStatus knows only these; the others are whitepaper/2.0.1 detail that a
# plain update does not report (None).
PLAIN_STATUS: dict[FirmwareStatus, str | None] = {
    FirmwareStatus.DOWNLOADED: "Downloaded",
    FirmwareStatus.DOWNLOAD_FAILED: "DownloadFailed",
    FirmwareStatus.DOWNLOADING: "Downloading",
    FirmwareStatus.DOWNLOAD_SCHEDULED: None,
    FirmwareStatus.DOWNLOAD_PAUSED: None,
    FirmwareStatus.IDLE: "Idle",
    FirmwareStatus.INSTALLATION_FAILED: "InstallationFailed",
    FirmwareStatus.INSTALLING: "Installing",
    FirmwareStatus.INSTALLED: "Installed",
    FirmwareStatus.INSTALL_REBOOTING: None,  # Installing was already sent
    FirmwareStatus.INSTALL_SCHEDULED: None,
    FirmwareStatus.INSTALL_VERIFICATION_FAILED: "InstallationFailed",
    FirmwareStatus.INVALID_SIGNATURE: "InstallationFailed",
    FirmwareStatus.SIGNATURE_VERIFIED: None,
}

# Whitepaper FirmwareStatusEnumType has every neutral status, same spelling.
SIGNED_STATUS: dict[FirmwareStatus, str] = {s: s.value for s in FirmwareStatus}

# 1.6 DiagnosticsStatus: Idle, Uploaded, UploadFailed, Uploading.
DIAGNOSTICS_STATUS: dict[UploadStatus, str] = {
    UploadStatus.IDLE: "Idle",
    UploadStatus.UPLOADING: "Uploading",
    UploadStatus.UPLOADED: "Uploaded",
    UploadStatus.UPLOAD_FAILED: "UploadFailed",
    UploadStatus.BAD_MESSAGE: "UploadFailed",
    UploadStatus.NOT_SUPPORTED_OPERATION: "UploadFailed",
    UploadStatus.PERMISSION_DENIED: "UploadFailed",
}

# Whitepaper UploadLogStatusEnumType (note: UploadFailure, not UploadFailed).
LOG_STATUS = UPLOAD_LOG_STATUS


def trigger_status(status: FirmwareStatus) -> str:
    """FirmwareStatusNotification for TriggerMessage: the nearest 1.6 status."""
    plain = PLAIN_STATUS[status]
    if plain is not None:
        return plain
    if status in (FirmwareStatus.DOWNLOAD_SCHEDULED, FirmwareStatus.DOWNLOAD_PAUSED):
        return "Downloading"
    if status is FirmwareStatus.INSTALL_REBOOTING:
        return "Installing"
    return "Downloaded"  # SignatureVerified, InstallScheduled: downloaded, not installed


def signed_request(
    request_id: int, firmware: dict[str, Any], retries: int | None, retry_interval_s: int | None
) -> UpdateRequest:
    """The neutral request of a SignedUpdateFirmware (snake_case ``firmware`` dict).

    Raises:
        ValueError: A time is not ISO 8601.
    """
    install = firmware.get("install_date_time")
    return UpdateRequest(
        request_id=request_id,
        kind=UpdateKind.SIGNED,
        location=str(firmware["location"]),
        retrieve_at=field_iso_time(firmware["retrieve_date_time"], "retrieveDateTime"),
        install_at=field_iso_time(install, "installDateTime") if install else None,
        retries=DEFAULT_RETRIES if retries is None else max(0, retries),
        retry_interval_s=float(
            DEFAULT_RETRY_INTERVAL_S if retry_interval_s is None else max(0, retry_interval_s)
        ),
        signing_certificate=str(firmware["signing_certificate"]),
        signature=str(firmware["signature"]),
    )


def plain_request(
    location: str, retrieve_date: str, retries: int | None, retry_interval_s: int | None
) -> UpdateRequest:
    """The neutral request of a 1.6 UpdateFirmware (no requestId in 1.6: 0)."""
    return UpdateRequest(
        request_id=0,
        kind=UpdateKind.PLAIN,
        location=location,
        retrieve_at=field_iso_time(retrieve_date, "retrieveDate"),
        retries=DEFAULT_RETRIES if retries is None else max(0, retries),
        retry_interval_s=float(
            DEFAULT_RETRY_INTERVAL_S if retry_interval_s is None else max(0, retry_interval_s)
        ),
    )


def update_firmware(
    manager: FirmwareManager | None,
    accept_plain: bool,
    location: str,
    retrieve_date: str,
    retries: int | None,
    retry_interval_s: int | None,
) -> UpdateRequest:
    """UpdateFirmware (1.6 5.19): the request to start after the (empty) answer.

    Once signed updates are supported, a plain request is a CALLERROR NotSupported
    (whitepaper L01.FR.20) unless the vendor allows unsigned images
    (``[firmware] accept_unsigned_updates``).

    Raises:
        NotSupportedError: Refused as above, or the retrieveDate is not a time.
    """
    if manager is None or not accept_plain:
        raise NotSupportedError(details={"cause": "use SignedUpdateFirmware"})
    try:
        return plain_request(location, retrieve_date, retries, retry_interval_s)
    except ValueError as e:
        log.warning("UpdateFirmware refused: %s", e)
        raise NotSupportedError(details={"cause": str(e)}) from None


def signed_update_firmware(
    manager: FirmwareManager | None,
    request_id: int,
    firmware: dict[str, Any],
    retries: int | None,
    retry_interval_s: int | None,
) -> tuple[str, UpdateRequest | None]:
    """SignedUpdateFirmware (whitepaper 5.x): the answer (Accepted, Rejected,
    AcceptedCanceled or InvalidCertificate) and the request to hand to the manager
    after the answer went out (None: nothing to do)."""
    if manager is None:
        return "Rejected", None
    try:
        request = signed_request(request_id, firmware, retries, retry_interval_s)
    except (ValueError, KeyError) as e:
        log.warning("SignedUpdateFirmware %d rejected: %s", request_id, e)
        return "Rejected", None
    answer = manager.evaluate(request)
    log.info("SignedUpdateFirmware %d: %s", request_id, answer)
    # InvalidCertificate still goes to the manager: it queues the security event
    return answer.value, None if answer is UpdateResponse.REJECTED else request


def outbox_call(msg: OutboxMessage) -> Any | None:
    """The 1.6 CALL of a queued report, or None when 1.6 has no such status."""
    payload = msg.payload
    match msg.kind:
        case MessageKind.FIRMWARE_STATUS:
            status = FirmwareStatus(payload["status"])
            if payload.get("update_kind") == UpdateKind.PLAIN.value:
                plain = PLAIN_STATUS[status]
                return call.FirmwareStatusNotification(status=plain) if plain else None
            return call.SignedFirmwareStatusNotification(
                status=SIGNED_STATUS[status], request_id=int(payload["request_id"])
            )
        case MessageKind.SECURITY_EVENT:
            return call.SecurityEventNotification(
                type=str(payload["type"]),
                timestamp=str(payload["timestamp"]),
                tech_info=payload.get("tech_info"),
            )
        case MessageKind.LOG_STATUS:
            upload = UploadStatus(payload["status"])
            if payload.get("log_kind") == LogKind.DIAGNOSTICS.value:
                return call.DiagnosticsStatusNotification(status=DIAGNOSTICS_STATUS[upload])
            return call.LogStatusNotification(
                status=LOG_STATUS[upload], request_id=int(payload["request_id"])
            )
    return None  # pragma: no cover


async def deliver_reports(manager: FirmwareManager, send: Callable[[Any], Awaitable[Any]]) -> None:
    """Send queued reports in order for as long as the session runs.

    A report leaves the queue once the CSMS answered it; a CALLERROR is logged and the
    report dropped (resending the same payload would be refused again). A dead link
    raises out of ``send`` and the report stays queued for the next connection.
    """
    await deliver_queued_reports(manager, send, outbox_call, OCPPError)
