"""OCPP 2.0.1 Reset of one EVSE (B12): Immediate stops that EVSE's transaction with
ImmediateReset, OnIdle waits for it; the other EVSE and the process keep running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from ocpp.v201 import call

from agent.events import EvseStatusChanged
from hil.csms import ReceivedCall
from hil.csms201 import CsmsEmulator201
from tests.conftest import GUARD_S, RunningApp, StartApp
from tests.ocpp.v201_helpers import CP, start_registered


@pytest.fixture
async def csms201(make_csms: object) -> AsyncIterator[CsmsEmulator201]:
    del make_csms  # torn down after the Apps, before the leak check
    async with CsmsEmulator201() as csms:
        yield csms


@pytest.fixture
async def agent(csms201: CsmsEmulator201, start_app: StartApp) -> RunningApp:
    return await start_registered(csms201, start_app, evse_count=2)


async def _charging(csms: CsmsEmulator201, agent: RunningApp, evse_id: int, tag: str) -> str:
    """Plug in and swipe on ``evse_id``; return the id of the transaction that started."""
    agent.sim("plug", evse_id=evse_id)
    agent.sim("swipe", tag, evse_id=evse_id)
    started = await csms.wait_for(
        "TransactionEvent",
        predicate=lambda c: (
            c.payload["eventType"] == "Started" and c.payload["evse"]["id"] == evse_id
        ),
        timeout_s=GUARD_S,
    )
    return str(started.payload["transactionInfo"]["transactionId"])


async def _ended(csms: CsmsEmulator201, tx_id: str) -> ReceivedCall:
    return await csms.wait_for(
        "TransactionEvent",
        predicate=lambda c: (
            c.payload["eventType"] == "Ended"
            and c.payload["transactionInfo"]["transactionId"] == tx_id
        ),
        timeout_s=GUARD_S,
    )


def _ended_ids(csms: CsmsEmulator201) -> set[str]:
    return {
        c.payload["transactionInfo"]["transactionId"]
        for c in csms.calls("TransactionEvent", CP)
        if c.payload["eventType"] == "Ended"
    }


class _Restart:
    """Records EVSE 1's statuses; ``done`` once an Unavailable step was left again
    (the EVSE's session restarted)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.done = asyncio.Event()

    def __call__(self, event: EvseStatusChanged) -> None:
        if event.evse_id != 1:
            return
        self.seen.append(event.status)
        if len(self.seen) > 1 and self.seen[-2] == "Unavailable" and self.seen[-1] != "Unavailable":
            self.done.set()


async def test_immediate_reset_of_one_evse_stops_only_its_transaction(
    csms201: CsmsEmulator201, agent: RunningApp
) -> None:
    station = agent.app.station
    assert station is not None
    tx1 = await _charging(csms201, agent, 1, "TAG1")
    tx2 = await _charging(csms201, agent, 2, "TAG2")
    restart = _Restart()
    unsubscribe = station.subscribe_status(restart)
    try:
        result = await csms201.call(CP, call.Reset(type="Immediate", evse_id=1))
        assert result.status == "Accepted"
        ended = await _ended(csms201, tx1)
        assert ended.payload["transactionInfo"]["stoppedReason"] == "ImmediateReset"
        assert ended.payload["triggerReason"] == "ResetCommand"
        await asyncio.wait_for(restart.done.wait(), GUARD_S)
    finally:
        unsubscribe()
    assert restart.seen[-1] == "Finishing"  # ready again, the EV still plugged in (1.6 spelling)
    ctl2 = station.controllers[2]
    assert ctl2.transaction is not None and ctl2.transaction.tx_id == tx2
    assert tx2 not in _ended_ids(csms201)  # the other EVSE still charges
    assert not agent.task.done()  # no restart of the process


async def test_on_idle_reset_of_one_evse_waits_for_its_transaction(
    csms201: CsmsEmulator201, agent: RunningApp
) -> None:
    station = agent.app.station
    assert station is not None
    tx1 = await _charging(csms201, agent, 1, "TAG1")
    restart = _Restart()
    unsubscribe = station.subscribe_status(restart)
    try:
        result = await csms201.call(CP, call.Reset(type="OnIdle", evse_id=1))
        assert result.status == "Scheduled"
        await station.controllers[1].drain()
        assert station.controllers[1].transaction is not None  # not stopped by the reset
        agent.sim("unplug", evse_id=1)
        ended = await _ended(csms201, tx1)
        assert ended.payload["transactionInfo"]["stoppedReason"] == "EVDisconnected"
        await asyncio.wait_for(restart.done.wait(), GUARD_S)  # then the session restarted
    finally:
        unsubscribe()
    assert restart.seen[-1] == "Available"
    ended_at = restart.seen.index("Available")
    assert "Unavailable" not in restart.seen[:ended_at]  # only after the transaction
    assert not agent.task.done()


async def test_on_idle_reset_of_an_idle_evse_is_accepted_while_the_other_charges(
    csms201: CsmsEmulator201, agent: RunningApp
) -> None:
    await _charging(csms201, agent, 2, "TAG2")
    result = await csms201.call(CP, call.Reset(type="OnIdle", evse_id=1))
    assert result.status == "Accepted"  # EVSE 2's transaction does not delay EVSE 1
    station = agent.app.station
    assert station is not None
    await station.controllers[1].drain()
    assert station.controllers[2].transaction is not None
    assert not agent.task.done()
