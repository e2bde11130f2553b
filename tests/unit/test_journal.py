"""The transaction journal: ordering, CSMS id mapping, atomicity, durability."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.events import MeterSample, ReadingContext, SampledValue, StopReason
from agent.persistence.store import Store
from agent.transactions.journal import (
    JournalError,
    QueuedTxMessage,
    TransactionJournal,
    TxRecord,
    new_tx_id,
    sample_from_json,
    sample_to_json,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = "2026-11-24T19:00:00.000Z"


def sample(
    minute: int, energy_wh: float, context: ReadingContext = ReadingContext.SAMPLE_PERIODIC
) -> MeterSample:
    return MeterSample(
        timestamp=f"2026-11-24T19:{minute:02d}:00.000Z",
        context=context,
        values=(
            SampledValue("Energy.Active.Import.Register", energy_wh, "Wh"),
            SampledValue("Current.Import", 15.5, "A", "L1"),
        ),
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path)
    yield opened
    await opened.close()


@pytest.fixture
def journal(store: Store) -> TransactionJournal:
    return TransactionJournal(store)


async def drain(journal: TransactionJournal, csms_ids: dict[str, int]) -> list[QueuedTxMessage]:
    """Deliver everything like an adapter would; starts get the id in ``csms_ids``."""
    delivered: list[QueuedTxMessage] = []
    while (message := await journal.next_message()) is not None:
        delivered.append(message)
        if message.kind == "start":
            await journal.acknowledge_start(message.seq, csms_ids[message.tx_id], "Accepted")
        else:
            await journal.acknowledge(message.seq)
    return delivered


async def begin(journal: TransactionJournal, evse_id: int = 1, minute: int = 0) -> TxRecord:
    return await journal.begin(
        evse_id=evse_id,
        connector_id=1,
        id_tag=f"TAG{evse_id}",
        meter_start_wh=1000 * evse_id,
        timestamp=f"2026-11-24T19:{minute:02d}:00.000Z",
    )


async def test_begin_stores_a_running_record_and_queues_its_start(
    journal: TransactionJournal,
) -> None:
    record = await journal.begin(
        evse_id=2,
        connector_id=1,
        id_tag="04A2B3C4",
        meter_start_wh=12345,
        timestamp=T0,
        remote_start_id=77,
        reservation_id=5,
    )
    assert record.running
    assert len(record.tx_id) == 32
    assert await journal.get(record.tx_id) == record
    assert await journal.running() == [record]
    message = await journal.next_message()
    assert message is not None
    assert (message.kind, message.tx_id, message.samples, message.attempts) == (
        "start",
        record.tx_id,
        (),
        0,
    )
    assert message.record == record
    assert await journal.pending_count() == 1


async def test_interleaved_transactions_are_delivered_in_write_order(
    journal: TransactionJournal,
) -> None:
    a = await begin(journal, evse_id=1, minute=0)
    b = await begin(journal, evse_id=2, minute=1)
    await journal.record_meter(a.tx_id, sample(2, 1100), 1100)
    await journal.record_meter(b.tx_id, sample(3, 2100), 2100)
    await journal.record_meter(a.tx_id, sample(4, 1200), 1200)
    stop_data = (sample(5, 1300, ReadingContext.TRANSACTION_END),)
    await journal.end(
        a.tx_id,
        reason=StopReason.LOCAL,
        meter_stop_wh=1300,
        timestamp="2026-11-24T19:05:00.000Z",
        transaction_data=stop_data,
    )
    await journal.record_meter(b.tx_id, sample(6, 2200), 2200)
    await journal.end(b.tx_id, reason=StopReason.EV_DISCONNECTED, meter_stop_wh=2300, timestamp=T0)

    delivered = await drain(journal, {a.tx_id: 101, b.tx_id: 102})
    assert [(m.tx_id, m.kind) for m in delivered] == [
        (a.tx_id, "start"),
        (b.tx_id, "start"),
        (a.tx_id, "meter"),
        (b.tx_id, "meter"),
        (a.tx_id, "meter"),
        (a.tx_id, "stop"),
        (b.tx_id, "meter"),
        (b.tx_id, "stop"),
    ]
    seqs = [m.seq for m in delivered]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [m.samples for m in delivered if m.kind == "meter"] == [
        (sample(2, 1100),),
        (sample(3, 2100),),
        (sample(4, 1200),),
        (sample(6, 2200),),
    ]
    assert delivered[5].samples == stop_data
    assert delivered[7].samples == ()
    assert await journal.pending_count() == 0


async def test_csms_id_reaches_messages_queued_before_it_was_known(
    journal: TransactionJournal,
) -> None:
    record = await begin(journal)
    await journal.record_meter(record.tx_id, sample(1, 1500), 1500)  # queued while offline
    await journal.end(record.tx_id, reason=StopReason.LOCAL, meter_stop_wh=1600, timestamp=T0)

    start = await journal.next_message()
    assert start is not None and start.record.csms_tx_id is None
    await journal.acknowledge_start(start.seq, 4242, "Accepted")

    meter = await journal.next_message()
    assert meter is not None and meter.kind == "meter"
    assert meter.record.csms_tx_id == 4242
    assert meter.record.id_tag_status == "Accepted"
    await journal.acknowledge(meter.seq)
    stop = await journal.next_message()
    assert stop is not None and stop.kind == "stop" and stop.record.csms_tx_id == 4242
    assert stop.record.stop_reason is StopReason.LOCAL
    assert await journal.find_by_csms_id(4242) == stop.record


async def test_acknowledge_start_sets_the_id_and_dequeues_atomically(
    store: Store, journal: TransactionJournal
) -> None:
    record = await begin(journal)
    start = await journal.next_message()
    assert start is not None

    # Make the dequeue fail after the id was written: the id write must roll back.
    await store.run(
        lambda c: c.execute(
            "CREATE TRIGGER no_delete BEFORE DELETE ON tx_queue "
            "BEGIN SELECT RAISE(ABORT, 'injected delete failure'); END"
        )
    )
    with pytest.raises(sqlite3.Error, match="injected delete failure"):
        await journal.acknowledge_start(start.seq, 9, "Accepted")
    after = await journal.get(record.tx_id)
    assert after is not None and after.csms_tx_id is None and after.id_tag_status is None
    assert await journal.pending_count() == 1

    # Make the id write fail: the message must stay queued.
    await store.run(lambda c: c.execute("DROP TRIGGER no_delete"))
    await store.run(
        lambda c: c.execute(
            "CREATE TRIGGER no_update BEFORE UPDATE ON transactions "
            "BEGIN SELECT RAISE(ABORT, 'injected update failure'); END"
        )
    )
    with pytest.raises(sqlite3.Error, match="injected update failure"):
        await journal.acknowledge_start(start.seq, 9, "Accepted")
    assert await journal.next_message() == start

    await store.run(lambda c: c.execute("DROP TRIGGER no_update"))
    await journal.acknowledge_start(start.seq, 9, "Accepted")
    after = await journal.get(record.tx_id)
    assert after is not None and after.csms_tx_id == 9
    assert await journal.next_message() is None


async def test_acknowledge_start_refuses_other_kinds_and_unknown_seqs(
    journal: TransactionJournal,
) -> None:
    record = await begin(journal)
    start = await journal.next_message()
    assert start is not None
    await journal.acknowledge(start.seq)
    await journal.record_meter(record.tx_id, sample(1, 1100), 1100)
    meter = await journal.next_message()
    assert meter is not None

    with pytest.raises(JournalError, match="not a 'start'"):
        await journal.acknowledge_start(meter.seq, 1, "Accepted")
    with pytest.raises(JournalError, match="no queued message"):
        await journal.acknowledge_start(start.seq, 1, "Accepted")
    with pytest.raises(JournalError, match="no queued message"):
        await journal.acknowledge(start.seq)
    unchanged = await journal.get(record.tx_id)
    assert unchanged is not None and unchanged.csms_tx_id is None
    assert await journal.pending_count() == 1


async def test_end_records_stop_fields_and_cannot_happen_twice(
    journal: TransactionJournal,
) -> None:
    record = await begin(journal)
    ended = await journal.end(
        record.tx_id, reason=StopReason.REMOTE, meter_stop_wh=1500, timestamp=T0
    )
    assert not ended.running
    assert (ended.stop_time, ended.meter_stop_wh, ended.stop_reason) == (
        T0,
        1500,
        StopReason.REMOTE,
    )
    assert await journal.running() == []
    with pytest.raises(JournalError, match="already ended"):
        await journal.end(record.tx_id, reason=StopReason.LOCAL, meter_stop_wh=1, timestamp=T0)
    with pytest.raises(JournalError, match="already ended"):
        await journal.record_meter(record.tx_id, sample(1, 1600), 1600)
    with pytest.raises(JournalError, match="already ended"):
        await journal.update_last_meter(record.tx_id, 1600, T0)
    assert await journal.pending_count() == 2  # start + one stop
    assert await journal.get(record.tx_id) == ended


async def test_unknown_transactions_are_refused(journal: TransactionJournal) -> None:
    unknown = new_tx_id()
    with pytest.raises(JournalError, match="unknown transaction"):
        await journal.end(unknown, reason=StopReason.LOCAL, meter_stop_wh=1, timestamp=T0)
    with pytest.raises(JournalError, match="unknown transaction"):
        await journal.record_meter(unknown, sample(0, 1), 1)
    with pytest.raises(JournalError, match="unknown transaction"):
        await journal.set_csms_tx_id(unknown, 1, None)
    assert await journal.get(unknown) is None
    assert await journal.pending_count() == 0


async def test_meter_readings_update_the_last_known_energy(journal: TransactionJournal) -> None:
    record = await begin(journal)
    await journal.record_meter(record.tx_id, sample(1, 1100), 1100)
    await journal.update_last_meter(record.tx_id, 1150, "2026-11-24T19:01:30.000Z")
    current = await journal.get(record.tx_id)
    assert current is not None
    assert (current.last_meter_wh, current.last_meter_time) == (1150, "2026-11-24T19:01:30.000Z")
    assert await journal.pending_count() == 2  # update_last_meter queued nothing


async def test_a_sample_that_cannot_be_encoded_writes_nothing(journal: TransactionJournal) -> None:
    record = await begin(journal)
    bad = MeterSample(T0, ReadingContext.SAMPLE_PERIODIC, (SampledValue("Voltage", 1e999, "V"),))
    with pytest.raises(ValueError, match="non-finite"):
        await journal.record_meter(record.tx_id, bad, 1100)
    current = await journal.get(record.tx_id)
    assert current is not None and current.last_meter_wh is None
    assert await journal.pending_count() == 1


async def test_attempts_drop_and_drop_transaction(journal: TransactionJournal) -> None:
    a = await begin(journal, evse_id=1)
    b = await begin(journal, evse_id=2)
    await journal.record_meter(a.tx_id, sample(1, 1100), 1100)
    first = await journal.next_message()
    assert first is not None and first.tx_id == a.tx_id
    assert await journal.record_attempt(first.seq) == 1
    assert await journal.record_attempt(first.seq) == 2
    again = await journal.next_message()
    assert again is not None and again.attempts == 2
    with pytest.raises(JournalError):
        await journal.record_attempt(10_000)

    await journal.drop(first.seq)
    await journal.drop(first.seq)  # dropping twice is harmless
    nxt = await journal.next_message()
    assert nxt is not None and (nxt.tx_id, nxt.kind) == (b.tx_id, "start")
    assert await journal.drop_transaction_messages(a.tx_id) == 1  # the meter row
    assert await journal.drop_transaction_messages(a.tx_id) == 0
    assert await journal.pending_count() == 1


async def test_find_by_csms_id_prefers_the_newest(journal: TransactionJournal) -> None:
    old = await begin(journal, evse_id=1, minute=0)
    new = await begin(journal, evse_id=2, minute=5)
    await journal.set_csms_tx_id(old.tx_id, 0, "Invalid")
    await journal.set_csms_tx_id(new.tx_id, 0, "Invalid")
    found = await journal.find_by_csms_id(0)
    assert found is not None and found.tx_id == new.tx_id
    assert await journal.find_by_csms_id(1) is None


async def test_running_lists_open_transactions_by_start_time(journal: TransactionJournal) -> None:
    late = await begin(journal, evse_id=1, minute=30)
    early = await begin(journal, evse_id=2, minute=10)
    ended = await begin(journal, evse_id=3, minute=0)
    await journal.end(ended.tx_id, reason=StopReason.LOCAL, meter_stop_wh=3000, timestamp=T0)
    assert [r.tx_id for r in await journal.running()] == [early.tx_id, late.tx_id]


async def test_forget_finished_keeps_running_queued_and_newest(
    journal: TransactionJournal,
) -> None:
    finished = []
    for minute in range(5):
        record = await begin(journal, evse_id=1, minute=minute)
        await journal.end(record.tx_id, reason=StopReason.LOCAL, meter_stop_wh=1, timestamp=T0)
        finished.append(record)
    running = await begin(journal, evse_id=2, minute=10)
    await drain(journal, {r.tx_id: i for i, r in enumerate([*finished, running])})
    still_queued = await begin(journal, evse_id=3, minute=0)
    await journal.end(still_queued.tx_id, reason=StopReason.LOCAL, meter_stop_wh=1, timestamp=T0)

    await journal.forget_finished(keep_last=2)
    remaining = {r.tx_id for r in [*finished, running, still_queued] if await journal.get(r.tx_id)}
    assert remaining == {finished[3].tx_id, finished[4].tx_id, running.tx_id, still_queued.tx_id}
    await journal.forget_finished(keep_last=0)
    assert await journal.get(finished[4].tx_id) is None
    assert await journal.get(still_queued.tx_id) is not None
    with pytest.raises(ValueError):
        await journal.forget_finished(keep_last=-1)


async def test_journal_survives_close_and_reopen(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    journal = TransactionJournal(store)
    record = await begin(journal)
    await journal.record_meter(record.tx_id, sample(1, 1100), 1100)
    await journal.set_csms_tx_id(record.tx_id, 55, "Accepted")
    await store.close()

    store = await Store.open(tmp_path)
    try:
        journal = TransactionJournal(store)
        recovered = await journal.get(record.tx_id)
        assert recovered is not None and recovered.csms_tx_id == 55
        assert recovered.last_meter_wh == 1100
        assert [r.tx_id for r in await journal.running()] == [record.tx_id]
        delivered = await drain(journal, {record.tx_id: 55})
        assert [m.kind for m in delivered] == ["start", "meter"]
        assert delivered[1].samples == (sample(1, 1100),)
    finally:
        await store.close()


CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path

    from agent.events import MeterSample, ReadingContext, SampledValue, StopReason
    from agent.persistence.store import Store
    from agent.transactions.journal import TransactionJournal

    def sample(i):
        return MeterSample(f"2026-11-24T19:00:{i:02d}.000Z", ReadingContext.SAMPLE_PERIODIC,
                           (SampledValue("Energy.Active.Import.Register", 1000.0 + i, "Wh"),))

    async def main(data_dir, count):
        journal = TransactionJournal(await Store.open(Path(data_dir)))
        a = await journal.begin(evse_id=1, connector_id=1, id_tag="A", meter_start_wh=1000,
                                timestamp="2026-11-24T19:00:00.000Z")
        print("begin", a.tx_id, flush=True)
        for i in range(count):
            await journal.record_meter(a.tx_id, sample(i), 1000 + i)
            print("meter", a.tx_id, 1000 + i, flush=True)
        await journal.end(a.tx_id, reason=StopReason.LOCAL, meter_stop_wh=1000 + count,
                          timestamp="2026-11-24T19:01:00.000Z")
        print("end", a.tx_id, flush=True)
        b = await journal.begin(evse_id=2, connector_id=1, id_tag="B", meter_start_wh=5000,
                                timestamp="2026-11-24T19:02:00.000Z")
        print("begin", b.tx_id, flush=True)
        for i in range(count):
            await journal.record_meter(b.tx_id, sample(i), 5000 + i)
            print("meter", b.tx_id, 5000 + i, flush=True)
        # Power cut right after the last commit returned: no close, no checkpoint.
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


async def test_every_committed_write_survives_sigkill(tmp_path: Path) -> None:
    count = 20
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(tmp_path),
        str(count),
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), timeout=30)
    assert child.returncode == -signal.SIGKILL, err.decode()
    lines = [line.split() for line in out.decode().splitlines()]
    tx_a, tx_b = (line[1] for line in lines if line[0] == "begin")
    expected = [(tx_a, "start")] + [(tx_a, "meter")] * count + [(tx_a, "stop")]
    expected += [(tx_b, "start")] + [(tx_b, "meter")] * count
    assert len(lines) == len(expected)  # the child confirmed every commit

    store = await Store.open(tmp_path)
    try:
        journal = TransactionJournal(store)
        a = await journal.get(tx_a)
        b = await journal.get(tx_b)
        assert a is not None and not a.running and a.meter_stop_wh == 1000 + count
        assert b is not None and b.running and b.last_meter_wh == 5000 + count - 1
        assert [r.tx_id for r in await journal.running()] == [tx_b]
        delivered = await drain(journal, {tx_a: 1, tx_b: 2})
        assert [(m.tx_id, m.kind) for m in delivered] == expected
        meter_energy = [int(m.samples[0].values[0].value) for m in delivered if m.kind == "meter"]
        assert meter_energy == [1000 + i for i in range(count)] + [1000 + i for i in range(count)]
    finally:
        await store.close()


# --- pure helpers --------------------------------------------------------------------------

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
sampled_values = st.builds(
    SampledValue,
    measurand=st.text(max_size=40),
    value=finite_floats,
    unit=st.text(max_size=5),
    phase=st.none() | st.text(max_size=5),
    location=st.none() | st.text(max_size=6),
)
meter_samples = st.builds(
    MeterSample,
    timestamp=st.text(max_size=30),
    context=st.sampled_from(ReadingContext),
    values=st.lists(sampled_values, max_size=5).map(tuple),
)


@given(meter_samples)
def test_sample_json_round_trip(original: MeterSample) -> None:
    text = json.dumps(sample_to_json(original), allow_nan=False)
    decoded = sample_from_json(json.loads(text))
    assert decoded == original
    assert all(type(v.value) is float for v in decoded.values)


def test_sample_rows_written_before_locations_existed_still_decode() -> None:
    old_row = {
        "timestamp": T0,
        "context": "Sample.Periodic",
        "values": [{"measurand": "Voltage", "value": 230.0, "unit": "V", "phase": "L1-N"}],
    }
    (value,) = sample_from_json(old_row).values
    assert value == SampledValue("Voltage", 230.0, "V", "L1-N", location=None)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"timestamp": T0, "context": "Sample.Periodic"},
        {"timestamp": T0, "context": "Nope", "values": []},
        {"timestamp": T0, "context": "Sample.Periodic", "values": [{"measurand": "Voltage"}]},
        {
            "timestamp": T0,
            "context": "Sample.Periodic",
            "values": [{"measurand": "V", "value": "230", "unit": "V", "phase": None}],
        },
    ],
)
def test_sample_from_json_rejects_malformed_data(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        sample_from_json(data)


def test_new_tx_ids_are_unique_hex() -> None:
    ids = {new_tx_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
