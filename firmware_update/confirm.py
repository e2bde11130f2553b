"""Post-boot confirmation of a new slot: what a boot means, and the health checks.

After the reboot the journal says an update was REBOOTING (or CONFIRMING when the
agent died during the checks, REVERTING after a failed check). ``boot_event`` turns
the slot backend's view into the machine's event:

* booted the updated slot while it is a trial: count the boot (``note_trial_boot``);
  attempts used up without a confirmation is a crash loop;
* booted the other slot: the bootloader (or the dir backend's attempt counter)
  fell back by itself, or the revert took effect.

``check_health`` then runs the confirmation (the CSMS accepted BootNotification within
the timeout, the slot's own ``health-check`` passed, no EVSE reports a HAL fault) and
marks the slot good; any failure is ``HealthFailed`` (the manager then marks the slot
bad and reboots into the old one, reporting from the old version).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from firmware_update.machine import CrashLoopDetected, Event, HealthFailed, HealthOk, Rebooted
from firmware_update.slots import SlotBackend

log = logging.getLogger(__name__)


class HalHealth(Protocol):
    def hal_ok(self) -> bool:
        """True when no EVSE reports an active hardware fault."""


def boot_event(slots: SlotBackend, target_slot: str | None) -> Event:
    """The machine event for this boot, given the slot the update installed into.

    Counts a trial boot as a side effect (call it once per start).
    """
    booted = slots.booted_slot()
    if target_slot is None or booted != target_slot:
        log.warning("firmware: booted slot %s, not the updated slot %s", booted, target_slot)
        return Rebooted(booted_new=False)
    if slots.is_trial():
        left = slots.note_trial_boot()
        log.info("firmware: trial boot of slot %s (%d attempts left)", booted, left)
        if left < 0:
            return CrashLoopDetected()
    return Rebooted(booted_new=True)


async def check_health(
    slots: SlotBackend,
    hal: HalHealth,
    wait_registered: Callable[[], Awaitable[object]],
    *,
    timeout_s: float,
) -> Event:
    """Confirm the booted slot: registered, health-check ok, HAL ok -> mark good.

    Args:
        slots: The slot backend (its ``health_check`` runs the slot's script).
        hal: Reports HAL faults of the station.
        wait_registered: Returns once BootNotification was Accepted.
        timeout_s: Bound on registration and on the health check each, s.

    Returns:
        ``HealthOk`` after ``mark_good``; ``HealthFailed`` otherwise (nothing marked).
    """
    try:
        await asyncio.wait_for(wait_registered(), timeout_s)
    except TimeoutError:
        log.error("firmware: not registered with the CSMS within %.0f s", timeout_s)
        return HealthFailed()
    ok, detail = await slots.health_check(timeout_s)
    if not ok:
        log.error("firmware: health check of slot %s failed: %s", slots.booted_slot(), detail)
        return HealthFailed()
    if not hal.hal_ok():
        log.error("firmware: hardware faults after the update")
        return HealthFailed()
    slots.mark_good()
    log.info("firmware %s confirmed in slot %s", slots.booted_version(), slots.booted_slot())
    return HealthOk()
