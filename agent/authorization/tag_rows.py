"""Rows of id-tag verdicts in the agent database, shared by the cache and the local list.

The Authorization Cache (``auth_cache``) and the Local Authorization List
(``local_auth_list``) store the same verdict columns: ``id_tag`` (upper case: OCPP
IdTokens compare case-insensitively), ``status`` (an ``AuthorizationStatus`` value),
``expiry`` (UTC ISO 8601 with microseconds, fixed width so the text sorts like the time;
NULL = never) and ``parent_id_tag``. Both read a verdict the same way: one past its
expiry reads ``EXPIRED`` (OCPP 1.6 3.5.2 / 3.5.3).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from agent.events import AuthorizationStatus
from agent.persistence.store import Store

VerdictTable = Literal["auth_cache", "local_auth_list"]
"""The tables holding verdict rows."""


@dataclass(frozen=True, slots=True)
class StoredVerdict:
    """A stored verdict as seen at one instant.

    Attributes:
        status: The stored status, or ``EXPIRED`` once ``expiry`` is at or before then.
        expiry: The stored expiry (aware, UTC), or None.
        parent_id_tag: The stored ``parentIdTag``, or None.
    """

    status: AuthorizationStatus
    expiry: datetime | None
    parent_id_tag: str | None


async def read_verdict(
    store: Store, table: VerdictTable, id_tag: str, now_utc: datetime
) -> StoredVerdict | None:
    """The row of ``id_tag`` in ``table`` as seen at ``now_utc`` (one store transaction).

    Args:
        store: The agent database (open, migrated).
        table: Which verdict table.
        id_tag: The presented token (any case).
        now_utc: Current time, timezone-aware.

    Returns:
        None when the tag has no row.

    Raises:
        ValueError: ``now_utc`` is naive, or the stored row is corrupt (an unknown
            status or an expiry that does not parse).
        StoreError: The store is closed (and what ``Store.run`` raises).
    """
    now = as_utc(now_utc, "now_utc")

    def read(conn: sqlite3.Connection) -> tuple[str, str | None, str | None] | None:
        row = conn.execute(
            f"SELECT status, expiry, parent_id_tag FROM {table} WHERE id_tag = ?",
            (tag_key(id_tag),),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    row = await store.run(read)
    if row is None:
        return None
    status_text, expiry_text, parent = row
    expiry = None if expiry_text is None else datetime.fromisoformat(expiry_text)
    status = AuthorizationStatus(status_text)
    if expiry is not None and expiry <= now:
        status = AuthorizationStatus.EXPIRED
    return StoredVerdict(status, expiry, parent)


def tag_key(id_tag: str) -> str:
    """The ``id_tag`` column value of a token: upper case (IdTokens are case-insensitive)."""
    return id_tag.upper()


def as_utc(moment: datetime, name: str) -> datetime:
    """``moment`` converted to UTC.

    Raises:
        ValueError: ``moment`` is naive (the message names ``name``).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC)


def time_text(moment: datetime) -> str:
    """The stored text of an aware time: fixed width, so the text sorts like the time."""
    return moment.isoformat(timespec="microseconds")


__all__ = ["StoredVerdict", "VerdictTable", "as_utc", "read_verdict", "tag_key", "time_text"]
