"""One side of a cyclic CAN link: a python-can bus, a receive path into the event
loop, a cyclic transmitter and a silence watchdog.

Both the CHAdeMO charger backend (``hal.can.chademo_pilot``) and the simulated
vehicle (``hal.sim.chademo_vehicle``) are built on it, so the simulator drives
the same receive and transmit code as the product.

Receive: where the bus has a file descriptor (SocketCAN) the endpoint watches it
with ``loop.add_reader`` and reads frames in the loop thread; otherwise (the
virtual bus) a ``can.Notifier`` reader thread hands each frame to the loop
through ``hal._threading.call_in_loop``. A receive error pauses reading for
``RX_ERROR_BACKOFF_S`` (a downed interface must not spin the loop or the thread).
Every frame is decoded by ``hal.can.chademo_frames.decode``; rejected frames are
counted per reason, logged at a bounded rate and never reach ``on_frame``.

Transmit: every ``tx_period_s`` the endpoint asks ``frames()`` for what to send
and sends it from an asyncio task (not the kernel's broadcast manager): a stuck
event loop therefore stops the frames, and the peer's own timeout notices it.
``send_now`` sends the current frames at once (an output change should not wait
for the next period).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import can

from hal._threading import call_in_loop
from hal.can.chademo_frames import Frame, FrameError, RejectReason, decode, encode
from hal.faults import HalError

_log = logging.getLogger(__name__)

NOTIFIER_POLL_S = 0.1
"""Reader-thread receive timeout: how long ``stop`` may wait for that thread, s."""

RX_ERROR_BACKOFF_S = 1.0
"""After a receive error, reading pauses this long (a downed interface cannot spin), s."""


class CanLinkError(HalError):
    """The CAN interface could not be opened (missing device, unknown interface)."""


def open_bus(interface: str, channel: str, bitrate: int) -> can.BusABC:
    """Open a python-can bus.

    Args:
        interface: python-can interface name ("socketcan", "virtual", ...).
        channel: Interface channel ("can0", "vcan0", or any name on "virtual").
        bitrate: Bus bitrate, bit/s (CHAdeMO: 500000). SocketCAN ignores it: the
            bitrate is set when the interface is brought up (REFERENCE 6.4).

    Raises:
        CanLinkError: The interface is unknown or the device cannot be opened.
    """
    try:
        return can.Bus(interface=interface, channel=channel, bitrate=bitrate)
    except (can.CanError, OSError, ValueError, ImportError) as exc:
        raise CanLinkError(f"cannot open CAN {interface} channel {channel!r}: {exc}") from exc


class RateLimitedLog:
    """Logs a repeated problem at most once per ``interval_s``, with the count dropped.

    Args:
        logger: Where to log (WARNING).
        interval_s: Shortest time between two log lines, s.
        clock: Monotonic clock, s (tests pass their own).
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._last_s: float | None = None
        self._dropped = 0

    def warning(self, message: str, *args: Any) -> None:
        now = self._clock()
        if self._last_s is not None and now - self._last_s < self._interval_s:
            self._dropped += 1
            return
        suffix = f" ({self._dropped} more since the last report)" if self._dropped else ""
        self._logger.warning(message + suffix, *args)
        self._last_s = now
        self._dropped = 0


class _ThreadListener(can.Listener):
    """Hands frames and reader errors from the notifier's thread to the endpoint's loop.

    After a receive error the reader thread waits ``RX_ERROR_BACKOFF_S`` (or until
    ``stopping`` is set) so a broken interface cannot spin it.
    """

    def __init__(
        self, endpoint: CanEndpoint, loop: asyncio.AbstractEventLoop, stopping: threading.Event
    ) -> None:
        self._endpoint = endpoint
        self._loop = loop
        self._stopping = stopping

    def on_message_received(self, msg: can.Message) -> None:
        call_in_loop(self._loop, self._endpoint._receive, msg)

    def on_error(self, exc: Exception) -> None:
        call_in_loop(self._loop, self._endpoint._receive_error, exc)
        self._stopping.wait(RX_ERROR_BACKOFF_S)

    def stop(self) -> None:
        pass


class CanEndpoint:
    """A cyclic CHAdeMO CAN endpoint (one side of the link).

    Args:
        open_bus: Opens the bus (called by ``start``; ``open_bus`` above, or a test's).
        accept: CAN ids this side decodes (a charger: ``chademo_frames.VEHICLE_IDS``).
        frames: Returns the frames to send now; called every ``tx_period_s`` and
            by ``send_now``, in the loop thread.
        on_frame: Called in the loop thread with each accepted frame.
        on_silence: Called in the loop thread once, when no frame whose id is in
            ``watch`` arrived for ``timeout_s`` after at least one did. Frames
            arriving again are ordinary ``on_frame`` calls (the receiver decides
            what "back" means); the watchdog re-arms on the next watched frame.
        watch: Ids that feed the silence watchdog.
        timeout_s: Silence before ``on_silence``, s.
        tx_period_s: Transmit period, s (CHAdeMO: 0.1).
        name: For logs.
    """

    def __init__(
        self,
        *,
        open_bus: Callable[[], can.BusABC],
        accept: frozenset[int],
        frames: Callable[[], Sequence[Frame]],
        on_frame: Callable[[Frame], None],
        on_silence: Callable[[], None] = lambda: None,
        watch: frozenset[int] = frozenset(),
        timeout_s: float = 1.0,
        tx_period_s: float = 0.1,
        name: str = "can",
    ) -> None:
        if timeout_s <= 0 or tx_period_s <= 0:
            raise ValueError("timeout_s and tx_period_s must be > 0")
        self._open_bus = open_bus
        self._accept = accept
        self._frames = frames
        self._on_frame = on_frame
        self._on_silence = on_silence
        self._watch = watch
        self._timeout_s = timeout_s
        self._tx_period_s = tx_period_s
        self._name = name
        self._bus: can.BusABC | None = None
        self._notifier: can.Notifier | None = None
        self._stopping = threading.Event()
        self._fd: int | None = None
        self._rx_resume: asyncio.TimerHandle | None = None
        self._rx_errors = 0
        self._tx_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_watched_s: float | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._rejected: Counter[RejectReason] = Counter()
        self._accepted = 0
        self._tx_errors = 0
        self._rx_log = RateLimitedLog(_log)
        self._tx_log = RateLimitedLog(_log)

    # --- counters ---------------------------------------------------------------

    @property
    def rejected(self) -> Mapping[RejectReason, int]:
        """Frames rejected since start, per reason (never acted on)."""
        return dict(self._rejected)

    @property
    def accepted(self) -> int:
        """Frames decoded and delivered to ``on_frame`` since start."""
        return self._accepted

    @property
    def rx_errors(self) -> int:
        """Receive errors (interface down, bus errors) since start."""
        return self._rx_errors

    @property
    def tx_errors(self) -> int:
        """Sends the bus refused (queue full, interface down) since start."""
        return self._tx_errors

    @property
    def running(self) -> bool:
        return self._bus is not None

    # --- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Open the bus, start receiving, send the first frames and start the cycle.

        Raises:
            CanLinkError: The bus cannot be opened.
            RuntimeError: Already started.
        """
        if self._bus is not None:
            raise RuntimeError(f"{self._name}: already started")
        loop = asyncio.get_running_loop()
        bus = self._open_bus()
        self._loop = loop
        self._bus = bus
        try:
            try:
                fd = bus.fileno()
            except NotImplementedError:
                fd = -1
            if fd >= 0:  # SocketCAN: frames are read in the loop thread, no thread at all
                self._fd = fd
                loop.add_reader(fd, self._on_readable)
            else:  # the notifier's reader thread hops through call_in_loop
                self._stopping = threading.Event()
                listener = _ThreadListener(self, loop, self._stopping)
                self._notifier = can.Notifier(bus, [listener], timeout=NOTIFIER_POLL_S)
        except BaseException:
            await self.stop()
            raise
        self.send_now()
        self._tx_task = asyncio.create_task(self._tx_cycle(), name=f"{self._name}-tx")

    async def stop(self) -> None:
        """Stop transmitting and receiving and close the bus. Idempotent; bus errors
        are logged, not raised. Send any last frames with ``send_now`` before."""
        bus = self._bus
        if bus is None:
            return
        self._bus = None
        for handle in (self._watchdog, self._rx_resume):
            if handle is not None:
                handle.cancel()
        self._watchdog = self._rx_resume = None
        if self._fd is not None and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._fd = None
        task, self._tx_task = self._tx_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            self._stopping.set()
            # joins the reader thread (at most NOTIFIER_POLL_S): not in the loop thread
            await asyncio.to_thread(notifier.stop, 5 * NOTIFIER_POLL_S)
        try:
            bus.shutdown()
        except (can.CanError, OSError) as exc:
            _log.warning("%s: closing the bus failed: %s", self._name, exc)
        self._last_watched_s = None

    def send_now(self) -> None:
        """Send the current frames at once (loop thread). No-op when not started."""
        bus = self._bus
        if bus is None:
            return
        for frame in self._frames():
            self._send(bus, frame)

    def send_raw(self, msg: can.Message) -> None:
        """Send one message as it is (test equipment: malformed traffic). No-op when
        not started; bus errors are counted like any send."""
        bus = self._bus
        if bus is None:
            return
        try:
            bus.send(msg)
        except (can.CanError, OSError) as exc:
            self._tx_errors += 1
            self._tx_log.warning("%s: cannot send %s: %s", self._name, msg, exc)

    async def _tx_cycle(self) -> None:
        while True:
            await asyncio.sleep(self._tx_period_s)
            self.send_now()

    def _send(self, bus: can.BusABC, frame: Frame) -> None:
        can_id, data = encode(frame)
        try:
            bus.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=False))
        except (can.CanError, OSError) as exc:
            self._tx_errors += 1
            self._tx_log.warning("%s: cannot send 0x%03X: %s", self._name, can_id, exc)

    # --- receive (loop thread) ----------------------------------------------------

    def _receive(self, msg: can.Message) -> None:
        if self._bus is None:
            return  # stopped while the frame was on its way
        try:
            if msg.is_error_frame or msg.is_remote_frame:
                raise FrameError(RejectReason.NOT_DATA, f"0x{msg.arbitration_id:03X}")
            frame = decode(
                msg.arbitration_id,
                bytes(msg.data),
                accept=self._accept,
                is_extended_id=msg.is_extended_id,
            )
        except FrameError as exc:
            self._rejected[exc.reason] += 1
            self._rx_log.warning("%s: ignored frame: %s", self._name, exc)
            return
        self._accepted += 1
        if frame.CAN_ID in self._watch:
            self._feed_watchdog()
        self._on_frame(frame)

    def _receive_error(self, exc: Exception) -> None:
        self._rx_errors += 1
        self._rx_log.warning("%s: receive error: %s", self._name, exc)

    def _on_readable(self) -> None:
        bus = self._bus
        if bus is None:
            return
        try:
            msg = bus.recv(0)
        except (can.CanError, OSError) as exc:
            self._receive_error(exc)
            # stop watching for a while: a downed interface stays readable
            assert self._loop is not None and self._fd is not None
            self._loop.remove_reader(self._fd)
            self._rx_resume = self._loop.call_later(RX_ERROR_BACKOFF_S, self._resume_reading)
            return
        if msg is not None:
            self._receive(msg)

    def _resume_reading(self) -> None:
        self._rx_resume = None
        if self._bus is not None and self._fd is not None and self._loop is not None:
            self._loop.add_reader(self._fd, self._on_readable)

    def _feed_watchdog(self) -> None:
        assert self._loop is not None
        self._last_watched_s = self._loop.time()
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(
                self._last_watched_s + self._timeout_s, self._check_silence
            )

    def _check_silence(self) -> None:
        # One timer per silence check; a frame only moves the deadline (no re-arm per frame).
        assert self._loop is not None and self._last_watched_s is not None
        deadline = self._last_watched_s + self._timeout_s
        if self._loop.time() < deadline:
            self._watchdog = self._loop.call_at(deadline, self._check_silence)
            return
        self._watchdog = None
        self._on_silence()
