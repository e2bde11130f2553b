"""The Authorization Cache: idTagInfo the CSMS returned, kept for offline use.

OCPP 1.6 3.5.2: the Charge Point remembers the IdTagInfo of recent
Authorize/StartTransaction answers; an entry whose expiry date has passed is
treated as Expired. IdTokens compare case-insensitively, so entries are keyed by
the upper-case id tag. The cache is bounded: when full, the least recently
updated entry is evicted. Local Authorization List precedence (list entries
beat and never enter the cache, 1.6 3.5) is the caller's job.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from agent.authorization.tag_rows import as_utc, read_verdict, tag_key, time_text
from agent.events import AuthorizationStatus
from agent.persistence.store import Store

__all__ = ["DEFAULT_MAX_ENTRIES", "AuthCache", "CacheEntry"]

DEFAULT_MAX_ENTRIES: Final = 1000


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A cached verdict as seen now: ``status`` reads ``EXPIRED`` past the expiry."""

    status: AuthorizationStatus
    parent_id_tag: str | None = None


class AuthCache:
    """Authorization cache entries in the agent database.

    Each call is one store transaction. Methods raise what :meth:`Store.run`
    raises (``StoreError`` when closed, ``sqlite3.Error``) besides what they document.
    """

    def __init__(self, store: Store, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        """Use ``store`` (already open and migrated).

        Args:
            store: The agent database.
            max_entries: Most entries kept; older ones are evicted on :meth:`put`.

        Raises:
            ValueError: ``max_entries`` < 1.
        """
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self._store = store
        self._max_entries = max_entries

    async def get(self, id_tag: str, now_utc: datetime) -> AuthorizationStatus | None:
        """Cached status of ``id_tag`` at ``now_utc``.

        Args:
            id_tag: The presented token (any case).
            now_utc: Current time, timezone-aware.

        Returns:
            None when the tag is not cached; ``EXPIRED`` when its expiry is at
            or before ``now_utc`` (OCPP 1.6 3.5.2); otherwise the stored status.

        Raises:
            ValueError: ``now_utc`` is naive, or the stored row is corrupt.
        """
        entry = await self.entry(id_tag, now_utc)
        return None if entry is None else entry.status

    async def entry(self, id_tag: str, now_utc: datetime) -> CacheEntry | None:
        """Like :meth:`get`, with the cached ``parentIdTag`` (reservations match on it).

        Raises:
            ValueError: ``now_utc`` is naive, or the stored row is corrupt.
        """
        verdict = await read_verdict(self._store, "auth_cache", id_tag, now_utc)
        return None if verdict is None else CacheEntry(verdict.status, verdict.parent_id_tag)

    async def put(
        self,
        id_tag: str,
        status: AuthorizationStatus,
        expiry: datetime | None,
        parent_id_tag: str | None,
        now_utc: datetime,
    ) -> None:
        """Store (or replace) the idTagInfo of ``id_tag``; evict the oldest if full.

        Args:
            id_tag: The token (any case; stored upper case).
            status: Status the CSMS returned.
            expiry: ``expiryDate`` the CSMS returned (timezone-aware), or None.
            parent_id_tag: ``parentIdTag`` the CSMS returned, or None.
            now_utc: Current time, timezone-aware (recorded as the update time).

        Raises:
            ValueError: ``expiry`` or ``now_utc`` is naive.
        """
        # Fixed-width text sorts like the time: eviction orders by it.
        now = time_text(as_utc(now_utc, "now_utc"))
        expiry_text = None if expiry is None else time_text(as_utc(expiry, "expiry"))
        key = tag_key(id_tag)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO auth_cache (id_tag, status, expiry, parent_id_tag, updated) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id_tag) DO UPDATE SET "
                "status = excluded.status, expiry = excluded.expiry, "
                "parent_id_tag = excluded.parent_id_tag, updated = excluded.updated",
                (key, status.value, expiry_text, parent_id_tag, now),
            )
            conn.execute(
                "DELETE FROM auth_cache WHERE id_tag NOT IN "
                "(SELECT id_tag FROM auth_cache ORDER BY updated DESC, rowid DESC LIMIT ?)",
                (self._max_entries,),
            )

        await self._store.run(write)

    async def clear(self) -> None:
        """Remove every entry (OCPP 1.6 ClearCache)."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM auth_cache")

        await self._store.run(write)

    async def size(self) -> int:
        """Number of cached entries."""

        def read(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM auth_cache").fetchone()[0])

        return await self._store.run(read)
