"""Firmware download over HTTP, HTTPS and FTP: streamed to disk, resumable, size-capped.

Standard library only (``http.client``, ``ssl``, ``ftplib``): the transfer is one blocking
loop in a worker thread (``asyncio.to_thread``) that copies fixed 256 KiB chunks from the
socket into the file, so memory stays flat and throughput matches a plain ``urllib``
download. The event loop never blocks; cancelling ``download()`` shuts the worker's
sockets down (which wakes a blocked ``recv``) and waits for the worker to stop, so no
write happens after the cancellation returned.

Partial data lives in ``<dest>.part`` next to a small ``<dest>.part.meta`` (the URL and
the server's ETag / Last-Modified). A later call resumes from it with an HTTP ``Range``
request (guarded by ``If-Range``, so a changed file restarts from zero) or FTP ``REST``.

Durability: by default nothing is fsynced (the copy runs at page-cache speed, like a
plain ``urllib`` download); the complete file is only renamed to ``dest``. After a power
cut ``dest`` or the ``.part`` may hold fewer bytes, or garbage at their end: the caller
records a digest of the finished file and checks it after a restart (the firmware
manager does, see ``manager.py``), and a ``.part`` from before a restart must be thrown
away with :func:`discard_partial`. ``durable=True`` fsyncs the file and its directory
before returning instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ftplib
import functools
import http.client
import json
import logging
import os
import re
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

from firmware_update.durable import fsync_dir

SUPPORTED_SCHEMES = ("http", "https", "ftp")
CHUNK_BYTES = 256 * 1024
MAX_REDIRECTS = 5
PROGRESS_INTERVAL_S = 0.25
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)

_log = logging.getLogger(__name__)

T = TypeVar("T")
FreeBytes = Callable[[Path], int]
Progress = Callable[[int, "int | None"], None]


class DownloadError(Exception):
    """A download or upload failed; ``str(error)`` is a one-line reason without secrets.

    Attributes:
        retryable: False when trying again cannot help (bad URL, file too large, not enough
            space, HTTP 4xx other than 408/429, FTP permanent error).
    """

    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.retryable = retryable


class _Cancelled(Exception):
    """Raised inside the worker thread when the awaiting task was cancelled."""


def check_location(url: str) -> None:
    """Validate a firmware location before anything is scheduled.

    Raises:
        DownloadError: (not retryable) empty or malformed URL, whitespace or control
            characters, a scheme other than http/https/ftp, no host, a bad port, or an
            ftp URL without a file path.
    """
    parse_location(url, SUPPORTED_SCHEMES)


def redact(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@`` (for logs and errors)."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^@/?#]*@", r"\1***@", url)


def parse_location(url: str, schemes: tuple[str, ...]) -> SplitResult:
    """Split and validate ``url`` for ``schemes`` (see ``check_location``)."""
    if not isinstance(url, str) or not url.strip():
        raise DownloadError("malformed URL: empty", retryable=False)
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise DownloadError(
            "malformed URL: contains whitespace or control characters", retryable=False
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise DownloadError(f"malformed URL: {e}", retryable=False) from None
    scheme = parts.scheme.lower()
    if not scheme or "://" not in url:
        raise DownloadError(f"malformed URL: no scheme in {redact(url)!r}", retryable=False)
    if scheme not in schemes:
        raise DownloadError(
            f"unsupported URL scheme {scheme!r} (supported: {', '.join(schemes)})",
            retryable=False,
        )
    if not parts.hostname:
        raise DownloadError(f"malformed URL: no host in {redact(url)!r}", retryable=False)
    if scheme == "ftp" and parts.path in ("", "/"):
        raise DownloadError("malformed URL: ftp location has no file path", retryable=False)
    return parts


def part_path(dest: Path) -> Path:
    """Where ``download`` keeps the partial data of ``dest``."""
    return dest.with_suffix(dest.suffix + ".part")


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".meta")


def discard_partial(dest: Path) -> None:
    """Delete the partial data of ``dest`` (``.part`` and ``.part.meta``), if any.

    Blocking (call it in a worker thread). Use it after a restart: a ``.part`` written
    without fsync may end in garbage after a power cut, so it must not be resumed.

    Raises:
        OSError: A file exists but cannot be deleted.
    """
    part = part_path(dest)
    part.unlink(missing_ok=True)
    _meta_path(part).unlink(missing_ok=True)


def _disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


class Canceller:
    """Cross-thread cancel flag that also shuts down the sockets the worker blocks on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._sockets: list[socket.socket] = []

    def register(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if self._set:
                _shutdown(sock)

    def cancel(self) -> None:
        with self._lock:
            self._set = True
            for sock in self._sockets:
                _shutdown(sock)

    def check(self) -> None:
        if self._set:
            raise _Cancelled


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


async def run_cancellable(work: Callable[[Canceller], T]) -> T:
    """Run blocking ``work`` in a thread; on cancellation stop it and wait until it ended."""
    canceller = Canceller()
    future = asyncio.ensure_future(asyncio.to_thread(work, canceller))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        canceller.cancel()
        await asyncio.wait({future})
        if not future.cancelled():
            future.exception()  # retrieved: the cancellation is what the caller sees
        raise


class _Reporter:
    """Throttled progress callback, delivered on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Progress | None) -> None:
        self._loop = loop
        self._callback = callback
        self._last = -PROGRESS_INTERVAL_S
        self._first_done: int | None = None
        self._moved = False

    def __call__(self, done: int, total: int | None, *, final: bool = False) -> None:
        if self._callback is None:
            return
        now = time.monotonic()
        if self._first_done is None:
            self._first_done = done
        first_move = not self._moved and done > self._first_done
        if not final and not first_move and now - self._last < PROGRESS_INTERVAL_S:
            return
        self._moved = self._moved or first_move
        self._last = now
        with contextlib.suppress(RuntimeError):  # loop closed: nobody listens any more
            self._loop.call_soon_threadsafe(self._callback, done, total)


@dataclass
class _Job:
    url: str
    dest: Path
    max_bytes: int
    timeout_s: float
    free_bytes: FreeBytes
    report: _Reporter
    resume_attempts: int
    ssl_context: ssl.SSLContext | None
    durable: bool

    @property
    def part(self) -> Path:
        return part_path(self.dest)

    # -- shared helpers ---------------------------------------------------------------

    def resumable_offset(self) -> int:
        """Bytes already in the .part file that belong to this URL (0: start over)."""
        part, meta = self.part, _meta_path(self.part)
        if not part.exists():
            return 0
        try:
            recorded = json.loads(meta.read_text()) if meta.exists() else {"url": self.url}
        except (OSError, ValueError):
            recorded = {}
        if not isinstance(recorded, dict) or recorded.get("url") != self.url:
            part.unlink(missing_ok=True)
            return 0
        return part.stat().st_size

    def validator(self) -> str | None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            value = json.loads(_meta_path(self.part).read_text()).get("validator")
            return value if isinstance(value, str) else None
        return None

    def write_meta(self, validator: str | None) -> None:
        _meta_path(self.part).write_text(json.dumps({"url": self.url, "validator": validator}))

    def check_size(self, total: int | None, have: int) -> None:
        if total is not None and total > self.max_bytes:
            self.discard()
            raise DownloadError(
                f"file is {total} bytes, more than the limit of {self.max_bytes} bytes",
                retryable=False,
            )
        need = (total - have) if total is not None else 0
        free = self.free_bytes(self.dest.parent)
        if need > free:
            raise DownloadError(
                f"not enough free space: need {need} bytes, {free} bytes free",
                retryable=False,
            )

    def discard(self) -> None:
        self.part.unlink(missing_ok=True)
        _meta_path(self.part).unlink(missing_ok=True)

    def stream(
        self,
        read_chunk: Callable[[], bytes | memoryview],
        have: int,
        total: int | None,
        canceller: Canceller,
    ) -> int:
        """Append chunks to the .part file from offset ``have``; returns the new size.

        With ``durable`` the file is fsynced when the body ended. Network errors
        propagate; the .part file keeps what was received.
        """
        done = have
        mode = "r+b" if have else "wb"
        try:
            f = self.part.open(mode)
        except OSError as e:
            raise DownloadError(f"cannot write {self.part.name}: {_reason(e)}") from None
        with f:
            f.seek(have)
            f.truncate()
            self.report(done, total)
            while True:
                canceller.check()
                chunk = read_chunk()
                n = len(chunk)
                if n == 0:
                    canceller.check()  # a shut-down socket reads as EOF
                    break
                done += n
                if done > self.max_bytes:
                    f.close()
                    self.discard()
                    raise DownloadError(
                        f"more than the limit of {self.max_bytes} bytes received",
                        retryable=False,
                    )
                try:
                    _write_all(f, chunk)
                except OSError as e:  # disk full, I/O error: not a network problem
                    raise DownloadError(f"cannot write {self.part.name}: {_reason(e)}") from None
                self.report(done, total)
            try:
                f.flush()
                if self.durable:
                    os.fsync(f.fileno())
            except OSError as e:
                raise DownloadError(f"cannot write {self.part.name}: {_reason(e)}") from None
        return done

    def finish(self, size: int, total: int | None) -> Path:
        """Rename the complete .part to ``dest`` (durably with ``durable``)."""
        if total is not None and size != total:
            raise DownloadError(f"incomplete: received {size} of {total} bytes")
        try:
            os.replace(self.part, self.dest)
            if self.durable:
                fsync_dir(self.dest.parent)
        except OSError as e:
            raise DownloadError(f"cannot write {self.dest.name}: {_reason(e)}") from None
        _meta_path(self.part).unlink(missing_ok=True)
        self.report(size, total, final=True)
        return self.dest

    # -- HTTP(S) ----------------------------------------------------------------------

    def run_http(self, canceller: Canceller) -> Path:
        attempts = 0
        while True:
            have_before = self.resumable_offset()
            try:
                return self._http_once(canceller)
            except (OSError, http.client.HTTPException) as e:
                canceller.check()
                have_after = self.part.stat().st_size if self.part.exists() else 0
                progressed = have_after > have_before
                if progressed and attempts < self.resume_attempts:
                    attempts += 1
                    _log.info(
                        "download of %s interrupted at %d bytes (%s); resuming",
                        redact(self.url),
                        have_after,
                        _reason(e),
                    )
                    continue
                raise DownloadError(_network_reason(e, self.timeout_s)) from None

    def _http_once(self, canceller: Canceller) -> Path:
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            parts = parse_location(url, ("http", "https"))
            have = self.resumable_offset()
            headers = {"User-Agent": "evse-agent", "Accept-Encoding": "identity"}
            if have:
                headers["Range"] = f"bytes={have}-"
                validator = self.validator()
                if validator:
                    headers["If-Range"] = validator
            conn = self._connection(parts)
            response: http.client.HTTPResponse | None = None
            try:
                conn.connect()
                canceller.register(conn.sock)
                target = parts.path or "/"
                if parts.query:
                    target += "?" + parts.query
                conn.request("GET", target, headers=headers)
                response = conn.getresponse()
                if response.status in _REDIRECTS and response.getheader("Location"):
                    url = urljoin(url, response.getheader("Location", ""))
                    continue
                if response.status == 416 and have:
                    # The .part is already complete or longer than the file: start over.
                    self.discard()
                    continue
                have, total = self._http_range(response, have)
                self.check_size(total, have)
                self.write_meta(response.getheader("ETag") or response.getheader("Last-Modified"))
                read = functools.partial(response.read1, CHUNK_BYTES)
                size = self.stream(read, have, total, canceller)
                if total is not None and size < total:  # a cut connection reads as EOF
                    raise http.client.IncompleteRead(b"", total - size)
                return self.finish(size, total)
            finally:
                if response is not None:
                    response.close()  # owns the socket once the server said "close"
                conn.close()
        raise DownloadError(f"more than {MAX_REDIRECTS} redirects", retryable=False)

    def _connection(self, parts: SplitResult) -> http.client.HTTPConnection:
        host = parts.hostname or ""
        if parts.scheme.lower() == "https":
            context = self.ssl_context or ssl.create_default_context()
            return http.client.HTTPSConnection(
                host, parts.port, timeout=self.timeout_s, context=context
            )
        return http.client.HTTPConnection(host, parts.port, timeout=self.timeout_s)

    def _http_range(self, response: http.client.HTTPResponse, have: int) -> tuple[int, int | None]:
        """(offset the body starts at, total file size or None) for this response."""
        length = _int_or_none(response.getheader("Content-Length"))
        if response.status == 206:
            match = _CONTENT_RANGE.match(response.getheader("Content-Range", ""))
            if match is None or int(match.group(1)) != have:
                self.discard()
                raise http.client.HTTPException("unusable Content-Range in 206 response")
            total = None if match.group(3) == "*" else int(match.group(3))
            return have, total
        if response.status == 200:
            return 0, length  # a server that ignores Range (or If-Range mismatch): restart
        retryable = response.status >= 500 or response.status in (408, 429)
        raise DownloadError(f"HTTP {response.status} {response.reason}", retryable=retryable)

    # -- FTP --------------------------------------------------------------------------

    def run_ftp(self, canceller: Canceller) -> Path:
        attempts = 0
        while True:
            have_before = self.resumable_offset()
            try:
                return self._ftp_once(canceller)
            except ftplib.error_perm as e:
                raise DownloadError(f"FTP: {_reason(e)}", retryable=False) from None
            except ftplib.all_errors as e:
                canceller.check()
                have_after = self.part.stat().st_size if self.part.exists() else 0
                if have_after > have_before and attempts < self.resume_attempts:
                    attempts += 1
                    continue
                raise DownloadError(_network_reason(e, self.timeout_s)) from None

    def _ftp_once(self, canceller: Canceller) -> Path:
        parts = parse_location(self.url, ("ftp",))
        path = unquote(parts.path)[1:]
        with ftplib.FTP(timeout=self.timeout_s) as ftp:
            ftp.connect(parts.hostname or "", parts.port or ftplib.FTP_PORT)
            canceller.register(ftp.sock)
            ftp.login(unquote(parts.username or "anonymous"), unquote(parts.password or ""))
            ftp.voidcmd("TYPE I")
            try:
                total: int | None = ftp.size(path)
            except ftplib.error_perm:
                total = None
            have = self.resumable_offset()
            if total is not None and have > total:
                self.discard()
                have = 0
            self.check_size(total, have)
            self.write_meta(None)
            try:
                data = ftp.transfercmd(f"RETR {path}", rest=have or None)
            except (ftplib.error_reply, ftplib.error_perm):
                if not have:
                    raise
                have = 0  # the server does not support REST: start over
                data = ftp.transfercmd(f"RETR {path}")
            canceller.register(data)
            buffer = memoryview(bytearray(CHUNK_BYTES))
            with data:
                size = self.stream(lambda: buffer[: data.recv_into(buffer)], have, total, canceller)
            if total is not None and size < total:
                raise EOFError(f"connection lost after {size} of {total} bytes")
            ftp.voidresp()
            return self.finish(size, total)


async def download(
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    timeout_s: float = 30.0,
    free_bytes: FreeBytes | None = None,
    on_progress: Progress | None = None,
    resume_attempts: int = 3,
    ssl_context: ssl.SSLContext | None = None,
    durable: bool = False,
) -> Path:
    """Download ``url`` to ``dest``, streaming through ``<dest>.part``.

    Resumes from an existing ``.part`` of the same URL (HTTP ``Range`` + ``If-Range``;
    FTP ``REST``); restarts from zero when the server ignores the range. A connection that
    breaks mid-file is resumed up to ``resume_attempts`` times within this call while data
    keeps arriving; after that the ``.part`` is kept for the next call (within the same
    boot: see :func:`discard_partial`). On success the file is renamed to ``dest``
    (replacing it); it is not fsynced unless ``durable``, so after a power cut it may be
    short or torn and the caller must check it (e.g. against a recorded SHA-256).

    Args:
        url: ``http://``, ``https://`` (certificate checked against the system CAs) or
            ``ftp://[user:password@]host[:port]/path`` (binary, passive mode).
        dest: Final file path; its directory is created if missing.
        max_bytes: Size cap. A larger announced size (Content-Length / Content-Range /
            FTP SIZE) is refused before anything is written; a body that grows past the cap
            is cut off and discarded.
        timeout_s: Connect timeout and stall timeout (no data for this long).
        free_bytes: Free space of a directory in bytes (default: ``shutil.disk_usage``);
            the missing bytes of an announced size must fit before the transfer starts.
        on_progress: ``(bytes_so_far, total_bytes_or_None)``, called on the event loop at
            the start, on the first received data, then at most every 0.25 s, and at the
            end.
        resume_attempts: Immediate resumes after a broken connection within this call.
        ssl_context: TLS settings for https (default: ``ssl.create_default_context()``).
        durable: Fsync the file and its directory before returning (slower: the copy
            then runs at disk speed instead of page-cache speed).

    Returns:
        ``dest``.

    Raises:
        DownloadError: Bad location, HTTP/FTP error status, too large, not enough space,
            connect or stall timeout, connection lost (``.part`` kept for a resume), or a
            local write error.
        asyncio.CancelledError: Cancelled; the worker has stopped and ``.part`` is kept.
    """
    parts = parse_location(url, SUPPORTED_SCHEMES)
    job = _Job(
        url=url,
        dest=dest,
        max_bytes=max_bytes,
        timeout_s=timeout_s,
        free_bytes=free_bytes or _disk_free,
        report=_Reporter(asyncio.get_running_loop(), on_progress),
        resume_attempts=resume_attempts,
        ssl_context=ssl_context,
        durable=durable,
    )
    transfer = job.run_ftp if parts.scheme.lower() == "ftp" else job.run_http

    def work(canceller: Canceller) -> Path:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DownloadError(f"cannot create {dest.parent}: {_reason(e)}") from None
        return transfer(canceller)

    return await run_cancellable(work)


def _write_all(f: IO[bytes], data: bytes | memoryview) -> None:
    view = memoryview(data)
    written = 0
    while written < len(view):
        written += f.write(view[written:])


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    return line or type(error).__name__


def _network_reason(error: BaseException, timeout_s: float) -> str:
    if isinstance(error, TimeoutError):
        return f"timed out (no progress for {timeout_s:g} s)"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected: {error.verify_message}"
    if isinstance(error, http.client.IncompleteRead):
        return "connection lost before the end of the file"
    return f"network error: {_reason(error)}"
