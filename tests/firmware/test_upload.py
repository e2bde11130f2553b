"""firmware_update.upload: HTTP PUT and FTP STOR to loopback servers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from firmware_update.upload import UploadError, upload
from hil.fw_pki import FileServer, FtpServer, write_random_file

GUARD_S = 10.0


@pytest.fixture
def bundle(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "local" / "diagnostics-CP1.tar.gz"
    return path, write_random_file(path, 1_500_000, seed=7)


async def test_http_put_to_a_directory_appends_the_file_name(
    tmp_path: Path, bundle: tuple[Path, bytes]
) -> None:
    path, payload = bundle
    (tmp_path / "srv").mkdir()
    with FileServer(tmp_path / "srv") as server:
        await asyncio.wait_for(upload(server.url("incoming/"), path), GUARD_S)
        await asyncio.wait_for(upload(server.url("named.bin?x=1"), path), GUARD_S)
        assert server.uploads["/incoming/diagnostics-CP1.tar.gz"] == payload
        assert server.uploads["/named.bin?x=1"] == payload
        assert {r.method for r in server.requests} == {"PUT"}


async def test_http_error_status_is_an_upload_error(
    tmp_path: Path, bundle: tuple[Path, bytes]
) -> None:
    path, _ = bundle
    (tmp_path / "srv").mkdir()
    with FileServer(tmp_path / "srv") as server:
        server.faults.status = 403
        with pytest.raises(UploadError, match="HTTP 403"):
            await asyncio.wait_for(upload(server.url("up/"), path), GUARD_S)


async def test_ftp_stor(tmp_path: Path, bundle: tuple[Path, bytes]) -> None:
    path, payload = bundle
    home = tmp_path / "ftp"
    (home / "logs").mkdir(parents=True)
    with FtpServer(home) as server:
        await asyncio.wait_for(upload(server.url("logs/"), path), GUARD_S)
        await asyncio.wait_for(upload(server.url("renamed.tgz"), path), GUARD_S)
        with pytest.raises(UploadError, match="FTP: 5"):  # anonymous may not write
            await asyncio.wait_for(upload(server.url("x.tgz", login=False), path), GUARD_S)
    assert (home / "logs" / path.name).read_bytes() == payload
    assert (home / "renamed.tgz").read_bytes() == payload


@pytest.mark.parametrize("url", ["", "mailto:a@b", "sftp://h/x", "http:///x"])
async def test_bad_url(tmp_path: Path, bundle: tuple[Path, bytes], url: str) -> None:
    with pytest.raises(UploadError):
        await upload(url, bundle[0])


async def test_missing_local_file(tmp_path: Path) -> None:
    with pytest.raises(UploadError, match="no file"):
        await upload("http://127.0.0.1:9/x/", tmp_path / "missing.tar.gz")
