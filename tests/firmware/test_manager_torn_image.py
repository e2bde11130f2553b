"""Durability of the downloaded image by verification: the image is not fsynced, its
SHA-256 is journalled with Downloaded, and after a restart a torn image is downloaded
again (same requestId) while a ``.part`` from before the restart is never resumed."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from firmware_update.download import part_path
from firmware_update.journal import FirmwareJournal, ImageRecord
from firmware_update.machine import Phase
from firmware_update.manager import FirmwareManager
from tests.firmware.manager_harness import GUARD_S, Harness


def _truncate(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _overwrite_tail(path: Path) -> None:
    """Same size, garbage at the end: what unsynced pages look like after a power cut."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size // 2)
        f.write(b"\0" * (size - size // 2))


def _delete(path: Path) -> None:
    path.unlink()


async def _first_run_until_install_scheduled(harness: Harness, request_id: int) -> Path:
    """Run an update with installDateTime in an hour up to InstallScheduled, then "cut
    the power" (stop the manager) and move the clock past installDateTime."""
    later = harness.now + timedelta(hours=1)
    first = harness.manager()
    await first.request(harness.request(request_id, install_at=later))
    await harness.wait_until(first, lambda: first.phase is Phase.INSTALL_SCHEDULED)
    await first.stop()
    harness.now = later + timedelta(seconds=1)
    return harness.tmp_path / "fw" / "image"


async def _statuses(harness: Harness) -> list[tuple[object, object]]:
    return [(r[1], r[2]) for r in await harness.reports() if r[0] == "status"]


async def test_digest_is_journalled_with_downloaded(harness: Harness) -> None:
    image = await _first_run_until_install_scheduled(harness, 4)
    entry = await FirmwareJournal(harness.store).load()
    assert entry is not None and entry.state.phase is Phase.INSTALL_SCHEDULED
    payload = harness.image.read_bytes()
    assert entry.image == ImageRecord(hashlib.sha256(payload).hexdigest(), len(payload))
    assert image.read_bytes() == payload


@pytest.mark.parametrize("tamper", [_truncate, _overwrite_tail, _delete])
async def test_torn_image_after_a_restart_is_downloaded_again(
    harness: Harness, tamper: Callable[[Path], None]
) -> None:
    image = await _first_run_until_install_scheduled(harness, 7)
    tamper(image)  # the power cut tore the unsynced file
    harness.downloader.gate = asyncio.Event()
    harness.downloader.started = asyncio.Event()
    second = harness.manager()
    await second.start()
    await asyncio.wait_for(harness.downloader.started.wait(), GUARD_S)
    entry = await FirmwareJournal(harness.store).load()
    assert entry is not None and entry.state.phase is Phase.DOWNLOADING
    assert entry.image is None  # the old record no longer describes any file
    assert second.status_now().value == "Downloading"
    harness.downloader.gate.set()
    await asyncio.wait_for(harness.restarted.wait(), GUARD_S)
    assert harness.downloader.calls == 2
    assert await _statuses(harness) == [
        (7, "Downloading"),
        (7, "Downloaded"),
        (7, "SignatureVerified"),
        (7, "InstallScheduled"),
        (7, "Downloading"),
        (7, "Downloaded"),
        (7, "SignatureVerified"),
        (7, "Installing"),
        (7, "InstallRebooting"),
    ]
    slots = harness.dir_slots()
    assert slots.booted_slot() == "B" and slots.booted_version() == "2.0.0"


async def test_intact_image_after_a_restart_is_not_downloaded_again(harness: Harness) -> None:
    await _first_run_until_install_scheduled(harness, 8)
    second = harness.manager()
    await second.start()
    await asyncio.wait_for(harness.restarted.wait(), GUARD_S)
    assert harness.downloader.calls == 1
    assert [s for _, s in await _statuses(harness)] == [
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "InstallScheduled",
        "Installing",
        "InstallRebooting",
    ]


async def test_part_from_before_a_restart_is_discarded(harness: Harness) -> None:
    harness.downloader.gate = asyncio.Event()
    first = harness.manager()
    await first.request(harness.request(9))
    await asyncio.wait_for(harness.downloader.started.wait(), GUARD_S)
    await first.stop()  # the power went away mid-download
    part = part_path(harness.tmp_path / "fw" / "image")
    part.write_bytes(b"\0" * 70_000)  # unsynced: zeros where data should be
    meta = part.with_name(part.name + ".meta")
    meta.write_text('{"url": "http://127.0.0.1:1/image.tar.gz", "validator": null}')
    second: FirmwareManager = harness.manager()
    await second.start()
    assert not part.exists() and not meta.exists()
    harness.downloader.gate.set()
    await asyncio.wait_for(harness.restarted.wait(), GUARD_S)
    statuses = await _statuses(harness)
    assert {rid for rid, _ in statuses} == {9}
    assert [s for _, s in statuses].count("Downloading") == 1
