"""A/B slot backends: ``DirSlots`` (release directories) and ``RaucSlots`` (RAUC)."""

from firmware_update.slots.base import InstallError, SlotBackend
from firmware_update.slots.directory import DirSlots
from firmware_update.slots.rauc import RaucSlots

__all__ = ["DirSlots", "InstallError", "RaucSlots", "SlotBackend"]
