"""Whole-app scenarios: the agent built by ``agent.app.App`` from a config, on
simulated hardware, against the CSMS emulator over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ocpp.v16 import call

from agent.app import App, ExitReason
from agent.config import parse_config, sim_defaults
from hil.csms import CsmsEmulator
from hil.scenario import (
    AllOf,
    Csms,
    Expect,
    ExpectLocal,
    ExpectNone,
    ExpectStatus,
    Offline,
    Online,
    Sim,
    Step,
    run_scenario,
)

CP = "SYS-CP"


@pytest.fixture
async def csms() -> AsyncIterator[CsmsEmulator]:
    async with CsmsEmulator(heartbeat_interval_s=300) as emulator:
        yield emulator


@pytest.fixture
async def app(csms: CsmsEmulator, tmp_path: Path) -> AsyncIterator[App]:
    data = sim_defaults(tmp_path, csms.url, CP)
    data["ocpp"] = {"meter_value_sample_interval_s": 1, "allow_offline_tx_for_unknown_id": True}
    data["csms"].update(reconnect_min_s=0.05, reconnect_max_s=0.2)
    agent = App(parse_config(data))
    runner = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.started.wait(), 10)
    await csms.wait_for("StatusNotification", count=2, cp_id=CP)
    yield agent
    agent.stop()
    assert await runner == ExitReason.STOPPED


SCENARIOS: dict[str, list[Step]] = {
    "local session with a pause": [
        Sim("plug"),
        ExpectStatus(1, "Preparing", contactor_on=False),
        Sim("swipe", "TAG-1"),
        Expect("Authorize", idTag="TAG-1"),
        AllOf(
            Expect("StartTransaction", idTag="TAG-1", connectorId=1),
            ExpectStatus(1, "Charging", contactor_on=True),
        ),
        Expect("MeterValues", transactionId=1),
        Sim("pause"),
        ExpectStatus(1, "SuspendedEV", contactor_on=False),
        Sim("resume"),
        ExpectStatus(1, "Charging", contactor_on=True),
        Sim("unplug"),
        AllOf(
            Expect("StopTransaction", transactionId=1, reason="EVDisconnected"),
            ExpectStatus(1, "Available", contactor_on=False),
        ),
    ],
    "remote start then plug": [
        Csms(call.RemoteStartTransaction(id_tag="REMOTE-1", connector_id=1), status="Accepted"),
        ExpectStatus(1, "Preparing"),
        ExpectNone("StartTransaction"),
        Sim("plug"),
        AllOf(
            Expect("StartTransaction", idTag="REMOTE-1"),
            ExpectStatus(1, "Charging", contactor_on=True),
        ),
        Csms(call.RemoteStopTransaction(transaction_id=1), status="Accepted"),
        AllOf(
            Expect("StopTransaction", transactionId=1, reason="Remote"),
            ExpectStatus(1, "Finishing", contactor_on=False),
        ),
        Sim("unplug"),
        ExpectStatus(1, "Available"),
    ],
    # A weld shows when the coil opens and the mirror contact stays closed.
    "welded contactor faults and recovers": [
        Sim("plug"),
        Sim("swipe", "TAG-2"),
        ExpectStatus(1, "Charging", contactor_on=True),
        Sim("fault", "contactor-welded"),
        Sim("pause"),
        ExpectStatus(1, "Faulted", error_code="PowerSwitchFailure", contactor_on=False),
        Sim("clear"),
        ExpectStatus(1, "SuspendedEV", contactor_on=False),
        Sim("resume"),
        ExpectStatus(1, "Charging", contactor_on=True),
        Sim("swipe", "TAG-2"),
        Expect("StopTransaction", reason="Local"),
    ],
    "pilot error faults and recovers": [
        Sim("plug"),
        Sim("swipe", "TAG-3"),
        ExpectStatus(1, "Charging", contactor_on=True),
        Sim("fault", "cp-error"),
        ExpectStatus(1, "Faulted", error_code="OtherError", contactor_on=False),
        Sim("clear"),
        ExpectStatus(1, "Charging", contactor_on=True),
    ],
    "inoperative refuses, operative again starts": [
        Csms(call.ChangeAvailability(connector_id=1, type="Inoperative"), status="Accepted"),
        ExpectStatus(1, "Unavailable"),
        Sim("plug"),
        Sim("swipe", "TAG-4"),
        Csms(call.ChangeAvailability(connector_id=1, type="Operative"), status="Accepted"),
        ExpectStatus(1, "Preparing"),
        ExpectNone("StartTransaction"),
        Sim("swipe", "TAG-4"),
        Expect("StartTransaction", idTag="TAG-4"),
    ],
    "offline session is delivered after reconnect": [
        Offline(),
        Sim("plug"),
        Sim("swipe", "OFFLINE-1"),
        ExpectLocal(1, "Charging", contactor_on=True),
        Sim("pause"),
        ExpectLocal(1, "SuspendedEV", contactor_on=False),
        Sim("resume"),
        ExpectLocal(1, "Charging", contactor_on=True),
        Sim("unplug"),
        ExpectLocal(1, "Available", contactor_on=False),
        Online(),
        Expect("StartTransaction", idTag="OFFLINE-1"),
        Expect("StopTransaction", transactionId=1, reason="EVDisconnected"),
    ],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_scenario(name: str, app: App, csms: CsmsEmulator) -> None:
    received = await run_scenario(SCENARIOS[name], target=app, csms=csms, cp_id=CP)
    starts = [c for c in received if c.action == "StartTransaction"]
    stops = [c for c in received if c.action == "StopTransaction"]
    assert len(starts) <= 1 and len(stops) <= 1, "a transaction was sent twice"
