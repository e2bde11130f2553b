"""Ended, delivered transactions are pruned from the journal when the agent starts."""

from __future__ import annotations

import pytest

import agent.app
from agent.persistence.store import Store
from hil.csms import CsmsEmulator
from tests.conftest import GUARD_S, StartApp, registered


async def count_transactions(data_dir: object) -> int:
    store = await Store.open(data_dir)  # type: ignore[arg-type]
    try:
        return int(
            await store.run(lambda c: c.execute("SELECT COUNT(*) FROM transactions").fetchone()[0])
        )
    finally:
        await store.close()


async def test_finished_transactions_are_pruned_at_start(
    csms: CsmsEmulator, start_app: StartApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent.app, "FINISHED_TRANSACTIONS_KEPT", 1)
    first = await start_app(csms)
    await registered(csms)
    for n, tag in enumerate(("T-1", "T-2", "T-3"), 1):
        await first.start_charging(csms, tag)
        first.sim("unplug")
        stop = await csms.wait_for("StopTransaction", count=n, timeout_s=GUARD_S)
        await csms.wait_answer(stop, timeout_s=GUARD_S)
        await first.app.wait_status(1, "Available")
    await first.stop()
    assert await count_transactions(first.data_dir) == 3

    seen = csms.received[-1].seq
    second = await start_app(csms, data_dir=first.data_dir)
    await registered(csms, after_seq=seen)
    await second.stop()
    assert await count_transactions(first.data_dir) == 1
