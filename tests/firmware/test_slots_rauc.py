"""firmware_update.slots.RaucSlots against a fake ``rauc`` executable.

The fake is a small script written into tmp_path: it keeps the slot table in a JSON file,
records every invocation, answers ``status --detailed --output-format=json`` in RAUC's
shape, and emulates ``install`` / ``status mark-*``. It is the only test double.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from firmware_update.slots import InstallError, RaucSlots, SlotBackend

FAKE_RAUC = r"""#!{python}
import json, sys
from pathlib import Path

STATE = Path({state!r})
LOG = Path({log!r})
args = sys.argv[1:]
with LOG.open("a") as f:
    f.write(json.dumps(args) + "\n")
state = json.loads(STATE.read_text())
if state.get("fail"):
    print("rauc: " + state["fail"], file=sys.stderr)
    sys.exit(1)
slots = state["slots"]
def other(name):
    return next(n for n in slots if n != name)
def by_id(ident):
    if ident == "booted":
        return state["booted"]
    if ident == "other":
        return other(state["booted"])
    return ident
if args[:1] == ["install"]:
    text = Path(args[1]).read_text()
    if text.startswith("BROKEN"):
        print("Failed to check bundle signature: signature verification failed", file=sys.stderr)
        sys.exit(1)
    target = other(state["booted"])
    slots[target]["version"] = text.strip()
    slots[target]["boot_status"] = "good"
    if not state.get("install_keeps_primary"):
        state["primary"] = target
    print("installing 100% Installing done.")
elif args[:2] == ["status", "mark-good"]:
    slots[by_id(args[2])]["boot_status"] = "good"
elif args[:2] == ["status", "mark-bad"]:
    name = by_id(args[2])
    slots[name]["boot_status"] = "bad"
    state["primary"] = other(name)
elif args[:2] == ["status", "mark-active"]:
    state["primary"] = by_id(args[2])
elif args[:1] == ["status"]:
    if state.get("garbage"):
        print("this is not json")
        sys.exit(0)
    out = {{
        "compatible": "evse-board",
        "variant": "",
        "booted": slots[state["booted"]]["bootname"],
        "boot_primary": state["primary"],
        "slots": [
            {{name: {{
                "class": "rootfs",
                "device": "/dev/mmcblk0p" + str(i + 2),
                "type": "ext4",
                "bootname": s["bootname"],
                "state": "booted" if name == state["booted"] else "inactive",
                "parent": None,
                "mountpoint": "/" if name == state["booted"] else None,
                "boot_status": s["boot_status"],
                "slot_status": {{"bundle": {{"compatible": "evse", "version": s["version"]}}}},
            }}}}
            for i, (name, s) in enumerate(slots.items())
        ],
    }}
    print(json.dumps(out))
else:
    print("unknown command", file=sys.stderr)
    sys.exit(2)
STATE.write_text(json.dumps(state))
"""


class FakeRauc:
    def __init__(self, tmp_path: Path) -> None:
        self.state_path = tmp_path / "fake-rauc-state.json"
        self.log_path = tmp_path / "fake-rauc-calls.jsonl"
        self.script = tmp_path / "rauc"
        self.script.write_text(
            FAKE_RAUC.format(
                python=sys.executable, state=str(self.state_path), log=str(self.log_path)
            )
        )
        self.script.chmod(0o755)
        self.write(
            {
                "booted": "rootfs.0",
                "primary": "rootfs.0",
                "slots": {
                    "rootfs.0": {"bootname": "A", "version": "1.0.0", "boot_status": "good"},
                    "rootfs.1": {"bootname": "B", "version": None, "boot_status": "good"},
                },
            }
        )

    def read(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state_path.read_text())
        return data

    def write(self, state: dict[str, Any]) -> None:
        self.state_path.write_text(json.dumps(state))

    def update(self, **changes: Any) -> None:
        self.write({**self.read(), **changes})

    def reboot(self) -> None:
        """The bootloader boots the primary slot."""
        self.update(booted=self.read()["primary"])

    def calls(self) -> list[list[str]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def marks(self) -> list[list[str]]:
        return [c for c in self.calls() if c[:1] == ["status"] and len(c) == 3]


@pytest.fixture
def fake(tmp_path: Path) -> FakeRauc:
    return FakeRauc(tmp_path)


def slots_for(fake: FakeRauc, tmp_path: Path, **kwargs: Any) -> RaucSlots:
    return RaucSlots(
        (str(fake.script),),
        default_version="0.0.0",
        state_file=tmp_path / "data" / "rauc-trial.json",
        **kwargs,
    )


def bundle(tmp_path: Path, version: str) -> Path:
    path = tmp_path / f"update-{version}.raucb"
    path.write_text(version)
    return path


def test_booted_slot_and_versions_come_from_rauc_status(fake: FakeRauc, tmp_path: Path) -> None:
    slots: SlotBackend = slots_for(fake, tmp_path)
    assert slots.booted_slot() == "A"
    assert slots.booted_version() == "1.0.0"
    assert slots.slot_version("B") is None
    assert slots.slot_version("nope") is None
    assert ["status", "--detailed", "--output-format=json"] in fake.calls()


async def test_install_trial_reboot_confirm(fake: FakeRauc, tmp_path: Path) -> None:
    slots = slots_for(fake, tmp_path)
    image = bundle(tmp_path, "2.0.0")
    assert await slots.install(image) == "B"
    assert ["install", str(image)] in fake.calls()
    assert slots.slot_version("B") == "2.0.0"
    assert fake.read()["primary"] == "rootfs.0"  # not switched before the trial is armed
    slots.activate_trial("B", attempts=3)
    assert fake.marks()[-1] == ["status", "mark-active", "rootfs.1"]
    assert not slots.is_trial()  # still running A

    fake.reboot()
    after = slots_for(fake, tmp_path)
    assert after.booted_slot() == "B" and after.booted_version() == "2.0.0"
    assert after.is_trial()
    assert after.note_trial_boot() == 0
    after.mark_good()
    assert fake.marks()[-1] == ["status", "mark-good", "booted"]
    assert not after.is_trial()
    assert not slots_for(fake, tmp_path).is_trial()  # persisted


async def test_arming_that_fails_leaves_the_booted_slot_primary(
    fake: FakeRauc, tmp_path: Path
) -> None:
    slots = slots_for(fake, tmp_path)
    await slots.install(bundle(tmp_path, "2.0.0"))
    state = fake.read()
    fake.write({**state, "fail": "mark-active: bootloader env not writable"})
    with pytest.raises(InstallError, match="bootloader env not writable"):
        slots.activate_trial("B")
    fake.write(state)
    fake.reboot()  # a power cut now boots the old release, not the unarmed new one
    assert slots_for(fake, tmp_path).booted_slot() == "A"


async def test_failed_trial_is_marked_bad(fake: FakeRauc, tmp_path: Path) -> None:
    slots = slots_for(fake, tmp_path)
    await slots.install(bundle(tmp_path, "2.0.0"))
    slots.activate_trial("B")
    fake.reboot()
    trial = slots_for(fake, tmp_path)
    trial.mark_bad()
    assert fake.marks()[-1] == ["status", "mark-bad", "booted"]
    assert fake.read()["primary"] == "rootfs.0"
    fake.reboot()
    assert slots_for(fake, tmp_path).booted_slot() == "A"


async def test_trial_the_bootloader_gave_up_on_is_marked_bad_by_name(
    fake: FakeRauc, tmp_path: Path
) -> None:
    slots = slots_for(fake, tmp_path)
    await slots.install(bundle(tmp_path, "2.0.0"))
    slots.activate_trial("B")
    # the bootloader ran out of attempts and booted A again
    fallback = slots_for(fake, tmp_path)
    assert fallback.booted_slot() == "A" and not fallback.is_trial()
    fallback.mark_bad()
    assert fake.marks()[-1] == ["status", "mark-bad", "rootfs.1"]


async def test_install_failure_reports_rauc_error_line(fake: FakeRauc, tmp_path: Path) -> None:
    slots = slots_for(fake, tmp_path)
    broken = tmp_path / "broken.raucb"
    broken.write_text("BROKEN")
    with pytest.raises(InstallError, match="signature verification failed"):
        await slots.install(broken)
    assert fake.read()["primary"] == "rootfs.0"


async def test_install_that_leaves_the_booted_slot_primary_is_an_error(
    fake: FakeRauc, tmp_path: Path
) -> None:
    fake.update(install_keeps_primary=True)
    with pytest.raises(InstallError, match="left the booted slot primary"):
        await slots_for(fake, tmp_path).install(bundle(tmp_path, "2.0.0"))


def test_rauc_failures_are_install_errors(fake: FakeRauc, tmp_path: Path) -> None:
    fake.update(fail="D-Bus service not available")
    with pytest.raises(InstallError, match="D-Bus service not available"):
        slots_for(fake, tmp_path).booted_slot()
    fake.update(fail="", garbage=True)
    with pytest.raises(InstallError, match="unexpected rauc status"):
        slots_for(fake, tmp_path).booted_slot()
    missing = RaucSlots((str(tmp_path / "no-such-rauc"),))
    with pytest.raises(InstallError, match="not found"):
        missing.booted_slot()


def test_activate_trial_rejects_the_booted_or_unknown_slot(fake: FakeRauc, tmp_path: Path) -> None:
    slots = slots_for(fake, tmp_path)
    with pytest.raises(InstallError, match="booted slot"):
        slots.activate_trial("A")
    with pytest.raises(InstallError, match="no slot"):
        slots.activate_trial("C")


async def test_health_check_command(fake: FakeRauc, tmp_path: Path) -> None:
    assert await slots_for(fake, tmp_path).health_check(1.0) == (
        True,
        "no health check configured",
    )
    good = slots_for(fake, tmp_path, health_check_command=["/bin/sh", "-c", "echo fine"])
    assert await good.health_check(5.0) == (True, "fine")
    bad = slots_for(fake, tmp_path, health_check_command=["/bin/sh", "-c", "echo meh; exit 4"])
    assert await bad.health_check(5.0) == (False, "exit code 4: meh")
