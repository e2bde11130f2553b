"""ModbusRtuBus: the single owner of one RS-485 line (a serial port) speaking Modbus RTU.

Modbus RTU is master/slave on a shared wire: exactly one request may be on the line
at a time, and the answer (if any) belongs to it. Several meters (different device
ids) on one line therefore share one ``ModbusRtuBus``, which queues their requests
(first come, first served) and runs them one by one (REFERENCE 5.7, 6.4: one owner
per RS-485 bus). ``ModbusRtuLines`` (``hal.modbus.lines``) hands out one bus per port.

Garbage on the line (bad CRC, truncated or oversized frames, answers from the wrong
device id, bytes nobody asked for) is counted in ``LineStats``, logged at a bounded
rate and otherwise ignored: the request it spoiled fails like a timeout and the
next one starts on a clean receive buffer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from hal.faults import HalError
from hal.modbus.lines import ModbusRtuLines as ModbusRtuLines  # where it used to live

_log = logging.getLogger(__name__)

BAUDRATES: tuple[int, ...] = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
"""Baud rates the Modbus meters in REFERENCE 5 support between them."""

PARITIES: tuple[str, ...] = ("N", "E", "O")
"""Parity codes: none, even, odd."""

_CHARS_BEFORE_FRAME = 3.5  # Modbus over serial line V1.02 2.5.1.1: t3.5 silence between frames
_T35_FLOOR_S = 0.00175  # same clause: fixed 1.75 ms above 19200 baud


class BusError(HalError):
    """A request on the line failed; the message is one line and says why."""


class BusTimeoutError(BusError):
    """The addressed device did not answer within the timeout (or only with garbage)."""


@dataclass(frozen=True)
class SerialSettings:
    """How one RS-485 line is driven.

    Attributes:
        port: Serial device (``/dev/ttyUSB0``, ``/dev/ttyAMA0``) or a pyserial URL.
        baudrate: Bits per second (see ``BAUDRATES``).
        parity: "N", "E" or "O".
        stopbits: 1 or 2.
        bytesize: Data bits, 7 or 8 (RTU uses 8).
        timeout_s: Per-request time to wait for the complete answer, s.

    Raises:
        ValueError: A setting outside the values above.
    """

    port: str
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    timeout_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.port:
            raise ValueError("port must not be empty")
        if self.baudrate not in BAUDRATES:
            raise ValueError(f"baudrate must be one of {BAUDRATES}, got {self.baudrate}")
        if self.parity not in PARITIES:
            raise ValueError(f"parity must be N, E or O, got {self.parity!r}")
        if self.stopbits not in (1, 2):
            raise ValueError(f"stopbits must be 1 or 2, got {self.stopbits}")
        if self.bytesize not in (7, 8):
            raise ValueError(f"bytesize must be 7 or 8, got {self.bytesize}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")

    @property
    def char_time_s(self) -> float:
        """Time one character takes on the wire (start + data + parity + stop bits), s."""
        bits = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return bits / self.baudrate

    @property
    def frame_gap_s(self) -> float:
        """Silence required before a frame (t3.5), s."""
        if self.baudrate > 19200:
            return _T35_FLOOR_S
        return _CHARS_BEFORE_FRAME * self.char_time_s


@dataclass
class LineStats:
    """Counters of one line since the bus was made (read them, do not write them).

    Attributes:
        requests: Requests sent.
        answers: Valid answers received (exception responses included).
        timeouts: Requests without a valid answer in time (garbage included).
        garbage_events: Times the line carried bytes that were not the awaited
            answer: bad CRC, truncated or oversized frames, wrong device id,
            unsolicited or late bytes. One spoiled request counts once.
        garbage_bytes: Bytes seen in those events (a lower bound: pymodbus drops
            an oversized burst of more than 264 bytes before we see it).
        reconnects: Times the port was (re)opened.
    """

    requests: int = 0
    answers: int = 0
    timeouts: int = 0
    garbage_events: int = 0
    garbage_bytes: int = 0
    reconnects: int = 0


class _BoundedLog:
    """Logs a warning at most once per ``interval_s``, with how many were held back."""

    def __init__(self, logger: logging.Logger, interval_s: float) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last_s: float | None = None
        self._suppressed = 0

    def warning(self, message: str) -> None:
        now = time.monotonic()
        if self._last_s is not None and now - self._last_s < self._interval_s:
            self._suppressed += 1
            return
        suffix = f" ({self._suppressed} similar suppressed)" if self._suppressed else ""
        self._logger.warning("%s%s", message, suffix)
        self._last_s = now
        self._suppressed = 0


@dataclass
class _Transaction:
    """Receive-side bookkeeping of the request on the line."""

    device_id: int
    answer_len: int  # bytes of the expected normal answer
    last_rx: bytes = b""  # receive buffer as pymodbus last showed it
    discarded_bytes: int = 0  # bytes pymodbus threw away (CRC failure, wrong id)


class ModbusRtuBus:
    """The one owner of a serial RS-485 line: serializes Modbus RTU requests.

    Requests from any number of callers (meters with different device ids) are
    queued on an ``asyncio.Lock`` (FIFO) and sent one at a time with pymodbus'
    ``AsyncModbusSerialClient``; before each, the line is quiet for t3.5. The
    port is opened on the first request and reopened on the next request after
    a link error (port vanished, USB adapter unplugged). A device that does not
    answer only costs its own ``timeout_s``; it never closes the port.

    Everything runs in the event loop (pyserial's fd through ``add_reader``).

    Args:
        settings: The line's serial settings and per-request timeout.
        garbage_log_interval_s: At most one garbage warning per this period, s.
        on_garbage: Called in the loop with the byte count each time garbage is
            counted (diagnostics, tests); must not raise.
    """

    def __init__(
        self,
        settings: SerialSettings,
        *,
        garbage_log_interval_s: float = 60.0,
        on_garbage: Callable[[int], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_garbage = on_garbage
        self._lock = asyncio.Lock()
        self._client: AsyncModbusSerialClient | None = None
        self._closed = False
        self._stats = LineStats()
        self._garbage_log = _BoundedLog(_log, garbage_log_interval_s)
        self._transaction: _Transaction | None = None
        self._idle_rx_len = 0  # unsolicited bytes already counted in the idle buffer
        self._quiet_since_s = 0.0  # monotonic time the line last fell silent

    @property
    def settings(self) -> SerialSettings:
        """The line's settings."""
        return self._settings

    @property
    def stats(self) -> LineStats:
        """Live counters of this line."""
        return self._stats

    async def read_registers(
        self, device_id: int, function_code: int, address: int, count: int
    ) -> list[int]:
        """Read ``count`` registers of one device; waits its turn on the line.

        Args:
            device_id: Modbus device id, 1..247.
            function_code: 3 (holding) or 4 (input registers).
            address: Protocol (0-based) address of the first register.
            count: Registers to read, 1..125.

        Returns:
            The registers, in wire order.

        Raises:
            BusTimeoutError: No valid answer within ``settings.timeout_s``
                (silence or only garbage).
            BusError: The port cannot be opened or failed (it is reopened on the
                next request), an exception response, or an answer of the wrong
                length. ``ValueError`` for arguments out of range.
        """
        [registers] = await self.read_blocks(device_id, function_code, [(address, count)])
        return registers

    async def read_blocks(
        self, device_id: int, function_code: int, blocks: Sequence[tuple[int, int]]
    ) -> list[list[int]]:
        """Read several ranges of one device back to back, in one turn on the line.

        A meter's poll is one turn: other callers wait at most one turn, never
        one turn per block, and the poll's values are close together in time.
        The turn ends at the first failing block (a silent device costs the
        line one ``timeout_s`` per turn, not one per block).

        Args:
            device_id: Modbus device id, 1..247.
            function_code: 3 (holding) or 4 (input registers).
            blocks: ``(address, count)`` ranges, count 1..125 each.

        Returns:
            The registers of each range, in order.

        Raises:
            BusTimeoutError, BusError, ValueError: As ``read_registers``, for the
                first block that fails.
        """
        if not 1 <= device_id <= 247:
            raise ValueError(f"device_id must be 1..247, got {device_id}")
        if function_code not in (3, 4):
            raise ValueError(f"function_code must be 3 or 4, got {function_code}")
        for _, count in blocks:
            if not 1 <= count <= 125:
                raise ValueError(f"count must be 1..125, got {count}")
        async with self._lock:
            if self._closed:
                raise BusError(f"{self._settings.port}: bus closed")
            client = await self._open()
            return [
                await self._request(client, device_id, function_code, address, count)
                for address, count in blocks
            ]

    async def _request(
        self,
        client: AsyncModbusSerialClient,
        device_id: int,
        function_code: int,
        address: int,
        count: int,
    ) -> list[int]:
        """One request and its answer; the caller holds the line."""
        what = f"device {device_id} FC{function_code:02d} {count} registers at {address:#06x}"
        await self._wait_line_quiet()
        self._stats.requests += 1
        self._transaction = _Transaction(device_id, answer_len=5 + 2 * count)
        try:
            if function_code == 3:
                response = await client.read_holding_registers(
                    address, count=count, device_id=device_id
                )
            else:
                response = await client.read_input_registers(
                    address, count=count, device_id=device_id
                )
        except ModbusIOException as exc:  # no (valid) answer in time
            self._end_transaction(answered=False)
            self._stats.timeouts += 1
            raise BusTimeoutError(
                f"{self._settings.port}: no answer from {what} "
                f"within {self._settings.timeout_s:g} s"
            ) from exc
        except (ConnectionException, ModbusException, OSError) as exc:
            self._end_transaction(answered=False)
            self._drop_client()
            raise BusError(_one_line(f"{self._settings.port}: link error: {exc}")) from exc
        except BaseException:  # cancelled: the answer may still come; it is garbage then
            self._end_transaction(answered=False)
            raise
        self._end_transaction(answered=True, exception=response.isError())
        self._stats.answers += 1
        if response.isError():
            code = getattr(response, "exception_code", "?")
            raise BusError(f"{self._settings.port}: exception response {code} to {what}")
        registers = list(response.registers)
        if len(registers) != count:
            raise BusError(f"{self._settings.port}: {len(registers)} registers answered to {what}")
        return registers

    async def close(self) -> None:
        """Close the port; later requests raise ``BusError``. Idempotent."""
        async with self._lock:
            self._closed = True
            self._drop_client()

    # --- the port -------------------------------------------------------------------

    async def _open(self) -> AsyncModbusSerialClient:
        if self._client is not None and self._client.connected:
            return self._client
        self._drop_client()
        s = self._settings
        # retries=0: a retry is simply the next poll. reconnect_delay=0: no background
        # reconnect task; we reopen on the next request.
        client = AsyncModbusSerialClient(
            s.port,
            baudrate=s.baudrate,
            bytesize=s.bytesize,
            parity=s.parity,
            stopbits=s.stopbits,
            timeout=s.timeout_s,
            retries=0,
            reconnect_delay=0,
            name=f"rtu {s.port}",
            trace_packet=self._on_packet,
        )
        self._client = client
        self._stats.reconnects += 1
        try:
            opened = await client.connect()
        except Exception as exc:  # pyserial raises its own SerialException (an OSError)
            self._drop_client()
            raise BusError(_one_line(f"{s.port}: cannot open: {exc}")) from exc
        if not opened:
            self._drop_client()
            raise BusError(f"{s.port}: cannot open")
        self._idle_rx_len = 0
        self._quiet_since_s = time.monotonic()
        return client

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def _wait_line_quiet(self) -> None:
        """Keep t3.5 of silence after the last frame (a protocol gap, not a race fix)."""
        remaining_s = self._quiet_since_s + self._settings.frame_gap_s - time.monotonic()
        if remaining_s > 0:
            await asyncio.sleep(remaining_s)

    # --- receive-side accounting (pymodbus trace hook) --------------------------------

    def _on_packet(self, sending: bool, data: bytes) -> bytes:
        """pymodbus' packet hook: watch what the line carries, pass it on unchanged.

        Outgoing: pymodbus empties its receive buffer right after this call.
        Incoming: ``data`` is pymodbus' whole receive buffer. Its RTU framer
        either leaves the buffer as is (waiting for more) or consumes all of it
        (a frame, good or bad), so a buffer that does not extend the previous one
        means the previous bytes were thrown away: garbage. Bytes arriving with
        no request on the line are hidden from the framer (it would try to match
        them to the last request) and counted as garbage.
        """
        transaction = self._transaction
        if sending:
            self._idle_rx_len = 0
            return data
        if transaction is None:
            if len(data) < self._idle_rx_len:  # pymodbus reset an overfull buffer
                self._idle_rx_len = 0
            fresh = len(data) - self._idle_rx_len
            self._idle_rx_len = len(data)
            if fresh > 0:
                self._garbage(fresh, "bytes with no request on the line")
            return b""
        if transaction.last_rx and not data.startswith(transaction.last_rx):
            transaction.discarded_bytes += len(transaction.last_rx)
        transaction.last_rx = data
        return data

    def _end_transaction(self, *, answered: bool, exception: bool = False) -> None:
        transaction, self._transaction = self._transaction, None
        self._quiet_since_s = time.monotonic()
        if transaction is None:
            return
        garbage = transaction.discarded_bytes
        if answered:
            frame_len = 5 if exception else transaction.answer_len
            garbage += max(0, len(transaction.last_rx) - frame_len)
        else:
            garbage += len(transaction.last_rx)
        if garbage:
            reason = "around the answer" if answered else "instead of an answer"
            self._garbage(garbage, f"from device {transaction.device_id} {reason}")

    def _garbage(self, count: int, where: str) -> None:
        self._stats.garbage_events += 1
        self._stats.garbage_bytes += count
        self._garbage_log.warning(
            f"{self._settings.port}: {count} garbage bytes {where} "
            f"(bad CRC, truncated frame, wrong id or noise); "
            f"{self._stats.garbage_events} garbage events so far"
        )
        if self._on_garbage is not None:
            self._on_garbage(count)


def _one_line(text: str) -> str:
    return " ".join(text.split())
