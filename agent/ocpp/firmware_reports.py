"""Delivery of the firmware journal's queued reports, for both versions' sessions.

The firmware manager and the diagnostics service queue their reports (firmware and log
status, security events) as neutral messages in the persisted journal outbox. Each OCPP
session runs :func:`deliver_queued_reports` with its version's projection of a message
onto a CALL (``v16/firmware.py``, ``v201/firmware.py``); a report queued before a reboot
thus reaches the CSMS in whichever version the next connection speaks. No ``ocpp``
import: the version module names its CALLERROR exception.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from firmware_update.journal import OutboxMessage
from firmware_update.manager import FirmwareManager
from firmware_update.status import UploadStatus

log = logging.getLogger(__name__)

UPLOAD_LOG_STATUS: dict[UploadStatus, str] = {
    UploadStatus.IDLE: "Idle",
    UploadStatus.UPLOADING: "Uploading",
    UploadStatus.UPLOADED: "Uploaded",
    UploadStatus.UPLOAD_FAILED: "UploadFailure",
    UploadStatus.BAD_MESSAGE: "BadMessage",
    UploadStatus.NOT_SUPPORTED_OPERATION: "NotSupportedOperation",
    UploadStatus.PERMISSION_DENIED: "PermissionDenied",
}
"""``UploadLogStatusEnumType`` of 2.0.1 and of the 1.6 security whitepaper (the same
spelling in both; note UploadFailure, not UploadFailed)."""


async def deliver_queued_reports(
    manager: FirmwareManager,
    send: Callable[[Any], Awaitable[Any]],
    to_call: Callable[[OutboxMessage], Any | None],
    refused: type[Exception],
) -> None:
    """Send the queued reports in order for as long as the session runs (never returns).

    Reads the journal in batches; waits on ``manager.wait_reports`` while it is empty.
    A report leaves the queue once the CSMS answered it; one that ``to_call`` projects
    to None (the version has no such report) leaves it unsent. A ``refused`` answer
    (CALLERROR) is logged and the report dropped: resending the same payload would be
    refused again.

    Args:
        manager: The firmware manager owning the journal outbox.
        send: Sends one CALL and returns its answer (the session's call).
        to_call: The version's CALL of a queued message, or None.
        refused: The exception ``send`` raises on a CALLERROR.

    Raises:
        Exception: Anything else ``send`` raises (a dead link) ends the loop; the
            report stays queued for the next connection.
    """
    while True:
        batch = await manager.journal.pending()
        if not batch:
            await manager.wait_reports()
            continue
        for msg in batch:
            payload = to_call(msg)
            if payload is not None:
                try:
                    await send(payload)
                except refused as e:
                    log.warning("%s refused by the CSMS: %s", type(payload).__name__, e)
            await manager.acknowledge(msg.seq)


__all__ = ["UPLOAD_LOG_STATUS", "deliver_queued_reports"]
