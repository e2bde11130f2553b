"""The agent's one SQLite file, worked on from one dedicated thread.

``<data_dir>/agent.db`` is opened in WAL mode with ``synchronous=FULL``, so a
transaction whose commit has returned survives a power cut or SIGKILL. SQLite
calls block, so the connection lives on one thread owned by the :class:`Store`;
the event loop only awaits the results and is never stalled by disk I/O. One
thread also means every unit of work runs in submission order and no two ever
overlap. The hand-over is a ``queue.SimpleQueue`` one way and
``call_soon_threadsafe`` the other: the outbox acknowledges every delivered
message here, and this costs about half the CPU of ``run_in_executor``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from agent.persistence.migrations import MIGRATIONS, Migration, migrate

__all__ = ["DB_FILENAME", "Store", "StoreError"]

T = TypeVar("T")

DB_FILENAME: Final = "agent.db"


class StoreError(Exception):
    """The database file cannot be used (unopenable, corrupt, or the store is closed).

    The message names the file.
    """


class Store:
    """The SQLite database of the agent, one connection on one worker thread.

    Create it with :meth:`open`, hand it to the journals and caches, and
    :meth:`close` it at shutdown. Work is submitted with :meth:`run`.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, thread: _DbThread) -> None:
        """Wrap an open connection; use :meth:`open` instead of calling this."""
        self._path = path
        self._conn = conn
        self._thread = thread
        self._closing: asyncio.Future[None] | None = None
        self._durable_commits = True  # PRAGMA synchronous is FULL (set by _configure)

    @classmethod
    async def open(
        cls,
        data_dir: Path,
        *,
        migrations: Sequence[Migration] = MIGRATIONS,
        busy_timeout_s: float = 5.0,
    ) -> Store:
        """Open (creating if needed) ``<data_dir>/agent.db`` and migrate its schema.

        Creates ``data_dir``; sets ``journal_mode=WAL``, ``synchronous=FULL``,
        ``foreign_keys=ON`` and ``busy_timeout``; runs a quick integrity check;
        applies pending schema steps (see :func:`agent.persistence.migrations.migrate`).
        All of it runs on the store's thread.

        Args:
            data_dir: Directory of the database file.
            migrations: Schema steps; the default is the agent's schema. Tests
                inject other lists.
            busy_timeout_s: How long SQLite waits for a lock held by another
                process (a technician's sqlite3 shell, say) before failing, s.

        Returns:
            The open store.

        Raises:
            StoreError: The directory or file cannot be opened, the file is not a
                SQLite database or is corrupt, or WAL mode cannot be enabled.
            MigrationError: The schema is newer than this software or a step
                failed (the backup has then been restored).
        """
        path = data_dir / DB_FILENAME
        thread = _DbThread("evse-store")
        opened: list[sqlite3.Connection] = []

        def connect() -> sqlite3.Connection:
            opened.append(_connect(path, tuple(migrations), busy_timeout_s))
            return opened[0]

        opening = thread.submit(connect)
        try:
            conn = await opening
        except BaseException:
            # Failed, or cancelled while the thread may still be opening: the jobs
            # run in order, so this one closes a connection that did get opened.
            thread.post(lambda: _close_all(opened))
            thread.stop()
            if not opening.cancelled():
                thread.join()  # the open failed: the thread exits at once
            raise
        return cls(path, conn, thread)

    @property
    def path(self) -> Path:
        """Path of the database file."""
        return self._path

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run ``fn(conn)`` on the database thread inside one transaction.

        The transaction commits when ``fn`` returns and rolls back when it raises.
        ``durable`` (the default) commits with ``synchronous=FULL``: the commit is on
        disk when this returns. ``durable=False`` commits with ``synchronous=NORMAL``
        (no fsync): in WAL mode that survives a crash of the process (SIGKILL) but
        may be lost in a power cut, until the next durable commit makes it durable
        too (the WAL is written in order). Use it only where losing the change is
        harmless, e.g. acknowledging a delivered message (the cost is a resend).
        The exception of a failed ``fn`` is re-raised here. Calls run one at a
        time in submission order. ``fn`` must not commit, begin
        transactions or call ``executescript`` itself, and must not touch the
        connection after returning.

        Cancelling the awaiting task does not interrupt ``fn``: work already
        started still commits or rolls back as a whole, work still queued is
        skipped; the caller just does not learn the outcome.

        Args:
            fn: Blocking function of the connection; its result is returned.

        Returns:
            Whatever ``fn`` returned, after the commit.

        Raises:
            StoreError: The store is closed or closing.
            Exception: Whatever ``fn`` or the commit raised (``sqlite3.Error``...).
        """
        if self._closing is not None:
            raise StoreError(f"database {self._path} is closed")
        return await self._thread.submit(lambda: self._in_transaction(fn, durable))

    async def close(self) -> None:
        """Finish queued work, close the connection and stop the thread.

        Idempotent; concurrent callers all wait for the same close. ``run``
        after ``close`` raises :class:`StoreError`.
        """
        if self._closing is None:
            self._closing = self._thread.submit(self._conn.close)
            self._thread.stop()  # the thread exits after the close
        # Shielded: a cancelled caller must not cancel the queued close for everyone.
        await asyncio.shield(self._closing)
        # The thread has nothing left to do: this join returns at once.
        self._thread.join()

    def _in_transaction(self, fn: Callable[[sqlite3.Connection], T], durable: bool) -> T:
        conn = self._conn
        if durable != self._durable_commits:
            # switched only when the wanted durability differs from the last commit's:
            # a run of acknowledgements costs no PRAGMA per call (database thread only)
            conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._durable_commits = durable
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.commit()
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        return result


def _close_all(connections: list[sqlite3.Connection]) -> None:
    for conn in connections:
        conn.close()


class _DbThread:
    """One daemon thread that runs submitted jobs one at a time, in submission order.

    ``submit`` hands a job over through a ``SimpleQueue`` at once and resolves an
    asyncio future with ``call_soon_threadsafe``; a job whose future was cancelled before
    it started is skipped, one already running finishes (its outcome is dropped).
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue ``fn()`` now (loop thread); the future gets its result or exception."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def job() -> None:
            # Reading the state of a future owned by the loop thread: a single
            # attribute read, and a cancellation just after it only drops the result.
            if future.cancelled():
                return
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting task
                _resolve_soon(loop, future, exc, failed=True)
            else:
                _resolve_soon(loop, future, result, failed=False)

        self._jobs.put(job)
        return future

    def post(self, fn: Callable[[], object]) -> None:
        """Queue ``fn()`` with nobody waiting for it (clean-up); errors are dropped."""

        def job() -> None:
            with contextlib.suppress(Exception):  # best-effort clean-up
                fn()

        self._jobs.put(job)

    def stop(self) -> None:
        """Let the thread exit once the jobs queued so far have run."""
        self._jobs.put(None)

    def join(self) -> None:
        """Wait for the thread to exit (after :meth:`stop`)."""
        self._thread.join()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()


def _resolve_soon(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], value: Any, *, failed: bool
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
        loop.call_soon_threadsafe(_resolve, future, value, failed)


def _resolve(future: asyncio.Future[Any], value: Any, failed: bool) -> None:
    if future.done():
        return  # cancelled while the job ran
    if failed:
        future.set_exception(value)
    else:
        future.set_result(value)


def _connect(
    path: Path, migrations: tuple[Migration, ...], busy_timeout_s: float
) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: the executor thread is the only user, but it is
        # not the thread that will close a store that failed half-way.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from exc
    try:
        _configure(conn, path, busy_timeout_s)
        migrate(conn, path, migrations)
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot use database {path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _configure(conn: sqlite3.Connection, path: Path, busy_timeout_s: float) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"database {path}: cannot enable WAL mode (got {mode!r})")
    # FULL: in WAL mode every commit fsyncs the WAL, so a returned commit is durable.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise StoreError(f"database {path} is corrupt: {'; '.join(problems[:5])}")
