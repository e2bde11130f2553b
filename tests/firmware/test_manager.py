"""FirmwareManager against a real store and dir slots, with a fake downloader and a fake
station: cancellation, busy refusal, scheduling, and resuming after a power cut."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from firmware_update.journal import FirmwareJournal
from firmware_update.machine import Phase
from firmware_update.slots import DirSlots
from firmware_update.status import UpdateResponse
from tests.firmware.manager_harness import GUARD_S, Harness


async def test_update_reaches_reboot_with_statuses_in_order(harness: Harness) -> None:
    manager = harness.manager()
    assert await manager.request(harness.request(5)) is UpdateResponse.ACCEPTED
    await asyncio.wait_for(harness.restarted.wait(), GUARD_S)
    assert [r[2] for r in await harness.reports()] == [
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "Installing",
        "InstallRebooting",
    ]
    assert harness.station.held and manager.busy
    slots = DirSlots(harness.tmp_path / "slots", default_version="1.0.0")
    assert slots.booted_slot() == "B" and slots.booted_version() == "2.0.0"


async def test_install_waits_for_the_running_transaction(harness: Harness) -> None:
    harness.station.no_transaction.clear()
    manager = harness.manager()
    await manager.request(harness.request(5))
    await harness.wait_until(manager, lambda: manager.phase is Phase.WAITING_IDLE)
    assert harness.station.held and harness.restarts == 0
    harness.station.no_transaction.set()
    await asyncio.wait_for(harness.restarted.wait(), GUARD_S)


async def test_new_request_cancels_a_scheduled_one(harness: Harness) -> None:
    manager = harness.manager()
    later = harness.now + timedelta(hours=1)
    assert await manager.request(harness.request(1, retrieve_at=later)) is UpdateResponse.ACCEPTED
    assert manager.status_now().value == "DownloadScheduled"
    assert await manager.request(harness.request(2)) is UpdateResponse.ACCEPTED_CANCELED
    await asyncio.wait_for(harness.restarted.wait(), GUARD_S)
    reports = await harness.reports()
    assert reports[0] == ("status", 1, "DownloadScheduled")
    assert {r[1] for r in reports[1:]} == {2}


async def test_request_while_installing_is_rejected(harness: Harness) -> None:
    manager = harness.manager()
    await manager.request(harness.request(1))
    await asyncio.wait_for(harness.restarted.wait(), GUARD_S)
    assert manager.busy
    assert await manager.request(harness.request(2)) is UpdateResponse.REJECTED


async def test_install_date_in_the_future_is_install_scheduled(harness: Harness) -> None:
    manager = harness.manager()
    later = harness.now + timedelta(hours=1)
    await manager.request(harness.request(3, install_at=later))
    await harness.wait_until(manager, lambda: manager.phase is Phase.INSTALL_SCHEDULED)
    assert [r[2] for r in await harness.reports()][-1] == "InstallScheduled"
    assert not harness.station.held


async def test_invalid_certificate_keeps_the_running_update(harness: Harness) -> None:
    manager = harness.manager()
    later = harness.now + timedelta(hours=1)
    await manager.request(harness.request(1, retrieve_at=later))
    bad = harness.request(2, signing_certificate=harness.pki.foreign_cert_pem)
    assert await manager.request(bad) is UpdateResponse.INVALID_CERTIFICATE
    assert manager.phase is Phase.DOWNLOAD_SCHEDULED and manager.request_id == 1
    assert (await harness.reports())[-1] == (
        "security_event",
        None,
        "InvalidFirmwareSigningCertificate",
    )
    assert (await FirmwareJournal(harness.store).load()) is not None


async def test_power_cut_during_download_resumes_the_same_request(harness: Harness) -> None:
    harness.downloader.gate = asyncio.Event()
    first = harness.manager()
    await first.request(harness.request(9))
    await asyncio.wait_for(harness.downloader.started.wait(), GUARD_S)
    await first.stop()  # the process died mid-download
    harness.downloader.gate.set()
    second = harness.manager()
    await second.start()
    assert second.request_id == 9 and second.status_now().value == "Downloading"
    await asyncio.wait_for(harness.restarted.wait(), GUARD_S)
    statuses = [r for r in await harness.reports() if r[0] == "status"]
    assert {r[1] for r in statuses} == {9}
    assert [r[2] for r in statuses].count("Downloading") == 1
    assert harness.downloader.calls == 2
