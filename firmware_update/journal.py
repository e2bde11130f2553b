"""The persisted firmware update journal and the outbox of its reports.

One update at a time: the ``firmware_update`` table holds at most one row (the
request, the machine's phase, the target slot). Every phase change is one durable
commit together with the reports it produces (rows of ``firmware_outbox``), so
after a power cut or the reboot into the new slot the manager continues where the
journal says and the CSMS receives each status exactly once from the charger's
point of view, in order, with the same requestId. The adapter deletes an outbox
row only after the CSMS answered it.

The row also holds the SHA-256 and size of the downloaded image (``ImageRecord``),
committed with the Downloaded phase: the image itself is not fsynced, so after a
restart the manager checks it against this record.

Schema: migrations v4 and v7 in ``agent/persistence/migrations.py``.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from agent.persistence.store import Store
from firmware_update.machine import IMAGE_PHASES, Phase, Report, UpdateState
from firmware_update.status import FirmwareStatus, SecurityEvent, UpdateKind


class MessageKind(StrEnum):
    """What an outbox row is (the adapter picks the message of its version)."""

    FIRMWARE_STATUS = "firmware_status"  # {"status", "request_id", "update_kind"}
    SECURITY_EVENT = "security_event"  # {"type", "timestamp", "tech_info"}
    LOG_STATUS = "log_status"  # {"status", "request_id", "log_kind"}


@dataclass(frozen=True)
class UpdateRequest:
    """An accepted firmware update request (version-neutral).

    Attributes:
        request_id: The CSMS's requestId (1.6 plain: none; the manager assigns 0).
        kind: Plain or signed.
        location: URL of the image (http, https or ftp).
        retrieve_at: Not before this time (UTC, timezone-aware).
        install_at: Not before this time, or None (install once verified).
        retries: Download retries after a failed attempt.
        retry_interval_s: Wait between download attempts, s.
        signing_certificate: PEM of the signing certificate (signed only).
        signature: Base64 signature over the image (signed only).
    """

    request_id: int
    kind: UpdateKind
    location: str
    retrieve_at: datetime
    install_at: datetime | None = None
    retries: int = 3
    retry_interval_s: float = 60.0
    signing_certificate: str | None = None
    signature: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "location": self.location,
                "retrieve_at": self.retrieve_at.isoformat(),
                "install_at": self.install_at.isoformat() if self.install_at else None,
                "retries": self.retries,
                "retry_interval_s": self.retry_interval_s,
                "signing_certificate": self.signing_certificate,
                "signature": self.signature,
            }
        )

    @classmethod
    def from_row(cls, request_id: int, kind: str, text: str) -> UpdateRequest:
        data = json.loads(text)
        return cls(
            request_id=request_id,
            kind=UpdateKind(kind),
            location=data["location"],
            retrieve_at=datetime.fromisoformat(data["retrieve_at"]),
            install_at=datetime.fromisoformat(data["install_at"]) if data["install_at"] else None,
            retries=int(data["retries"]),
            retry_interval_s=float(data["retry_interval_s"]),
            signing_certificate=data["signing_certificate"],
            signature=data["signature"],
        )


@dataclass(frozen=True)
class ImageRecord:
    """What the downloaded image looked like when Downloaded was committed.

    Attributes:
        sha256_hex: SHA-256 of the whole file, lowercase hex.
        size_bytes: File size, bytes.
    """

    sha256_hex: str
    size_bytes: int


@dataclass(frozen=True)
class JournalEntry:
    """The update in progress as persisted.

    ``image`` is None before the download completed (and on rows written before v7).
    """

    request: UpdateRequest
    state: UpdateState
    target_slot: str | None
    target_version: str | None
    image: ImageRecord | None = None


@dataclass(frozen=True)
class OutboxMessage:
    """One queued report, oldest first by ``seq``."""

    seq: int
    kind: MessageKind
    payload: dict[str, Any]


def report_message(
    report: Report, request: UpdateRequest, timestamp: str
) -> tuple[MessageKind, dict[str, Any]]:
    """The outbox row of a machine report for ``request`` (pure)."""
    if isinstance(report, SecurityEvent):
        return MessageKind.SECURITY_EVENT, {
            "type": report.value,
            "timestamp": timestamp,
            "tech_info": f"requestId {request.request_id}",
        }
    return MessageKind.FIRMWARE_STATUS, {
        "status": report.value,
        "request_id": request.request_id,
        "update_kind": request.kind.value,
    }


class FirmwareJournal:
    """The update row and the report outbox in the agent's store.

    Args:
        store: The agent's SQLite store (schema v4 or later).
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    async def load(self) -> JournalEntry | None:
        """The update in progress, or None when none is (phase idle)."""

        def read(conn: sqlite3.Connection) -> JournalEntry | None:
            row = conn.execute(
                "SELECT request_id, kind, phase, retries_left, failure, request, target_slot,"
                " target_version, image_sha256, image_bytes FROM firmware_update WHERE id = 1"
            ).fetchone()
            if row is None:
                return None
            request = UpdateRequest.from_row(row[0], row[1], row[5])
            state = UpdateState(
                phase=Phase(row[2]),
                kind=request.kind,
                retries_left=int(row[3]),
                failure=FirmwareStatus(row[4]) if row[4] else None,
            )
            image = ImageRecord(row[8], int(row[9])) if row[8] and row[9] is not None else None
            return JournalEntry(request, state, row[6], row[7], image)

        return await self._store.run(read, durable=False)

    async def commit(
        self,
        request: UpdateRequest,
        state: UpdateState,
        reports: tuple[Report, ...],
        timestamp: str,
        *,
        target_slot: str | None = None,
        target_version: str | None = None,
        image: ImageRecord | None = None,
    ) -> None:
        """Persist ``state`` for ``request`` and queue ``reports``, in one durable commit.

        Phase IDLE deletes the row (the update is over); its reports stay queued.
        ``target_slot``/``target_version``/``image`` None keep the stored values, except
        that the image record is cleared in every phase outside ``IMAGE_PHASES`` (no
        complete image belongs to it).

        Raises:
            sqlite3.Error, StoreError: The store failed (nothing was changed).
        """
        messages = [report_message(r, request, timestamp) for r in reports]
        keep = state.phase in IMAGE_PHASES

        def write(conn: sqlite3.Connection) -> None:
            if state.phase is Phase.IDLE:
                conn.execute("DELETE FROM firmware_update WHERE id = 1")
            else:
                conn.execute(
                    "INSERT INTO firmware_update (id, request_id, kind, phase, retries_left,"
                    " failure, request, target_slot, target_version, image_sha256,"
                    " image_bytes, updated)"
                    " VALUES (1, :request_id, :kind, :phase, :retries_left, :failure, :request,"
                    " :target_slot, :target_version, :image_sha256, :image_bytes, :updated)"
                    " ON CONFLICT (id) DO UPDATE SET request_id = excluded.request_id,"
                    " kind = excluded.kind, phase = excluded.phase,"
                    " retries_left = excluded.retries_left, failure = excluded.failure,"
                    " request = excluded.request,"
                    " target_slot = coalesce(excluded.target_slot, target_slot),"
                    " target_version = coalesce(excluded.target_version, target_version),"
                    " image_sha256 = CASE WHEN :keep"
                    " THEN coalesce(excluded.image_sha256, image_sha256) END,"
                    " image_bytes = CASE WHEN :keep"
                    " THEN coalesce(excluded.image_bytes, image_bytes) END,"
                    " updated = excluded.updated",
                    {
                        "request_id": request.request_id,
                        "kind": request.kind.value,
                        "phase": state.phase.value,
                        "retries_left": state.retries_left,
                        "failure": state.failure.value if state.failure else None,
                        "request": request.to_json(),
                        "target_slot": target_slot,
                        "target_version": target_version,
                        "image_sha256": image.sha256_hex if keep and image else None,
                        "image_bytes": image.size_bytes if keep and image else None,
                        "keep": keep,
                        "updated": timestamp,
                    },
                )
            _insert(conn, messages, timestamp)

        await self._store.run(write)

    async def replace(
        self, request: UpdateRequest, state: UpdateState, reports: tuple[Report, ...], ts: str
    ) -> None:
        """Start ``request`` afresh (a cancelled predecessor's slot data is dropped)."""

        def clear(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM firmware_update WHERE id = 1")

        await self._store.run(clear)
        await self.commit(request, state, reports, ts)

    async def queue_reports(
        self, request: UpdateRequest, reports: tuple[Report, ...], timestamp: str
    ) -> None:
        """Queue reports about ``request`` without touching the update row."""
        messages = [report_message(r, request, timestamp) for r in reports]
        await self._store.run(lambda conn: _insert(conn, messages, timestamp))

    async def queue(self, kind: MessageKind, payload: dict[str, Any], timestamp: str) -> None:
        """Queue one report that belongs to no phase change (log upload, security event)."""
        await self._store.run(lambda conn: _insert(conn, [(kind, payload)], timestamp))

    async def pending(self, limit: int = 20) -> list[OutboxMessage]:
        """Queued reports, oldest first."""

        def read(conn: sqlite3.Connection) -> list[OutboxMessage]:
            rows = conn.execute(
                "SELECT seq, kind, payload FROM firmware_outbox ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
            return [OutboxMessage(r[0], MessageKind(r[1]), json.loads(r[2])) for r in rows]

        return await self._store.run(read, durable=False)

    async def acknowledge(self, seq: int) -> None:
        """Forget a delivered report (not durable: losing it costs a resend)."""
        await self._store.run(
            lambda conn: conn.execute("DELETE FROM firmware_outbox WHERE seq = ?", (seq,)),
            durable=False,
        )


def _insert(
    conn: sqlite3.Connection, messages: list[tuple[MessageKind, dict[str, Any]]], ts: str
) -> None:
    conn.executemany(
        "INSERT INTO firmware_outbox (kind, payload, created) VALUES (?, ?, ?)",
        [(kind.value, json.dumps(payload), ts) for kind, payload in messages],
    )
