"""Shared pieces of the 2.0.1 adapter tests: an emulator fixture factory and waits."""

from __future__ import annotations

from typing import Any

from hil.csms import ReceivedCall
from hil.csms201 import CsmsEmulator201
from tests.conftest import GUARD_S, RunningApp, StartApp

CP = "CP1"
V201 = {"ocpp_version": "2.0.1"}


async def registered201(csms: CsmsEmulator201, after_seq: int = 0) -> ReceivedCall:
    """Wait for a BootNotification after ``after_seq`` and, after it, the status of EVSE 1
    connector 1 (the station is then registered and reporting); return the boot CALL."""
    boot = await csms.wait_for(
        "BootNotification", predicate=lambda c: c.seq > after_seq, timeout_s=GUARD_S
    )
    await csms.wait_for(
        "StatusNotification",
        predicate=lambda c: c.seq > boot.seq and c.payload["evseId"] == 1,
        timeout_s=GUARD_S,
    )
    return boot


async def start_registered(csms: CsmsEmulator201, start_app: StartApp, **kwargs: Any) -> RunningApp:
    """A 2.0.1 agent, registered (boot answered, connectors reported)."""
    options = {**V201, **kwargs.pop("csms_options", {})}
    running = await start_app(csms, csms_options=options, **kwargs)
    await registered201(csms)
    return running
