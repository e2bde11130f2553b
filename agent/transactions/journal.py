"""The persisted, version-neutral outbox of transaction messages.

The station core writes neutral records here (a transaction began, a meter
sample was taken, it ended); each write is one SQLite transaction that updates
the ``transactions`` row and appends to ``tx_queue`` together, so a crash can
never leave one without the other. The OCPP adapter reads the queue in ``seq``
order (= write order), turns each row into its version's message at send time
and acknowledges it after delivery. Because the row is mapped at send time, the
transaction id a 1.6 CSMS assigns in StartTransaction.conf reaches meter and
stop messages that were queued before it was known (OCPP 1.6 3.7, REFERENCE 2.5).

The samples a stop carries as 1.6 ``transactionData`` (StopTxnSampledData and
StopTxnAlignedData) are kept in ``tx_stop_data`` from the moment they are taken,
written in the same SQLite transaction as the begin or meter entry they go with,
so a stop made after a power cut (reason PowerLoss) still carries them. The
``stop`` message reads them at send time.

What must describe the moment of the event rather than the moment of sending is
fixed at enqueue, in the same SQLite transaction: each queued row gets its
transaction's next ``seq_no`` (0 for the start, OCPP 2.0.1 TransactionEvent seqNo)
and ``offline`` (read from :class:`~agent.connectivity.ConnectivityState`).
"""

from __future__ import annotations

import json
import math
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from agent.connectivity import ConnectivityState
from agent.events import (
    MeterSample,
    ReadingContext,
    SampledValue,
    StopReason,
    TxChargingState,
    TxPoint,
    TxUpdateTrigger,
)
from agent.persistence.store import Store

__all__ = [
    "MAX_STOP_DATA_SAMPLES",
    "JournalError",
    "MessageKind",
    "QueuedTxMessage",
    "TransactionJournal",
    "TxRecord",
    "new_tx_id",
    "sample_from_json",
    "sample_to_json",
]

MessageKind = Literal["start", "meter", "stop", "update"]

_TX_COLUMNS: Final = (
    "tx_id, evse_id, connector_id, id_tag, start_time, meter_start_wh, remote_start_id, "
    "reservation_id, csms_tx_id, id_tag_status, last_meter_wh, last_meter_time, stop_time, "
    "meter_stop_wh, stop_reason"
)
_KINDS: Final[tuple[MessageKind, ...]] = ("start", "meter", "stop", "update")

MAX_STOP_DATA_SAMPLES: Final = 200
"""StopTransaction.transactionData bound per transaction: beyond it the oldest sample
after the first (Transaction.Begin) one is dropped, so a days-long session cannot
grow the message without limit."""


class JournalError(Exception):
    """A journal call does not fit the stored state (unknown id, double stop...).

    These are caller bugs or a corrupt row; nothing has been written when it is raised.
    """


@dataclass(frozen=True, slots=True)
class TxRecord:
    """One transaction as stored.

    Times are ISO 8601 UTC strings as the core passed them; energies are Wh.
    ``csms_tx_id`` and ``id_tag_status`` are None until the CSMS has answered
    the start.
    """

    tx_id: str
    evse_id: int
    connector_id: int
    id_tag: str
    start_time: str
    meter_start_wh: int
    remote_start_id: int | None
    reservation_id: int | None
    csms_tx_id: int | None
    id_tag_status: str | None
    last_meter_wh: int | None
    last_meter_time: str | None
    stop_time: str | None
    meter_stop_wh: int | None
    stop_reason: StopReason | None

    @property
    def running(self) -> bool:
        """True until the transaction has been ended."""
        return self.stop_time is None


@dataclass(frozen=True, slots=True)
class QueuedTxMessage:
    """One undelivered transaction message, oldest first.

    Attributes:
        seq: Queue position; strictly increasing in write order, never reused.
        tx_id: The transaction it belongs to.
        kind: ``start``, ``meter`` or ``stop``.
        samples: For ``meter`` the samples; for ``stop`` the transaction data;
            for ``start`` empty.
        attempts: Delivery attempts recorded so far.
        record: The transaction row as it is now (current ``csms_tx_id``).
        seq_no: Position of this event within its transaction: 0 for the start,
            then +1 per queued message in event order, assigned when it was
            queued and kept across restarts (OCPP 2.0.1 TransactionEvent seqNo).
            A dropped message leaves a gap, as the CSMS should see.
        offline: No CSMS session was registered when the event was queued
            (OCPP 2.0.1 TransactionEvent ``offline``).
        started_by: For ``start``: the session fact whose arrival began the
            transaction (:class:`~agent.evse.charger.BeginTransaction`), None if unknown.
        charging_state: For ``start`` the charging state it began in, for
            ``update`` the new one; None when not recorded (older rows).
        trigger: For ``update``: why it was updated.
        id_tag: For an ``update`` with trigger AUTHORIZED: the accepted id.
        authorized: For ``start``: False when it began before any id was accepted.
        timestamp: For ``update``: when it happened, ISO 8601 UTC.
        remote_start_id: For an ``update`` with trigger REMOTE_START: its id.

    ``update`` rows (charging state changed, id accepted after a cable-first start)
    have no OCPP 1.6 message: a 1.6 sender acknowledges them without sending.
    """

    seq: int
    tx_id: str
    kind: MessageKind
    samples: tuple[MeterSample, ...]
    attempts: int
    record: TxRecord
    seq_no: int
    offline: bool
    started_by: TxPoint | None = None
    charging_state: TxChargingState | None = None
    trigger: TxUpdateTrigger | None = None
    id_tag: str | None = None
    timestamp: str | None = None
    authorized: bool = True
    remote_start_id: int | None = None


def new_tx_id() -> str:
    """A new station-side transaction id: 32 lower-case hex digits (uuid4)."""
    return uuid.uuid4().hex


def sample_to_json(sample: MeterSample) -> dict[str, Any]:
    """Encode a meter sample as a JSON-compatible dict (pure).

    Raises:
        ValueError: A value is NaN or infinite (a meter driver bug: such a value
            has no OCPP representation).
    """
    values: list[dict[str, Any]] = []
    for sampled in sample.values:
        if not math.isfinite(sampled.value):
            raise ValueError(f"non-finite {sampled.measurand} value: {sampled.value}")
        item: dict[str, Any] = {
            "measurand": sampled.measurand,
            "value": float(sampled.value),
            "unit": sampled.unit,
            "phase": sampled.phase,
        }
        if sampled.location is not None:  # absent in rows written before it existed
            item["location"] = sampled.location
        values.append(item)
    return {"timestamp": sample.timestamp, "context": sample.context.value, "values": values}


def sample_from_json(data: Mapping[str, Any]) -> MeterSample:
    """Decode what :func:`sample_to_json` produced (pure).

    Raises:
        ValueError: ``data`` is not a well-formed sample.
    """
    try:
        values = tuple(
            SampledValue(
                measurand=_as_str(item["measurand"]),
                value=_as_float(item["value"]),
                unit=_as_str(item["unit"]),
                phase=None if item["phase"] is None else _as_str(item["phase"]),
                location=None if item.get("location") is None else _as_str(item["location"]),
            )
            for item in data["values"]
        )
        return MeterSample(
            timestamp=_as_str(data["timestamp"]),
            context=ReadingContext(data["context"]),
            values=values,
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed meter sample {data!r}: {exc!r}") from exc


class TransactionJournal:
    """Transactions and their queued messages, in the store.

    Every method is one store transaction (one ``Store.run``), so each is atomic
    and durable when it returns. Methods raise whatever :meth:`Store.run` raises
    (``StoreError`` when closed, ``sqlite3.Error`` on disk failures) besides the
    :class:`JournalError` they document.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_stop_data: int = MAX_STOP_DATA_SAMPLES,
        connectivity: ConnectivityState | None = None,
    ) -> None:
        """Use ``store`` (already open and migrated).

        Args:
            store: The open store.
            max_stop_data: Most transaction-data samples kept per transaction, >= 1
                (:data:`MAX_STOP_DATA_SAMPLES`).
            connectivity: Read when a message is queued to record whether the
                station was offline then; the OCPP adapter sets it. None: a new,
                offline one (see :attr:`connectivity`).

        Raises:
            ValueError: ``max_stop_data`` is below 1.
        """
        if max_stop_data < 1:
            raise ValueError(f"max_stop_data must be >= 1, got {max_stop_data}")
        self._store = store
        self._max_stop_data = max_stop_data
        self.connectivity = connectivity if connectivity is not None else ConnectivityState()
        """Whether a CSMS session is registered; adapters set it at session start/end."""
        # schema >= v5 (seq_no/offline columns); None until first looked at. Older
        # files only occur in upgrade tests that write through an old store.
        self._has_event_columns: bool | None = None

    async def begin(
        self,
        *,
        evse_id: int,
        connector_id: int,
        id_tag: str,
        meter_start_wh: int,
        timestamp: str,
        remote_start_id: int | None = None,
        reservation_id: int | None = None,
        stop_data: Sequence[MeterSample] = (),
        started_by: TxPoint | None = None,
        charging_state: TxChargingState | None = None,
        authorized: bool = True,
    ) -> TxRecord:
        """Record that a transaction started and queue its ``start`` message.

        Args:
            evse_id: EVSE number (1..n).
            connector_id: Connector number on that EVSE.
            id_tag: The authorizing id token as presented.
            meter_start_wh: Energy register at the start, Wh.
            timestamp: Start time, ISO 8601 UTC.
            remote_start_id: 2.0.1 remoteStartId, if started remotely.
            reservation_id: Reservation the transaction consumed, if any.
            stop_data: Transaction-data samples taken at the start (the
                Transaction.Begin one), kept for the stop (see :meth:`add_stop_data`).
            started_by: The session fact whose arrival began it, if known.
            charging_state: The charging state it began in, if known.
            authorized: False when it began before any id was accepted (cable
                first); ``id_tag`` is then ``""`` until :meth:`record_update` sets it.

        Returns:
            The new record, with a fresh :func:`new_tx_id`.

        Raises:
            ValueError: A sample holds a non-finite value.
        """
        record = TxRecord(
            tx_id=new_tx_id(),
            evse_id=evse_id,
            connector_id=connector_id,
            id_tag=id_tag,
            start_time=timestamp,
            meter_start_wh=meter_start_wh,
            remote_start_id=remote_start_id,
            reservation_id=reservation_id,
            csms_tx_id=None,
            id_tag_status=None,
            last_meter_wh=None,
            last_meter_time=None,
            stop_time=None,
            meter_stop_wh=None,
            stop_reason=None,
        )
        kept = _encode_each(stop_data)
        offline = not self.connectivity.online  # a fact of now, not of the send time
        start_payload = _encode_samples(
            (),
            started_by=None if started_by is None else started_by.value,
            charging_state=None if charging_state is None else charging_state.value,
            unauthorized="1" if not authorized else None,
        )

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO transactions ({_TX_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
                (
                    record.tx_id,
                    evse_id,
                    connector_id,
                    id_tag,
                    timestamp,
                    meter_start_wh,
                    remote_start_id,
                    reservation_id,
                ),
            )
            self._enqueue(conn, record.tx_id, "start", start_payload, timestamp, offline)
            self._keep_stop_data(conn, record.tx_id, kept)

        await self._store.run(write)
        return record

    async def record_meter(
        self,
        tx_id: str,
        sample: MeterSample,
        meter_wh: int,
        *,
        stop_data: Sequence[MeterSample] = (),
    ) -> None:
        """Queue a ``meter`` message and remember the register reading.

        Args:
            tx_id: A running transaction.
            sample: The sample to send (its timestamp becomes ``last_meter_time``).
            meter_wh: Energy register of the sample, Wh.
            stop_data: Transaction-data samples taken at the same moment, kept
                for the stop in the same store transaction (see :meth:`add_stop_data`).

        Raises:
            JournalError: Unknown or already ended transaction.
            ValueError: A sample holds a non-finite value.
        """
        payload = _encode_samples((sample,))
        kept = _encode_each(stop_data)
        offline = not self.connectivity.online

        def write(conn: sqlite3.Connection) -> None:
            _require_running(conn, tx_id)
            _set_last_meter(conn, tx_id, meter_wh, sample.timestamp)
            self._enqueue(conn, tx_id, "meter", payload, sample.timestamp, offline)
            self._keep_stop_data(conn, tx_id, kept)

        await self._store.run(write)

    async def record_update(
        self,
        tx_id: str,
        *,
        timestamp: str,
        trigger: TxUpdateTrigger,
        charging_state: TxChargingState,
        id_tag: str | None = None,
        remote_start_id: int | None = None,
    ) -> None:
        """Queue an ``update`` message: the running transaction changed.

        Args:
            tx_id: A running transaction.
            timestamp: When it changed, ISO 8601 UTC.
            trigger: Why (charging state changed, id accepted).
            charging_state: The charging state from now on.
            id_tag: The id accepted for a transaction that began without one; it
                becomes the transaction's ``id_tag`` in the same store transaction.
            remote_start_id: The remote start that gave ``id_tag``, likewise kept
                as the transaction's ``remote_start_id``.

        Raises:
            JournalError: Unknown or already ended transaction.
        """
        offline = not self.connectivity.online
        payload = _encode_samples(
            (),
            trigger=trigger.value,
            charging_state=charging_state.value,
            id_tag=id_tag,
            timestamp=timestamp,
            remote_start_id=None if remote_start_id is None else str(remote_start_id),
        )

        def write(conn: sqlite3.Connection) -> None:
            _require_running(conn, tx_id)
            if id_tag is not None:
                conn.execute("UPDATE transactions SET id_tag = ? WHERE tx_id = ?", (id_tag, tx_id))
            if remote_start_id is not None:
                conn.execute(
                    "UPDATE transactions SET remote_start_id = ? WHERE tx_id = ?",
                    (remote_start_id, tx_id),
                )
            self._enqueue(conn, tx_id, "update", payload, timestamp, offline)

        await self._store.run(write)

    async def update_last_meter(
        self,
        tx_id: str,
        meter_wh: int,
        timestamp: str,
        *,
        stop_data: Sequence[MeterSample] = (),
    ) -> None:
        """Remember the latest register reading without queueing a message.

        Lets a power-loss recovery stop the transaction with the last known energy.

        Args:
            tx_id: A running transaction.
            meter_wh: Energy register, Wh.
            timestamp: When it was read, ISO 8601 UTC.
            stop_data: Transaction-data samples to keep in the same store
                transaction (see :meth:`add_stop_data`).

        Raises:
            JournalError: Unknown or already ended transaction.
            ValueError: A sample holds a non-finite value.
        """
        kept = _encode_each(stop_data)

        def write(conn: sqlite3.Connection) -> None:
            _require_running(conn, tx_id)
            _set_last_meter(conn, tx_id, meter_wh, timestamp)
            self._keep_stop_data(conn, tx_id, kept)

        await self._store.run(write)

    async def add_stop_data(self, tx_id: str, samples: Sequence[MeterSample]) -> None:
        """Keep samples for the transaction's stop message (1.6 transactionData).

        They are appended in call order. Beyond ``max_stop_data`` samples the
        oldest one after the first (the Transaction.Begin sample) is dropped.
        Prefer the ``stop_data`` argument of :meth:`begin`, :meth:`record_meter`
        or :meth:`update_last_meter` when there is a journal write anyway: it
        shares that write's store transaction.

        Raises:
            JournalError: Unknown or already ended transaction.
            ValueError: A sample holds a non-finite value.
        """
        kept = _encode_each(samples)

        def write(conn: sqlite3.Connection) -> None:
            _require_running(conn, tx_id)
            self._keep_stop_data(conn, tx_id, kept)

        await self._store.run(write)

    async def stop_data(self, tx_id: str) -> list[MeterSample]:
        """The transaction-data samples kept for ``tx_id``, oldest first (empty if none).

        Raises:
            JournalError: A stored sample is corrupt.
        """
        return await self._store.run(lambda conn: _read_stop_data(conn, tx_id))

    async def end(
        self,
        tx_id: str,
        *,
        reason: StopReason,
        meter_stop_wh: int,
        timestamp: str,
        transaction_data: Sequence[MeterSample] = (),
    ) -> TxRecord:
        """Record that a transaction ended and queue its ``stop`` message.

        Args:
            tx_id: A running transaction.
            reason: Why it ended.
            meter_stop_wh: Energy register at the stop, Wh.
            timestamp: Stop time, ISO 8601 UTC.
            transaction_data: Samples taken at the stop (the Transaction.End one),
                added to the kept ones (:meth:`add_stop_data`, same bound); the
                ``stop`` message carries all of them, read when it is sent.

        Returns:
            The ended record.

        Raises:
            JournalError: Unknown transaction, or it has already ended (callers
                must not stop twice).
            ValueError: A sample holds a non-finite value.
        """
        kept = _encode_each(transaction_data)
        offline = not self.connectivity.online

        def write(conn: sqlite3.Connection) -> TxRecord:
            _require_running(conn, tx_id)
            self._keep_stop_data(conn, tx_id, kept)
            conn.execute(
                "UPDATE transactions SET stop_time = ?, meter_stop_wh = ?, stop_reason = ? "
                "WHERE tx_id = ?",
                (timestamp, meter_stop_wh, reason.value, tx_id),
            )
            # the samples stay in tx_stop_data; next_messages adds them to the stop
            self._enqueue(conn, tx_id, "stop", _encode_samples(()), timestamp, offline)
            return _require_record(conn, tx_id)

        return await self._store.run(write)

    def _event_columns(self, conn: sqlite3.Connection) -> bool:
        """Whether ``tx_queue`` has the v5 ``seq_no``/``offline`` columns (looked up once)."""
        if self._has_event_columns is None:
            names = {row[1] for row in conn.execute("PRAGMA table_info(tx_queue)")}
            self._has_event_columns = {"seq_no", "offline"} <= names
        return self._has_event_columns

    def _enqueue(
        self,
        conn: sqlite3.Connection,
        tx_id: str,
        kind: MessageKind,
        payload: str,
        created: str,
        offline: bool,
    ) -> None:
        """Append one message; give it the transaction's next ``seq_no`` (same transaction)."""
        if not self._event_columns(conn):
            _enqueue(conn, tx_id, kind, payload, created)
            return
        row = conn.execute(
            "SELECT next_seq_no FROM transactions WHERE tx_id = ?", (tx_id,)
        ).fetchone()
        if row is None:
            raise JournalError(f"unknown transaction {tx_id}")
        seq_no = int(row[0])
        conn.execute(
            "INSERT INTO tx_queue (tx_id, kind, payload, created, seq_no, offline) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (tx_id, kind, payload, created, seq_no, int(offline)),
        )
        conn.execute("UPDATE transactions SET next_seq_no = ? WHERE tx_id = ?", (seq_no + 1, tx_id))

    def _keep_stop_data(self, conn: sqlite3.Connection, tx_id: str, samples: list[str]) -> None:
        """Append encoded samples to ``tx_id``'s transaction data, then apply the bound."""
        if not samples:
            return
        conn.executemany(
            "INSERT INTO tx_stop_data (tx_id, sample) VALUES (?, ?)",
            [(tx_id, sample) for sample in samples],
        )
        row = conn.execute("SELECT count(*) FROM tx_stop_data WHERE tx_id = ?", (tx_id,)).fetchone()
        excess = int(row[0]) - self._max_stop_data
        if excess > 0:
            # keep the first (Transaction.Begin) sample, drop the oldest after it
            conn.execute(
                "DELETE FROM tx_stop_data WHERE seq IN (SELECT seq FROM tx_stop_data "
                "WHERE tx_id = ? ORDER BY seq LIMIT ? OFFSET 1)",
                (tx_id, excess),
            )

    async def running(self) -> list[TxRecord]:
        """Transactions not yet ended, oldest start first (for recovery at boot)."""

        def read(conn: sqlite3.Connection) -> list[TxRecord]:
            rows = conn.execute(
                f"SELECT {_TX_COLUMNS} FROM transactions WHERE stop_time IS NULL "
                "ORDER BY start_time, rowid"
            ).fetchall()
            return [_record_from_row(row) for row in rows]

        return await self._store.run(read)

    async def get(self, tx_id: str) -> TxRecord | None:
        """The transaction with station id ``tx_id``, or None."""
        return await self._store.run(lambda conn: _find_record(conn, tx_id))

    async def find_by_csms_id(self, csms_tx_id: int) -> TxRecord | None:
        """The transaction the CSMS knows as ``csms_tx_id``, or None.

        A CSMS may hand out the same id twice (some answer every rejected start
        with 0); then the newest such transaction is returned.
        """

        def read(conn: sqlite3.Connection) -> TxRecord | None:
            row = conn.execute(
                f"SELECT {_TX_COLUMNS} FROM transactions WHERE csms_tx_id = ? "
                "ORDER BY start_time DESC, rowid DESC LIMIT 1",
                (csms_tx_id,),
            ).fetchone()
            return None if row is None else _record_from_row(row)

        return await self._store.run(read)

    async def set_csms_tx_id(self, tx_id: str, csms_tx_id: int, id_tag_status: str | None) -> None:
        """Store the id the CSMS assigned and the idTagInfo status it returned.

        Raises:
            JournalError: Unknown transaction.
        """
        await self._store.run(lambda conn: _set_csms_id(conn, tx_id, csms_tx_id, id_tag_status))

    async def next_message(self) -> QueuedTxMessage | None:
        """The oldest undelivered message (lowest ``seq``), or None when the queue is empty.

        Does not remove it: call :meth:`acknowledge`, :meth:`acknowledge_start`
        or :meth:`drop` once it has been dealt with.

        Raises:
            JournalError: The stored row is corrupt (unknown kind, bad payload).
        """
        batch = await self.next_messages(1)
        return batch[0] if batch else None

    async def next_messages(self, limit: int) -> list[QueuedTxMessage]:
        """Up to ``limit`` oldest undelivered messages, in ``seq`` order (one DB trip).

        Each carries its transaction row as it is now; a caller that prefetches
        must re-read after acknowledging a start (the CSMS id changes the rows).

        Raises:
            JournalError: A stored row is corrupt (unknown kind, bad payload).
        """

        def read(conn: sqlite3.Connection) -> list[QueuedTxMessage]:
            event_columns = "seq_no, offline" if self._event_columns(conn) else "0, 0"
            rows = conn.execute(
                f"SELECT seq, tx_id, kind, payload, attempts, {event_columns} FROM tx_queue "
                "ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
            records: dict[str, TxRecord] = {}
            out = []
            for seq, tx_id, kind, payload, attempts, seq_no, offline in rows:
                if kind not in _KINDS:
                    raise JournalError(f"queued message {seq} has unknown kind {kind!r}")
                try:
                    data = json.loads(payload)
                    samples = tuple(sample_from_json(item) for item in data["samples"])
                    extra = _event_fields(data)
                except (ValueError, KeyError, TypeError) as exc:
                    raise JournalError(
                        f"queued message {seq} has a corrupt payload: {exc}"
                    ) from exc
                if kind == "stop":  # a stop queued before schema v3 has them in its payload
                    samples += tuple(_read_stop_data(conn, tx_id))
                if tx_id not in records:
                    records[tx_id] = _require_record(conn, tx_id)
                out.append(
                    QueuedTxMessage(
                        seq=int(seq),
                        tx_id=str(tx_id),
                        kind=kind,
                        samples=samples,
                        attempts=int(attempts),
                        record=records[tx_id],
                        seq_no=int(seq_no),
                        offline=bool(offline),
                        **extra,
                    )
                )
            return out

        return await self._store.run(read)

    async def acknowledge(self, seq: int) -> None:
        """The message ``seq`` was delivered: remove it from the queue.

        Not fsynced (``Store.run(durable=False)``): it survives a process crash;
        after a power cut it may be undone, and the message is sent once more.
        Every later durable commit (any queued message) makes it durable too.

        Raises:
            JournalError: No queued message ``seq``.
        """
        await self._store.run(lambda conn: _delete_message(conn, seq), durable=False)

    async def acknowledge_start(self, seq: int, csms_tx_id: int, id_tag_status: str) -> None:
        """The ``start`` message ``seq`` was answered: store the id and dequeue it.

        Both happen in one store transaction, so a crash never leaves a
        delivered start without its CSMS id, nor an id on a start still queued
        (which would be sent again).

        Raises:
            JournalError: No queued message ``seq``, or it is not a ``start``.
        """

        def write(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT tx_id, kind FROM tx_queue WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                raise JournalError(f"no queued message {seq}")
            tx_id, kind = row
            if kind != "start":
                raise JournalError(f"queued message {seq} is a {kind!r}, not a 'start'")
            _set_csms_id(conn, tx_id, csms_tx_id, id_tag_status)
            _delete_message(conn, seq)

        await self._store.run(write)

    async def record_attempt(self, seq: int) -> int:
        """Count one more delivery attempt of message ``seq``.

        Returns:
            The new attempt count.

        Raises:
            JournalError: No queued message ``seq``.
        """

        def write(conn: sqlite3.Connection) -> int:
            # No RETURNING: Debian bullseye ships SQLite 3.34, older than RETURNING (3.35).
            conn.execute("UPDATE tx_queue SET attempts = attempts + 1 WHERE seq = ?", (seq,))
            row = conn.execute("SELECT attempts FROM tx_queue WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                raise JournalError(f"no queued message {seq}")
            return int(row[0])

        return await self._store.run(write)

    async def drop(self, seq: int) -> None:
        """Give up on message ``seq`` (retries exhausted). Dropping a missing seq is a no-op."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM tx_queue WHERE seq = ?", (seq,))

        await self._store.run(write)

    async def drop_transaction_messages(self, tx_id: str) -> int:
        """Drop every queued message of ``tx_id``.

        Returns:
            How many were dropped.
        """

        def write(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM tx_queue WHERE tx_id = ?", (tx_id,)).rowcount

        return await self._store.run(write)

    async def pending_count(self, tx_id: str | None = None) -> int:
        """Number of undelivered messages, of ``tx_id`` only when given."""

        def read(conn: sqlite3.Connection) -> int:
            if tx_id is None:
                return int(conn.execute("SELECT count(*) FROM tx_queue").fetchone()[0])
            row = conn.execute("SELECT count(*) FROM tx_queue WHERE tx_id = ?", (tx_id,))
            return int(row.fetchone()[0])

        return await self._store.run(read)

    async def forget_finished(self, keep_last: int = 100) -> None:
        """Delete ended transactions that have nothing queued, except the newest ones.

        Running transactions and ones with queued messages are never deleted.
        The transaction data kept for a stop (:meth:`add_stop_data`) goes once the
        stop is no longer queued, also for the transactions kept as history.

        Args:
            keep_last: How many of the most recently started ended transactions
                to keep regardless (for local history), >= 0.

        Raises:
            ValueError: ``keep_last`` is negative.
        """
        if keep_last < 0:
            raise ValueError(f"keep_last must be >= 0, got {keep_last}")

        def write(conn: sqlite3.Connection) -> None:
            # first: tx_stop_data references the rows deleted next
            conn.execute(
                "DELETE FROM tx_stop_data WHERE tx_id IN (SELECT tx_id FROM transactions t "
                "WHERE t.stop_time IS NOT NULL "
                "AND NOT EXISTS (SELECT 1 FROM tx_queue q WHERE q.tx_id = t.tx_id))"
            )
            conn.execute(
                "DELETE FROM transactions WHERE stop_time IS NOT NULL "
                "AND NOT EXISTS (SELECT 1 FROM tx_queue q WHERE q.tx_id = transactions.tx_id) "
                "AND tx_id NOT IN (SELECT tx_id FROM transactions WHERE stop_time IS NOT NULL "
                "ORDER BY start_time DESC, rowid DESC LIMIT ?)",
                (keep_last,),
            )

        await self._store.run(write)


def _as_str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _as_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _encode_samples(samples: tuple[MeterSample, ...], **fields: str | None) -> str:
    """The queued row's payload: its samples plus the event fields that are set."""
    data: dict[str, Any] = {"samples": [sample_to_json(s) for s in samples]}
    data.update({k: v for k, v in fields.items() if v is not None})
    return json.dumps(data, allow_nan=False)


def _event_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The ``QueuedTxMessage`` event fields a payload holds (absent in older rows).

    Raises:
        ValueError: A field holds an unknown value.
        TypeError: ``id_tag`` is not a string.
    """
    out: dict[str, Any] = {}
    if data.get("started_by") is not None:
        out["started_by"] = TxPoint(data["started_by"])
    if data.get("charging_state") is not None:
        out["charging_state"] = TxChargingState(data["charging_state"])
    if data.get("trigger") is not None:
        out["trigger"] = TxUpdateTrigger(data["trigger"])
    if data.get("id_tag") is not None:
        out["id_tag"] = _as_str(data["id_tag"])
    if data.get("remote_start_id") is not None:
        out["remote_start_id"] = int(_as_str(data["remote_start_id"]))
    if data.get("unauthorized") is not None:
        out["authorized"] = False
    if data.get("timestamp") is not None:
        out["timestamp"] = _as_str(data["timestamp"])
    return out


def _encode_each(samples: Sequence[MeterSample]) -> list[str]:
    return [json.dumps(sample_to_json(s), allow_nan=False) for s in samples]


def _read_stop_data(conn: sqlite3.Connection, tx_id: str) -> list[MeterSample]:
    rows = conn.execute(
        "SELECT seq, sample FROM tx_stop_data WHERE tx_id = ? ORDER BY seq", (tx_id,)
    ).fetchall()
    out = []
    for seq, text in rows:
        try:
            out.append(sample_from_json(json.loads(text)))
        except (ValueError, TypeError) as exc:
            raise JournalError(f"transaction data {seq} of {tx_id} is corrupt: {exc}") from exc
    return out


def _enqueue(
    conn: sqlite3.Connection, tx_id: str, kind: MessageKind, payload: str, created: str
) -> None:
    conn.execute(
        "INSERT INTO tx_queue (tx_id, kind, payload, created) VALUES (?, ?, ?, ?)",
        (tx_id, kind, payload, created),
    )


def _set_last_meter(conn: sqlite3.Connection, tx_id: str, meter_wh: int, timestamp: str) -> None:
    conn.execute(
        "UPDATE transactions SET last_meter_wh = ?, last_meter_time = ? WHERE tx_id = ?",
        (meter_wh, timestamp, tx_id),
    )


def _set_csms_id(
    conn: sqlite3.Connection, tx_id: str, csms_tx_id: int, id_tag_status: str | None
) -> None:
    cursor = conn.execute(
        "UPDATE transactions SET csms_tx_id = ?, id_tag_status = ? WHERE tx_id = ?",
        (csms_tx_id, id_tag_status, tx_id),
    )
    if cursor.rowcount != 1:
        raise JournalError(f"unknown transaction {tx_id}")


def _delete_message(conn: sqlite3.Connection, seq: int) -> None:
    if conn.execute("DELETE FROM tx_queue WHERE seq = ?", (seq,)).rowcount != 1:
        raise JournalError(f"no queued message {seq}")


def _find_record(conn: sqlite3.Connection, tx_id: str) -> TxRecord | None:
    row = conn.execute(
        f"SELECT {_TX_COLUMNS} FROM transactions WHERE tx_id = ?", (tx_id,)
    ).fetchone()
    return None if row is None else _record_from_row(row)


def _require_record(conn: sqlite3.Connection, tx_id: str) -> TxRecord:
    record = _find_record(conn, tx_id)
    if record is None:
        raise JournalError(f"unknown transaction {tx_id}")
    return record


def _require_running(conn: sqlite3.Connection, tx_id: str) -> None:
    row = conn.execute("SELECT stop_time FROM transactions WHERE tx_id = ?", (tx_id,)).fetchone()
    if row is None:
        raise JournalError(f"unknown transaction {tx_id}")
    if row[0] is not None:
        raise JournalError(f"transaction {tx_id} already ended at {row[0]}")


def _record_from_row(row: Sequence[Any]) -> TxRecord:
    (
        tx_id,
        evse_id,
        connector_id,
        id_tag,
        start_time,
        meter_start_wh,
        remote_start_id,
        reservation_id,
        csms_tx_id,
        id_tag_status,
        last_meter_wh,
        last_meter_time,
        stop_time,
        meter_stop_wh,
        stop_reason,
    ) = row
    try:
        reason = None if stop_reason is None else StopReason(stop_reason)
    except ValueError as exc:
        raise JournalError(f"transaction {tx_id} has unknown stop reason {stop_reason!r}") from exc
    return TxRecord(
        tx_id=tx_id,
        evse_id=evse_id,
        connector_id=connector_id,
        id_tag=id_tag,
        start_time=start_time,
        meter_start_wh=meter_start_wh,
        remote_start_id=remote_start_id,
        reservation_id=reservation_id,
        csms_tx_id=csms_tx_id,
        id_tag_status=id_tag_status,
        last_meter_wh=last_meter_wh,
        last_meter_time=last_meter_time,
        stop_time=stop_time,
        meter_stop_wh=meter_stop_wh,
        stop_reason=reason,
    )
