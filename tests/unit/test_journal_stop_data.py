"""The journal keeps StopTransaction.transactionData durably: written with the entry it
belongs to, bounded, carried by the stop (also one made after a restart), pruned with
the transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.events import MeterSample, ReadingContext, SampledValue, StopReason
from agent.persistence.migrations import MIGRATIONS
from agent.persistence.store import Store
from agent.transactions.journal import (
    MAX_STOP_DATA_SAMPLES,
    JournalError,
    QueuedTxMessage,
    TransactionJournal,
    TxRecord,
    sample_to_json,
)

ENERGY = "Energy.Active.Import.Register"


def sample(
    minute: int, energy_wh: float, context: ReadingContext = ReadingContext.SAMPLE_PERIODIC
) -> MeterSample:
    return MeterSample(
        timestamp=f"2026-11-24T19:{minute:02d}:00.000Z",
        context=context,
        values=(SampledValue(ENERGY, energy_wh, "Wh"),),
    )


def begin_sample(minute: int = 0, energy_wh: float = 1000) -> MeterSample:
    return sample(minute, energy_wh, ReadingContext.TRANSACTION_BEGIN)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path)
    yield opened
    await opened.close()


async def begin(
    journal: TransactionJournal, *, evse_id: int = 1, stop_data: tuple[MeterSample, ...] = ()
) -> TxRecord:
    return await journal.begin(
        evse_id=evse_id,
        connector_id=1,
        id_tag=f"TAG{evse_id}",
        meter_start_wh=1000,
        timestamp="2026-11-24T19:00:00.000Z",
        stop_data=stop_data,
    )


async def queued_stop(journal: TransactionJournal, tx_id: str) -> QueuedTxMessage:
    batch = await journal.next_messages(1000)
    [stop] = [m for m in batch if m.kind == "stop" and m.tx_id == tx_id]
    return stop


def minutes(samples: tuple[MeterSample, ...] | list[MeterSample]) -> list[int]:
    return [int(s.timestamp[14:16]) for s in samples]


async def test_the_stop_carries_every_kept_sample_in_write_order(store: Store) -> None:
    journal = TransactionJournal(store)
    tx = await begin(journal, stop_data=(begin_sample(),))
    await journal.record_meter(tx.tx_id, sample(1, 1100), 1100, stop_data=(sample(1, 1100),))
    await journal.update_last_meter(
        tx.tx_id, 1150, "2026-11-24T19:02:00.000Z", stop_data=(sample(2, 1150),)
    )
    clock = sample(3, 1200, ReadingContext.SAMPLE_CLOCK)
    await journal.add_stop_data(tx.tx_id, [clock])
    end = sample(4, 1300, ReadingContext.TRANSACTION_END)
    await journal.end(
        tx.tx_id,
        reason=StopReason.LOCAL,
        meter_stop_wh=1300,
        timestamp=end.timestamp,
        transaction_data=[end],
    )

    stop = await queued_stop(journal, tx.tx_id)
    assert stop.samples == (begin_sample(), sample(1, 1100), sample(2, 1150), clock, end)
    # the meter message carries only its own sample, not the stop data
    [meter] = [m for m in await journal.next_messages(10) if m.kind == "meter"]
    assert meter.samples == (sample(1, 1100),)


async def test_kept_samples_survive_a_restart_and_reach_the_power_loss_stop(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path)
    journal = TransactionJournal(store)
    tx = await begin(journal, stop_data=(begin_sample(),))
    for minute in (1, 2):
        s = sample(minute, 1000 + 100 * minute)
        await journal.record_meter(tx.tx_id, s, 1000 + 100 * minute, stop_data=(s,))
    await store.close()  # nothing kept in memory can cross this

    store = await Store.open(tmp_path)
    try:
        journal = TransactionJournal(store)
        [running] = await journal.running()
        assert await journal.stop_data(running.tx_id) == [
            begin_sample(),
            sample(1, 1100),
            sample(2, 1200),
        ]
        # what Station.recover_interrupted does: no data of its own
        await journal.end(
            running.tx_id,
            reason=StopReason.POWER_LOSS,
            meter_stop_wh=1200,
            timestamp="2026-11-24T19:02:00.000Z",
        )
        stop = await queued_stop(journal, running.tx_id)
        assert stop.samples == (begin_sample(), sample(1, 1100), sample(2, 1200))
    finally:
        await store.close()


async def test_the_bound_keeps_the_begin_sample_and_drops_the_oldest_after_it(
    store: Store,
) -> None:
    journal = TransactionJournal(store, max_stop_data=3)
    tx = await begin(journal, stop_data=(begin_sample(),))
    for minute in range(1, 5):
        await journal.add_stop_data(tx.tx_id, [sample(minute, 1000 + minute)])
        kept = await journal.stop_data(tx.tx_id)
        assert len(kept) == min(minute + 1, 3)
        assert kept[0] == begin_sample()
    assert minutes(await journal.stop_data(tx.tx_id)) == [0, 3, 4]
    # several at once are bounded together; the end sample counts as well
    end = sample(9, 1009, ReadingContext.TRANSACTION_END)
    await journal.end(
        tx.tx_id,
        reason=StopReason.LOCAL,
        meter_stop_wh=1009,
        timestamp=end.timestamp,
        transaction_data=[sample(8, 1008), end],
    )
    assert minutes((await queued_stop(journal, tx.tx_id)).samples) == [0, 8, 9]


def test_the_default_bound_is_200() -> None:
    assert MAX_STOP_DATA_SAMPLES == 200


async def test_a_bound_below_one_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="max_stop_data"):
        TransactionJournal(store, max_stop_data=0)


async def test_samples_are_kept_per_transaction(store: Store) -> None:
    journal = TransactionJournal(store, max_stop_data=2)
    a = await begin(journal, evse_id=1, stop_data=(begin_sample(0, 1000),))
    b = await begin(journal, evse_id=2, stop_data=(begin_sample(0, 2000),))
    await journal.add_stop_data(a.tx_id, [sample(1, 1100)])
    await journal.add_stop_data(b.tx_id, [sample(2, 2200)])
    await journal.add_stop_data(a.tx_id, [sample(3, 1300)])  # bounds a only
    assert await journal.stop_data(a.tx_id) == [begin_sample(0, 1000), sample(3, 1300)]
    assert await journal.stop_data(b.tx_id) == [begin_sample(0, 2000), sample(2, 2200)]


async def test_a_failed_stop_data_write_rolls_back_the_meter_entry(store: Store) -> None:
    """The stop sample shares the store transaction of the meter write: one fails, both fail."""
    journal = TransactionJournal(store)
    tx = await begin(journal)

    def refuse_stop_data(conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON tx_stop_data "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )

    await store.run(refuse_stop_data)
    with pytest.raises(sqlite3.IntegrityError, match="disk says no"):
        await journal.record_meter(tx.tx_id, sample(1, 1100), 1100, stop_data=(sample(1, 1100),))
    with pytest.raises(sqlite3.IntegrityError, match="disk says no"):
        await journal.end(
            tx.tx_id,
            reason=StopReason.LOCAL,
            meter_stop_wh=1100,
            timestamp="2026-11-24T19:01:00.000Z",
            transaction_data=[sample(1, 1100, ReadingContext.TRANSACTION_END)],
        )
    record = await journal.get(tx.tx_id)
    assert record is not None and record.running and record.last_meter_wh is None
    assert [m.kind for m in await journal.next_messages(10)] == ["start"]


async def test_writes_to_an_ended_transaction_are_refused(store: Store) -> None:
    journal = TransactionJournal(store)
    tx = await begin(journal)
    await journal.end(
        tx.tx_id, reason=StopReason.LOCAL, meter_stop_wh=1000, timestamp="2026-11-24T19:01:00Z"
    )
    with pytest.raises(JournalError, match="already ended"):
        await journal.add_stop_data(tx.tx_id, [sample(2, 1000)])
    assert await journal.stop_data(tx.tx_id) == []


async def test_forget_finished_prunes_stop_data_once_the_stop_is_delivered(
    store: Store,
) -> None:
    journal = TransactionJournal(store)
    delivered = await begin(journal, evse_id=1, stop_data=(begin_sample(),))
    queued = await begin(journal, evse_id=2, stop_data=(begin_sample(),))
    running = await begin(journal, evse_id=3, stop_data=(begin_sample(),))
    for tx in (delivered, queued):
        await journal.end(
            tx.tx_id,
            reason=StopReason.LOCAL,
            meter_stop_wh=1000,
            timestamp="2026-11-24T19:01:00.000Z",
        )
    for message in await journal.next_messages(100):
        if message.tx_id == delivered.tx_id:
            await journal.acknowledge(message.seq)

    await journal.forget_finished(keep_last=0)
    assert await journal.get(delivered.tx_id) is None
    assert await journal.stop_data(delivered.tx_id) == []
    assert await journal.stop_data(queued.tx_id) == [begin_sample()]
    assert (await queued_stop(journal, queued.tx_id)).samples == (begin_sample(),)
    assert await journal.stop_data(running.tx_id) == [begin_sample()]


async def test_forget_finished_prunes_stop_data_of_kept_history_too(store: Store) -> None:
    journal = TransactionJournal(store)
    tx = await begin(journal, stop_data=(begin_sample(),))
    await journal.end(
        tx.tx_id, reason=StopReason.LOCAL, meter_stop_wh=1000, timestamp="2026-11-24T19:01:00Z"
    )
    for message in await journal.next_messages(10):
        await journal.acknowledge(message.seq)
    await journal.forget_finished(keep_last=10)
    assert await journal.get(tx.tx_id) is not None  # kept as history
    assert await journal.stop_data(tx.tx_id) == []


async def test_a_stop_queued_before_schema_v3_keeps_its_payload_samples(tmp_path: Path) -> None:
    """Upgrade: a v2 file holds a stop whose transaction data is in its payload."""
    old = await Store.open(tmp_path, migrations=MIGRATIONS[:2])
    try:
        journal = TransactionJournal(old)
        tx = await begin(journal)
        await journal.end(
            tx.tx_id, reason=StopReason.LOCAL, meter_stop_wh=1000, timestamp="2026-11-24T19:01Z"
        )
        legacy = json.dumps({"samples": [sample_to_json(begin_sample())]})

        def write_legacy_payload(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE tx_queue SET payload = ? WHERE kind = 'stop'", (legacy,))

        await old.run(write_legacy_payload)
    finally:
        await old.close()

    store = await Store.open(tmp_path)
    try:
        journal = TransactionJournal(store)
        assert (await queued_stop(journal, tx.tx_id)).samples == (begin_sample(),)
        assert await journal.stop_data(tx.tx_id) == []
    finally:
        await store.close()
