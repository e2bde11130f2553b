"""The whole app with a CHAdeMO connector: the "chademo-can" pilot on the python-can
virtual bus talking to the simulated CHAdeMO vehicle, the other roles simulated, the
agent built by ``agent.app.App`` from its config and connected to the CSMS emulator."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from agent.app import App, ExitReason
from agent.config import parse_config, sim_defaults
from hal.can.chademo_pilot import ChademoCanPilot
from hal.sim.chademo_vehicle import SimChademoVehicle
from hil.csms import CsmsEmulator, ReceivedCall
from tests.conftest import FAST_CSMS_OPTIONS, GUARD_S, registered

CP = "CHADEMO-CP"
_channels = itertools.count()


def _status(status: str, **fields: Any) -> Callable[[ReceivedCall], bool]:
    def match(call: ReceivedCall) -> bool:
        payload = call.payload
        return (
            payload["connectorId"] == 1
            and payload["status"] == status
            and all(payload.get(k) == v for k, v in fields.items())
        )

    return match


@pytest.fixture
async def board(
    tmp_path: Path, make_csms: Callable[..., Awaitable[CsmsEmulator]]
) -> AsyncIterator[tuple[App, SimChademoVehicle, CsmsEmulator]]:
    csms = await make_csms()
    channel = f"chademo-board-{os.getpid()}-{next(_channels)}"
    vehicle = SimChademoVehicle(channel=channel, battery_wh=1_000.0)
    await vehicle.start()
    data = sim_defaults(tmp_path, csms.url, CP)
    data["csms"].update(FAST_CSMS_OPTIONS)
    data["ocpp"] = {
        "meter_value_sample_interval_s": 1,
        "meter_values_sampled_data": ["Energy.Active.Import.Register", "SoC"],
    }
    (evse,) = data["evse"]
    evse["pilot"] = {
        "backend": "chademo-can",
        "interface": "virtual",
        "channel": channel,
        "max_voltage_v": 500,
        "max_current_a": 125,
        "timeout_s": 1.0,
    }
    app = App(parse_config(data), sim_pin_factory=MockFactory())
    runner = asyncio.create_task(app.run())
    try:
        await asyncio.wait_for(app.started.wait(), GUARD_S)
        await registered(csms)
        yield app, vehicle, csms
    finally:
        app.stop()
        assert await asyncio.wait_for(runner, GUARD_S) == ExitReason.STOPPED
        await vehicle.stop()


async def test_a_chademo_session_starts_when_the_vehicle_permits_and_a_lost_link_suspends(
    board: tuple[App, SimChademoVehicle, CsmsEmulator],
) -> None:
    app, vehicle, csms = board
    assert app.station is not None
    pilot = app.station.controllers[1].hw.pilot
    assert isinstance(pilot, ChademoCanPilot)

    vehicle.plug()
    vehicle.permit()
    await csms.wait_for("StatusNotification", predicate=_status("Preparing"), timeout_s=GUARD_S)
    assert not app.coil_is_on(1)
    assert not vehicle.charging_enabled  # not authorized: the charger offers 0 A

    app.apply_sim(1, "swipe", "CHADEMO-TAG")
    start = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    assert start.payload["idTag"] == "CHADEMO-TAG"
    await csms.wait_for("StatusNotification", predicate=_status("Charging"), timeout_s=GUARD_S)
    assert app.coil_is_on(1)
    assert vehicle.charging_enabled
    cap = vehicle.charger_capability
    assert cap is not None and cap.available_current_a == 32  # the EVSE's 32 A limit
    # the vehicle's state of charge (0x102) reaches the CSMS
    values = await csms.wait_for(
        "MeterValues",
        predicate=lambda c: any(
            v.get("measurand") == "SoC"
            for mv in c.payload["meterValue"]
            for v in mv["sampledValue"]
        ),
        timeout_s=GUARD_S,
    )
    (soc,) = [
        v
        for mv in values.payload["meterValue"]
        for v in mv["sampledValue"]
        if v.get("measurand") == "SoC"
    ]
    assert 40.0 <= float(soc["value"]) <= 100.0
    assert soc.get("location") == "EV"

    vehicle.go_silent()
    # OCPP 1.6 4.9 / REFERENCE 2.3: EVCommunicationError goes with SuspendedEVSE during
    # a transaction, never with Faulted; the output is off all the same
    faulted = await csms.wait_for(
        "StatusNotification",
        predicate=_status("SuspendedEVSE", errorCode="EVCommunicationError"),
        timeout_s=GUARD_S,
    )
    assert "0x102" in faulted.payload.get("info", "")
    assert not app.coil_is_on(1)
    assert not any(
        c.payload["status"] == "Faulted" for c in csms.received if c.action == "StatusNotification"
    )

    # frames back: the fault clears and the vehicle charges again
    vehicle.resume()
    await csms.wait_for(
        "StatusNotification",
        predicate=lambda c: c.seq > faulted.seq and _status("Charging")(c),
        timeout_s=GUARD_S,
    )
    assert app.coil_is_on(1)

    # a proper end: a normal stop request, then the vehicle goes quiet (unplugged)
    vehicle.unplug()
    stop = await csms.wait_for("StopTransaction", timeout_s=GUARD_S)
    assert stop.payload["reason"] == "EVDisconnected"
    await csms.wait_for(
        "StatusNotification",
        predicate=lambda c: c.seq > faulted.seq and _status("Available")(c),
        timeout_s=GUARD_S,
    )
    assert not app.coil_is_on(1)
