"""The file log in a diagnostics bundle: UTC-stamped lines, selected by the requested
time window (GetDiagnostics startTime/stopTime, GetLog oldest/latestTimestamp)."""

from __future__ import annotations

import logging
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from firmware_update.diagnostics import (
    LOG_DIR,
    LOG_FILE,
    BundleSources,
    build_bundle,
    ensure_file_log,
    log_lines_within,
)
from firmware_update.status import LogKind

LOG = """\
2026-11-25T10:00:00.000Z INFO    agent: booted
2026-11-25T10:05:00.000Z ERROR   agent: firmware signature bad
Traceback (most recent call last):
  ValueError: boom
2026-11-25T10:10:00.000Z INFO    agent: security event sent
2026-11-25T10:15:00.000Z INFO    agent: idle
"""


def _at(minute: int) -> datetime:
    return datetime(2026, 11, 25, 10, minute, tzinfo=UTC)


def test_window_keeps_stamped_lines_inside_it_with_their_continuations() -> None:
    kept = list(log_lines_within(LOG, _at(5), _at(10)))
    assert kept == LOG.splitlines(True)[1:5]


def test_open_bounds_and_unstamped_lines() -> None:
    assert "".join(log_lines_within(LOG, None, None)) == LOG
    assert list(log_lines_within(LOG, _at(11), None)) == [LOG.splitlines(True)[-1]]
    old_format = "2026-11-25 10:00:00,000 INFO    agent: before the upgrade\n"
    assert list(log_lines_within(old_format + LOG, _at(14), None)) == [
        old_format,
        LOG.splitlines(True)[-1],
    ]


def test_the_file_log_is_stamped_in_utc_and_parsed_back(tmp_path: Path) -> None:
    remove = ensure_file_log(tmp_path)
    try:
        before = datetime.now(UTC).replace(microsecond=0)
        logging.getLogger("agent.test").warning("a line to find")
        for handler in logging.getLogger().handlers:
            handler.flush()
    finally:
        remove()
    text = (tmp_path / LOG_DIR / LOG_FILE).read_text()
    assert [ln for ln in log_lines_within(text, before, None) if "a line to find" in ln]
    an_hour_ago = before - timedelta(hours=1)
    assert not [ln for ln in log_lines_within(text, None, an_hour_ago) if "a line to find" in ln]


def test_bundle_holds_only_the_window_and_security_log_only_security_lines(
    tmp_path: Path,
) -> None:
    (tmp_path / LOG_DIR).mkdir()
    (tmp_path / LOG_DIR / LOG_FILE).write_text(LOG)
    sources = BundleSources(data_dir=tmp_path, config=dict, hal_status=dict)

    def log_in(bundle: Path) -> str:
        with tarfile.open(bundle) as tar:
            member = tar.extractfile(f"logs/{LOG_FILE}")
            assert member is not None
            return member.read().decode()

    window = build_bundle(sources, tmp_path / "d.tar.gz", LogKind.DIAGNOSTICS, _at(10), _at(15))
    assert log_in(window) == "".join(LOG.splitlines(True)[4:])
    security = build_bundle(sources, tmp_path / "s.tar.gz", LogKind.SECURITY_LOG, _at(5), None)
    assert log_in(security) == "".join(LOG.splitlines(True)[i] for i in (1, 4))
    whole = build_bundle(sources, tmp_path / "w.tar.gz", LogKind.DIAGNOSTICS)
    assert log_in(whole) == LOG
