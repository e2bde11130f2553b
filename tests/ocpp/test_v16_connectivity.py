"""The 1.6 adapter keeps the neutral connectivity flag, so the journal records which
transaction events happened offline (the fact a 2.0.1 TransactionEvent reports), and
1.6 delivery is unchanged by the new per-event columns."""

from __future__ import annotations

import asyncio

from agent.transactions.journal import TransactionJournal
from hil.csms import CsmsEmulator
from tests.conftest import GUARD_S, RunningApp, StartApp, registered

SAMPLING = {"meter_value_sample_interval_s": 1, "allow_offline_tx_for_unknown_id": True}


class Queued:
    """Counts transaction messages the core queues (observable while offline)."""

    def __init__(self, agent: RunningApp) -> None:
        assert agent.app.station is not None
        self.count = 0
        self._changed = asyncio.Event()
        agent.app.station.subscribe_tx_messages(self._on_queued)

    def _on_queued(self) -> None:
        self.count += 1
        self._changed.set()

    async def wait(self, count: int) -> None:
        async with asyncio.timeout(GUARD_S):
            while self.count < count:
                self._changed.clear()
                await self._changed.wait()


async def test_events_queued_while_offline_are_marked_and_still_delivered(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms, ocpp=SAMPLING)
    boot = await registered(csms)
    assert agent.app.station is not None
    journal: TransactionJournal = agent.app.station.journal
    assert journal.connectivity.online  # set before the first status went out

    offline = asyncio.Event()
    journal.connectivity.subscribe(lambda online: None if online else offline.set())
    await csms.go_offline()
    await asyncio.wait_for(offline.wait(), GUARD_S)

    queued = Queued(agent)
    agent.sim("plug")
    agent.sim("swipe", "TAG1")
    await queued.wait(2)  # the start and a sample
    agent.sim("swipe", "TAG1")
    await queued.wait(queued.count + 1)  # the stop
    messages = await journal.next_messages(100)
    assert messages[0].kind == "start" and messages[-1].kind == "stop"
    assert [m.seq_no for m in messages] == list(range(len(messages)))
    assert all(m.offline for m in messages)

    await csms.go_online()
    stop = await csms.wait_for("StopTransaction", timeout_s=GUARD_S)
    assert stop.payload["reason"] == "Local"
    assert len(csms.calls("StartTransaction")) == 1
    await registered(csms, after_seq=boot.seq)
    assert journal.connectivity.online
