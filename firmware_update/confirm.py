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

from firmware_update.blocking import run_blocking
from firmware_update.machine import CrashLoopDetected, Event, HealthFailed, HealthOk, Rebooted
from firmware_update.slots import SlotBackend

log = logging.getLogger(__name__)


class HalHealth(Protocol):
    def hal_ok(self) -> bool:
        """True when no EVSE reports an active hardware fault."""


async def boot_event(slots: SlotBackend, target_slot: str | None) -> Event:
    """The machine event for this boot, given the slot the update installed into.

    Counts a trial boot as a side effect (call it once per start). The slot backend
    is asked in a worker thread.

    Raises:
        Whatever the slot backend raises (``InstallError``, ``OSError``): the manager
        turns that into ``BootUnknown``.
    """

    def probe() -> Event:
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

    return await run_blocking(probe)


async def check_health(
    slots: SlotBackend,
    hal: HalHealth,
    wait_registered: Callable[[], Awaitable[object]],
    *,
    timeout_s: float,
) -> Event:
    """Confirm the booted slot: registered, health-check ok, HAL ok -> mark good.

    Args:
        slots: The slot backend (its ``health_check`` runs the slot's script; its
            synchronous methods run in a worker thread).
        hal: Reports HAL faults of the station.
        wait_registered: Returns once BootNotification was Accepted.
        timeout_s: Bound on registration and on the health check each, s.

    Returns:
        ``HealthOk`` after ``mark_good``; ``HealthFailed`` otherwise, including when
        the slot backend fails (health check raising, ``mark_good`` raising): the
        manager then reverts.
    """
    try:
        await asyncio.wait_for(wait_registered(), timeout_s)
    except TimeoutError:
        log.error("firmware: not registered with the CSMS within %.0f s", timeout_s)
        return HealthFailed()
    try:
        ok, detail = await slots.health_check(timeout_s)
    except Exception:
        log.exception("firmware: health check of the booted slot raised")
        return HealthFailed()
    if not ok:
        log.error("firmware: health check of the booted slot failed: %s", detail)
        return HealthFailed()
    if not hal.hal_ok():
        log.error("firmware: hardware faults after the update")
        return HealthFailed()

    def confirm_slot() -> tuple[str, str]:
        version, slot = slots.booted_version(), slots.booted_slot()
        slots.mark_good()  # last: a failure before it must not leave a confirmed slot
        return version, slot

    try:
        version, slot = await run_blocking(confirm_slot)
    except Exception:
        log.exception("firmware: the slot backend could not confirm the booted slot")
        return HealthFailed()
    log.info("firmware %s confirmed in slot %s", version, slot)
    return HealthOk()
