"""The whole agent on an OpenEVSE board: pilot, contactor and meter are "openevse-rapi"
backends sharing one serial port (a pty) to SimRapiController, against the CSMS
emulator. A remote-started session charges, the EV pauses and resumes, the CSMS
stops it, and the energy reported comes from the controller's counters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ocpp.v16 import call

from agent.app import App, ExitReason
from agent.config import parse_config, sim_defaults
from hal.rapi.states import EvseMode
from hal.sim.rapi_controller import SimRapiController
from hil.csms import CsmsEmulator
from tests.conftest import agent_tasks

CP = "RAPI-CP"
GUARD_S = 10.0


@pytest.fixture
async def board() -> AsyncIterator[SimRapiController]:
    sim = SimRapiController(ev_phases=1, tick_interval_s=0.05)
    await sim.start()
    yield sim
    await sim.stop()


async def test_a_session_on_a_rapi_board(board: SimRapiController, tmp_path: Path) -> None:
    sim = board
    async with CsmsEmulator(heartbeat_interval_s=300) as csms:
        data = sim_defaults(tmp_path, csms.url, CP)
        link = {
            "backend": "openevse-rapi",
            "port": sim.port,
            "timeout_s": 0.3,
            "heartbeat_interval_s": 0.5,
            "heartbeat_timeout_s": 5,
        }
        evse = data["evse"][0]
        evse["pilot"] = dict(link)
        evse["contactor"] = dict(link)
        evse["meter"] = {**link, "phases": 1, "poll_interval_s": 0.1}
        del evse["token_reader"]
        data["ocpp"] = {"meter_value_sample_interval_s": 1}
        data["csms"].update(reconnect_min_s=0.05, reconnect_max_s=0.2)
        app = App(parse_config(data))
        runner = asyncio.create_task(app.run())
        try:
            await asyncio.wait_for(app.started.wait(), GUARD_S)
            assert app.rigs == {}, "no simulated hardware rig: everything goes over RAPI"
            await csms.wait_for(
                "StatusNotification", predicate=lambda c: c.payload["status"] == "Available"
            )
            assert ["SY", "5", "6"] in [list(c.tokens) for c in sim.received]

            answer = await csms.call(
                CP, call.RemoteStartTransaction(id_tag="RAPI-1", connector_id=1)
            )
            assert answer.status == "Accepted"
            sim.ev.plug()
            start = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
            assert start.payload["idTag"] == "RAPI-1"
            await csms.wait_for(
                "StatusNotification",
                predicate=lambda c: c.payload["status"] == "Charging",
                timeout_s=GUARD_S,
            )
            await asyncio.wait_for(sim.wait_until(lambda: sim.relay_closed), GUARD_S)
            assert sim.capacity_a == 32  # the EVSE's limit, signalled with $SC 32 V
            await csms.wait_for(
                "MeterValues",
                predicate=lambda c: c.payload.get("transactionId") is not None,
                timeout_s=GUARD_S,
            )

            sim.ev.pause()  # C -> B: the relay opens, SuspendedEV, PWM re-armed
            await csms.wait_for(
                "StatusNotification",
                predicate=lambda c: c.payload["status"] == "SuspendedEV",
                timeout_s=GUARD_S,
            )
            await asyncio.wait_for(
                sim.wait_until(lambda: sim.mode is EvseMode.ENABLED and not sim.relay_closed),
                GUARD_S,
            )
            sim.ev.resume()
            await csms.wait_for(
                "StatusNotification",
                predicate=lambda c: c.payload["status"] == "Charging",
                count=2,
                timeout_s=GUARD_S,
            )
            await asyncio.wait_for(sim.wait_until(lambda: sim.relay_closed), GUARD_S)
            await asyncio.wait_for(sim.wait_until(lambda: sim.session_ws > 3600), GUARD_S)

            answer = await csms.call(CP, call.RemoteStopTransaction(transaction_id=1))
            assert answer.status == "Accepted"
            stop = await csms.wait_for("StopTransaction", timeout_s=GUARD_S)
            assert stop.payload["reason"] == "Remote"
            assert stop.payload["meterStop"] >= start.payload["meterStart"] + 1
            await asyncio.wait_for(
                sim.wait_until(lambda: sim.mode is EvseMode.SLEEPING and not sim.relay_closed),
                GUARD_S,
            )
        finally:
            app.stop()
            assert await asyncio.wait_for(runner, GUARD_S) == ExitReason.STOPPED
    leftover = [t for t in agent_tasks() if t.get_name() != "sim-rapi-tick"]  # the simulator's
    assert not leftover, "RAPI supervision or polling outlived App.run()"
    # the agent left the controller disabled (state F) and stopped pulsing
    assert sim.mode is EvseMode.DISABLED
