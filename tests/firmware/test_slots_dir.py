"""firmware_update.slots.DirSlots: A/B release directories and their state file."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from firmware_update.slots import DirSlots, InstallError, SlotBackend
from hil.fw_pki import make_release_tarball

DEFAULT = "0.1.0"


def reboot(root: Path) -> DirSlots:
    """A new agent start on the same slots directory."""
    return DirSlots(root, default_version=DEFAULT)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def tarball(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def link_member(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "slots"


def test_is_a_slot_backend(root: Path) -> None:
    backend: SlotBackend = reboot(root)
    assert backend.booted_slot() == "A"


def test_fresh_slots_boot_a_with_the_default_version(root: Path) -> None:
    slots = reboot(root)
    assert slots.booted_slot() == "A"
    assert slots.booted_version() == DEFAULT
    assert slots.slot_version("A") is None and slots.slot_version("B") is None
    assert not slots.is_trial()
    assert slots.note_trial_boot() == 0


async def test_install_goes_into_the_inactive_slot_and_never_touches_the_booted_one(
    root: Path, tmp_path: Path
) -> None:
    (root / "A").mkdir(parents=True)
    (root / "A" / "VERSION").write_text("1.0.0\n")
    (root / "A" / "app.py").write_text("old")
    slots = reboot(root)
    image = make_release_tarball(tmp_path / "r.tar.gz", "1.1.0", 0, extra_files={"app.py": b"new"})
    assert await slots.install(image) == "B"
    assert slots.slot_version("B") == "1.1.0"
    assert (root / "B" / "app.py").read_text() == "new"
    assert (root / "A" / "app.py").read_text() == "old"
    assert slots.booted_slot() == "A" and slots.booted_version() == "1.0.0"
    # installing again replaces B completely
    image2 = make_release_tarball(tmp_path / "r2.tar.gz", "1.2.0")
    assert await slots.install(image2) == "B"
    assert slots.slot_version("B") == "1.2.0"
    assert not (root / "B" / "app.py").exists()
    assert listing(root) == ["A", "B", "state.json"]  # no staging left over


async def test_trial_confirmed_becomes_primary(root: Path, tmp_path: Path) -> None:
    slots = reboot(root)
    await slots.install(make_release_tarball(tmp_path / "r.tar.gz", "2.0.0"))
    slots.activate_trial("B", attempts=2)
    assert slots.booted_slot() == "A"  # this start keeps running A

    first = reboot(root)
    assert first.booted_slot() == "B" and first.booted_version() == "2.0.0"
    assert first.is_trial()
    assert first.note_trial_boot() == 1
    assert first.note_trial_boot() == 1  # counted once per start
    with pytest.raises(InstallError, match="unconfirmed trial"):  # A is the fallback
        await first.install(make_release_tarball(tmp_path / "r2.tar.gz", "2.1.0"))
    assert first.slot_version("A") is None
    first.mark_good()
    assert not first.is_trial()

    after = reboot(root)
    assert after.booted_slot() == "B" and not after.is_trial()
    assert after.primary_slot() == "B"
    assert await after.install(make_release_tarball(tmp_path / "r3.tar.gz", "3.0.0")) == "A"
    assert json.loads((root / "state.json").read_text()) == {
        "primary": "B",
        "trial": None,
        "attempts_left": 0,
        "bad": [],
    }


async def test_unconfirmed_trial_falls_back_when_attempts_run_out(
    root: Path, tmp_path: Path
) -> None:
    slots = reboot(root)
    await slots.install(make_release_tarball(tmp_path / "r.tar.gz", "2.0.0"))
    slots.activate_trial("B", attempts=2)
    for expected_left in (1, 0):  # two starts of B that crash before confirming
        trial = reboot(root)
        assert trial.booted_slot() == "B"
        assert trial.note_trial_boot() == expected_left

    fallback = reboot(root)
    assert fallback.booted_slot() == "A"
    assert not fallback.is_trial()
    assert fallback.trial_slot() == "B"
    assert fallback.note_trial_boot() == 0
    fallback.mark_bad()  # the manager reports the failed update and marks the trial bad
    assert fallback.bad_slots() == ["B"] and fallback.trial_slot() is None
    assert reboot(root).booted_slot() == "A"


async def test_failed_health_check_marks_the_trial_bad_and_the_next_start_runs_the_old_slot(
    root: Path, tmp_path: Path
) -> None:
    slots = reboot(root)
    await slots.install(make_release_tarball(tmp_path / "r.tar.gz", "2.0.0", 1))
    slots.activate_trial("B", attempts=3)
    trial = reboot(root)
    trial.note_trial_boot()
    ok, detail = await trial.health_check(5.0)
    assert not ok and "exit code 1" in detail and "health-check of 2.0.0" in detail
    trial.mark_bad()
    after = reboot(root)
    assert after.booted_slot() == "A" and after.bad_slots() == ["B"]
    # a new install into B clears the bad mark
    await after.install(make_release_tarball(tmp_path / "r3.tar.gz", "2.0.1"))
    assert after.bad_slots() == []


async def test_health_check_results(root: Path, tmp_path: Path) -> None:
    slots = reboot(root)
    assert (await slots.health_check(1.0))[0]  # no script: healthy
    await slots.install(make_release_tarball(tmp_path / "ok.tar.gz", "2.0.0", 0))
    slots.activate_trial("B")
    ok, detail = await reboot(root).health_check(5.0)
    assert ok and detail == "health-check of 2.0.0"


async def test_health_check_timeout_kills_the_script(root: Path, tmp_path: Path) -> None:
    script = b"#!/bin/sh\nexec sleep 30\n"
    slots = reboot(root)
    image = tmp_path / "slow.tar.gz"
    with tarfile.open(image, "w:gz") as tar:
        for name, data, mode in (("VERSION", b"3.0\n", 0o644), ("health-check", script, 0o755)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    await slots.install(image)
    slots.activate_trial("B")
    ok, detail = await reboot(root).health_check(0.3)
    assert not ok and "timed out" in detail


async def test_health_check_that_is_not_executable_fails(root: Path, tmp_path: Path) -> None:
    slots = reboot(root)
    image = tarball(
        tmp_path / "r.tar.gz",
        [file_member("VERSION", b"1\n"), file_member("health-check", b"#!/bin/sh\nexit 0\n")],
    )
    await slots.install(image)
    slots.activate_trial("B")
    ok, detail = await reboot(root).health_check(1.0)
    assert not ok and "not executable" in detail


def test_primary_mark_bad_switches_to_the_other_slot_only_when_it_is_usable(root: Path) -> None:
    slots = reboot(root)
    with pytest.raises(InstallError, match="only usable slot"):
        slots.mark_bad()
    (root / "B").mkdir()
    (root / "B" / "VERSION").write_text("0.9\n")
    slots.mark_bad()
    after = reboot(root)
    assert after.booted_slot() == "B" and after.bad_slots() == ["A"]


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ([file_member("VERSION", b"1\n"), file_member("../evil", b"x")], "unsafe"),
        ([file_member("VERSION", b"1\n"), file_member("/tmp/evil-abs", b"x")], "unsafe"),
        ([file_member("VERSION", b"1\n"), link_member("l", "/etc/x", tarfile.SYMTYPE)], "unsafe"),
        ([file_member("VERSION", b"1\n"), link_member("l", "../../x", tarfile.SYMTYPE)], "unsafe"),
        ([file_member("VERSION", b"1\n"), link_member("h", "/etc/x", tarfile.LNKTYPE)], "unsafe"),
        ([file_member("VERSION", b"1\n"), file_member("a/../../b", b"x")], "unsafe"),
        ([file_member("app.py", b"x")], "no VERSION"),
        ([link_member("VERSION", "/etc/hostname", tarfile.SYMTYPE)], "unsafe"),
        ([file_member("VERSION", b"")], "VERSION must be"),
        ([file_member("VERSION", b"1\n2\n")], "VERSION must be"),
        ([file_member("VERSION", b"x" * 51)], "VERSION must be"),
    ],
)  # fmt: skip
async def test_unsafe_or_incomplete_archives_are_refused(
    root: Path,
    tmp_path: Path,
    members: list[tuple[tarfile.TarInfo, bytes | None]],
    reason: str,
) -> None:
    slots = reboot(root)
    await slots.install(make_release_tarball(tmp_path / "good.tar.gz", "1.0"))
    image = tarball(tmp_path / "bad.tar.gz", members)
    with pytest.raises(InstallError, match=reason):
        await slots.install(image)
    assert "evil" not in listing(tmp_path) and "evil-abs" not in listing(Path("/tmp"))
    assert slots.slot_version("B") == "1.0"  # the previous content of B is intact
    assert listing(root) == ["B", "state.json"]


@pytest.mark.parametrize("content", [b"", b"not a tarball at all", b"\x1f\x8b\x08\x00garbage"])
async def test_not_an_archive(root: Path, tmp_path: Path, content: bytes) -> None:
    image = tmp_path / "x.tar.gz"
    image.write_bytes(content)
    with pytest.raises(InstallError, match="not a valid release archive"):
        await reboot(root).install(image)


def test_activate_trial_rejects_the_booted_or_an_empty_slot(root: Path) -> None:
    slots = reboot(root)
    with pytest.raises(InstallError, match="booted slot"):
        slots.activate_trial("A")
    with pytest.raises(InstallError, match="no release"):
        slots.activate_trial("B")
    with pytest.raises(InstallError, match="unknown slot"):
        slots.activate_trial("C")
    with pytest.raises(ValueError):
        slots.activate_trial("B", attempts=0)


def test_corrupt_state_file_falls_back_to_defaults(root: Path) -> None:
    root.mkdir()
    (root / "state.json").write_text("{not json")
    slots = reboot(root)
    assert slots.booted_slot() == "A" and slots.primary_slot() == "A"
