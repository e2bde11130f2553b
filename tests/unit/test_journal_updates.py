"""Transaction ``update`` rows and the start facts of the transaction points: stored in
the queued payload, read back as ``QueuedTxMessage`` fields, numbered and flagged
offline like every other row; the v6 migration lets them into a v5 file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.connectivity import ConnectivityState
from agent.events import StopReason, TxChargingState, TxPoint, TxUpdateTrigger
from agent.persistence.migrations import MIGRATIONS
from agent.persistence.store import Store
from agent.transactions.journal import JournalError, TransactionJournal

T0 = "2026-11-24T19:00:00.000Z"
T1 = "2026-11-24T19:01:00.000Z"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path)
    yield opened
    await opened.close()


async def test_cable_first_start_and_its_authorization_round_trip(store: Store) -> None:
    journal = TransactionJournal(store)
    tx = await journal.begin(
        evse_id=1,
        connector_id=1,
        id_tag="",
        meter_start_wh=0,
        timestamp=T0,
        started_by=TxPoint.EV_CONNECTED,
        charging_state=TxChargingState.EV_CONNECTED,
        authorized=False,
    )
    journal.connectivity.set_online(True)
    await journal.record_update(
        tx.tx_id,
        timestamp=T1,
        trigger=TxUpdateTrigger.AUTHORIZED,
        charging_state=TxChargingState.SUSPENDED_EV,
        id_tag="TAG1",
    )
    start, update = await journal.next_messages(10)
    assert (start.kind, start.started_by, start.charging_state, start.authorized) == (
        "start",
        TxPoint.EV_CONNECTED,
        TxChargingState.EV_CONNECTED,
        False,
    )
    assert (start.seq_no, start.offline) == (0, True)
    assert (update.kind, update.trigger, update.charging_state, update.id_tag) == (
        "update",
        TxUpdateTrigger.AUTHORIZED,
        TxChargingState.SUSPENDED_EV,
        "TAG1",
    )
    assert (update.seq_no, update.offline, update.timestamp) == (1, False, T1)
    assert update.authorized  # only a start row says how it began
    assert update.record.id_tag == "TAG1"  # the transaction has its id from now on
    rec = await journal.get(tx.tx_id)
    assert rec is not None and rec.id_tag == "TAG1"


async def test_a_remote_start_update_keeps_its_id(store: Store) -> None:
    journal = TransactionJournal(store)
    tx = await journal.begin(
        evse_id=1, connector_id=1, id_tag="", meter_start_wh=0, timestamp=T0, authorized=False
    )
    await journal.record_update(
        tx.tx_id,
        timestamp=T1,
        trigger=TxUpdateTrigger.REMOTE_START,
        charging_state=TxChargingState.SUSPENDED_EV,
        id_tag="APP",
        remote_start_id=9,
    )
    _, update = await journal.next_messages(10)
    assert (update.trigger, update.remote_start_id) == (TxUpdateTrigger.REMOTE_START, 9)
    assert (update.record.id_tag, update.record.remote_start_id) == ("APP", 9)


async def test_rows_without_the_new_facts_read_as_unknown(store: Store) -> None:
    journal = TransactionJournal(store)
    await journal.begin(evse_id=1, connector_id=1, id_tag="T", meter_start_wh=0, timestamp=T0)
    (start,) = await journal.next_messages(10)
    assert (start.started_by, start.charging_state, start.trigger, start.id_tag) == (
        None,
        None,
        None,
        None,
    )
    assert start.authorized


async def test_update_of_an_ended_transaction_is_refused(store: Store) -> None:
    journal = TransactionJournal(store)
    tx = await journal.begin(evse_id=1, connector_id=1, id_tag="T", meter_start_wh=0, timestamp=T0)
    await journal.end(tx.tx_id, reason=StopReason.LOCAL, meter_stop_wh=5, timestamp=T1)
    with pytest.raises(JournalError):
        await journal.record_update(
            tx.tx_id,
            timestamp=T1,
            trigger=TxUpdateTrigger.CHARGING_STATE_CHANGED,
            charging_state=TxChargingState.IDLE,
        )


async def test_v6_migration_keeps_queued_rows_and_their_numbering(tmp_path: Path) -> None:
    old = await Store.open(tmp_path, migrations=MIGRATIONS[:5])
    journal = TransactionJournal(old, connectivity=ConnectivityState())
    tx = await journal.begin(evse_id=1, connector_id=1, id_tag="T", meter_start_wh=0, timestamp=T0)
    before = await journal.next_messages(10)
    await journal.acknowledge(before[0].seq)  # the counter is past every row now
    await journal.end(tx.tx_id, reason=StopReason.LOCAL, meter_stop_wh=5, timestamp=T1)
    (stop_before,) = await journal.next_messages(10)
    await old.close()
    new = await Store.open(tmp_path)
    try:
        journal = TransactionJournal(new)
        (stop_after,) = await journal.next_messages(10)
        assert (stop_after.seq, stop_after.seq_no, stop_after.kind) == (
            stop_before.seq,
            stop_before.seq_no,
            "stop",
        )
        second = await journal.begin(
            evse_id=1, connector_id=1, id_tag="T", meter_start_wh=0, timestamp=T1
        )
        await journal.record_update(
            second.tx_id,
            timestamp=T1,
            trigger=TxUpdateTrigger.CHARGING_STATE_CHANGED,
            charging_state=TxChargingState.CHARGING,
        )
        rows = await journal.next_messages(10)
        assert [r.kind for r in rows] == ["stop", "start", "update"]
        assert all(r.seq > stop_before.seq for r in rows[1:])  # no seq reused
    finally:
        await new.close()
