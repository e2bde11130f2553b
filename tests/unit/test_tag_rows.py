"""Verdict rows shared by the auth cache and the local list (agent.authorization.tag_rows)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.authorization.tag_rows import (
    StoredVerdict,
    VerdictTable,
    as_utc,
    read_verdict,
    tag_key,
    time_text,
)
from agent.events import AuthorizationStatus
from agent.persistence.store import Store

NOW = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)
TABLES: list[VerdictTable] = ["auth_cache", "local_auth_list"]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path)
    yield opened
    await opened.close()


async def _insert(store: Store, table: VerdictTable, status: str, expiry: str | None) -> None:
    extra = ", updated" if table == "auth_cache" else ""
    values = ", ?" if table == "auth_cache" else ""

    def write(conn: sqlite3.Connection) -> None:
        conn.execute(
            f"INSERT INTO {table} (id_tag, status, expiry, parent_id_tag{extra}) "
            f"VALUES (?, ?, ?, ?{values})",
            ("TAG1", status, expiry, "P", *([time_text(NOW)] if extra else [])),
        )

    await store.run(write)


@pytest.mark.parametrize("table", TABLES)
async def test_row_reads_expired_at_and_after_its_expiry(store: Store, table: VerdictTable) -> None:
    expiry = NOW + timedelta(minutes=5)
    await _insert(store, table, "Accepted", time_text(expiry))
    before = await read_verdict(store, table, "tag1", NOW)
    assert before == StoredVerdict(AuthorizationStatus.ACCEPTED, expiry, "P")
    at = await read_verdict(store, table, "Tag1", expiry)
    assert at == StoredVerdict(AuthorizationStatus.EXPIRED, expiry, "P")
    assert await read_verdict(store, table, "other", NOW) is None


@pytest.mark.parametrize("table", TABLES)
async def test_corrupt_status_or_naive_now_is_a_value_error(
    store: Store, table: VerdictTable
) -> None:
    await _insert(store, table, "Maybe", None)
    with pytest.raises(ValueError):
        await read_verdict(store, table, "TAG1", NOW)
    with pytest.raises(ValueError, match="now_utc must be timezone-aware"):
        await read_verdict(store, table, "TAG1", NOW.replace(tzinfo=None))


def test_keys_and_times_are_stored_in_one_spelling() -> None:
    assert tag_key("04a2B3c4") == "04A2B3C4"
    local = datetime(2026, 11, 24, 20, 0, tzinfo=timezone(timedelta(hours=1)))
    assert as_utc(local, "t") == NOW
    assert time_text(as_utc(local, "t")) == "2026-11-24T19:00:00.000000+00:00"
