"""The live hardware report of a diagnostics bundle, read from a running agent on
simulated hardware: the facts match what the devices do, and a device fault marks
exactly that device."""

from __future__ import annotations

import time

from agent.evse.hardware_report import hardware_report
from hil.csms import CsmsEmulator
from tests.conftest import StartApp, registered


async def test_report_shows_a_charging_evse_with_every_device_ok(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    await agent.start_charging(csms, "TAG1")
    await agent.app.wait_status(1, "Charging")
    assert agent.app.station is not None

    report = hardware_report(agent.app.station.controllers, time.monotonic())

    evse = report["1"]
    assert evse["status"] == "Charging" and evse["faults"] == []
    devices = evse["devices"]
    assert devices["contactor"] == {"coil_on": True, "ok": True}
    assert devices["pilot"]["cp_state"] == "C" and devices["pilot"]["output"] == "pwm"
    reading = devices["meter"]["reading"]
    assert reading is not None and reading["age_s"] >= 0
    assert all(entry["ok"] for entry in devices.values())


async def test_a_stuck_contactor_fails_the_contactor_and_nothing_else(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    agent.sim("fault", "contactor-stuck")  # the main contacts will not follow the coil
    await agent.start_charging(csms, "TAG1")
    await agent.app.wait_status(1, "Faulted")
    assert agent.app.station is not None

    report = hardware_report(agent.app.station.controllers, time.monotonic())

    evse = report["1"]
    assert evse["error_code"] == "PowerSwitchFailure"
    assert [f["code"] for f in evse["faults"]] == ["PowerSwitchFailure"]
    devices = evse["devices"]
    assert devices["contactor"] == {"coil_on": False, "ok": False}  # opened on the fault
    assert devices["pilot"]["ok"] and devices["meter"]["ok"]
