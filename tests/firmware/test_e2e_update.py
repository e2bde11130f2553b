"""End to end: a signed release from a loopback HTTP server, through the whole agent
(``App`` in-process; the dir-slot backend "reboots" by ending ``run()`` with RESET and
a new ``App`` starts on the same data directory, as ``evse-agent run`` re-executes
itself), confirmed or rolled back, with one requestId sequence at the CSMS."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sys
from pathlib import Path
from typing import Any

from ocpp.v16 import call

from agent.app import ExitReason
from firmware_update.download import download
from firmware_update.slots import DirSlots
from hil.csms import CsmsEmulator, ReceivedCall
from hil.fw_pki import FtpServer, make_release_tarball
from hil.fw_release import retrieve_due_now, signed_firmware
from tests.conftest import GUARD_S, RunningApp, StartApp, registered
from tests.firmware.release import (
    HAPPY_SEQUENCE,
    OLD_VERSION,
    ReleaseSite,
    firmware_statuses,
    site,
    wait_firmware_status,
)

__all__ = ["site"]  # the fixture, imported

CP = "FW-CP"
REPO_ROOT = Path(__file__).resolve().parents[2]
REQUEST_ID = 7


def _statuses(csms: CsmsEmulator, request_id: int = REQUEST_ID) -> list[str]:
    return firmware_statuses(csms, "SignedFirmwareStatusNotification", CP, request_id)


def _security_events(csms: CsmsEmulator) -> list[str]:
    return [c.payload["type"] for c in csms.calls("SecurityEventNotification", CP)]


async def _start(csms: CsmsEmulator, start_app: StartApp, site: ReleaseSite) -> RunningApp:
    return await start_app(csms, data_dir=site.data_dir, charge_point_id=CP)


async def _status(csms: CsmsEmulator, status: str, count: int = 1) -> ReceivedCall:
    return await wait_firmware_status(csms, "SignedFirmwareStatusNotification", status, CP, count)


async def _update(
    csms: CsmsEmulator,
    firmware: dict[str, Any],
    *,
    retries: int | None = None,
    retry_interval: int | None = None,
) -> str:
    result = await csms.call(
        CP,
        call.SignedUpdateFirmware(
            request_id=REQUEST_ID,
            firmware=firmware,
            retries=retries,
            retry_interval=retry_interval,
        ),
    )
    return str(result.status)


async def test_signed_update_installs_reboots_and_confirms(
    csms: CsmsEmulator,
    start_app: StartApp,
    site: ReleaseSite,
) -> None:
    image = site.release("release-2.0.0.tar.gz", "2.0.0", health_check_exit_code=0)
    first = await _start(csms, start_app, site)
    boot1 = await registered(csms)
    assert boot1.payload["firmwareVersion"] == OLD_VERSION

    firmware = site.firmware(image)
    assert await _update(csms, firmware) == "Accepted"
    # L01.FR.06/07: the idle connector is made Unavailable before installing
    await csms.wait_for(
        "StatusNotification",
        predicate=lambda c: c.payload["connectorId"] == 1 and c.payload["status"] == "Unavailable",
        cp_id=CP,
        timeout_s=GUARD_S,
    )
    await _status(csms, "InstallRebooting")
    assert await first.exited() == ExitReason.RESET  # the dir backend restarts the agent

    await _start(csms, start_app, site)
    boot2 = await registered(csms, after_seq=boot1.seq)
    assert boot2.payload["firmwareVersion"] == "2.0.0"
    installed = await _status(csms, "Installed")
    assert _statuses(csms) == HAPPY_SEQUENCE
    # 2.0.1 TC_L_01 order: BootNotification, FirmwareUpdated event, ..., Installed
    updated = csms.calls("SecurityEventNotification", CP)
    assert [e.payload["type"] for e in updated] == ["FirmwareUpdated"]
    assert boot2.seq < updated[0].seq < installed.seq
    slots = DirSlots(site.data_dir / "slots", default_version=OLD_VERSION)
    assert slots.booted_version() == "2.0.0" and not slots.is_trial()
    # after the confirmation the connector is available again (the hold ended with the boot)
    await csms.wait_for(
        "StatusNotification",
        predicate=lambda c: (
            c.seq > boot2.seq
            and c.payload["connectorId"] == 1
            and c.payload["status"] == "Available"
        ),
        cp_id=CP,
        timeout_s=GUARD_S,
    )


async def test_failed_health_check_rolls_back_to_the_old_version(
    csms: CsmsEmulator,
    start_app: StartApp,
    site: ReleaseSite,
) -> None:
    image = site.release("bad.tar.gz", "3.0.0-bad", health_check_exit_code=1)
    first = await _start(csms, start_app, site)
    boot1 = await registered(csms)
    firmware = site.firmware(image, site.pki.sign(image, "pkcs1"))
    assert await _update(csms, firmware) == "Accepted"
    assert await first.exited() == ExitReason.RESET

    trial = await _start(csms, start_app, site)
    boot2 = await registered(csms, after_seq=boot1.seq)
    assert boot2.payload["firmwareVersion"] == "3.0.0-bad"
    assert await trial.exited() == ExitReason.RESET  # health check failed: revert

    await _start(csms, start_app, site)
    boot3 = await registered(csms, after_seq=boot2.seq)
    assert boot3.payload["firmwareVersion"] == OLD_VERSION
    failed = await _status(csms, "InstallVerificationFailed")
    assert failed.seq > boot3.seq  # reported from the old version
    assert _statuses(csms) == [*HAPPY_SEQUENCE[:-1], "InstallVerificationFailed"]
    assert "FirmwareUpdated" not in _security_events(csms)
    slots = DirSlots(site.data_dir / "slots", default_version=OLD_VERSION)
    assert slots.booted_version() == OLD_VERSION


async def test_tampered_image_is_not_installed(
    csms: CsmsEmulator,
    start_app: StartApp,
    site: ReleaseSite,
) -> None:
    image, signature = site.tampered_release("release.tar.gz", "2.0.0")
    running = await _start(csms, start_app, site)
    await registered(csms)
    assert await _update(csms, site.firmware(image, signature))
    await _status(csms, "InvalidSignature")
    await csms.wait_for("SecurityEventNotification", cp_id=CP, timeout_s=GUARD_S)
    assert _statuses(csms) == ["Downloading", "Downloaded", "InvalidSignature"]
    assert _security_events(csms) == ["InvalidFirmwareSignature"]
    assert not running.task.done()  # no reboot
    slots = DirSlots(site.data_dir / "slots", default_version=OLD_VERSION)
    assert slots.slot_version("A") is None and slots.slot_version("B") is None
    assert not (site.data_dir / "firmware").exists()  # the download was deleted


async def test_certificate_of_another_root_is_refused(
    csms: CsmsEmulator,
    start_app: StartApp,
    site: ReleaseSite,
) -> None:
    seen = site.server
    image = site.release("release.tar.gz", "2.0.0")
    await _start(csms, start_app, site)
    await registered(csms)
    firmware = site.foreign_firmware(image)
    assert await _update(csms, firmware) == "InvalidCertificate"
    event = await csms.wait_for("SecurityEventNotification", cp_id=CP, timeout_s=GUARD_S)
    assert event.payload["type"] == "InvalidFirmwareSigningCertificate"
    assert _statuses(csms) == []
    assert seen.requests == []  # nothing was downloaded


async def test_download_cut_in_the_middle_is_resumed(
    csms: CsmsEmulator,
    start_app: StartApp,
    site: ReleaseSite,
) -> None:
    seen = site.server
    image = site.release("big.tar.gz", "2.1.0", extra_files={"payload.bin": os.urandom(300_000)})
    seen.faults.drop_after_bytes, seen.faults.drops = 100_000, 1
    first = await _start(csms, start_app, site)
    await registered(csms)
    firmware = site.firmware(image)
    assert await _update(csms, firmware, retries=2, retry_interval=0) == "Accepted"
    await _status(csms, "InstallRebooting")
    assert await first.exited() == ExitReason.RESET
    gets = [r for r in seen.requests if r.method == "GET"]
    assert len(gets) == 2 and "Range" not in gets[0].headers
    assert gets[1].headers["Range"].startswith("bytes=")
    assert int(gets[1].headers["Range"][6:].rstrip("-")) > 0  # resumed, not restarted
    assert _statuses(csms)[:3] == ["Downloading", "Downloaded", "SignatureVerified"]


async def test_full_disk_is_download_failed(
    csms: CsmsEmulator,
    start_app: StartApp,
    site: ReleaseSite,
) -> None:
    image = site.release("release.tar.gz", "2.0.0")
    running = await _start(csms, start_app, site)
    await registered(csms)
    manager = running.app.firmware
    assert manager is not None
    manager.downloader = functools.partial(download, free_bytes=lambda _path: 10)
    firmware = site.firmware(image)
    assert await _update(csms, firmware, retries=1, retry_interval=0) == "Accepted"
    await _status(csms, "DownloadFailed")
    assert _statuses(csms) == ["Downloading", "DownloadFailed"]
    assert not running.task.done()


async def test_reset_is_refused_while_an_update_is_being_applied(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    running = await start_app(csms, charge_point_id=CP)
    await registered(csms)
    station, manager = running.app.station, running.app.firmware
    assert station is not None and manager is not None
    assert not station.reset_blocked()  # wired to FirmwareManager.busy
    station.reset_blocked = lambda: True  # as while installing / rebooting
    assert (await csms.call(CP, call.Reset(type="Hard"))).status == "Rejected"
    assert (await csms.call(CP, call.Reset(type="Soft"))).status == "Rejected"
    assert not running.task.done()


async def test_plain_update_firmware_is_not_supported(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    # whitepaper: with secure firmware update implemented, UpdateFirmware -> NotSupported
    await start_app(csms, charge_point_id=CP)
    await registered(csms)
    answer = await csms.call_raw_result(
        CP,
        call.UpdateFirmware(location="http://127.0.0.1/x", retrieve_date="2020-01-01T00:00:00Z"),
    )
    assert answer.error_code == "NotSupported"


async def test_triggered_firmware_status_is_idle_when_nothing_runs(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    await start_app(csms, charge_point_id=CP)
    await registered(csms)
    trigger = call.TriggerMessage(requested_message="FirmwareStatusNotification")
    assert (await csms.call(CP, trigger)).status == "Accepted"
    plain = await csms.wait_for("FirmwareStatusNotification", cp_id=CP, timeout_s=GUARD_S)
    assert plain.payload == {"status": "Idle"}
    extended = call.ExtendedTriggerMessage(requested_message="FirmwareStatusNotification")
    assert (await csms.call(CP, extended)).status == "Accepted"
    signed = await csms.wait_for("SignedFirmwareStatusNotification", cp_id=CP, timeout_s=GUARD_S)
    assert signed.payload == {"status": "Idle"}


async def test_release_from_an_ftp_server(
    csms: CsmsEmulator, start_app: StartApp, site: ReleaseSite, tmp_path: Path
) -> None:
    root = tmp_path / "ftp"
    image = make_release_tarball(root / "release.tar.gz", "2.2.0")
    first = await _start(csms, start_app, site)
    await registered(csms)
    with FtpServer(root) as server:
        firmware = signed_firmware(
            server.url(image.name), site.pki.signing_cert_pem, site.pki.sign(image)
        )
        assert await _update(csms, firmware) == "Accepted"
        await _status(csms, "InstallRebooting")
    assert await first.exited() == ExitReason.RESET
    slots = DirSlots(site.data_dir / "slots", default_version=OLD_VERSION)
    assert slots.booted_version() == "2.2.0"


async def test_plain_update_when_the_vendor_allows_unsigned_images(
    csms: CsmsEmulator,
    start_app: StartApp,
    site: ReleaseSite,
) -> None:
    image = site.release("plain.tar.gz", "2.0.1")
    first = await _start(csms, start_app, site)
    boot1 = await registered(csms)
    assert first.app.adapter is not None
    first.app.adapter.accept_unsigned_updates = True  # [firmware] accept_unsigned_updates
    update = call.UpdateFirmware(
        location=f"{site.url}/{image.name}",
        retrieve_date=retrieve_due_now(),
    )
    await csms.call(CP, update)
    assert await first.exited() == ExitReason.RESET
    await _start(csms, start_app, site)
    boot2 = await registered(csms, after_seq=boot1.seq)
    assert boot2.payload["firmwareVersion"] == "2.0.1"
    await csms.wait_for(
        "FirmwareStatusNotification",
        predicate=lambda c: c.payload["status"] == "Installed",
        cp_id=CP,
        timeout_s=GUARD_S,
    )
    plain = [c.payload["status"] for c in csms.calls("FirmwareStatusNotification", CP)]
    assert plain == ["Downloading", "Downloaded", "Installing", "Installed"]
    assert csms.calls("SignedFirmwareStatusNotification", CP) == []


async def test_the_real_process_re_executes_into_the_new_slot(
    csms: CsmsEmulator, site: ReleaseSite
) -> None:
    # `evse-agent run` as in production: the restart is os.execv (same PID), the
    # trial boot is counted by the new process image.
    image = site.release("release.tar.gz", "4.0.0", health_check_exit_code=0)
    repo = REPO_ROOT
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "PYTHONPATH": str(repo)}
    log_path = site.data_dir.parent / "agent.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent",
            "run",
            "--sim",
            "--csms",
            csms.url,
            "--id",
            CP,
            "--data-dir",
            str(site.data_dir),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            cwd=repo,
            env=env,
        )
    try:
        boot1 = await csms.wait_for("BootNotification", cp_id=CP, timeout_s=GUARD_S)
        firmware = site.firmware(image)
        assert await _update(csms, firmware) == "Accepted"
        await _status(csms, "Installed")
        boot2 = await csms.wait_for("BootNotification", count=2, cp_id=CP, timeout_s=GUARD_S)
        assert (boot1.payload["firmwareVersion"], boot2.payload["firmwareVersion"]) == (
            OLD_VERSION,
            "4.0.0",
        )
        assert _statuses(csms) == HAPPY_SEQUENCE
        assert proc.returncode is None  # the same process, re-executed
    except BaseException:
        print(log_path.read_text(errors="replace")[-4000:])
        raise
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), GUARD_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
