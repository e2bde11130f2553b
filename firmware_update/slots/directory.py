"""``dir`` slot backend: an A/B pair of release directories for the agent itself.

Layout::

    <root>/A/, <root>/B/     unpacked releases (VERSION at the root, optional health-check)
    <root>/state.json        {"primary", "trial", "attempts_left", "bad"}

There is no bootloader: "booting" a slot means the next start of the agent constructs a
``DirSlots``, which reads ``state.json`` once and latches the booted slot: the armed trial
slot while it has attempts left, else the primary. Switching is atomic because only
``state.json`` decides, and it is replaced atomically (temporary file, fsync, rename,
directory fsync). The booted slot's directory is never written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from firmware_update.blocking import run_blocking
from firmware_update.durable import fsync_dir, write_atomic
from firmware_update.slots._process import run_check
from firmware_update.slots.base import InstallError

SLOTS = ("A", "B")
VERSION_FILE = "VERSION"
HEALTH_CHECK_FILE = "health-check"
STATE_FILE = "state.json"
VERSION_MAX_CHARS = 50  # OCPP 1.6 BootNotification.firmwareVersion is CiString50

_log = logging.getLogger(__name__)


@dataclass
class _State:
    primary: str = "A"
    trial: str | None = None
    attempts_left: int = 0
    bad: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Any) -> _State:
        if not isinstance(data, dict):
            raise ValueError("state is not an object")
        state = cls(
            primary=data.get("primary", "A"),
            trial=data.get("trial"),
            attempts_left=int(data.get("attempts_left", 0)),
            bad=[s for s in data.get("bad", []) if s in SLOTS],
        )
        if state.primary not in SLOTS or state.trial not in (None, *SLOTS):
            raise ValueError(f"unknown slot in state: {data!r}")
        return state

    def to_json(self) -> dict[str, Any]:
        return {
            "primary": self.primary,
            "trial": self.trial,
            "attempts_left": self.attempts_left,
            "bad": sorted(set(self.bad)),
        }


def other_slot(slot: str) -> str:
    """The other slot of the pair."""
    return "B" if slot == "A" else "A"


class DirSlots:
    """A/B release directories under ``root`` (see the module docstring).

    Not thread-safe: make one call at a time. The synchronous methods write and fsync
    ``state.json``; callers in the event loop run them in a worker thread (the firmware
    manager does). One instance per agent start (the booted slot is latched on
    construction).
    """

    def __init__(self, root: Path, *, default_version: str) -> None:
        """Args:
        root: Slots directory (created if missing), e.g. ``<data-dir>/slots``.
        default_version: Reported for a slot without VERSION (the agent as packaged,
            before any update).
        """
        self._root = root
        self._default_version = default_version
        root.mkdir(parents=True, exist_ok=True)
        self._state = self._read_state()
        trial = self._state.trial
        if trial is not None and self._state.attempts_left > 0 and trial not in self._state.bad:
            self._booted = trial
        else:
            self._booted = self._state.primary
        self._noted: int | None = None

    @property
    def root(self) -> Path:
        """The slots directory."""
        return self._root

    def slot_dir(self, slot: str) -> Path:
        """Directory of ``slot``.

        Raises:
            InstallError: Not "A" or "B".
        """
        if slot not in SLOTS:
            raise InstallError(f"unknown slot {slot!r} (slots: A, B)")
        return self._root / slot

    def booted_slot(self) -> str:
        """The slot this start runs from."""
        return self._booted

    def primary_slot(self) -> str:
        """The confirmed slot (the fallback of a trial)."""
        return self._state.primary

    def trial_slot(self) -> str | None:
        """The armed, unconfirmed trial slot, if any (booted or not)."""
        return self._state.trial

    def bad_slots(self) -> list[str]:
        """Slots marked bad (cleared when a new image is installed into them)."""
        return sorted(set(self._state.bad))

    def booted_version(self) -> str:
        """VERSION of the booted slot, or the default version."""
        return self.slot_version(self._booted) or self._default_version

    def slot_version(self, slot: str) -> str | None:
        """VERSION of ``slot`` (stripped), or None when the slot has none."""
        try:
            return (self.slot_dir(slot) / VERSION_FILE).read_text().strip() or None
        except (OSError, UnicodeDecodeError):
            return None

    async def install(self, image: Path) -> str:
        """Unpack the ``.tar.gz`` release ``image`` into the inactive slot.

        The archive is extracted with tarfile's ``data`` filter into a staging directory
        (absolute names, ``..`` components, links pointing outside, device files are
        refused), its
        VERSION is checked (one line, 1-50 printable characters), then the staging
        directory replaces the inactive slot. A trial armed for that slot is disarmed and
        a "bad" mark on it cleared. Runs in a worker thread; a cancellation waits for it.

        Returns:
            The slot installed into.

        Raises:
            InstallError: Not a readable tar archive, unsafe member, missing/invalid
                VERSION, a file system error, or the booted slot is an unconfirmed trial
                (the inactive slot is then its fallback).
        """
        if self.is_trial():
            # The inactive slot is the fallback of this unconfirmed trial: keep it.
            raise InstallError(
                f"slot {self._booted} is an unconfirmed trial: confirm or roll back first"
            )
        target = other_slot(self._booted)
        version = await run_blocking(self._install_into, image, target)
        _log.info("installed %s into slot %s", version, target)
        return target

    def activate_trial(self, slot: str, *, attempts: int = 1) -> None:
        """Arm ``slot``: the next ``attempts`` agent starts run it until ``mark_good``.

        Raises:
            InstallError: Unknown slot, the booted slot, or a slot without VERSION.
            ValueError: ``attempts`` < 1.
        """
        self.slot_dir(slot)
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        if slot == self._booted:
            raise InstallError(f"slot {slot} is the booted slot")
        if self.slot_version(slot) is None:
            raise InstallError(f"slot {slot} holds no release")
        self._state.trial, self._state.attempts_left = slot, attempts
        self._state.bad = [s for s in self._state.bad if s != slot]
        self._write_state()

    def is_trial(self) -> bool:
        """True when this start runs the armed, unconfirmed trial slot."""
        return self._state.trial is not None and self._state.trial == self._booted

    def note_trial_boot(self) -> int:
        """Count this start against the trial's attempts (once per start).

        Returns:
            Starts of the trial left after this one; 0 when not in a trial.
        """
        if self._noted is not None:
            return self._noted
        if not self.is_trial():
            self._noted = 0
            return 0
        self._state.attempts_left = max(0, self._state.attempts_left - 1)
        self._write_state()
        self._noted = self._state.attempts_left
        return self._noted

    def mark_good(self) -> None:
        """Confirm the booted slot; a booted trial becomes the primary."""
        if self.is_trial():
            self._state.primary = self._booted
            self._state.trial, self._state.attempts_left = None, 0
        self._state.bad = [s for s in self._state.bad if s != self._booted]
        self._write_state()

    def mark_bad(self) -> None:
        """Mark the failed slot bad (see ``SlotBackend.mark_bad``).

        * booted trial: it is marked bad and disarmed; the primary is the other slot;
        * primary booted with a trial armed (attempts ran out, or not yet booted): that
          trial slot is marked bad and disarmed;
        * primary booted, no trial: the other slot becomes primary if it holds a release
          that is not bad.

        Raises:
            InstallError: No other slot to fall back to (last case).
        """
        state = self._state
        if state.trial is not None:
            state.bad.append(state.trial)
            state.trial, state.attempts_left = None, 0
        else:
            other = other_slot(self._booted)
            if self.slot_version(other) is None or other in state.bad:
                raise InstallError(f"slot {self._booted} is the only usable slot")
            state.bad.append(self._booted)
            state.primary = other
        self._write_state()

    async def health_check(self, timeout_s: float) -> tuple[bool, str]:
        """Run ``<booted slot>/health-check`` (cwd = the slot directory).

        Returns:
            (True, ...) when the slot has no health-check or it exits 0 in time;
            (False, reason) when it is not executable, fails, or times out (killed).
        """
        script = self.slot_dir(self._booted) / HEALTH_CHECK_FILE
        if not script.is_file():
            return True, f"slot {self._booted} has no {HEALTH_CHECK_FILE}"
        if not os.access(script, os.X_OK):
            return False, f"{HEALTH_CHECK_FILE} of slot {self._booted} is not executable"
        return await run_check([str(script)], cwd=script.parent, timeout_s=timeout_s)

    # -- internals --------------------------------------------------------------------

    def _install_into(self, image: Path, target: str) -> str:
        version = self._unpack(image, target)
        if self._state.trial == target:
            self._state.trial, self._state.attempts_left = None, 0
        self._state.bad = [s for s in self._state.bad if s != target]
        self._write_state()
        return version

    def _unpack(self, image: Path, target: str) -> str:
        staging = self._root / f".incoming-{target}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            try:
                with tarfile.open(image, "r:*") as tar:
                    tar.extractall(staging, filter=_strict_filter)
            except tarfile.FilterError as e:
                raise InstallError(f"unsafe archive member: {e}") from None
            except (tarfile.TarError, EOFError, zlib.error) as e:
                raise InstallError(f"not a valid release archive: {e}") from None
            except OSError as e:
                raise InstallError(f"cannot unpack {image.name}: {e}") from None
            version = _read_version(staging)
            slot = self._root / target
            trash = self._root / f".old-{target}"
            shutil.rmtree(trash, ignore_errors=True)
            if slot.exists():
                os.rename(slot, trash)
            os.rename(staging, slot)
            fsync_dir(self._root)
            shutil.rmtree(trash, ignore_errors=True)
            return version
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _read_state(self) -> _State:
        path = self._root / STATE_FILE
        try:
            return _State.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            return _State()
        except (OSError, ValueError, TypeError) as e:
            _log.error("slot state %s unreadable (%s): using defaults", path, e)
            return _State()

    def _write_state(self) -> None:
        path = self._root / STATE_FILE
        write_atomic(path, json.dumps(self._state.to_json(), indent=1).encode())


def _strict_filter(member: tarfile.TarInfo, dest_path: str) -> tarfile.TarInfo | None:
    """tarfile's ``data`` filter, plus: no absolute names and no ``..`` components at all
    (the data filter would strip a leading ``/`` and allow ``a/../b``)."""
    if member.name.startswith("/"):
        raise tarfile.AbsolutePathError(member)
    if ".." in PurePosixPath(member.name).parts:
        raise tarfile.OutsideDestinationError(member, member.name)
    return tarfile.data_filter(member, dest_path)


def _read_version(directory: Path) -> str:
    path = directory / VERSION_FILE
    if path.is_symlink() or not path.is_file():
        raise InstallError(f"release has no {VERSION_FILE} file at its root")
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise InstallError(f"unreadable {VERSION_FILE}: {e}") from None
    if not text or "\n" in text or len(text) > VERSION_MAX_CHARS or not text.isprintable():
        raise InstallError(
            f"{VERSION_FILE} must be one line of 1-{VERSION_MAX_CHARS} printable characters"
        )
    return text
