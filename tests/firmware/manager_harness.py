"""The firmware manager's test rig: a real store and dir slots, a fake downloader and a
fake station (used by ``conftest.harness``)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.persistence.store import Store
from firmware_update.certs import CertificateStore
from firmware_update.journal import FirmwareJournal, MessageKind, UpdateRequest
from firmware_update.manager import FirmwareManager, ManagerOptions
from firmware_update.slots import DirSlots, SlotBackend
from firmware_update.status import UpdateKind
from hil.fw_pki import Pki, make_pki, make_release_tarball

GUARD_S = 10.0


class FakeStation:
    """Maintenance hold with a transaction that ends when the test says so.

    ``healthy`` is what ``hal_ok`` answers; ``fail_wait`` (when set) is raised by
    ``wait_no_transaction`` after the hold; ``releases`` counts ``release_maintenance``.
    """

    def __init__(self) -> None:
        self.held = False
        self.releases = 0
        self.healthy = True
        self.fail_wait: Exception | None = None
        self.no_transaction = asyncio.Event()
        self.no_transaction.set()

    async def hold_for_maintenance(self) -> None:
        self.held = True

    async def wait_no_transaction(self) -> None:
        if self.fail_wait is not None:
            raise self.fail_wait
        await self.no_transaction.wait()

    def release_maintenance(self) -> None:
        self.held = False
        self.releases += 1

    def hal_ok(self) -> bool:
        return self.healthy


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

    def dir_slots(self) -> DirSlots:
        """A fresh ``DirSlots`` over the harness's slots: what the next agent start sees."""
        return DirSlots(self.tmp_path / "slots", default_version="1.0.0")

    def manager(self, slots: SlotBackend | None = None) -> FirmwareManager:
        """A manager as one agent start creates it (``slots`` default: ``dir_slots()``)."""

        def restart() -> None:
            self.restarts += 1
            self.restarted.set()

        manager = FirmwareManager(
            journal=FirmwareJournal(self.store),
            slots=slots if slots is not None else self.dir_slots(),
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


@asynccontextmanager
async def open_harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """A harness with a signed 2.0.0 release; stops its managers and the store on exit."""
    pki = make_pki(tmp_path, "ec-p256")
    pki.install_root(tmp_path / "certs")
    image = make_release_tarball(tmp_path / "release.tar.gz", "2.0.0")
    store = await Store.open(tmp_path / "data")
    h = Harness(tmp_path, store, pki, image)
    try:
        yield h
    finally:
        for manager in h.managers:
            await manager.stop()
        await store.close()
