"""systemd notification (Type=notify, WatchdogSec=) with a built-in fallback.

Uses ``systemd.daemon.notify`` when the optional ``systemd`` extra is installed,
otherwise writes the datagram to ``$NOTIFY_SOCKET`` itself (the protocol is one
datagram of ``KEY=VALUE`` lines). Outside systemd both are no-ops.
"""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``, ``"WATCHDOG=1"``); True when delivered."""
    try:
        from systemd import daemon  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return _notify_fallback(state)
    return bool(daemon.notify(state))


def _notify_fallback(state: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall(state.encode())
        except OSError:
            return False
    return True


def watchdog_interval_s() -> float | None:
    """Half the watchdog timeout systemd asked for (``$WATCHDOG_USEC``), or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    return int(usec) / 2_000_000
