"""The Local Authorization List: id tags the CSMS installed with SendLocalList.

OCPP 1.6 3.5.3, 5.10 and 5.15 (2.0.1 block D is the same model). The list and
its version live in the agent database and change only through :meth:`update`,
which applies one SendLocalList as one durable transaction: a crash leaves
either the old list or the new one, never half of either. IdTokens compare
case-insensitively, so entries are keyed by the upper-case id tag.

Whether the list is enabled (``LocalAuthListEnabled``) and what version is
reported while it is disabled (-1) are the OCPP adapter's business; this class
only stores. Precedence over the cache is :class:`~agent.authorization.authorizer.Authorizer`'s.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from agent.authorization.authorizer import IdTagInfo
from agent.authorization.tag_rows import as_utc, read_verdict, tag_key, time_text
from agent.persistence.store import Store

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_SEND_MAX_LENGTH",
    "ListEntry",
    "LocalAuthList",
    "UpdateStatus",
    "UpdateType",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH: Final = 42
"""Default ``LocalAuthListMaxLength``: most entries the list may hold."""

DEFAULT_SEND_MAX_LENGTH: Final = 42
"""Default ``SendLocalListMaxLength``: most entries one update may carry."""


class UpdateType(StrEnum):
    """How an update applies (OCPP 1.6 UpdateType spelling)."""

    FULL = "Full"
    """Replace the whole list with the update's entries."""
    DIFFERENTIAL = "Differential"
    """Add, replace or (entry without info) remove the named tags only."""


class UpdateStatus(StrEnum):
    """Outcome of an update (OCPP 1.6 UpdateStatus spelling).

    :meth:`LocalAuthList.update` never returns ``NOT_SUPPORTED``; the adapter
    answers that when the list is disabled.
    """

    ACCEPTED = "Accepted"
    FAILED = "Failed"
    NOT_SUPPORTED = "NotSupported"
    VERSION_MISMATCH = "VersionMismatch"


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One entry of a SendLocalList.

    ``info`` None means "remove this tag" in a Differential update and is not
    allowed in a Full update (OCPP 1.6 AuthorizationData: idTagInfo is required
    when the update type is Full).
    """

    id_tag: str
    info: IdTagInfo | None


class _Refused(Exception):
    """Raised inside the update transaction to roll it back with ``status``."""

    def __init__(self, status: UpdateStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class LocalAuthList:
    """The Local Authorization List in the agent database (schema v2).

    Each call is one store transaction. Methods raise what :meth:`Store.run`
    raises (``StoreError`` when closed, ``sqlite3.Error``) unless they say otherwise.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        send_max_length: int = DEFAULT_SEND_MAX_LENGTH,
    ) -> None:
        """Use ``store`` (already open and migrated to v2 or later).

        Args:
            store: The agent database.
            max_length: ``LocalAuthListMaxLength``: most entries the list holds
                after an update, >= 1.
            send_max_length: ``SendLocalListMaxLength``: most entries one update
                may carry, >= 1.

        Raises:
            ValueError: A length is < 1.
        """
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        if send_max_length < 1:
            raise ValueError(f"send_max_length must be >= 1, got {send_max_length}")
        self._store = store
        self._max_length = max_length
        self._send_max_length = send_max_length

    @property
    def max_length(self) -> int:
        """``LocalAuthListMaxLength``, entries."""
        return self._max_length

    @property
    def send_max_length(self) -> int:
        """``SendLocalListMaxLength``, entries per update."""
        return self._send_max_length

    async def version(self) -> int:
        """The installed list version; 0 when no list was ever installed (GetLocalListVersion)."""
        return await self._store.run(_read_version)

    async def size(self) -> int:
        """Number of entries in the list."""

        def read(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM local_auth_list").fetchone()[0])

        return await self._store.run(read)

    async def get(self, id_tag: str, now_utc: datetime) -> IdTagInfo | None:
        """The list's entry for ``id_tag`` as seen at ``now_utc``.

        Args:
            id_tag: The presented token (any case).
            now_utc: Current time, timezone-aware.

        Returns:
            None when the tag is not in the list. Otherwise its idTagInfo; the
            status reads ``EXPIRED`` once the entry's expiry is at or before
            ``now_utc`` (the stored expiry and parent are kept).

        Raises:
            ValueError: ``now_utc`` is naive, or the stored row is corrupt.
        """
        verdict = await read_verdict(self._store, "local_auth_list", id_tag, now_utc)
        if verdict is None:
            return None
        return IdTagInfo(
            status=verdict.status, expiry=verdict.expiry, parent_id_tag=verdict.parent_id_tag
        )

    async def update(
        self, version: int, update_type: UpdateType, entries: Sequence[ListEntry]
    ) -> UpdateStatus:
        """Apply one SendLocalList as a single durable transaction.

        Rules (OCPP 1.6 5.15):

        - ``FULL`` replaces the list with ``entries``; every entry must carry
          info. An empty Full update clears the list (any ``version`` >= 0).
        - ``DIFFERENTIAL`` adds or replaces the entries with info and removes
          those without (removing an absent tag is not an error). A version <=
          the installed one is ``VERSION_MISMATCH`` and changes nothing.
        - ``version`` must be > 0 unless the update is an empty Full; a negative
          version is always ``FAILED``.
        - ``FAILED``, with nothing changed, when: more than ``send_max_length``
          entries; a tag is empty or named twice (case-insensitively); a Full
          entry lacks info; an expiry is naive; the list would hold more than
          ``max_length`` entries; or the database refused the write.

        On ``ACCEPTED`` the new entries and ``version`` are on disk when this
        returns. A cancelled caller does not interrupt a write already started.

        Args:
            version: ``listVersion``: the list's version after the update.
            update_type: Full or Differential.
            entries: ``localAuthorizationList`` (may be empty).

        Returns:
            The UpdateStatus to answer the CSMS with (never ``NOT_SUPPORTED``).

        Raises:
            StoreError: The store is closed.
        """
        try:
            rows = self._validate(version, update_type, entries)
        except _Refused as refused:
            log.warning("SendLocalList v%d %s refused: %s", version, update_type, refused.reason)
            return refused.status

        def write(conn: sqlite3.Connection) -> None:
            if update_type == UpdateType.FULL:
                conn.execute("DELETE FROM local_auth_list")
            else:
                current = _read_version(conn)
                if version <= current:
                    raise _Refused(
                        UpdateStatus.VERSION_MISMATCH,
                        f"differential version {version} <= installed {current}",
                    )
            for key, row in rows:
                if row is None:
                    conn.execute("DELETE FROM local_auth_list WHERE id_tag = ?", (key,))
                else:
                    conn.execute(
                        "INSERT INTO local_auth_list (id_tag, status, expiry, parent_id_tag) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (id_tag) DO UPDATE SET "
                        "status = excluded.status, expiry = excluded.expiry, "
                        "parent_id_tag = excluded.parent_id_tag",
                        (key, *row),
                    )
            count = int(conn.execute("SELECT count(*) FROM local_auth_list").fetchone()[0])
            if count > self._max_length:
                raise _Refused(
                    UpdateStatus.FAILED,
                    f"list would hold {count} entries, LocalAuthListMaxLength is "
                    f"{self._max_length}",
                )
            conn.execute("UPDATE local_auth_list_version SET version = ? WHERE id = 1", (version,))

        try:
            await self._store.run(write)
        except _Refused as refused:
            log.warning("SendLocalList v%d %s refused: %s", version, update_type, refused.reason)
            return refused.status
        except sqlite3.Error as exc:
            log.error("SendLocalList v%d %s: database write failed: %s", version, update_type, exc)
            return UpdateStatus.FAILED
        log.info(
            "local list now v%d after %s update of %d entries", version, update_type, len(rows)
        )
        return UpdateStatus.ACCEPTED

    def _validate(
        self, version: int, update_type: UpdateType, entries: Sequence[ListEntry]
    ) -> list[tuple[str, tuple[str, str | None, str | None] | None]]:
        """Check what needs no database; return ``(key, row or None to remove)`` pairs."""
        if len(entries) > self._send_max_length:
            raise _Refused(
                UpdateStatus.FAILED,
                f"{len(entries)} entries, SendLocalListMaxLength is {self._send_max_length}",
            )
        empty_full = update_type == UpdateType.FULL and not entries
        if version < 0 or (version == 0 and not empty_full):
            raise _Refused(UpdateStatus.FAILED, f"list version {version} must be > 0")
        rows: list[tuple[str, tuple[str, str | None, str | None] | None]] = []
        seen: set[str] = set()
        for entry in entries:
            key = tag_key(entry.id_tag)
            if not key:
                raise _Refused(UpdateStatus.FAILED, "empty id tag")
            if key in seen:
                raise _Refused(UpdateStatus.FAILED, f"id tag {entry.id_tag!r} named twice")
            seen.add(key)
            info = entry.info
            if info is None:
                if update_type == UpdateType.FULL:
                    raise _Refused(
                        UpdateStatus.FAILED, f"full update entry {entry.id_tag!r} lacks idTagInfo"
                    )
                rows.append((key, None))
                continue
            try:
                expiry = None if info.expiry is None else time_text(as_utc(info.expiry, "expiry"))
            except ValueError as exc:
                raise _Refused(UpdateStatus.FAILED, f"{entry.id_tag!r}: {exc}") from exc
            rows.append((key, (info.status.value, expiry, info.parent_id_tag)))
        return rows


def _read_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT version FROM local_auth_list_version WHERE id = 1").fetchone()
    return 0 if row is None else int(row[0])
