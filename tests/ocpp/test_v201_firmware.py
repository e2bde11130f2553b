"""OCPP 2.0.1 firmware update (L01), GetLog (N01) and their reports: the pure
projections as tables, then the whole agent against CsmsEmulator201 over loopback
(a signed release served by a loopback HTTP server, the dir-slot "reboot" being a
new ``App`` on the same data directory)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from ocpp.v201 import call

from agent.app import ExitReason
from agent.ocpp.v201 import firmware as fw201
from firmware_update.journal import MessageKind, OutboxMessage
from firmware_update.slots import DirSlots
from firmware_update.status import FirmwareStatus, LogKind, UploadStatus
from hil.csms import ReceivedCall
from hil.csms201 import CsmsEmulator201
from hil.fw_release import retrieve_due_now
from tests.conftest import GUARD_S, StartApp
from tests.firmware.release import (
    HAPPY_SEQUENCE,
    OLD_VERSION,
    ReleaseSite,
    firmware_statuses,
    site,
    wait_firmware_status,
)
from tests.ocpp.v201_helpers import CP, V201, registered201, start_registered

__all__ = ["site"]  # the fixture, imported

REQUEST_ID = 42

# ------------------------------------------------------------ pure projections


def _fw(**extra: Any) -> dict[str, Any]:
    return {"location": "https://x/fw.bin", "retrieve_date_time": "2030-01-01T00:00:00Z", **extra}


@pytest.mark.parametrize(
    ("firmware", "retries", "interval", "kind", "expect_retries", "expect_interval_s"),
    [
        (_fw(signing_certificate="PEM", signature="c2ln"), None, None, "signed", 3, 60.0),
        (_fw(signing_certificate="PEM", signature="c2ln"), 0, 5, "signed", 0, 5.0),
        (_fw(signature="c2ln"), -1, -7, "signed", 0, 0.0),
        (_fw(), 2, 1, "plain", 2, 1.0),
    ],
)
def test_update_request_projection(
    firmware: dict[str, Any],
    retries: int | None,
    interval: int | None,
    kind: str,
    expect_retries: int,
    expect_interval_s: float,
) -> None:
    request = fw201.update_request(9, firmware, retries, interval)
    assert (request.request_id, request.kind.value) == (9, kind)
    assert (request.retries, request.retry_interval_s) == (expect_retries, expect_interval_s)
    assert request.retrieve_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert request.install_at is None


@pytest.mark.parametrize(
    "firmware",
    [
        {"location": "https://x/fw.bin", "retrieve_date_time": "yesterday"},
        _fw(install_date_time="not a time"),
        {"retrieve_date_time": "2030-01-01T00:00:00Z"},
    ],
)
def test_malformed_update_requests_are_rejected(firmware: dict[str, Any]) -> None:
    with pytest.raises((ValueError, KeyError)):
        fw201.update_request(1, firmware, None, None)


def test_without_a_manager_or_unsigned_the_update_is_rejected() -> None:
    assert fw201.update_firmware(None, 1, _fw(signature="x"), None, None) == ("Rejected", None)


@pytest.mark.parametrize(
    ("log_type", "kind"),
    [("DiagnosticsLog", LogKind.DIAGNOSTICS_LOG), ("SecurityLog", LogKind.SECURITY_LOG)],
)
def test_log_request_projection(log_type: str, kind: LogKind) -> None:
    params = {"remote_location": "ftp://h/logs/", "oldest_timestamp": "2030-01-01T00:00:00Z"}
    upload = fw201.log_request(log_type, params, 5, None, 2)
    assert (upload.kind, upload.location, upload.request_id) == (kind, "ftp://h/logs/", 5)
    assert (upload.retries, upload.retry_interval_s) == (1, 2.0)
    assert upload.oldest == datetime(2030, 1, 1, tzinfo=UTC) and upload.latest is None


def test_unknown_log_type_is_refused() -> None:
    with pytest.raises(ValueError, match="logType"):
        fw201.log_request("Diagnostics", {"remote_location": "ftp://h/"}, 1, None, None)


@pytest.mark.parametrize(
    ("name", "cancelled", "answer"),
    [
        (None, False, {"status": "Rejected"}),
        ("f.tar.gz", False, {"status": "Accepted", "filename": "f.tar.gz"}),
        ("f.tar.gz", True, {"status": "AcceptedCanceled", "filename": "f.tar.gz"}),
    ],
)
def test_get_log_answer(name: str | None, cancelled: bool, answer: dict[str, Any]) -> None:
    assert fw201.get_log_answer(name, cancelled) == answer


def test_every_neutral_status_has_a_201_spelling() -> None:
    assert set(fw201.FIRMWARE_STATUS) == set(FirmwareStatus)
    assert set(fw201.LOG_STATUS) == set(UploadStatus)
    assert fw201.LOG_STATUS[UploadStatus.UPLOAD_FAILED] == "UploadFailure"


@pytest.mark.parametrize(
    ("status", "request_id", "fields"),
    [
        (FirmwareStatus.IDLE, 3, {"status": "Idle"}),
        (FirmwareStatus.DOWNLOADING, 3, {"status": "Downloading", "request_id": 3}),
    ],
)
def test_trigger_firmware_status(
    status: FirmwareStatus, request_id: int, fields: dict[str, Any]
) -> None:
    assert fw201.trigger_firmware_status(status, request_id) == fields


@pytest.mark.parametrize(
    ("msg", "action", "fields"),
    [
        (
            OutboxMessage(1, MessageKind.FIRMWARE_STATUS, {"status": "Installed", "request_id": 4}),
            "FirmwareStatusNotification",
            {"status": "Installed", "request_id": 4},
        ),
        (
            OutboxMessage(
                2,
                MessageKind.SECURITY_EVENT,
                {"type": "FirmwareUpdated", "timestamp": "t", "tech_info": "requestId 4"},
            ),
            "SecurityEventNotification",
            {"type": "FirmwareUpdated", "timestamp": "t", "tech_info": "requestId 4"},
        ),
        (
            OutboxMessage(
                3,
                MessageKind.LOG_STATUS,
                {"status": "UploadFailed", "request_id": 8, "log_kind": "SecurityLog"},
            ),
            "LogStatusNotification",
            {"status": "UploadFailure", "request_id": 8},
        ),
    ],
)
def test_queued_reports_become_201_calls(
    msg: OutboxMessage, action: str, fields: dict[str, Any]
) -> None:
    payload = fw201.outbox_call(msg)
    assert type(payload).__name__ == action
    for name, value in fields.items():
        assert getattr(payload, name) == value


# ------------------------------------------------------------------ end to end


@pytest.fixture
async def csms201(make_csms: object) -> AsyncIterator[CsmsEmulator201]:
    del make_csms  # torn down after the Apps, before the leak check
    async with CsmsEmulator201() as csms:
        yield csms


def _statuses(csms: CsmsEmulator201) -> list[str]:
    return firmware_statuses(csms, "FirmwareStatusNotification", CP, REQUEST_ID)


async def _status(csms: CsmsEmulator201, status: str) -> ReceivedCall:
    return await wait_firmware_status(csms, "FirmwareStatusNotification", status, CP)


async def _update(csms: CsmsEmulator201, firmware: dict[str, Any]) -> str:
    update = call.UpdateFirmware(request_id=REQUEST_ID, firmware=firmware)
    return str((await csms.call(CP, update)).status)


async def test_update_installs_reboots_and_reports_one_request_id(
    csms201: CsmsEmulator201,
    start_app: StartApp,
    site: ReleaseSite,
) -> None:
    image = site.release("release-2.0.0.tar.gz", "2.0.0", health_check_exit_code=0)
    first = await start_app(csms201, csms_options=V201, data_dir=site.data_dir, charge_point_id=CP)
    boot1 = await registered201(csms201)
    assert boot1.payload["reason"] == "PowerUp"

    firmware = site.firmware(image)
    assert await _update(csms201, firmware) == "Accepted"
    # L01.FR.06/07: the idle EVSE is made Unavailable before installing
    await csms201.wait_for(
        "StatusNotification",
        predicate=lambda c: (
            c.payload["evseId"] == 1 and c.payload["connectorStatus"] == "Unavailable"
        ),
        cp_id=CP,
        timeout_s=GUARD_S,
    )
    await _status(csms201, "InstallRebooting")
    assert await first.exited() == ExitReason.RESET  # the dir backend restarts the agent

    await start_app(csms201, csms_options=V201, data_dir=site.data_dir, charge_point_id=CP)
    boot2 = await registered201(csms201, after_seq=boot1.seq)
    assert boot2.payload["reason"] == "FirmwareUpdate"
    assert boot2.payload["chargingStation"]["firmwareVersion"] == "2.0.0"
    installed = await _status(csms201, "Installed")
    assert _statuses(csms201) == HAPPY_SEQUENCE
    # TC_L_01: BootNotification, SecurityEventNotification FirmwareUpdated, ..., Installed
    updated = csms201.calls("SecurityEventNotification", CP)
    assert [e.payload["type"] for e in updated] == ["FirmwareUpdated"]
    assert boot2.seq < updated[0].seq < installed.seq
    slots = DirSlots(site.data_dir / "slots", default_version=OLD_VERSION)
    assert slots.booted_version() == "2.0.0" and not slots.is_trial()


async def test_tampered_image_is_invalid_signature_with_its_security_event(
    csms201: CsmsEmulator201,
    start_app: StartApp,
    site: ReleaseSite,
) -> None:
    image, signature = site.tampered_release("release.tar.gz", "2.0.0")
    running = await start_registered(csms201, start_app, data_dir=site.data_dir)
    firmware = site.firmware(image, signature)
    assert await _update(csms201, firmware) == "Accepted"
    await _status(csms201, "InvalidSignature")
    event = await csms201.wait_for("SecurityEventNotification", cp_id=CP, timeout_s=GUARD_S)
    assert event.payload["type"] == "InvalidFirmwareSignature"
    assert _statuses(csms201) == ["Downloading", "Downloaded", "InvalidSignature"]
    assert not running.task.done()  # no reboot


async def test_certificate_of_another_root_is_invalid_certificate(
    csms201: CsmsEmulator201,
    start_app: StartApp,
    site: ReleaseSite,
) -> None:
    seen = site.server
    image = site.release("release.tar.gz", "2.0.0")
    await start_registered(csms201, start_app, data_dir=site.data_dir)
    firmware = site.foreign_firmware(image)
    assert await _update(csms201, firmware) == "InvalidCertificate"
    event = await csms201.wait_for("SecurityEventNotification", cp_id=CP, timeout_s=GUARD_S)
    assert event.payload["type"] == "InvalidFirmwareSigningCertificate"
    assert _statuses(csms201) == []
    assert seen.requests == []  # nothing was downloaded


async def test_unsigned_update_is_rejected(
    csms201: CsmsEmulator201, start_app: StartApp, site: ReleaseSite
) -> None:
    seen = site.server
    await start_registered(csms201, start_app)
    due = retrieve_due_now()
    plain = {"location": f"{site.url}/x.tar.gz", "retrieve_date_time": due}
    assert await _update(csms201, plain) == "Rejected"
    assert seen.requests == []


async def test_triggered_statuses_are_idle_when_nothing_runs(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    await start_registered(csms201, start_app)
    for message in ("FirmwareStatusNotification", "LogStatusNotification"):
        trigger = call.TriggerMessage(requested_message=message)
        assert (await csms201.call(CP, trigger)).status == "Accepted"
        got = await csms201.wait_for(message, cp_id=CP, timeout_s=GUARD_S)
        assert got.payload == {"status": "Idle"}


async def test_get_log_uploads_and_reports_with_its_request_id(
    csms201: CsmsEmulator201, start_app: StartApp, site: ReleaseSite
) -> None:
    seen = site.server
    await start_registered(csms201, start_app)
    get_log = call.GetLog(
        log={"remote_location": f"{site.url}/"}, log_type="SecurityLog", request_id=11, retries=0
    )
    answer = await csms201.call(CP, get_log)
    assert answer.status == "Accepted"
    assert "securitylog" in answer.filename
    done = await csms201.wait_for(
        "LogStatusNotification",
        predicate=lambda c: c.payload["status"] != "Uploading",
        cp_id=CP,
        timeout_s=GUARD_S,
    )
    assert done.payload == {"status": "Uploaded", "requestId": 11}
    statuses = [c.payload["status"] for c in csms201.calls("LogStatusNotification", CP)]
    assert statuses == ["Uploading", "Uploaded"]
    assert [r.method for r in seen.requests] == ["PUT"]
    bundle = seen.uploads[f"/{answer.filename}"]
    assert bundle[:2] == b"\x1f\x8b"  # a gzip bundle


async def test_get_log_to_an_unusable_location_is_rejected(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    await start_registered(csms201, start_app)
    get_log = call.GetLog(
        log={"remote_location": "gopher://h/x"}, log_type="DiagnosticsLog", request_id=12
    )
    assert (await csms201.call(CP, get_log)).status == "Rejected"
