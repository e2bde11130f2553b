"""The SQLite store: pragmas, transactions, threading, close, migrations."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agent.persistence.migrations import MIGRATIONS, Migration, MigrationError, backup_path
from agent.persistence.store import DB_FILENAME, Store, StoreError

V1 = Migration(1, "CREATE TABLE a (x INTEGER NOT NULL);")
V2_GOOD = Migration(2, "CREATE TABLE b (y INTEGER); INSERT INTO a VALUES (2);")
V2_BAD = Migration(2, "CREATE TABLE b (y INTEGER); INSERT INTO no_such_table VALUES (1);")
V3_BAD = Migration(3, "CREATE TABLE c (z INTEGER); INSERT INTO a VALUES (NULL);")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "data")
    yield opened
    await opened.close()


def store_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("evse-store")]


def pragma(name: str) -> Callable[[sqlite3.Connection], object]:
    def read(conn: sqlite3.Connection) -> object:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]

    return read


def table_names(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {str(row[0]) for row in rows}


def rows_of_a(conn: sqlite3.Connection) -> list[int]:
    return [int(row[0]) for row in conn.execute("SELECT x FROM a ORDER BY rowid")]


async def test_open_creates_dir_and_sets_durable_pragmas(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    store = await Store.open(data_dir)
    try:
        assert store.path == data_dir / DB_FILENAME
        assert store.path.is_file()
        assert await store.run(pragma("journal_mode")) == "wal"
        assert await store.run(pragma("synchronous")) == 2  # FULL
        assert await store.run(pragma("foreign_keys")) == 1
        assert await store.run(pragma("busy_timeout")) == 5000
        assert await store.run(pragma("user_version")) == MIGRATIONS[-1].version
        assert {"transactions", "tx_queue", "settings", "auth_cache"} <= await store.run(
            table_names
        )
    finally:
        await store.close()


async def test_each_commit_runs_with_the_durability_it_asked_for(store: Store) -> None:
    # The PRAGMA is switched only when the durability changes between calls; whatever
    # ran before, a durable commit runs with FULL (fsync) and an acknowledgement without.
    sync = pragma("synchronous")
    seen = [
        await store.run(sync, durable=False),
        await store.run(sync, durable=False),
        await store.run(sync),
        await store.run(sync),
        await store.run(sync, durable=False),
        await store.run(sync),
    ]
    assert seen == [1, 1, 2, 2, 1, 2]  # NORMAL = 1, FULL = 2


async def test_run_commits_and_returns_the_result(store: Store) -> None:
    def write(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO settings (key, value) VALUES ('k', '1')")
        return 7

    assert await store.run(write) == 7
    count = await store.run(lambda c: c.execute("SELECT count(*) FROM settings").fetchone()[0])
    assert count == 1


async def test_run_rolls_back_everything_when_fn_raises(store: Store) -> None:
    class Boom(Exception):
        pass

    def write_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO settings (key, value) VALUES ('a', '1')")
        conn.execute("INSERT INTO settings (key, value) VALUES ('b', '2')")
        raise Boom

    with pytest.raises(Boom):
        await store.run(write_then_fail)
    count = await store.run(lambda c: c.execute("SELECT count(*) FROM settings").fetchone()[0])
    assert count == 0
    # No transaction was left open: the next write commits on its own.
    await store.run(lambda c: c.execute("INSERT INTO settings (key, value) VALUES ('c', '3')"))
    assert await store.run(lambda c: c.execute("SELECT key FROM settings").fetchall()) == [("c",)]


async def test_run_rolls_back_a_failing_statement_with_earlier_writes(store: Store) -> None:
    def write(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO settings (key, value) VALUES ('a', '1')")
        conn.execute("INSERT INTO settings (key, value) VALUES ('a', '2')")  # duplicate key

    with pytest.raises(sqlite3.IntegrityError):
        await store.run(write)
    assert await store.run(lambda c: c.execute("SELECT * FROM settings").fetchall()) == []


async def test_calls_run_one_at_a_time_in_submission_order(store: Store) -> None:
    order: list[int] = []
    active = 0
    overlapped = False

    def step(index: int) -> Callable[[sqlite3.Connection], int]:
        def fn(conn: sqlite3.Connection) -> int:
            nonlocal active, overlapped
            active += 1
            overlapped = overlapped or active > 1
            order.append(index)
            conn.execute("INSERT INTO settings (key, value) VALUES (?, ?)", (f"k{index}", "0"))
            active -= 1
            return index

        return fn

    results = await asyncio.gather(*(store.run(step(i)) for i in range(40)))
    assert results == list(range(40))
    assert order == list(range(40))
    assert not overlapped
    keys = await store.run(
        lambda c: [r[0] for r in c.execute("SELECT key FROM settings ORDER BY rowid")]
    )
    assert keys == [f"k{i}" for i in range(40)]


async def test_event_loop_keeps_running_while_a_db_call_blocks(store: Store) -> None:
    loop = asyncio.get_running_loop()
    entered = asyncio.Event()
    release = threading.Event()
    main_thread = threading.get_ident()
    ran_on: list[int] = []

    def slow(conn: sqlite3.Connection) -> str:
        ran_on.append(threading.get_ident())
        loop.call_soon_threadsafe(entered.set)
        if not release.wait(timeout=30):
            raise TimeoutError("test never released the DB call")
        return "done"

    task = asyncio.create_task(store.run(slow))
    try:
        await asyncio.wait_for(entered.wait(), timeout=10)
        # The DB call is now blocked inside its transaction. A callback scheduled
        # on the loop must still run.
        fired = asyncio.Event()
        loop.call_soon(fired.set)
        await asyncio.wait_for(fired.wait(), timeout=10)
        assert not task.done()
    finally:
        release.set()
    assert await asyncio.wait_for(task, timeout=10) == "done"
    assert ran_on and ran_on[0] != main_thread


async def test_close_waits_for_queued_work_is_idempotent_and_stops_the_thread(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path)
    assert len(store_threads()) == 1

    def insert(index: int) -> Callable[[sqlite3.Connection], None]:
        def fn(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO settings (key, value) VALUES (?, '0')", (f"k{index}",))

        return fn

    # Tasks start in creation order (call_soon is FIFO), so all ten submit their
    # work before either close does.
    pending = [asyncio.create_task(store.run(insert(i))) for i in range(10)]
    await asyncio.gather(store.close(), store.close())
    await store.close()
    await asyncio.gather(*pending)
    assert store_threads() == []
    with pytest.raises(StoreError, match="closed"):
        await store.run(lambda c: None)

    reopened = await Store.open(tmp_path)
    try:
        count = await reopened.run(lambda c: c.execute("SELECT count(*) FROM settings").fetchone())
        assert count == (10,)
    finally:
        await reopened.close()


async def test_committed_data_survives_close_and_reopen(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    await store.run(lambda c: c.execute("INSERT INTO settings VALUES ('persist', '\"yes\"')"))
    await store.close()
    store = await Store.open(tmp_path)
    try:
        assert await store.run(lambda c: c.execute("SELECT * FROM settings").fetchall()) == [
            ("persist", '"yes"')
        ]
    finally:
        await store.close()


async def test_a_file_that_is_not_a_database_raises_store_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    path.write_bytes(b"this is certainly not an SQLite file" * 200)
    with pytest.raises(StoreError, match=re.escape(str(path))):
        await Store.open(tmp_path)
    assert store_threads() == []


async def test_an_unusable_data_dir_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match=re.escape(str(blocker / "data" / DB_FILENAME))):
        await Store.open(blocker / "data")
    assert store_threads() == []


# --- migrations --------------------------------------------------------------------------


async def test_fresh_database_is_migrated_without_a_backup(tmp_path: Path) -> None:
    store = await Store.open(tmp_path, migrations=[V1, V2_GOOD])
    try:
        assert await store.run(pragma("user_version")) == 2
        assert await store.run(rows_of_a) == [2]
    finally:
        await store.close()
    assert not backup_path(tmp_path / DB_FILENAME, 0).exists()


async def test_upgrade_backs_up_the_old_file_first(tmp_path: Path) -> None:
    store = await Store.open(tmp_path, migrations=[V1])
    await store.run(lambda c: c.execute("INSERT INTO a VALUES (1)"))
    await store.close()

    store = await Store.open(tmp_path, migrations=[V1, V2_GOOD])
    try:
        assert await store.run(pragma("user_version")) == 2
        assert await store.run(rows_of_a) == [1, 2]
    finally:
        await store.close()

    backup = backup_path(tmp_path / DB_FILENAME, 1)
    assert backup == tmp_path / "agent.db.bak-v1"
    old = sqlite3.connect(backup)
    try:
        assert old.execute("PRAGMA user_version").fetchone()[0] == 1
        assert rows_of_a(old) == [1]
        assert "b" not in table_names(old)
    finally:
        old.close()


async def test_failed_migration_restores_the_backup_and_says_so(tmp_path: Path) -> None:
    store = await Store.open(tmp_path, migrations=[V1])
    await store.run(lambda c: c.execute("INSERT INTO a VALUES (1)"))
    await store.close()

    backup = tmp_path / "agent.db.bak-v1"
    with pytest.raises(MigrationError) as caught:
        await Store.open(tmp_path, migrations=[V1, V2_GOOD, V3_BAD])
    message = str(caught.value)
    assert "migration to v3 failed" in message
    assert f"restored backup {backup}" in message
    assert backup.is_file()
    assert store_threads() == []

    # Neither v2 (which succeeded) nor v3 left a trace: the file is the v1 file.
    store = await Store.open(tmp_path, migrations=[V1])
    try:
        assert await store.run(pragma("user_version")) == 1
        assert await store.run(rows_of_a) == [1]
        assert await store.run(table_names) == {"a"}
    finally:
        await store.close()


async def test_failed_migration_of_a_fresh_file_names_the_step(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="migration to v2 failed: no such table"):
        await Store.open(tmp_path, migrations=[V1, V2_BAD])
    store = await Store.open(tmp_path, migrations=[])
    try:
        assert await store.run(pragma("user_version")) == 0
        assert await store.run(table_names) == set()
    finally:
        await store.close()


async def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    store = await Store.open(tmp_path, migrations=[V1, V2_GOOD])
    await store.close()
    with pytest.raises(MigrationError, match=r"v2, newer than v1.*downgrade is not supported"):
        await Store.open(tmp_path, migrations=[V1])
    assert store_threads() == []
    # Refusing did not touch the file.
    store = await Store.open(tmp_path, migrations=[V1, V2_GOOD])
    try:
        assert await store.run(pragma("user_version")) == 2
    finally:
        await store.close()


async def test_migration_versions_must_increase(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="increase"):
        await Store.open(tmp_path, migrations=[V2_GOOD, V1])
