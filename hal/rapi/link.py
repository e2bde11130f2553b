"""RapiLink: one serial port speaking OpenEVSE RAPI, driven from the event loop.

The port is opened with pyserial (115200 8N1 by default, REFERENCE 6.1) and read
through ``loop.add_reader`` on its file descriptor, so nothing blocks the loop
and no thread is needed. Every command carries a sequence id (RAPI v3+), so
several may be in flight and each answer finds its request; a request without
an answer in ``timeout_s`` fails with ``RapiTimeoutError``.

Asynchronous notifications (``$AT`` state transitions, ``$AB`` boot, ``$AN``,
``$WF``) go to ``on_async``. Garbage (bad checksum, truncated, oversized or
malformed frames, noise, answers nobody waits for) is counted in ``LinkStats``,
logged at most once per ``garbage_log_interval_s`` with a count, and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import serial

from hal.faults import HalError
from hal.rapi.frames import Frame, FrameParser, Garbage, encode

_log = logging.getLogger(__name__)

_READ_CHUNK = 4096
ASYNC_COMMANDS = frozenset({"AT", "AB", "AN", "WF"})
"""Frames the controller sends on its own (not answers)."""


class RapiLinkError(HalError):
    """The port cannot be opened or failed, or the link was closed."""


class RapiTimeoutError(RapiLinkError):
    """No answer to a command within its timeout."""


@dataclass(frozen=True, slots=True)
class RapiResponse:
    """The controller's answer: ``$OK`` (ok) or ``$NK`` and its parameters."""

    ok: bool
    args: tuple[str, ...] = ()


@dataclass
class LinkStats:
    """Counters since the link was made (read them, do not write them).

    Attributes:
        commands: Commands written.
        answers: Answers matched to a command ($OK and $NK).
        timeouts: Commands that got no answer in time.
        async_frames: Notifications received ($AT, $AB...).
        garbage_events: Bad frames, noise and answers nobody waited for.
        garbage_bytes: Bytes in those.
        opens: Times the port was (re)opened.
    """

    commands: int = 0
    answers: int = 0
    timeouts: int = 0
    async_frames: int = 0
    garbage_events: int = 0
    garbage_bytes: int = 0
    opens: int = 0


class _BoundedLog:
    """A warning at most once per ``interval_s``, saying how many were held back."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._last_s: float | None = None
        self._held = 0

    def warning(self, message: str) -> None:
        now = time.monotonic()
        if self._last_s is not None and now - self._last_s < self._interval_s:
            self._held += 1
            return
        suffix = f" ({self._held} more since the last report)" if self._held else ""
        _log.warning("%s%s", message, suffix)
        self._last_s = now
        self._held = 0


@dataclass
class _Pending:
    command: str
    future: asyncio.Future[RapiResponse]
    timer: asyncio.TimerHandle


class RapiLink:
    """One RAPI serial port (must be used from one event loop).

    Args:
        port: Serial device path (``/dev/ttyUSB0``, a pty in tests).
        baudrate: Line speed, baud.
        timeout_s: Default time a command waits for its answer, s.
        on_async: Called in the loop with every notification frame.
        garbage_log_interval_s: At most one garbage warning per this period, s.
        on_garbage: Called in the loop with (reason, byte count) for each garbage
            event (diagnostics and tests); must not raise.
    """

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 115200,
        timeout_s: float = 0.5,
        on_async: Callable[[Frame], None] | None = None,
        garbage_log_interval_s: float = 10.0,
        on_garbage: Callable[[str, int], None] | None = None,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self.on_async = on_async
        self._on_garbage = on_garbage
        self._serial: Any = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._parser = FrameParser()
        self._pending: dict[int, _Pending] = {}
        self._next_id = 1
        self._closed = False
        self._stats = LinkStats()
        self._garbage_log = _BoundedLog(garbage_log_interval_s)

    @property
    def stats(self) -> LinkStats:
        """Live counters."""
        return self._stats

    @property
    def closed(self) -> bool:
        """True once ``close`` was called (a closed link never reopens)."""
        return self._closed

    def pending_futures(self) -> list[asyncio.Future[RapiResponse]]:
        """The answers still awaited."""
        return [p.future for p in self._pending.values()]

    @property
    def is_open(self) -> bool:
        """True while the port is open."""
        return self._fd is not None

    def open(self) -> None:
        """Open the port (idempotent) and start reading in the running loop.

        Raises:
            RapiLinkError: The port cannot be opened, or the link was closed.
        """
        if self._closed:
            raise RapiLinkError(f"{self.port}: link closed")
        if self._fd is not None:
            return
        loop = asyncio.get_running_loop()
        try:
            port = serial.Serial(self.port, baudrate=self.baudrate, timeout=0, write_timeout=0)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise RapiLinkError(f"{self.port}: cannot open: {exc}") from exc
        fd = port.fileno()
        os.set_blocking(fd, False)
        self._serial, self._fd, self._loop = port, fd, loop
        self._parser = FrameParser()
        loop.add_reader(fd, self._on_readable)
        self._stats.opens += 1

    def send(self, *tokens: str, timeout_s: float | None = None) -> asyncio.Future[RapiResponse]:
        """Write one command now and return the future of its answer.

        The write happens before this returns (one ``write`` on the port), so a
        caller that must act at once (open the relay) need not await. Failures
        of a future nobody awaits are logged, never lost silently.

        Args:
            tokens: Command and parameters, e.g. ``("SC", "16", "V")``.
            timeout_s: Answer timeout, s (default ``self.timeout_s``).

        Returns:
            A future resolving to the ``RapiResponse`` ($NK included), or failing
            with ``RapiTimeoutError`` / ``RapiLinkError``.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[RapiResponse] = loop.create_future()
        future.add_done_callback(_log_unawaited_failure)
        try:
            self.open()
            seq_id = self._take_id()
            frame = encode(tokens, seq_id)
            self._write(frame)
        except (RapiLinkError, ValueError) as exc:
            future.set_exception(exc)
            return future
        timer = loop.call_later(
            self.timeout_s if timeout_s is None else timeout_s, self._expire, seq_id
        )
        self._pending[seq_id] = _Pending(tokens[0], future, timer)
        self._stats.commands += 1
        return future

    async def request(self, *tokens: str, timeout_s: float | None = None) -> RapiResponse:
        """Send a command and wait for its answer (see ``send``).

        Raises:
            RapiTimeoutError: No answer in time.
            RapiLinkError: The port failed or cannot be opened.
        """
        return await self.send(*tokens, timeout_s=timeout_s)

    def close(self) -> None:
        """Close the port for good; pending commands fail. Idempotent."""
        self._closed = True
        self._drop_port("link closed")

    # --- the port -------------------------------------------------------------------

    def _take_id(self) -> int:
        for _ in range(255):
            seq_id = self._next_id
            self._next_id = self._next_id % 255 + 1
            if seq_id not in self._pending:
                return seq_id
        raise RapiLinkError(f"{self.port}: 255 commands in flight")

    def _write(self, frame: bytes) -> None:
        assert self._fd is not None
        try:
            written = os.write(self._fd, frame)
        except OSError as exc:
            self._drop_port(f"write failed: {exc}")
            raise RapiLinkError(f"{self.port}: write failed: {exc}") from exc
        if written != len(frame):  # a full UART buffer: the frame is cut, the link is sick
            self._drop_port("write buffer full")
            raise RapiLinkError(f"{self.port}: only {written} of {len(frame)} bytes written")

    def _on_readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            data = os.read(fd, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # the device went away (USB adapter unplugged)
            self._drop_port(f"read failed: {exc}")
            return
        if not data:
            self._drop_port("end of file")
            return
        for item in self._parser.feed(data):
            if isinstance(item, Garbage):
                self._garbage(item.reason, item.nbytes)
            else:
                self._dispatch(item)

    def _dispatch(self, frame: Frame) -> None:
        if frame.command in ASYNC_COMMANDS:
            self._stats.async_frames += 1
            if self.on_async is not None:
                self.on_async(frame)
            return
        if frame.command not in ("OK", "NK"):
            self._garbage(f"unexpected ${frame.command} frame", len(frame.command))
            return
        pending = self._pending.pop(frame.seq_id, None) if frame.seq_id is not None else None
        if pending is None:
            self._garbage(f"answer with unknown sequence id {frame.seq_id}", 0)
            return
        pending.timer.cancel()
        self._stats.answers += 1
        if not pending.future.done():
            pending.future.set_result(RapiResponse(frame.command == "OK", frame.args))

    def _expire(self, seq_id: int) -> None:
        pending = self._pending.pop(seq_id, None)
        if pending is None:
            return
        self._stats.timeouts += 1
        if not pending.future.done():
            pending.future.set_exception(
                RapiTimeoutError(f"{self.port}: no answer to ${pending.command}")
            )

    def _drop_port(self, why: str) -> None:
        port, fd, loop = self._serial, self._fd, self._loop
        self._serial = self._fd = None
        if fd is not None and loop is not None and not loop.is_closed():
            loop.remove_reader(fd)
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()
            if not self._closed:
                _log.warning(
                    "%s: RAPI port dropped (%s); reopened on the next command", self.port, why
                )
        pending, self._pending = self._pending, {}
        for item in pending.values():
            item.timer.cancel()
            if not item.future.done():
                item.future.set_exception(RapiLinkError(f"{self.port}: {why}"))

    def _garbage(self, reason: str, nbytes: int) -> None:
        self._stats.garbage_events += 1
        self._stats.garbage_bytes += nbytes
        self._garbage_log.warning(
            f"{self.port}: RAPI garbage ignored: {reason} ({nbytes} bytes); "
            f"{self._stats.garbage_events} garbage events so far"
        )
        if self._on_garbage is not None:
            self._on_garbage(reason, nbytes)


def _log_unawaited_failure(future: asyncio.Future[RapiResponse]) -> None:
    """Retrieve a failed command's exception so it is never reported as lost; the
    awaiting caller (if any) still gets it raised."""
    if not future.cancelled():
        exc = future.exception()
        if exc is not None:
            _log.debug("RAPI command failed: %s", exc)
