"""FirmwareManager against a real store and dir slots, with a fake downloader and a fake
station: cancellation, busy refusal, scheduling, and resuming after a power cut."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.persistence.store import Store
from firmware_update.certs import CertificateStore
from firmware_update.journal import FirmwareJournal, MessageKind, UpdateRequest
from firmware_update.machine import Phase
from firmware_update.manager import FirmwareManager, ManagerOptions
from firmware_update.slots import DirSlots
from firmware_update.status import UpdateKind, UpdateResponse
from hil.fw_pki import Pki, make_pki, make_release_tarball

GUARD_S = 10.0


class FakeStation:
    """Maintenance hold with a transaction that ends when the test says so."""

    def __init__(self) -> None:
        self.held = False
        self.no_transaction = asyncio.Event()
        self.no_transaction.set()

    async def hold_for_maintenance(self) -> None:
        self.held = True

    async def wait_no_transaction(self) -> None:
        await self.no_transaction.wait()

    def release_maintenance(self) -> None:
        self.held = False

    def hal_ok(self) -> bool:
        return True


class FakeDownloader:
    """Copies ``source`` to the destination; ``gate`` (when set) holds each download."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def __call__(self, url: str, dest: Path, **_: Any) -> Path:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        shutil.copyfile(self.source, dest)
        return dest


class Harness:
    def __init__(self, tmp_path: Path, store: Store, pki: Pki, image: Path) -> None:
        self.tmp_path = tmp_path
        self.store = store
        self.pki = pki
        self.image = image
        self.station = FakeStation()
        self.downloader = FakeDownloader(image)
        self.restarts = 0
        self.restarted = asyncio.Event()
        self.registered = asyncio.Event()
        self.registered.set()
        self.now = datetime.now(UTC)
        self.managers: list[FirmwareManager] = []

    def manager(self) -> FirmwareManager:
        def restart() -> None:
            self.restarts += 1
            self.restarted.set()

        manager = FirmwareManager(
            journal=FirmwareJournal(self.store),
            slots=DirSlots(self.tmp_path / "slots", default_version="1.0.0"),
            certificates=CertificateStore(self.tmp_path / "certs"),
            station=self.station,
            now=lambda: self.now,
            options=ManagerOptions(work_dir=self.tmp_path / "fw", delivery_timeout_s=0.01),
            restart=restart,
            wait_registered=self.registered.wait,
            downloader=self.downloader,
        )
        self.managers.append(manager)
        return manager

    def request(self, request_id: int, **changes: Any) -> UpdateRequest:
        fields: dict[str, Any] = {
            "request_id": request_id,
            "kind": UpdateKind.SIGNED,
            "location": "http://127.0.0.1:1/image.tar.gz",
            "retrieve_at": self.now,
            "signing_certificate": self.pki.signing_cert_pem,
            "signature": self.pki.sign(self.image),
            "retry_interval_s": 0.0,
        }
        fields.update(changes)
        return UpdateRequest(**fields)

    async def reports(self) -> list[tuple[str, Any, Any]]:
        pending = await FirmwareJournal(self.store).pending(limit=100)
        out = []
        for msg in pending:
            if msg.kind is MessageKind.FIRMWARE_STATUS:
                out.append(("status", msg.payload["request_id"], msg.payload["status"]))
            else:
                out.append((msg.kind.value, None, msg.payload.get("type")))
        return out

    async def wait_until(self, manager: FirmwareManager, check: Callable[[], bool]) -> None:
        async with asyncio.timeout(GUARD_S):
            while not check():
                await manager.wait_reports()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    pki = make_pki(tmp_path, "ec-p256")
    pki.install_root(tmp_path / "certs")
    image = make_release_tarball(tmp_path / "release.tar.gz", "2.0.0")
    store = await Store.open(tmp_path / "data")
    h = Harness(tmp_path, store, pki, image)
    yield h
    for manager in h.managers:
        await manager.stop()
    await store.close()


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
