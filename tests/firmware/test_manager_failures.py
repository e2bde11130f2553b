"""FirmwareManager when the slot backend (or anything else) fails after the install:
the update always ends with a failure status, the maintenance hold released and the
journal row gone; and no blocking slot call or cleanup runs on the event loop."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from firmware_update.journal import FirmwareJournal
from firmware_update.machine import Phase
from firmware_update.manager import FirmwareManager
from firmware_update.slots import DirSlots, InstallError
from firmware_update.status import UpdateResponse
from tests.firmware.manager_harness import GUARD_S, Harness

BLOCK_S = 5.0
"""How long a blocked fake slot call waits for the test to release it. A call made on
the event loop thread cannot be released by the test, so it times out instead."""


class FaultySlots:
    """``DirSlots`` whose synchronous methods can fail or block, and which records the
    thread each of them ran on.

    Args:
        inner: The real backend every call is delegated to.
        failing: Method name -> exception raised instead of delegating.
        blocking: Method that waits (up to ``BLOCK_S``) for ``release`` first and sets
            ``entered`` (in the loop) when it starts waiting.
    """

    def __init__(
        self,
        inner: DirSlots,
        *,
        failing: dict[str, Exception] | None = None,
        blocking: str | None = None,
    ) -> None:
        self.inner = inner
        self.failing = failing or {}
        self.blocking = blocking
        self.entered = asyncio.Event()
        self.release = threading.Event()
        self.released_in_time: bool | None = None
        self.on_loop: list[str] = []
        self.calls: list[str] = []
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if threading.get_ident() == self._loop_thread:
            self.on_loop.append(name)
        if name == self.blocking:
            self._loop.call_soon_threadsafe(self.entered.set)
            self.released_in_time = self.release.wait(BLOCK_S)
        if name in self.failing:
            raise self.failing[name]

    def booted_slot(self) -> str:
        self._enter("booted_slot")
        return self.inner.booted_slot()

    def booted_version(self) -> str:
        self._enter("booted_version")
        return self.inner.booted_version()

    def slot_version(self, slot: str) -> str | None:
        self._enter("slot_version")
        return self.inner.slot_version(slot)

    async def install(self, image: Path) -> str:
        return await self.inner.install(image)

    def activate_trial(self, slot: str, *, attempts: int = 1) -> None:
        self._enter("activate_trial")
        self.inner.activate_trial(slot, attempts=attempts)

    def is_trial(self) -> bool:
        self._enter("is_trial")
        return self.inner.is_trial()

    def note_trial_boot(self) -> int:
        self._enter("note_trial_boot")
        return self.inner.note_trial_boot()

    def mark_good(self) -> None:
        self._enter("mark_good")
        self.inner.mark_good()

    def mark_bad(self) -> None:
        self._enter("mark_bad")
        self.inner.mark_bad()

    async def health_check(self, timeout_s: float) -> tuple[bool, str]:
        return await self.inner.health_check(timeout_s)


async def statuses(harness: Harness) -> list[str]:
    return [r[2] for r in await harness.reports() if r[0] == "status"]


async def joined(manager: FirmwareManager) -> None:
    await asyncio.wait_for(manager.join(), GUARD_S)


async def installed_and_rebooted(harness: Harness) -> None:
    """Run an update up to its restart with the real slots (the first agent start)."""
    manager = harness.manager()
    await manager.request(harness.request(5))
    await asyncio.wait_for(harness.restarted.wait(), GUARD_S)
    await manager.stop()  # the process ends
    harness.restarted.clear()


async def assert_ended(harness: Harness, manager: FirmwareManager, final: str) -> None:
    """The update is over: final status queued, station free, journal row gone."""
    assert (await statuses(harness))[-1] == final
    assert manager.phase is Phase.IDLE and not manager.busy
    assert not harness.station.held and harness.station.releases >= 1
    assert await FirmwareJournal(harness.store).load() is None


# ------------------------------------------------------------- slot failures


async def test_failed_arming_reports_installation_failed_and_frees_the_station(
    harness: Harness,
) -> None:
    slots = FaultySlots(
        harness.dir_slots(), failing={"activate_trial": InstallError("rauc mark-active failed")}
    )
    manager = harness.manager(slots)
    await manager.request(harness.request(5))
    await joined(manager)
    await assert_ended(harness, manager, "InstallationFailed")
    assert await statuses(harness) == [
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "Installing",
        "InstallRebooting",
        "InstallationFailed",
    ]
    assert harness.restarts == 0
    assert not (harness.tmp_path / "fw").exists()
    assert harness.dir_slots().booted_slot() == "A"  # nothing was armed
    assert await manager.request(harness.request(6)) is UpdateResponse.ACCEPTED


async def test_failed_confirmation_reverts_to_the_old_slot(harness: Harness) -> None:
    await installed_and_rebooted(harness)
    slots = FaultySlots(harness.dir_slots(), failing={"mark_good": InstallError("rauc failed")})
    assert slots.booted_slot() == "B"
    second = harness.manager(slots)
    await second.start()
    await asyncio.wait_for(harness.restarted.wait(), GUARD_S)
    assert slots.calls.count("mark_bad") == 1
    await second.stop()

    third = harness.manager()  # booted the old slot again
    await third.start()
    await joined(third)
    await assert_ended(harness, third, "InstallVerificationFailed")
    after = harness.dir_slots()
    assert after.booted_version() == "1.0.0" and after.bad_slots() == ["B"]


async def test_failed_revert_still_reports_and_frees_the_station(harness: Harness) -> None:
    await installed_and_rebooted(harness)
    harness.station.healthy = False  # the health check fails -> revert
    slots = FaultySlots(
        harness.dir_slots(),
        failing={"mark_bad": InstallError("slot B is the only usable slot")},
    )
    manager = harness.manager(slots)
    await manager.start()
    await joined(manager)
    await assert_ended(harness, manager, "InstallVerificationFailed")
    assert harness.restarts == 1  # no revert reboot
    assert await manager.request(harness.request(6)) is UpdateResponse.ACCEPTED


async def test_unreadable_boot_reverts_and_ends_with_installation_failed(
    harness: Harness,
) -> None:
    await installed_and_rebooted(harness)
    slots = FaultySlots(harness.dir_slots(), failing={"note_trial_boot": OSError("disk full")})
    second = harness.manager(slots)
    await second.start()
    await asyncio.wait_for(harness.restarted.wait(), GUARD_S)
    assert "mark_bad" in slots.calls
    await second.stop()

    third = harness.manager()
    await third.start()
    await joined(third)
    await assert_ended(harness, third, "InstallationFailed")
    assert harness.dir_slots().booted_version() == "1.0.0"


# ------------------------------------------------------------- the last resort


async def test_unexpected_error_while_waiting_to_install_is_installation_failed(
    harness: Harness,
) -> None:
    harness.station.fail_wait = RuntimeError("controller gone")
    manager = harness.manager()
    await manager.request(harness.request(5))
    await joined(manager)
    await assert_ended(harness, manager, "InstallationFailed")
    assert not (harness.tmp_path / "fw").exists()


async def test_unexpected_error_while_downloading_is_download_failed(harness: Harness) -> None:
    async def broken(*_: Any, **__: Any) -> Path:
        raise ValueError("bug in the downloader")

    manager = harness.manager()
    manager.downloader = broken
    await manager.request(harness.request(5))
    await joined(manager)
    assert await statuses(harness) == ["Downloading", "DownloadFailed"]
    assert manager.phase is Phase.IDLE and not manager.busy


async def test_unexpected_error_with_a_broken_journal_still_frees_the_station(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = harness.manager()

    class BrokenStore(Exception):
        pass

    async def commit(*_: Any, **__: Any) -> None:
        raise BrokenStore("database is locked")

    async def wait_then_break() -> None:
        monkeypatch.setattr(manager.journal, "commit", commit)
        raise RuntimeError("controller gone")

    monkeypatch.setattr(harness.station, "wait_no_transaction", wait_then_break)
    await manager.request(harness.request(5))
    await joined(manager)
    assert manager.phase is Phase.IDLE and not manager.busy and not harness.station.held
    assert await FirmwareJournal(harness.store).load() is not None  # resumed on next start
    monkeypatch.undo()
    assert await manager.request(harness.request(6)) is UpdateResponse.ACCEPTED


# ------------------------------------------------------ the event loop stays free


async def _nothing(harness: Harness) -> None:
    pass


async def _installed(harness: Harness) -> None:
    await installed_and_rebooted(harness)


async def _installed_unhealthy(harness: Harness) -> None:
    await installed_and_rebooted(harness)
    harness.station.healthy = False


async def _request(harness: Harness, manager: FirmwareManager) -> None:
    await manager.request(harness.request(5))


async def _start(harness: Harness, manager: FirmwareManager) -> None:
    await manager.start()


@pytest.mark.parametrize(
    ("method", "prepare", "act"),
    [
        ("activate_trial", _nothing, _request),
        ("note_trial_boot", _installed, _start),
        ("mark_good", _installed, _start),
        ("mark_bad", _installed_unhealthy, _start),
    ],
)
async def test_loop_runs_while_a_slot_call_blocks(
    harness: Harness,
    method: str,
    prepare: Callable[[Harness], Awaitable[None]],
    act: Callable[[Harness, FirmwareManager], Coroutine[Any, Any, None]],
) -> None:
    await prepare(harness)
    slots = FaultySlots(harness.dir_slots(), blocking=method)
    manager = harness.manager(slots)
    run = asyncio.create_task(act(harness, manager))
    await asyncio.wait_for(slots.entered.wait(), GUARD_S)
    # the slot call is now blocked in its thread: the loop must still run callbacks
    ran = asyncio.Event()
    asyncio.get_running_loop().call_soon(ran.set)
    await asyncio.wait_for(ran.wait(), GUARD_S)
    slots.release.set()
    await asyncio.wait_for(run, GUARD_S)
    await joined(manager)
    assert slots.released_in_time is True, f"{method} blocked the event loop"
    assert method in slots.calls


async def test_no_slot_call_or_cleanup_runs_on_the_loop(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.get_ident()
    cleanups_on_loop: list[str] = []
    rmtree = shutil.rmtree

    def recording_rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path) == harness.tmp_path / "fw" and threading.get_ident() == loop_thread:
            cleanups_on_loop.append(str(path))
        rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", recording_rmtree)
    first = FaultySlots(harness.dir_slots())
    manager = harness.manager(first)
    await manager.request(harness.request(5))
    await asyncio.wait_for(harness.restarted.wait(), GUARD_S)
    await manager.stop()

    second = FaultySlots(harness.dir_slots())
    confirmed = harness.manager(second)
    await confirmed.start()
    await joined(confirmed)
    assert (await statuses(harness))[-1] == "Installed"
    assert {"activate_trial", "slot_version"} <= set(first.calls)
    assert {"booted_slot", "is_trial", "note_trial_boot", "mark_good"} <= set(second.calls)
    assert first.on_loop == [] and second.on_loop == []
    assert cleanups_on_loop == []
