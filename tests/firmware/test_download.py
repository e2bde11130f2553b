"""firmware_update.download against real HTTP(S) and FTP servers on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from firmware_update.download import (
    DownloadError,
    check_location,
    discard_partial,
    download,
    part_path,
)
from hil.fw_pki import FileServer, FtpServer, make_tls_server_context, write_random_file

SIZE = 3 * 1024 * 1024 + 123
GUARD_S = 10.0


@pytest.fixture
def served(tmp_path: Path) -> tuple[Path, bytes]:
    directory = tmp_path / "served"
    return directory, write_random_file(directory / "fw.bin", SIZE)


def entries(directory: Path) -> list[Path]:
    return list(directory.iterdir())


async def fetch(url: str, dest: Path, **kwargs: object) -> Path:
    kwargs.setdefault("max_bytes", 100 * 1024 * 1024)
    return await asyncio.wait_for(download(url, dest, **kwargs), GUARD_S)  # type: ignore[arg-type]


async def test_http_download_streams_to_dest_and_reports_progress(
    served: tuple[Path, bytes], tmp_path: Path
) -> None:
    directory, payload = served
    progress: list[tuple[int, int | None]] = []
    dest = tmp_path / "out" / "fw.bin"
    with FileServer(directory) as server:
        result = await fetch(
            server.url("fw.bin"), dest, on_progress=lambda d, t: progress.append((d, t))
        )
    assert result == dest
    assert dest.read_bytes() == payload
    assert not part_path(dest).exists()
    assert progress[-1] == (SIZE, SIZE)
    assert [p[0] for p in progress] == sorted(p[0] for p in progress)


async def test_resumes_with_range_after_the_server_cuts_the_connection(
    served: tuple[Path, bytes], tmp_path: Path
) -> None:
    directory, payload = served
    dest = tmp_path / "fw.bin"
    with FileServer(directory) as server:
        server.faults.drop_after_bytes = 1_000_000
        await fetch(server.url("fw.bin"), dest)
        gets = [r for r in server.requests if r.method == "GET"]
    assert dest.read_bytes() == payload
    assert len(gets) == 2
    assert "Range" not in gets[0].headers
    assert gets[1].headers["Range"] == "bytes=1000000-"
    assert gets[1].headers["If-Range"]  # the ETag of the first answer


async def test_broken_download_keeps_part_and_the_next_call_resumes(
    served: tuple[Path, bytes], tmp_path: Path
) -> None:
    directory, payload = served
    dest = tmp_path / "fw.bin"
    with FileServer(directory) as server:
        server.faults.drop_after_bytes = 700_000
        with pytest.raises(DownloadError) as failed:
            await fetch(server.url("fw.bin"), dest, resume_attempts=0)
        assert failed.value.retryable
        assert part_path(dest).stat().st_size == 700_000
        assert not dest.exists()
        await fetch(server.url("fw.bin"), dest)
        assert server.requests[-1].headers["Range"] == "bytes=700000-"
    assert dest.read_bytes() == payload


async def test_restarts_from_zero_when_the_server_ignores_range(
    served: tuple[Path, bytes], tmp_path: Path
) -> None:
    directory, payload = served
    dest = tmp_path / "fw.bin"
    with FileServer(directory) as server:
        part_path(dest).write_bytes(b"garbage" * 1000)
        server.faults.ignore_range = True
        await fetch(server.url("fw.bin"), dest)
        assert server.requests[-1].headers["Range"] == "bytes=7000-"
    assert dest.read_bytes() == payload


async def test_changed_file_restarts_from_zero(served: tuple[Path, bytes], tmp_path: Path) -> None:
    directory, payload = served
    dest = tmp_path / "fw.bin"
    with FileServer(directory) as server:
        url = server.url("fw.bin")
        part_path(dest).write_bytes(b"x" * 5000)
        meta = part_path(dest).with_name(part_path(dest).name + ".meta")
        meta.write_text(json.dumps({"url": url, "validator": '"an-older-etag"'}))
        await fetch(url, dest)
        assert server.requests[-1].headers["If-Range"] == '"an-older-etag"'
    assert dest.read_bytes() == payload
    assert not meta.exists()


async def test_part_of_another_url_is_not_resumed(
    served: tuple[Path, bytes], tmp_path: Path
) -> None:
    directory, payload = served
    dest = tmp_path / "fw.bin"
    with FileServer(directory) as server:
        part_path(dest).write_bytes(b"x" * 5000)
        meta = part_path(dest).with_name(part_path(dest).name + ".meta")
        meta.write_text(json.dumps({"url": "http://elsewhere/fw.bin", "validator": None}))
        await fetch(server.url("fw.bin"), dest)
        assert "Range" not in server.requests[-1].headers
    assert dest.read_bytes() == payload


async def test_announced_size_over_the_cap_is_refused_before_writing(
    served: tuple[Path, bytes], tmp_path: Path
) -> None:
    directory, _ = served
    dest = tmp_path / "fw.bin"
    with FileServer(directory) as server, pytest.raises(DownloadError, match="limit") as failed:
        await fetch(server.url("fw.bin"), dest, max_bytes=SIZE - 1)
    assert not failed.value.retryable
    assert not part_path(dest).exists()
    assert not dest.exists()


async def test_cap_is_enforced_while_streaming_without_content_length(
    served: tuple[Path, bytes], tmp_path: Path
) -> None:
    directory, _ = served
    dest = tmp_path / "fw.bin"
    with FileServer(directory) as server:
        server.faults.no_content_length = True
        with pytest.raises(DownloadError, match="limit"):
            await fetch(server.url("fw.bin"), dest, max_bytes=1_000_000)
    assert not part_path(dest).exists()
    assert not dest.exists()


async def test_download_without_content_length_completes(
    served: tuple[Path, bytes], tmp_path: Path
) -> None:
    directory, payload = served
    dest = tmp_path / "fw.bin"
    with FileServer(directory) as server:
        server.faults.no_content_length = True
        await fetch(server.url("fw.bin"), dest)
    assert dest.read_bytes() == payload


async def test_not_enough_free_space_is_refused_before_writing(
    served: tuple[Path, bytes], tmp_path: Path
) -> None:
    directory, _ = served
    dest = tmp_path / "fw.bin"
    asked: list[Path] = []

    def free_bytes(path: Path) -> int:
        asked.append(path)
        return SIZE - 1

    with (
        FileServer(directory) as server,
        pytest.raises(DownloadError, match="free space") as failed,
    ):
        await fetch(server.url("fw.bin"), dest, free_bytes=free_bytes)
    assert not failed.value.retryable
    assert asked == [tmp_path]
    assert not part_path(dest).exists()


async def test_free_space_check_counts_only_the_missing_bytes_on_resume(
    served: tuple[Path, bytes], tmp_path: Path
) -> None:
    directory, payload = served
    dest = tmp_path / "fw.bin"
    part_path(dest).write_bytes(payload[:1_000_000])
    with FileServer(directory) as server:
        await fetch(server.url("fw.bin"), dest, free_bytes=lambda _: SIZE - 1_000_000)
    assert dest.read_bytes() == payload


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "fw.bin",
        "/srv/fw.bin",
        "file:///etc/passwd",
        "sftp://host/fw.bin",
        "ws://host/fw.bin",
        "http://",
        "http:///fw.bin",
        "http://host:99999/fw.bin",
        "http://host:port/fw.bin",
        "http://ho st/fw.bin",
        "http://host/fw\nbin",
        "ftp://host",
        "ftp://host/",
        "http://[::1/fw.bin",
    ],
)
async def test_bad_locations_are_a_clear_error(url: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as checked:
        check_location(url)
    assert not checked.value.retryable
    assert "\n" not in str(checked.value)
    with pytest.raises(DownloadError):
        await fetch(url, tmp_path / "fw.bin")
    assert entries(tmp_path) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/fw.bin",
        "HTTPS://example.com:8443/a/b/fw.tar.gz?token=1",
        "ftp://user:pa%40ss@ftp.example.com/pub/fw.bin",
        "http://[::1]:8080/fw.bin",
    ],
)
def test_good_locations_pass(url: str) -> None:
    check_location(url)


def test_error_text_never_contains_the_password() -> None:
    with pytest.raises(DownloadError) as failed:
        check_location("sftp://user:hunter2@host/fw.bin")
    assert "hunter2" not in str(failed.value)


async def test_http_error_status(served: tuple[Path, bytes], tmp_path: Path) -> None:
    directory, _ = served
    with FileServer(directory) as server:
        with pytest.raises(DownloadError, match="HTTP 404") as missing:
            await fetch(server.url("nope.bin"), tmp_path / "fw.bin")
        server.faults.status = 503
        with pytest.raises(DownloadError, match="HTTP 503") as unavailable:
            await fetch(server.url("fw.bin"), tmp_path / "fw.bin")
    assert not missing.value.retryable
    assert unavailable.value.retryable


async def test_redirect_is_followed(served: tuple[Path, bytes], tmp_path: Path) -> None:
    directory, payload = served
    dest = tmp_path / "fw.bin"
    with FileServer(directory) as server:
        await fetch(server.url("redirect/fw.bin"), dest)
        assert [r.path for r in server.requests] == ["/redirect/fw.bin", "/fw.bin"]
    assert dest.read_bytes() == payload


async def test_stalled_transfer_times_out(served: tuple[Path, bytes], tmp_path: Path) -> None:
    directory, _ = served
    dest = tmp_path / "fw.bin"
    with FileServer(directory) as server:
        server.faults.stall_after_bytes = 100_000
        with pytest.raises(DownloadError, match="timed out"):
            await fetch(server.url("fw.bin"), dest, timeout_s=0.3, resume_attempts=0)
    assert part_path(dest).stat().st_size == 100_000  # kept for a resume


async def test_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="network error"):
        await fetch(f"http://127.0.0.1:{port}/fw.bin", tmp_path / "fw.bin")


async def test_cancel_stops_the_transfer_and_keeps_the_part(
    served: tuple[Path, bytes], tmp_path: Path
) -> None:
    directory, _ = served
    dest = tmp_path / "fw.bin"
    started = asyncio.Event()
    with FileServer(directory) as server:
        server.faults.stall_after_bytes = 300_000
        task = asyncio.create_task(
            download(
                server.url("fw.bin"),
                dest,
                max_bytes=SIZE,
                timeout_s=30.0,
                on_progress=lambda done, _: done > 0 and started.set(),
            )
        )
        await asyncio.wait_for(started.wait(), GUARD_S)
        task.cancel()
        # Returns long before the 30 s stall timeout: the socket was shut down.
        done, _ = await asyncio.wait({task}, timeout=GUARD_S)
        assert task in done and task.cancelled()
        size = part_path(dest).stat().st_size
        assert 0 < size <= 300_000
        assert not dest.exists()


async def test_https_checks_the_server_certificate(
    served: tuple[Path, bytes], tmp_path: Path
) -> None:
    directory, payload = served
    server_tls, client_tls = make_tls_server_context(tmp_path)
    with FileServer(directory, tls=server_tls) as server:
        with pytest.raises(DownloadError, match="certificate"):
            await fetch(server.url("fw.bin"), tmp_path / "a.bin")  # system CAs only
        await fetch(server.url("fw.bin"), tmp_path / "b.bin", ssl_context=client_tls)
    assert (tmp_path / "b.bin").read_bytes() == payload


async def test_ftp_download_with_login(served: tuple[Path, bytes], tmp_path: Path) -> None:
    directory, payload = served
    progress: list[tuple[int, int | None]] = []
    with FtpServer(directory) as server:
        await fetch(
            server.url("fw.bin"),
            tmp_path / "fw.bin",
            on_progress=lambda d, t: progress.append((d, t)),
        )
        await fetch(server.url("fw.bin", login=False), tmp_path / "anon.bin")
    assert (tmp_path / "fw.bin").read_bytes() == payload
    assert (tmp_path / "anon.bin").read_bytes() == payload
    assert progress[-1] == (SIZE, SIZE)  # the size came from FTP SIZE


async def test_ftp_resumes_with_rest(served: tuple[Path, bytes], tmp_path: Path) -> None:
    directory, payload = served
    dest = tmp_path / "fw.bin"
    part_path(dest).write_bytes(payload[:1_234_567])
    progress: list[int] = []
    with FtpServer(directory) as server:
        await fetch(server.url("fw.bin"), dest, on_progress=lambda d, _: progress.append(d))
    assert dest.read_bytes() == payload
    assert progress[0] == 1_234_567  # continued, not restarted


async def test_ftp_size_cap_missing_file_and_bad_login(
    served: tuple[Path, bytes], tmp_path: Path
) -> None:
    directory, _ = served
    dest = tmp_path / "fw.bin"
    with FtpServer(directory) as server:
        with pytest.raises(DownloadError, match="limit"):
            await fetch(server.url("fw.bin"), dest, max_bytes=1000)
        with pytest.raises(DownloadError, match="FTP: 550") as missing:
            await fetch(server.url("nope.bin"), dest)
        bad = server.url("fw.bin").replace(FtpServer.PASSWORD, "wrong")
        with pytest.raises(DownloadError) as denied:
            await fetch(bad, dest)
    assert not missing.value.retryable
    assert "wrong" not in str(denied.value)
    assert not dest.exists()


@pytest.mark.parametrize(("durable", "fsyncs"), [(False, 0), (True, 2)])
async def test_fsync_only_when_durable(
    served: tuple[Path, bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    durable: bool,
    fsyncs: int,
) -> None:
    """The default copy runs at page-cache speed (the manager checks the image by its
    digest instead); ``durable=True`` fsyncs the file and the directory."""
    import firmware_update.download as module

    calls: list[int] = []
    real_fsync = module.os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(module.os, "fsync", counting_fsync)
    directory, payload = served
    dest = tmp_path / "fw.bin"
    with FileServer(directory) as server:
        await fetch(server.url("fw.bin"), dest, durable=durable)
    assert dest.read_bytes() == payload
    assert len(calls) == fsyncs


def test_discard_partial_removes_part_and_meta(tmp_path: Path) -> None:
    dest = tmp_path / "fw.bin"
    part = part_path(dest)
    part.write_bytes(b"x" * 100)
    part.with_name(part.name + ".meta").write_text("{}")
    discard_partial(dest)
    discard_partial(dest)  # nothing left: no error
    assert entries(tmp_path) == []
