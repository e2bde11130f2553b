"""Diagnostics and log bundles uploaded on request (1.6 GetDiagnostics, whitepaper GetLog).

A bundle is a ``.tar.gz`` with:

* ``logs/``: the agent's rotating file log (``<data-dir>/logs/agent.log*``; see
  ``ensure_file_log``; lines stamped in UTC), inside the requested time window; a
  SecurityLog bundle keeps only security-relevant lines;
* ``ocpp-trace.jsonl``: the last OCPP-J frames (``FrameRecorder``), inside the
  requested time window;
* ``config.json``: the running configuration with secrets redacted;
* ``hal-status.json``: what each EVSE's devices report now (the app passes
  ``agent.evse.hardware_report``).

The upload (``firmware_update.upload.upload``: HTTP(S) PUT or FTP STOR) is retried
``retries`` times ``retry_interval_s`` apart; progress goes to the CSMS through the
firmware journal's outbox (Uploading, then Uploaded or UploadFailed), so it
survives an offline period. One upload at a time: a new request cancels the
running one (GetLog answers AcceptedCanceled).
"""

from __future__ import annotations

import asyncio
import collections
import io
import json
import logging
import logging.handlers
import os
import re
import tarfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from firmware_update.download import DownloadError, check_location
from firmware_update.journal import FirmwareJournal, MessageKind
from firmware_update.status import LogKind, UploadStatus
from firmware_update.upload import UploadError, upload

log = logging.getLogger(__name__)

LOG_DIR = "logs"
LOG_FILE = "agent.log"
LOG_MAX_BYTES = 1024 * 1024
LOG_BACKUPS = 4
REDACTED = "***"
_SECRET_KEY = re.compile(r"password|secret|token|(^|_)key$|private|authorization", re.IGNORECASE)
_SECURITY_LINE = re.compile(r"security|firmware|certificate|signature|tls|auth", re.IGNORECASE)
LOG_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)-7s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
_LOG_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z ")
_SECRET_FRAME = re.compile(
    r'("key"\s*:\s*"(?:AuthorizationKey|BasicAuthPassword)"\s*,\s*"value"\s*:\s*)"[^"]*"'
)

Uploader = Callable[..., Awaitable[None]]


def ensure_file_log(data_dir: Path, level: int = logging.INFO) -> Callable[[], None]:
    """Add a rotating file log in ``<data_dir>/logs`` unless the root logger has a file
    handler already; returns a function that removes what was added."""
    root = logging.getLogger()
    if any(
        isinstance(h, logging.FileHandler) and h.baseFilename != os.devnull for h in root.handlers
    ):
        return lambda: None
    folder = data_dir / LOG_DIR
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        folder / LOG_FILE, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    handler.setLevel(level)
    formatter = logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT)
    formatter.converter = time.gmtime  # UTC stamps: a time window can select lines
    handler.setFormatter(formatter)
    root.addHandler(handler)

    def remove() -> None:
        root.removeHandler(handler)
        handler.close()

    return remove


class FrameRecorder:
    """The last ``max_frames`` OCPP-J frames with their time (a ``Trace`` hook).

    Args:
        now: UTC time source.
        max_frames: Ring size.
    """

    def __init__(self, now: Callable[[], datetime], max_frames: int = 2000) -> None:
        self._now = now
        self._frames: collections.deque[tuple[datetime, str, str]] = collections.deque(
            maxlen=max_frames
        )

    def __call__(self, direction: str, frame: str) -> None:
        self._frames.append((self._now(), direction, frame))

    def lines(self, oldest: datetime | None = None, latest: datetime | None = None) -> list[str]:
        """JSON lines of the frames inside [oldest, latest], secrets redacted."""
        out = []
        for moment, direction, frame in list(self._frames):
            if (oldest and moment < oldest) or (latest and moment > latest):
                continue
            text = _SECRET_FRAME.sub(rf'\g<1>"{REDACTED}"', frame)
            out.append(json.dumps({"time": moment.isoformat(), "dir": direction, "frame": text}))
        return out


def redact(value: Any, key: str = "") -> Any:
    """``value`` with every secret-looking key's value replaced (pure)."""
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, key) for v in value]
    if key and _SECRET_KEY.search(key) and value not in (None, "", 0):
        return REDACTED
    return value


@dataclass(frozen=True)
class BundleSources:
    """Where a bundle's content comes from.

    Attributes:
        data_dir: The agent's data directory (logs are under ``logs/``).
        config: The configuration as plain data (redacted when bundled).
        hal_status: Per-EVSE hardware summary.
        frames: The OCPP frame recorder, if the app keeps one.
    """

    data_dir: Path
    config: Callable[[], Mapping[str, Any]]
    hal_status: Callable[[], Mapping[str, Any]]
    frames: FrameRecorder | None = None


def build_bundle(
    sources: BundleSources,
    dest: Path,
    kind: LogKind,
    oldest: datetime | None = None,
    latest: datetime | None = None,
) -> Path:
    """Write the ``.tar.gz`` bundle to ``dest`` (blocking: run it in a thread)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w:gz") as tar:
        for path in sorted((sources.data_dir / LOG_DIR).glob(LOG_FILE + "*")):
            if kind is LogKind.SECURITY_LOG or oldest is not None or latest is not None:
                text = path.read_text(encoding="utf-8", errors="replace")
                lines = log_lines_within(text, oldest, latest)
                if kind is LogKind.SECURITY_LOG:
                    lines = (ln for ln in lines if _SECURITY_LINE.search(ln))
                _add(tar, f"logs/{path.name}", "".join(lines).encode())
            else:
                tar.add(path, arcname=f"logs/{path.name}")
        if kind is not LogKind.SECURITY_LOG and sources.frames is not None:
            trace = "\n".join(sources.frames.lines(oldest, latest))
            _add(tar, "ocpp-trace.jsonl", trace.encode())
        config = json.dumps(redact(sources.config()), indent=2, default=str)
        _add(tar, "config.json", config.encode())
        hal = json.dumps(sources.hal_status(), indent=2, default=str)
        _add(tar, "hal-status.json", hal.encode())
    return dest


def log_lines_within(text: str, oldest: datetime | None, latest: datetime | None) -> Iterator[str]:
    """The lines of a file log (``LOG_FORMAT``) stamped inside [oldest, latest] (pure).

    A line without a stamp (a traceback's continuation) goes with the line above it;
    lines before the first stamp, or in another format (a log written before the
    stamps were UTC), are kept: their time is unknown. None bounds nothing.
    """
    keep = True
    for line in text.splitlines(True):
        match = _LOG_STAMP.match(line)
        if match is not None:
            moment = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
            keep = not ((oldest and moment < oldest) or (latest and moment > latest))
        if keep:
            yield line


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


@dataclass(frozen=True)
class UploadRequest:
    """A GetDiagnostics / GetLog request (version-neutral).

    Attributes:
        kind: Diagnostics (1.6) or DiagnosticsLog / SecurityLog (GetLog).
        location: Upload URL (http(s) PUT or ftp STOR); the file name is appended
            when the URL ends with ``/``.
        request_id: GetLog's requestId (0 for GetDiagnostics).
        retries: Upload retries after a failed attempt.
        retry_interval_s: Wait between attempts, s.
        oldest, latest: Time window of the file log and the trace (None = unbounded).
    """

    kind: LogKind
    location: str
    request_id: int = 0
    retries: int = 1
    retry_interval_s: float = 30.0
    oldest: datetime | None = None
    latest: datetime | None = None


class DiagnosticsService:
    """Builds and uploads bundles; reports progress through the journal outbox.

    Args:
        journal: The firmware journal (its outbox carries the status reports).
        reports_queued: Wakes the delivering adapter.
        sources: Bundle content.
        now: UTC time.
        charge_point_id: Part of the file name.
        uploader: ``firmware_update.upload.upload`` (tests may inject another).
        timeout_s: Per-attempt upload timeout, s.
    """

    def __init__(
        self,
        *,
        journal: FirmwareJournal,
        reports_queued: Callable[[], None],
        sources: BundleSources,
        now: Callable[[], datetime],
        charge_point_id: str,
        uploader: Uploader = upload,
        timeout_s: float = 60.0,
    ) -> None:
        self._journal = journal
        self._reports_queued = reports_queued
        self._sources = sources
        self._now = now
        self._cp_id = charge_point_id
        self._upload = uploader
        self._timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None
        self._current: UploadRequest | None = None

    def status_now(self) -> tuple[UploadStatus, int | None]:
        """(Uploading, requestId) while an upload runs, else (Idle, None) (triggers)."""
        if self._task is not None and not self._task.done() and self._current is not None:
            return UploadStatus.UPLOADING, self._current.request_id
        return UploadStatus.IDLE, None

    async def request(self, req: UploadRequest) -> tuple[str | None, bool]:
        """Start an upload; returns (file name, cancelled an earlier one).

        File name None: the location is unusable (nothing is uploaded).
        """
        try:
            check_location(req.location)
        except DownloadError as e:
            log.warning("%s upload to %s refused: %s", req.kind, req.location, e)
            return None, False
        cancelled = await self.stop()
        stamp = self._now().strftime("%Y%m%dT%H%M%SZ")
        name = f"{self._cp_id}-{req.kind.value.lower()}-{stamp}.tar.gz"
        self._current = req
        self._task = asyncio.create_task(self._run(req, name), name="diagnostics-upload")
        return name, cancelled

    async def stop(self) -> bool:
        """Cancel a running upload; True if one was running."""
        task, self._task = self._task, None
        if task is None or task.done():
            return False
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return True

    async def _report(self, req: UploadRequest, status: UploadStatus) -> None:
        payload = {"status": status.value, "request_id": req.request_id, "log_kind": req.kind}
        await self._journal.queue(MessageKind.LOG_STATUS, payload, self._now().isoformat())
        self._reports_queued()

    async def _run(self, req: UploadRequest, name: str) -> None:
        folder = self._sources.data_dir / "diagnostics"
        path = folder / name
        await self._report(req, UploadStatus.UPLOADING)
        try:
            await asyncio.to_thread(
                build_bundle, self._sources, path, req.kind, req.oldest, req.latest
            )
            url = req.location + name if req.location.endswith("/") else req.location
            for attempt in range(req.retries + 1):
                try:
                    await self._upload(url, path, timeout_s=self._timeout_s)
                except (UploadError, OSError) as e:
                    log.warning("upload %s attempt %d failed: %s", name, attempt + 1, e)
                    if attempt < req.retries:
                        await asyncio.sleep(req.retry_interval_s)
                    continue
                log.info("uploaded %s to %s", name, req.location)
                await self._report(req, UploadStatus.UPLOADED)
                return
            await self._report(req, UploadStatus.UPLOAD_FAILED)
        except OSError as e:
            log.error("cannot build %s: %s", name, e)
            await self._report(req, UploadStatus.UPLOAD_FAILED)
        finally:
            path.unlink(missing_ok=True)
