"""The slot backend role: where a new firmware image is installed and how it is booted."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class InstallError(Exception):
    """Installing or switching slots failed (str = one-line reason).

    Raised for a bad archive, a member escaping the slot (path traversal, links out),
    a missing or invalid VERSION, a slot backend command failing, or an impossible switch.
    """


class SlotBackend(Protocol):
    """A/B slots: the booted one runs, the other receives updates.

    "Booting" is backend specific: for the ``dir`` backend it is the next start of the
    agent (it reads the slot state on construction); for ``rauc`` it is a real reboot
    through the bootloader. The backend never modifies the booted slot's content.

    The synchronous methods block: file writes with fsync (``dir``), or a ``rauc``
    subprocess bounded by its timeout (seconds). Callers in the event loop run them in a
    worker thread (``firmware_update.blocking.run_blocking``), one call at a time: a
    backend is not thread-safe. The two coroutine methods run their work off the event
    loop themselves. Any method may raise ``OSError`` when its state cannot be written.
    """

    def booted_slot(self) -> str:
        """Name of the slot this boot runs from ("A"/"B" for dir, the rauc bootname)."""
        ...

    def booted_version(self) -> str:
        """Firmware version of the booted slot (BootNotification.firmwareVersion); the
        backend's default version when the slot has none."""
        ...

    def slot_version(self, slot: str) -> str | None:
        """Version installed in ``slot``, or None when the slot is empty/unknown."""
        ...

    async def install(self, image: Path) -> str:
        """Install ``image`` into the inactive slot and return that slot's name.

        Raises:
            InstallError: Bad image, unsafe archive, missing VERSION, backend failure.
        """
        ...

    def activate_trial(self, slot: str, *, attempts: int = 1) -> None:
        """Arm ``slot`` so that the next ``attempts`` boots try it; until ``mark_good`` the
        primary slot stays the fallback.

        Raises:
            InstallError: ``slot`` is unknown, empty or the booted slot, or the backend
                command failed or timed out.
        """
        ...

    def is_trial(self) -> bool:
        """True when the booted slot is an armed, not yet confirmed trial."""
        ...

    def note_trial_boot(self) -> int:
        """Count this boot of the trial slot (once per boot; later calls repeat the value).

        Returns:
            Boots of the trial left after this one (0: this is the last try; if it ends
            unconfirmed the next boot runs the primary slot). 0 when not in a trial.
        """
        ...

    def mark_good(self) -> None:
        """Confirm the booted slot: it becomes the primary; the trial ends.

        Raises:
            InstallError: The backend command failed or timed out.
        """
        ...

    def mark_bad(self) -> None:
        """The update failed: mark the trial slot bad (the booted trial, or an armed trial
        whose attempts ran out while the primary booted) and keep/make the other slot
        primary. The next boot runs the other slot.

        Raises:
            InstallError: There is no other slot to fall back to, or the backend command
                failed or timed out.
        """
        ...

    async def health_check(self, timeout_s: float) -> tuple[bool, str]:
        """Run the booted slot's health check, bounded by ``timeout_s``.

        Returns:
            (ok, one-line detail). A slot without a check is ok.
        """
        ...
