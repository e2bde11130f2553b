"""Upload of a local file (diagnostics, logs) over HTTP(S) PUT or FTP STOR.

Standard library only, like ``download``: one blocking loop in a worker thread sending
256 KiB chunks; cancelling ``upload()`` shuts the sockets down and waits for the worker.
"""

from __future__ import annotations

import ftplib
import http.client
import ssl
from pathlib import Path
from urllib.parse import SplitResult, unquote

from firmware_update.download import (
    CHUNK_BYTES,
    Canceller,
    DownloadError,
    parse_location,
    redact,
    run_cancellable,
)

UPLOAD_SCHEMES = ("http", "https", "ftp")


class UploadError(Exception):
    """An upload failed; ``str(error)`` is a one-line reason without secrets."""


async def upload(
    url: str,
    path: Path,
    *,
    timeout_s: float = 60.0,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Upload the file at ``path`` to ``url``.

    A ``url`` whose path ends with ``/`` names a directory (OCPP GetDiagnostics /
    GetLog ``location``): the file's name is appended. http(s) uploads use ``PUT`` (never
    POST: the target names the resource) with ``Content-Length``; any 2xx answer is
    success. ftp uploads use binary ``STOR`` with ``user:password@`` from the URL
    (anonymous otherwise).

    Args:
        url: ``http://``, ``https://`` (system CAs unless ``ssl_context``) or ``ftp://``.
        path: The local file.
        timeout_s: Connect timeout and stall timeout (no progress for this long).
        ssl_context: TLS settings for https.

    Raises:
        UploadError: Bad URL, file unreadable, error status, timeout, connection lost.
        asyncio.CancelledError: Cancelled; the worker has stopped.
    """
    try:
        parts = parse_location(url, UPLOAD_SCHEMES)
    except DownloadError as e:
        raise UploadError(str(e)) from None
    remote = unquote(parts.path)
    if not remote or remote.endswith("/"):
        remote += path.name

    def work(canceller: Canceller) -> None:
        if not path.is_file():
            raise UploadError(f"no file to upload at {path}")
        try:
            if parts.scheme.lower() == "ftp":
                _ftp_stor(parts, remote, path, timeout_s, canceller)
            else:
                _http_put(parts, remote, path, timeout_s, ssl_context, canceller)
        except UploadError:
            raise
        except ftplib.error_perm as e:
            raise UploadError(f"FTP: {_line(e)}") from None
        except TimeoutError:
            raise UploadError(f"timed out (no progress for {timeout_s:g} s)") from None
        except (OSError, EOFError, http.client.HTTPException, ftplib.Error) as e:
            canceller.check()
            raise UploadError(f"upload to {redact(url)} failed: {_line(e)}") from None

    await run_cancellable(work)


def _http_put(
    parts: SplitResult,
    remote: str,
    path: Path,
    timeout_s: float,
    ssl_context: ssl.SSLContext | None,
    canceller: Canceller,
) -> None:
    host = parts.hostname or ""
    conn: http.client.HTTPConnection
    if parts.scheme.lower() == "https":
        context = ssl_context or ssl.create_default_context()
        conn = http.client.HTTPSConnection(host, parts.port, timeout=timeout_s, context=context)
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=timeout_s)
    target = parts._replace(scheme="", netloc="", path=remote, fragment="").geturl() or "/"
    try:
        conn.connect()
        canceller.register(conn.sock)
        with path.open("rb") as f:
            size = path.stat().st_size
            conn.putrequest("PUT", target)
            conn.putheader("Content-Length", str(size))
            conn.putheader("Content-Type", "application/octet-stream")
            conn.putheader("User-Agent", "evse-agent")
            conn.endheaders()
            while chunk := f.read(CHUNK_BYTES):
                canceller.check()
                conn.send(chunk)
        with conn.getresponse() as response:
            response.read()
        if not 200 <= response.status < 300:
            raise UploadError(f"HTTP {response.status} {response.reason}")
    finally:
        conn.close()


def _ftp_stor(
    parts: SplitResult, remote: str, path: Path, timeout_s: float, canceller: Canceller
) -> None:
    with ftplib.FTP(timeout=timeout_s) as ftp:
        ftp.connect(parts.hostname or "", parts.port or ftplib.FTP_PORT)
        canceller.register(ftp.sock)
        ftp.login(unquote(parts.username or "anonymous"), unquote(parts.password or ""))
        ftp.voidcmd("TYPE I")
        with path.open("rb") as f:
            data = ftp.transfercmd(f"STOR {remote[1:] if remote.startswith('/') else remote}")
            canceller.register(data)
            with data:
                while chunk := f.read(CHUNK_BYTES):
                    canceller.check()
                    data.sendall(chunk)
        ftp.voidresp()


def _line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else "") or type(error).__name__
