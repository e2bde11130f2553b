"""The local control socket of a running ``--sim`` agent.

``evse-agent sim plug|unplug|swipe TOKEN|pause|resume|fault NAME|clear [--evse N]``
connects to ``<data_dir>/sim.sock`` and sends one JSON line
``{"evse": 1, "command": "swipe", "arg": "TAG"}``; the agent answers one JSON
line ``{"ok": true, "message": "..."}``. The socket file is created with mode
0600: only the agent's user can drive the simulated EV.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SOCKET_NAME = "sim.sock"
MAX_LINE_BYTES = 4096

Apply = Callable[[int, str, str | None], str]
"""(evse id, command, argument) -> answer line; raises ValueError for bad input."""


def socket_path(data_dir: Path) -> Path:
    return data_dir / SOCKET_NAME


class SimControlServer:
    """Serves sim commands on a unix socket until stopped."""

    def __init__(self, path: Path, apply: Apply) -> None:
        self._path = path
        self._apply = apply
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()  # left over from a killed agent
        self._server = await asyncio.start_unix_server(self._handle, path=str(self._path))
        os.chmod(self._path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            writer.write((json.dumps(self._answer(line)) + "\n").encode())
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _answer(self, line: bytes) -> dict[str, Any]:
        if len(line) > MAX_LINE_BYTES:
            return {"ok": False, "message": "request too long"}
        try:
            request = json.loads(line)
            evse = int(request.get("evse", 1))
            command = str(request["command"])
            arg = request.get("arg")
            message = self._apply(evse, command, None if arg is None else str(arg))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return {"ok": False, "message": str(e) or "bad request"}
        log.info("sim: evse %d %s %s -> %s", evse, command, arg or "", message)
        return {"ok": True, "message": message}


async def send_command(path: Path, evse: int, command: str, arg: str | None) -> dict[str, Any]:
    """Client side: send one command and return the answer.

    Raises:
        OSError: no agent listening at ``path``.
    """
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        request = {"evse": evse, "command": command, "arg": arg}
        writer.write((json.dumps(request) + "\n").encode())
        await writer.drain()
        answer: dict[str, Any] = json.loads(await reader.readline())
        return answer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
