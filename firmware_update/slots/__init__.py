"""A/B slot backends: ``DirSlots`` (release directories) and ``RaucSlots`` (RAUC)."""

from typing import TYPE_CHECKING, Any

from firmware_update.slots.base import InstallError, SlotBackend
from firmware_update.slots.directory import DirSlots

if TYPE_CHECKING:
    from firmware_update.slots.rauc import RaucSlots

__all__ = ["DirSlots", "InstallError", "RaucSlots", "SlotBackend"]


def __getattr__(name: str) -> Any:
    """``RaucSlots`` is imported on first use: only RAUC boards need it at start."""
    if name == "RaucSlots":
        from firmware_update.slots.rauc import RaucSlots

        return RaucSlots
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
