"""Diagnostics and log bundles: content, redaction, and GetDiagnostics / GetLog end to end
(HTTP PUT to a loopback server, status notifications at the CSMS)."""

from __future__ import annotations

import io
import json
import logging
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ocpp.v16 import call

from firmware_update.diagnostics import (
    REDACTED,
    BundleSources,
    FrameRecorder,
    build_bundle,
    ensure_file_log,
    redact,
)
from firmware_update.status import LogKind
from hil.csms import CsmsEmulator
from hil.fw_pki import FileServer
from tests.conftest import GUARD_S, StartApp, registered

CP = "DIAG-CP"


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        out = {}
        for member in tar.getmembers():
            extracted = tar.extractfile(member)
            assert extracted is not None
            out[member.name] = extracted.read()
        return out


def test_redact_hides_secrets_at_any_depth() -> None:
    config = {
        "csms": {"url": "wss://x", "basic_auth_password": "hunter2hunter2hunt"},
        "evse": [{"meter": {"options": {"api_token": "t0k", "port": 502}}}],
        "station": {"client_key_file": "/etc/key.pem", "charge_point_id": "CP"},
    }
    out = redact(config)
    assert out["csms"] == {"url": "wss://x", "basic_auth_password": REDACTED}
    assert out["evse"][0]["meter"]["options"] == {"api_token": REDACTED, "port": 502}
    assert out["station"]["client_key_file"] == "/etc/key.pem"  # a path, not a key
    assert out["station"]["charge_point_id"] == "CP"


def test_frame_recorder_window_and_redaction() -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    frames = FrameRecorder(lambda: now[0], max_frames=2)
    frames("recv", '[2,"1","Heartbeat",{}]')
    now[0] += timedelta(minutes=1)
    secret = '[2,"2","ChangeConfiguration",{"key":"AuthorizationKey","value":"s3cr3t"}]'
    frames("recv", secret)
    now[0] += timedelta(minutes=1)
    frames("send", '[3,"2",{"status":"Accepted"}]')
    lines = [json.loads(line) for line in frames.lines()]
    assert len(lines) == 2  # ring of 2
    assert "s3cr3t" not in lines[0]["frame"] and REDACTED in lines[0]["frame"]
    assert frames.lines(oldest=now[0]) == frames.lines()[1:]


def test_bundle_holds_logs_trace_config_and_hal(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "agent.log").write_text("ordinary line\nfirmware signature checked\n")
    frames = FrameRecorder(lambda: datetime.now(UTC))
    frames("send", '[2,"1","Heartbeat",{}]')
    sources = BundleSources(
        data_dir=tmp_path,
        config=lambda: {"csms": {"basic_auth_password": "pw-pw-pw-pw-pw-pw"}},
        hal_status=lambda: {"1": {"status": "Available", "faulted": False}},
        frames=frames,
    )
    full = _members(build_bundle(sources, tmp_path / "d.tar.gz", LogKind.DIAGNOSTICS).read_bytes())
    assert set(full) == {"logs/agent.log", "ocpp-trace.jsonl", "config.json", "hal-status.json"}
    assert b"pw-pw" not in full["config.json"]
    assert json.loads(full["hal-status.json"])["1"]["status"] == "Available"
    security = _members(
        build_bundle(sources, tmp_path / "s.tar.gz", LogKind.SECURITY_LOG).read_bytes()
    )
    assert security["logs/agent.log"] == b"firmware signature checked\n"
    assert "ocpp-trace.jsonl" not in security


def test_file_log_is_added_once_and_removed(tmp_path: Path) -> None:
    remove = ensure_file_log(tmp_path)
    try:
        logging.getLogger("agent.test").warning("into the file")
        assert ensure_file_log(tmp_path)() is None  # a file handler exists: no second one
    finally:
        remove()
    assert "into the file" in (tmp_path / "logs" / "agent.log").read_text()


@pytest.fixture
def upload_server(tmp_path: Path) -> Iterator[tuple[str, FileServer]]:
    with FileServer(tmp_path) as server:
        yield server.url("").rstrip("/"), server


async def test_get_diagnostics_uploads_a_bundle(
    csms: CsmsEmulator, start_app: StartApp, upload_server: tuple[str, FileServer]
) -> None:
    url, seen = upload_server
    await start_app(csms, charge_point_id=CP)
    await registered(csms)
    answer = await csms.call(CP, call.GetDiagnostics(location=f"{url}/upload/"))
    assert answer.file_name.endswith(".tar.gz")
    done = await csms.wait_for(
        "DiagnosticsStatusNotification",
        predicate=lambda c: c.payload["status"] != "Uploading",
        cp_id=CP,
        timeout_s=GUARD_S,
    )
    assert done.payload == {"status": "Uploaded"}
    statuses = [c.payload["status"] for c in csms.calls("DiagnosticsStatusNotification", CP)]
    assert statuses == ["Uploading", "Uploaded"]
    members = _members(seen.uploads[f"/upload/{answer.file_name}"])
    assert {"config.json", "hal-status.json", "ocpp-trace.jsonl"} <= set(members)
    trace = members["ocpp-trace.jsonl"].decode()
    assert "BootNotification" in trace  # the frames the agent exchanged
    hardware = json.loads(members["hal-status.json"])["1"]  # the live hardware report
    assert hardware["status"] == "Available" and hardware["faults"] == []
    assert hardware["devices"]["contactor"] == {"coil_on": False, "ok": True}
    assert hardware["devices"]["pilot"]["cp_state"] == "A"


async def test_get_log_reports_with_request_id_and_upload_failure(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    await start_app(csms, charge_point_id=CP)
    await registered(csms)
    # nothing listens on port 9 of loopback: every attempt fails
    request = call.GetLog(
        log={"remote_location": "http://127.0.0.1:9/logs/"},
        log_type="SecurityLog",
        request_id=42,
        retries=1,
        retry_interval=0,
    )
    answer = await csms.call(CP, request)
    assert answer.status == "Accepted" and answer.filename.endswith(".tar.gz")
    failed = await csms.wait_for(
        "LogStatusNotification",
        predicate=lambda c: c.payload["status"] == "UploadFailure",
        cp_id=CP,
        timeout_s=GUARD_S,
    )
    assert failed.payload["requestId"] == 42
    statuses = [c.payload["status"] for c in csms.calls("LogStatusNotification", CP)]
    assert statuses == ["Uploading", "UploadFailure"]


async def test_get_log_with_a_bad_location_is_rejected(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    await start_app(csms, charge_point_id=CP)
    await registered(csms)
    request = call.GetLog(
        log={"remote_location": "gopher://nowhere"}, log_type="DiagnosticsLog", request_id=1
    )
    assert (await csms.call(CP, request)).status == "Rejected"
