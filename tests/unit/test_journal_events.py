"""Per-event facts the journal records at enqueue: seq_no per transaction and offline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.connectivity import ConnectivityState
from agent.events import MeterSample, ReadingContext, SampledValue, StopReason
from agent.persistence.migrations import MIGRATIONS
from agent.persistence.store import Store
from agent.transactions.journal import QueuedTxMessage, TransactionJournal, TxRecord

T0 = "2026-11-24T19:00:00.000Z"


def sample(minute: int, energy_wh: float) -> MeterSample:
    return MeterSample(
        timestamp=f"2026-11-24T19:{minute:02d}:00.000Z",
        context=ReadingContext.SAMPLE_PERIODIC,
        values=(SampledValue("Energy.Active.Import.Register", energy_wh, "Wh"),),
    )


async def begin(journal: TransactionJournal, evse_id: int = 1) -> TxRecord:
    return await journal.begin(
        evse_id=evse_id, connector_id=evse_id, id_tag="TAG", meter_start_wh=0, timestamp=T0
    )


async def end(journal: TransactionJournal, tx: TxRecord) -> None:
    await journal.end(
        tx.tx_id, reason=StopReason.LOCAL, meter_stop_wh=900, timestamp="2026-11-24T19:59Z"
    )


async def queued(journal: TransactionJournal) -> list[QueuedTxMessage]:
    return await journal.next_messages(100)


def facts(messages: list[QueuedTxMessage], tx: TxRecord) -> list[tuple[str, int, bool]]:
    return [(m.kind, m.seq_no, m.offline) for m in messages if m.tx_id == tx.tx_id]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path)
    yield opened
    await opened.close()


async def test_seq_no_counts_each_transactions_events_from_zero(store: Store) -> None:
    journal = TransactionJournal(store)
    first = await begin(journal, 1)
    await journal.record_meter(first.tx_id, sample(1, 100), 100)
    second = await begin(journal, 2)  # interleaved on another EVSE: its own numbering
    await journal.record_meter(first.tx_id, sample(2, 200), 200)
    await journal.record_meter(second.tx_id, sample(2, 50), 50)
    await end(journal, first)
    await end(journal, second)

    messages = await queued(journal)
    assert [m.seq_no for m in messages if m.tx_id == first.tx_id] == [0, 1, 2, 3]
    assert [m.seq_no for m in messages if m.tx_id == second.tx_id] == [0, 1, 2]
    assert [m.kind for m in messages if m.tx_id == first.tx_id] == [
        "start", "meter", "meter", "stop",
    ]  # fmt: skip


async def test_delivered_messages_do_not_restart_the_numbering(store: Store) -> None:
    journal = TransactionJournal(store)
    tx = await begin(journal)
    await journal.record_meter(tx.tx_id, sample(1, 100), 100)
    for message in await queued(journal):
        await journal.acknowledge(message.seq)
    await journal.record_meter(tx.tx_id, sample(2, 200), 200)
    await journal.drop((await queued(journal))[0].seq)  # a dropped event leaves a gap
    await end(journal, tx)
    assert facts(await queued(journal), tx) == [("stop", 3, True)]


async def test_numbering_survives_a_restart(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    try:
        journal = TransactionJournal(store)
        tx = await begin(journal)
        await journal.record_meter(tx.tx_id, sample(1, 100), 100)
        await journal.acknowledge((await queued(journal))[0].seq)  # the start went out
    finally:
        await store.close()

    store = await Store.open(tmp_path)
    try:
        journal = TransactionJournal(store)
        await journal.record_meter(tx.tx_id, sample(2, 200), 200)
        await end(journal, tx)
        assert [m.seq_no for m in await queued(journal)] == [1, 2, 3]
    finally:
        await store.close()


async def test_offline_is_the_connectivity_at_enqueue_not_at_read(store: Store) -> None:
    connectivity = ConnectivityState()
    journal = TransactionJournal(store, connectivity=connectivity)
    assert journal.connectivity is connectivity
    tx = await begin(journal)  # at boot, before any session: offline
    connectivity.set_online(True)
    await journal.record_meter(tx.tx_id, sample(1, 100), 100)
    connectivity.set_online(False)
    await journal.record_meter(tx.tx_id, sample(2, 200), 200)
    connectivity.set_online(True)
    await end(journal, tx)
    connectivity.set_online(False)  # reading later changes nothing

    assert facts(await queued(journal), tx) == [
        ("start", 0, True),
        ("meter", 1, False),
        ("meter", 2, True),
        ("stop", 3, False),
    ]


async def test_a_journal_without_connectivity_starts_offline(store: Store) -> None:
    journal = TransactionJournal(store)
    assert not journal.connectivity.online
    tx = await begin(journal)
    journal.connectivity.set_online(True)
    await journal.record_meter(tx.tx_id, sample(1, 100), 100)
    assert facts(await queued(journal), tx) == [("start", 0, True), ("meter", 1, False)]


def test_connectivity_listeners_hear_changes_only() -> None:
    state = ConnectivityState()
    heard: list[bool] = []
    unsubscribe = state.subscribe(heard.append)
    state.set_online(False)  # no change
    state.set_online(True)
    state.set_online(True)
    state.set_online(False)
    unsubscribe()
    state.set_online(True)
    assert heard == [True, False]
    assert state.online


async def test_pending_count_of_one_transaction(store: Store) -> None:
    journal = TransactionJournal(store)
    first = await begin(journal, 1)
    second = await begin(journal, 2)
    await journal.record_meter(first.tx_id, sample(1, 100), 100)
    assert await journal.pending_count(first.tx_id) == 2
    assert await journal.pending_count(second.tx_id) == 1
    assert await journal.pending_count("unknown") == 0
    assert await journal.pending_count() == 3


async def test_upgrade_to_v5_numbers_queued_rows_and_continues(tmp_path: Path) -> None:
    """A v4 file with queued messages: they get seq_no in queue order, offline false."""
    old = await Store.open(tmp_path, migrations=MIGRATIONS[:4])
    try:
        journal = TransactionJournal(old)  # writes without the v5 columns
        done = await begin(journal, 1)
        running = await begin(journal, 2)
        await journal.record_meter(done.tx_id, sample(1, 100), 100)
        await journal.record_meter(running.tx_id, sample(1, 10), 10)
        await end(journal, done)
        assert [m.seq_no for m in await queued(journal)] == [0] * 5  # no numbering yet
    finally:
        await old.close()

    store = await Store.open(tmp_path)
    try:
        journal = TransactionJournal(store)
        await journal.record_meter(running.tx_id, sample(2, 20), 20)
        messages = await queued(journal)
        assert facts(messages, done) == [
            ("start", 0, False),
            ("meter", 1, False),
            ("stop", 2, False),
        ]
        assert facts(messages, running) == [
            ("start", 0, False),
            ("meter", 1, False),
            ("meter", 2, True),
        ]
    finally:
        await store.close()
