"""``rauc`` slot backend: drives RAUC through its command line.

Commands used (``rauc/rauc: src/main.c``; REFERENCE 7.3): ``rauc install <bundle>``
(RAUC picks the inactive slot and makes it primary), ``rauc status --detailed
--output-format=json`` (booted slot, primary, per-slot bundle version),
``rauc status mark-active|mark-good|mark-bad <booted|slot name>``. Boot attempt counting
and fallback are the bootloader's job (U-Boot ``BOOT_x_LEFT``, barebox bootchooser, RPi
tryboot custom backend); the agent only confirms or rejects.

Slots are named by their bootname ("A", "B") as in ``rauc status``; a slot without a
bootname is named by its RAUC slot name (``rootfs.1``).

Whether the booted slot is an unconfirmed trial is not visible in RAUC's status, so the
armed trial is recorded in ``state_file`` (on the data partition, which an update does not
overwrite). The synchronous methods run ``rauc`` with ``subprocess.run`` (usually tens of
milliseconds, up to ``timeout_s``) and so block: call them from a worker thread (the
firmware manager does). The booted slot's status is cached for the life of the instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware_update.slots._process import run_check
from firmware_update.slots.base import InstallError

Runner = Callable[[Sequence[str], float], "subprocess.CompletedProcess[str]"]

_log = logging.getLogger(__name__)


def run_subprocess(argv: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Default runner: ``subprocess.run`` capturing text output, no check."""
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout_s, check=False
    )


@dataclass(frozen=True)
class RaucSlot:
    """One slot of ``rauc status`` (name = RAUC slot name, e.g. ``rootfs.0``)."""

    name: str
    bootname: str | None
    state: str
    boot_status: str | None
    version: str | None

    @property
    def label(self) -> str:
        """Bootname, or the slot name when the slot has none."""
        return self.bootname or self.name


@dataclass(frozen=True)
class RaucStatus:
    """Parsed ``rauc status --detailed --output-format=json``."""

    booted: RaucSlot
    primary: str | None
    slots: tuple[RaucSlot, ...]

    @classmethod
    def parse(cls, text: str) -> RaucStatus:
        """Raises: InstallError when the JSON does not have the expected shape."""
        try:
            data = json.loads(text)
            slots: list[RaucSlot] = []
            for entry in data["slots"]:
                for name, info in entry.items():
                    detail = info.get("slot_status") or {}
                    bundle = detail.get("bundle") or {}
                    version = bundle.get("version")
                    slots.append(
                        RaucSlot(
                            name=name,
                            bootname=info.get("bootname"),
                            state=info.get("state") or "",
                            boot_status=info.get("boot_status"),
                            version=version if isinstance(version, str) and version else None,
                        )
                    )
            booted = [s for s in slots if s.state == "booted"]
            if not booted:
                booted = [s for s in slots if s.bootname and s.bootname == data.get("booted")]
            if not booted:
                raise ValueError("no booted slot")
            return cls(booted=booted[0], primary=data.get("boot_primary"), slots=tuple(slots))
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise InstallError(f"unexpected rauc status output: {e}") from None

    def find(self, slot: str) -> RaucSlot:
        """The bootable slot with this bootname (or slot name).

        Raises:
            InstallError: No such slot.
        """
        for candidate in self.slots:
            if slot in (candidate.bootname, candidate.name):
                return candidate
        raise InstallError(f"rauc knows no slot {slot!r}")


class RaucSlots:
    """Slot backend over the ``rauc`` command line (see the module docstring)."""

    def __init__(
        self,
        command: Sequence[str] = ("rauc",),
        *,
        default_version: str = "0.0.0",
        state_file: Path | None = None,
        runner: Runner | None = None,
        timeout_s: float = 30.0,
        install_timeout_s: float = 1800.0,
        health_check_command: Sequence[str] | None = None,
    ) -> None:
        """Args:
        command: How to call rauc (e.g. ``("rauc", "--conf=/etc/rauc/system.conf")``).
        default_version: Reported when the booted slot has no bundle version.
        state_file: Where the armed trial is recorded (None: in memory only, so a
            trial is not recognised after a reboot).
        runner: Runs a synchronous rauc command (tests; default ``subprocess.run``).
        timeout_s: Bound on status/mark commands.
        install_timeout_s: Bound on ``rauc install``.
        health_check_command: Run by ``health_check`` (exit 0 = healthy); None: healthy.
        """
        self._command = tuple(command)
        self._default_version = default_version
        self._state_file = state_file
        self._runner = runner or run_subprocess
        self._timeout_s = timeout_s
        self._install_timeout_s = install_timeout_s
        self._health_check_command = tuple(health_check_command or ())
        self._booted: RaucSlot | None = None
        self._trial: str | None = self._read_trial()

    # -- status -------------------------------------------------------------------------

    def status(self) -> RaucStatus:
        """Run ``rauc status --detailed --output-format=json`` now.

        Raises:
            InstallError: rauc missing, failing, timing out, or unexpected output.
        """
        output = self._run("status", "--detailed", "--output-format=json")
        status = RaucStatus.parse(output)
        if self._booted is None:
            self._booted = status.booted
        return status

    def _booted_slot(self) -> RaucSlot:
        if self._booted is None:
            self.status()
        assert self._booted is not None
        return self._booted

    def booted_slot(self) -> str:
        """Bootname of the booted slot (cached)."""
        return self._booted_slot().label

    def booted_version(self) -> str:
        """Bundle version of the booted slot, or the default version."""
        return self._booted_slot().version or self._default_version

    def slot_version(self, slot: str) -> str | None:
        """Bundle version RAUC recorded for ``slot``; None if unknown or no such slot."""
        try:
            return self.status().find(slot).version
        except InstallError:
            return None

    # -- install and switch -------------------------------------------------------------

    async def install(self, image: Path) -> str:
        """``rauc install <image>``; returns the bootname of the slot it installed.

        RAUC makes the installed slot primary; the booted one is made primary again
        (``mark-active booted``) so that only ``activate_trial`` switches.

        Raises:
            InstallError: rauc failed or timed out (its last error line), the primary
                did not move away from the booted slot, or it could not be moved back.
        """
        argv = [*self._command, "install", str(image)]
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as e:
            raise InstallError(f"cannot run {self._command[0]}: {e.strerror or e}") from None
        try:
            out, err = await asyncio.wait_for(process.communicate(), self._install_timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise InstallError(
                f"rauc install timed out after {self._install_timeout_s:g} s"
            ) from None
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.shield(process.wait())
            raise
        if process.returncode != 0:
            raise InstallError(f"rauc install failed: {_last_line(err or out)}")
        status = await asyncio.to_thread(self.status)
        if status.primary is None:
            raise InstallError("rauc status reports no primary slot after install")
        target = status.find(status.primary)
        if target.name == self._booted_slot().name:
            raise InstallError("rauc install left the booted slot primary")
        # RAUC made the new slot primary. Until ``activate_trial`` arms it, the booted
        # slot stays the one the next boot runs (the SlotBackend contract): a power cut,
        # or an arming that fails, must not boot an image nobody armed.
        await asyncio.to_thread(self._run, "status", "mark-active", "booted")
        return target.label

    def activate_trial(self, slot: str, *, attempts: int = 1) -> None:
        """``rauc status mark-active <slot>`` and record the trial.

        ``attempts`` is the bootloader's business (e.g. U-Boot ``BOOT_x_LEFT``); it is
        only logged here.

        Raises:
            InstallError: Unknown slot, the booted slot, or rauc failed.
        """
        target = self.status().find(slot)
        if target.name == self._booted_slot().name:
            raise InstallError(f"slot {slot} is the booted slot")
        self._run("status", "mark-active", target.name)
        _log.info("rauc: slot %s armed (the bootloader allows %d attempt(s))", slot, attempts)
        self._set_trial(target.label)

    def is_trial(self) -> bool:
        """True when the booted slot is the recorded, unconfirmed trial."""
        return self._trial is not None and self._trial == self.booted_slot()

    def note_trial_boot(self) -> int:
        """The bootloader counts attempts; RAUC does not report how many are left, so
        this returns 0 ("if this boot is not confirmed, the bootloader falls back")."""
        return 0

    def mark_good(self) -> None:
        """``rauc status mark-good booted``; the trial ends.

        Raises:
            InstallError: rauc failed.
        """
        self._run("status", "mark-good", "booted")
        self._set_trial(None)

    def mark_bad(self) -> None:
        """``rauc status mark-bad`` on the trial (``booted`` when it is the booted slot),
        or on the booted slot when no trial is recorded; the bootloader then boots the
        other slot.

        Raises:
            InstallError: rauc failed.
        """
        if self._trial is not None and not self.is_trial():
            self._run("status", "mark-bad", self.status().find(self._trial).name)
        else:
            self._run("status", "mark-bad", "booted")
        self._set_trial(None)

    async def health_check(self, timeout_s: float) -> tuple[bool, str]:
        """Run ``health_check_command`` (ok when none is configured)."""
        if not self._health_check_command:
            return True, "no health check configured"
        return await run_check(self._health_check_command, cwd=None, timeout_s=timeout_s)

    # -- internals ----------------------------------------------------------------------

    def _run(self, *args: str) -> str:
        argv = [*self._command, *args]
        try:
            result = self._runner(argv, self._timeout_s)
        except FileNotFoundError:
            raise InstallError(f"{self._command[0]} not found") from None
        except subprocess.TimeoutExpired:
            raise InstallError(f"rauc {' '.join(args)} timed out") from None
        except OSError as e:
            raise InstallError(f"cannot run {self._command[0]}: {e}") from None
        if result.returncode != 0:
            raise InstallError(
                f"rauc {' '.join(args)} failed: {_last_line(result.stderr or result.stdout)}"
            )
        return result.stdout

    def _read_trial(self) -> str | None:
        if self._state_file is None:
            return None
        try:
            data: Any = json.loads(self._state_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            _log.error("rauc trial state %s unreadable (%s)", self._state_file, e)
            return None
        trial = data.get("trial") if isinstance(data, dict) else None
        return trial if isinstance(trial, str) else None

    def _set_trial(self, slot: str | None) -> None:
        self._trial = slot
        if self._state_file is None:
            return
        self._state_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._state_file.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"trial": slot}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._state_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _last_line(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no output"
