"""systemd notification: the built-in fallback speaks the NOTIFY_SOCKET protocol."""

from __future__ import annotations

import socket
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sd_notify import notify, watchdog_interval_s


@pytest.fixture
def no_systemd_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the fallback even where the ``systemd`` extra is installed."""
    monkeypatch.setitem(sys.modules, "systemd", None)  # import raises ImportError


@pytest.fixture
def listener(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_systemd_module: None
) -> Iterator[socket.socket]:
    """A unix datagram socket standing in for systemd, named by $NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5.0)  # a guard only: the datagram is queued before notify returns
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


@pytest.mark.parametrize(
    "state",
    ["READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=charging on EVSE 1\nREADY=1"],
)
def test_fallback_delivers_one_datagram(listener: socket.socket, state: str) -> None:
    assert notify(state) is True
    assert listener.recv(4096) == state.encode()


def test_fallback_utf8_status(listener: socket.socket) -> None:
    assert notify("STATUS=Ladesäule bereit") is True
    assert listener.recv(4096).decode() == "STATUS=Ladesäule bereit"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux-only")
def test_fallback_abstract_namespace(
    monkeypatch: pytest.MonkeyPatch, no_systemd_module: None
) -> None:
    name = f"evse-agent-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5.0)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("READY=1") is True
        assert sock.recv(4096) == b"READY=1"


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_outside_systemd_returns_false(
    monkeypatch: pytest.MonkeyPatch, no_systemd_module: None, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert notify("READY=1") is False


def test_nobody_listening_returns_false(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_systemd_module: None
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert notify("WATCHDOG=1") is False


def test_systemd_extra_is_preferred(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    daemon = types.ModuleType("systemd.daemon")

    def fake_notify(state: str) -> bool:
        sent.append(state)
        return True

    daemon.notify = fake_notify  # type: ignore[attr-defined]
    package = types.ModuleType("systemd")
    package.daemon = daemon  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "systemd", package)
    monkeypatch.setitem(sys.modules, "systemd.daemon", daemon)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)

    assert notify("READY=1") is True
    assert sent == ["READY=1"]


@pytest.mark.parametrize(
    ("usec", "interval_s"),
    [
        pytest.param(None, None, id="unset"),
        pytest.param("", None, id="empty"),
        pytest.param("0", None, id="zero"),
        pytest.param("abc", None, id="junk"),
        pytest.param("-5", None, id="negative"),
        pytest.param("30000000", 15.0, id="WatchdogSec=30"),
        pytest.param("1000000", 0.5, id="WatchdogSec=1"),
        pytest.param("1", 0.0000005, id="one-microsecond"),
    ],
)
def test_watchdog_interval_is_half_the_timeout(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, interval_s: float | None
) -> None:
    if usec is None:
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    else:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    assert watchdog_interval_s() == interval_s
