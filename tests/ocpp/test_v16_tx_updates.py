"""Transaction ``update`` journal rows (2.0.1 TransactionEvent Updated: charging state,
late authorization) have no OCPP 1.6 message: the 1.6 outbox consumes them without
sending anything and delivers the rows around them in order. Such rows reach a 1.6
session when a CSMS moves a charger from 2.0.1 to 1.6 with messages queued; a 1.6 agent
itself journals none (its fixed start/stop points, no update rows)."""

from __future__ import annotations

import asyncio

from agent.events import TxChargingState, TxUpdateTrigger
from hil.csms import CsmsEmulator
from tests.conftest import GUARD_S, StartApp, registered


async def test_update_rows_are_skipped_by_the_1_6_outbox(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    agent.sim("plug")
    agent.sim("swipe", "TAG1")
    start = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    await csms.wait_answer(start, timeout_s=GUARD_S)
    await agent.app.wait_status(1, "Charging")
    station = agent.app.station
    assert station is not None
    journal = station.journal
    queued = await journal.next_messages(100)
    assert all(m.kind != "update" for m in queued)  # 1.6 journals no charging-state rows
    (running,) = await journal.running()
    for state in (TxChargingState.SUSPENDED_EV, TxChargingState.CHARGING):
        await journal.record_update(
            running.tx_id,
            timestamp="2026-11-24T19:05:00.000Z",
            trigger=TxUpdateTrigger.CHARGING_STATE_CHANGED,
            charging_state=state,
        )
    station.tx_message_queued()
    agent.sim("unplug")
    stop = await csms.wait_for("StopTransaction", timeout_s=GUARD_S)
    await csms.wait_answer(stop, timeout_s=GUARD_S)
    assert stop.payload["reason"] == "EVDisconnected"
    adapter = agent.app.adapter
    assert adapter is not None
    await asyncio.wait_for(adapter.outbox.idle.wait(), GUARD_S)  # set once acknowledged
    assert await journal.pending_count() == 0
    assert not csms.calls("TransactionEvent")
    assert [c.action for c in csms.received if "Transaction" in c.action] == [
        "StartTransaction",
        "StopTransaction",
    ]
