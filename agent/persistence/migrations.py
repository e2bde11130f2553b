"""Versioned schema of ``agent.db`` and the code that brings a file up to date.

``PRAGMA user_version`` holds the schema version of a file. At open the store
calls :func:`migrate`, which applies every pending step in one SQLite
transaction after copying the file to ``<data_dir>/agent.db.bak-v<old>``; if a
step fails the copy is restored and :class:`MigrationError` says so. Steps are
append-only: never edit a released step, add a new version instead.

Everything here runs on the store's database thread.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Final, NamedTuple

__all__ = ["MIGRATIONS", "Migration", "MigrationError", "backup_path", "migrate"]


class MigrationError(Exception):
    """The schema could not be brought to the version this software needs.

    The message names the file, the failed version and, when a backup was
    restored, the backup's path.
    """


class Migration(NamedTuple):
    """One schema step: the SQL script that takes the file to ``version``."""

    version: int
    sql: str


_SCHEMA_V1: Final = """
CREATE TABLE transactions (
    tx_id           TEXT PRIMARY KEY NOT NULL,   -- uuid4 hex, made by the journal
    evse_id         INTEGER NOT NULL,
    connector_id    INTEGER NOT NULL,
    id_tag          TEXT NOT NULL,
    start_time      TEXT NOT NULL,               -- ISO 8601 UTC
    meter_start_wh  INTEGER NOT NULL,
    remote_start_id INTEGER,
    reservation_id  INTEGER,
    csms_tx_id      INTEGER,                     -- assigned by the CSMS (OCPP 1.6)
    id_tag_status   TEXT,
    last_meter_wh   INTEGER,
    last_meter_time TEXT,
    stop_time       TEXT,                        -- NULL while running
    meter_stop_wh   INTEGER,
    stop_reason     TEXT,
    CHECK ((stop_time IS NULL) = (meter_stop_wh IS NULL))
);
CREATE INDEX transactions_by_stop_start ON transactions (stop_time, start_time);
CREATE INDEX transactions_by_csms_id ON transactions (csms_tx_id);

CREATE TABLE tx_queue (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: a seq is never reused
    tx_id    TEXT NOT NULL REFERENCES transactions (tx_id),
    kind     TEXT NOT NULL CHECK (kind IN ('start', 'meter', 'stop')),
    payload  TEXT NOT NULL,                      -- JSON
    attempts INTEGER NOT NULL DEFAULT 0,
    created  TEXT NOT NULL                       -- ISO 8601 UTC of the event
);
CREATE INDEX tx_queue_by_tx ON tx_queue (tx_id);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL                          -- JSON
);

CREATE TABLE auth_cache (
    id_tag        TEXT PRIMARY KEY NOT NULL,     -- upper case
    status        TEXT NOT NULL,
    expiry        TEXT,                          -- ISO 8601 UTC
    parent_id_tag TEXT,
    updated       TEXT NOT NULL                  -- ISO 8601 UTC
);
CREATE INDEX auth_cache_by_updated ON auth_cache (updated);
"""

# v2: the Local Authorization List (OCPP 1.6 3.5.3 / 5.15, 2.0.1 block D). Entries are
# only ever changed by a whole SendLocalList update; the single-row version table holds
# the list version the CSMS last sent (0 = no list installed).
_SCHEMA_V2: Final = """
CREATE TABLE local_auth_list (
    id_tag        TEXT PRIMARY KEY NOT NULL,     -- upper case
    status        TEXT NOT NULL,
    expiry        TEXT,                          -- ISO 8601 UTC
    parent_id_tag TEXT
);

CREATE TABLE local_auth_list_version (
    id      INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),   -- exactly one row
    version INTEGER NOT NULL CHECK (version >= 0)
);
INSERT INTO local_auth_list_version (id, version) VALUES (1, 0);
"""

# v3: the StopTransaction.transactionData of each transaction (1.6 StopTxnSampledData /
# StopTxnAlignedData samples), written with the journal entry they belong to so that a
# stop sent after a power cut still carries them. Pruned with the transaction.
_SCHEMA_V3: Final = """
CREATE TABLE tx_stop_data (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,   -- write order = order in the message
    tx_id   TEXT NOT NULL REFERENCES transactions (tx_id),
    sample  TEXT NOT NULL                        -- JSON: one meter sample
);
CREATE INDEX tx_stop_data_by_tx ON tx_stop_data (tx_id, seq);
"""

# v4: the firmware update journal (one update at a time: a single row) and the
# outbox of firmware/log status and security-event reports, delivered in seq order
# across reboots (firmware_update/journal.py).
_SCHEMA_V4: Final = """
CREATE TABLE firmware_update (
    id             INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),   -- at most one update
    request_id     INTEGER NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('plain', 'signed')),
    phase          TEXT NOT NULL,
    retries_left   INTEGER NOT NULL,
    failure        TEXT,                         -- status a revert ends with
    request        TEXT NOT NULL,                -- JSON: location, times, cert, signature
    target_slot    TEXT,
    target_version TEXT,
    updated        TEXT NOT NULL                 -- ISO 8601 UTC
);

CREATE TABLE firmware_outbox (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,   -- delivery order, never reused
    kind    TEXT NOT NULL,                       -- firmware_status, security_event, ...
    payload TEXT NOT NULL,                       -- JSON
    created TEXT NOT NULL                        -- ISO 8601 UTC
);
"""

# v5: facts an OCPP 2.0.1 TransactionEvent reports about when its event happened,
# recorded at enqueue in the same store transaction: ``seq_no`` (0, 1, 2... per
# transaction in event order, REFERENCE 4.4; ``next_seq_no`` is the per-transaction
# counter, since delivered rows are deleted) and ``offline`` (no CSMS session then).
# Rows queued before v5 are numbered in queue order within their transaction; their
# ``offline`` is unknown and stays 0. The 1.6 adapter ignores both.
_SCHEMA_V5: Final = """
ALTER TABLE transactions ADD COLUMN next_seq_no INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tx_queue ADD COLUMN seq_no INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tx_queue ADD COLUMN offline INTEGER NOT NULL DEFAULT 0 CHECK (offline IN (0, 1));
UPDATE tx_queue SET seq_no = (
    SELECT count(*) FROM tx_queue q WHERE q.tx_id = tx_queue.tx_id AND q.seq < tx_queue.seq
);
UPDATE transactions SET next_seq_no = (
    SELECT count(*) FROM tx_queue q WHERE q.tx_id = transactions.tx_id
);
"""

# v6: ``update`` rows in tx_queue (a running transaction's charging state changed, or
# an id was accepted after a cable-first start; OCPP 2.0.1 TransactionEvent Updated).
# SQLite cannot change a CHECK constraint: the table is rebuilt with its rows, and its
# AUTOINCREMENT counter carried over so that no seq is ever reused.
_SCHEMA_V6: Final = """
CREATE TABLE tx_queue_v6 (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    tx_id    TEXT NOT NULL REFERENCES transactions (tx_id),
    kind     TEXT NOT NULL CHECK (kind IN ('start', 'meter', 'stop', 'update')),
    payload  TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created  TEXT NOT NULL,
    seq_no   INTEGER NOT NULL DEFAULT 0,
    offline  INTEGER NOT NULL DEFAULT 0 CHECK (offline IN (0, 1))
);
INSERT INTO tx_queue_v6 (seq, tx_id, kind, payload, attempts, created, seq_no, offline)
    SELECT seq, tx_id, kind, payload, attempts, created, seq_no, offline FROM tx_queue;
DELETE FROM sqlite_sequence WHERE name = 'tx_queue_v6';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'tx_queue_v6', seq FROM sqlite_sequence WHERE name = 'tx_queue';
DROP TABLE tx_queue;
ALTER TABLE tx_queue_v6 RENAME TO tx_queue;
CREATE INDEX tx_queue_by_tx ON tx_queue (tx_id);
"""

# v7: the SHA-256 (hex) and size in bytes of the downloaded firmware image, recorded with
# the Downloaded phase. Images are not fsynced while downloading: after a power cut the
# firmware manager recomputes the digest and downloads a torn image again. NULL before
# the download completed (and on rows written before v7).
_SCHEMA_V7: Final = """
ALTER TABLE firmware_update ADD COLUMN image_sha256 TEXT;
ALTER TABLE firmware_update ADD COLUMN image_bytes INTEGER;
"""

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(1, _SCHEMA_V1),
    Migration(2, _SCHEMA_V2),
    Migration(3, _SCHEMA_V3),
    Migration(4, _SCHEMA_V4),
    Migration(5, _SCHEMA_V5),
    Migration(6, _SCHEMA_V6),
    Migration(7, _SCHEMA_V7),
)
"""The schema steps this software knows, oldest first."""


def backup_path(db_path: Path, version: int) -> Path:
    """Where the copy taken before migrating from ``version`` is kept."""
    return db_path.with_name(f"{db_path.name}.bak-v{version}")


def migrate(
    conn: sqlite3.Connection, db_path: Path, migrations: Sequence[Migration] = MIGRATIONS
) -> int:
    """Bring the database on ``conn`` to the newest version in ``migrations``.

    Blocking; call it on the database thread with no transaction open. A file
    that already holds data is first copied to :func:`backup_path` (SQLite
    backup API, then fsync). All pending steps and the new ``user_version`` are
    applied in one transaction.

    Args:
        conn: Open connection in autocommit mode (``isolation_level=None``).
        db_path: Path of the database file, for the backup and messages.
        migrations: Steps with strictly increasing positive versions; a step's
            SQL must not contain BEGIN/COMMIT. Tests pass a broken list here.

    Returns:
        The schema version of the file afterwards.

    Raises:
        MigrationError: The file is newer than ``migrations`` knows (downgrade
            is not supported), or a step failed. After a failure the file is
            rolled back and, when a backup was taken, restored from it.
        ValueError: ``migrations`` is not strictly increasing.
    """
    _check_steps(migrations)
    current = _user_version(conn)
    target = migrations[-1].version if migrations else 0
    if current > target:
        raise MigrationError(
            f"database {db_path} has schema v{current}, newer than v{target} known to this "
            "software; downgrade is not supported (restore a backup or upgrade the software)"
        )
    pending = [step for step in migrations if step.version > current]
    if not pending:
        return current

    backup: Path | None = None
    if _has_content(conn, current):
        backup = backup_path(db_path, current)
        _write_backup(conn, backup)

    # One script so every step shares one transaction (executescript would commit an
    # open transaction first). user_version after each step tells which step failed.
    script = ["BEGIN IMMEDIATE;"]
    for step in pending:
        script.append(step.sql)
        script.append(f";\nPRAGMA user_version = {step.version};")
    script.append("COMMIT;")
    try:
        conn.executescript("\n".join(script))
    except sqlite3.Error as exc:
        failed = _failed_version(conn, pending)
        if conn.in_transaction:
            conn.rollback()
        if backup is None:
            raise MigrationError(
                f"migration to v{failed} failed: {exc}; database {db_path} left at v{current}"
            ) from exc
        try:
            _restore_backup(conn, backup)
        except sqlite3.Error as restore_exc:
            raise MigrationError(
                f"migration to v{failed} failed: {exc}; restoring backup {backup} also failed: "
                f"{restore_exc}"
            ) from exc
        raise MigrationError(
            f"migration to v{failed} failed: {exc}; restored backup {backup}"
        ) from exc
    return target


def _check_steps(migrations: Sequence[Migration]) -> None:
    previous = 0
    for step in migrations:
        if step.version <= previous:
            raise ValueError(f"migration versions must increase from 1: {step.version}")
        previous = step.version


def _user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def _has_content(conn: sqlite3.Connection, version: int) -> bool:
    if version > 0:
        return True
    row = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return int(row[0]) > 0


def _failed_version(conn: sqlite3.Connection, pending: Sequence[Migration]) -> int:
    reached = _user_version(conn)  # inside the failed transaction: last step that ran
    for step in pending:
        if step.version > reached:
            return step.version
    return pending[-1].version  # the COMMIT itself failed


def _write_backup(conn: sqlite3.Connection, backup: Path) -> None:
    partial = backup.with_name(backup.name + ".partial")
    partial.unlink(missing_ok=True)
    dest = sqlite3.connect(partial)
    try:
        conn.backup(dest)
        # The copy inherits the WAL flag; a plain rollback-journal file is one
        # self-contained file a technician can copy off the device.
        dest.execute("PRAGMA journal_mode = DELETE")
    finally:
        dest.close()
    _fsync_file(partial)
    os.replace(partial, backup)  # a half-written copy never carries the final name
    _fsync_file(backup.parent)


def _restore_backup(conn: sqlite3.Connection, backup: Path) -> None:
    source = sqlite3.connect(backup)
    try:
        source.backup(conn)
    finally:
        source.close()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
