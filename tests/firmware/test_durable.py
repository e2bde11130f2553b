"""Atomic replacement and directory flushes of the firmware path (firmware_update.durable)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from firmware_update import durable


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    durable.write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_write_atomic_flushes_the_file_and_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed: list[bool] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        flushed.append(os.path.isdir(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(durable.os, "fsync", fsync)
    durable.write_atomic(tmp_path / "cert.pem", b"x")
    assert flushed == [False, True]  # the file first, then its directory


def test_failed_write_keeps_the_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "cert.pem"
    target.write_bytes(b"old")

    def broken_replace(src: str, dst: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(durable.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        durable.write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cert.pem"]
