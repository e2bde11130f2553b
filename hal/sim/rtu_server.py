"""A simulated RS-485 line with Modbus RTU meters on it, over pseudo-terminals.

``SimRs485Line`` is the wire: two pty pairs joined by a relay in the event loop.
The driver opens ``driver_port`` (a real tty path, like ``/dev/ttyUSB0``), the
simulated devices sit on ``device_port``; the relay copies bytes both ways and can
put noise on the wire. ``SimModbusRtuServer`` is a pymodbus RTU server on the
devices' end serving one ``SimModbusMeterServer`` register image per device id, so
the real ``ModbusRtuBus`` and ``ModbusRtuPowerMeter`` run against real RTU frames
(CRC, framing, device ids) in tests and in the demo.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import tty
from collections.abc import Callable, Mapping

from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType as SimDataType
from pymodbus.simulator import SimData, SimDevice

from hal.modbus.registers import RegisterMap
from hal.sim.modbus_server import SimModbusMeterServer

_log = logging.getLogger(__name__)

_READ_CHUNK = 4096


class SimRs485Line:
    """A serial line between one driver and the devices, made of two pty pairs.

    Bytes written by the driver on ``driver_port`` come out on ``device_port``
    and the other way round. ``inject`` puts bytes on the wire towards the
    driver, as noise or a rogue device would.
    """

    def __init__(self) -> None:
        self._fds: list[int] = []
        self._driver_master: int | None = None
        self._device_master: int | None = None
        self._driver_port = ""
        self._device_port = ""
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def driver_port(self) -> str:
        """The tty path the driver (the Modbus master) opens.

        Raises:
            RuntimeError: Before ``open``.
        """
        if not self._driver_port:
            raise RuntimeError("SimRs485Line not open")
        return self._driver_port

    @property
    def device_port(self) -> str:
        """The tty path the simulated devices open.

        Raises:
            RuntimeError: Before ``open``.
        """
        if not self._device_port:
            raise RuntimeError("SimRs485Line not open")
        return self._device_port

    def open(self) -> None:
        """Create the pty pairs and start relaying (in the running event loop).

        Raises:
            RuntimeError: Already open, or no running loop.
            OSError: No pseudo-terminal available.
        """
        if self._loop is not None:
            raise RuntimeError("SimRs485Line already open")
        loop = asyncio.get_running_loop()
        try:
            self._driver_master, self._driver_port = self._pty_pair()
            self._device_master, self._device_port = self._pty_pair()
            loop.add_reader(self._driver_master, self._relay, self._driver_master)
            loop.add_reader(self._device_master, self._relay, self._device_master)
        except BaseException:
            self._close_fds(loop)
            raise
        self._loop = loop

    def inject(self, data: bytes) -> None:
        """Put ``data`` on the wire now, towards the driver.

        Raises:
            RuntimeError: The line is not open.
        """
        if self._driver_master is None:
            raise RuntimeError("SimRs485Line not open")
        _write_all(self._driver_master, data)

    def close(self) -> None:
        """Stop relaying and close the ptys. Idempotent."""
        loop, self._loop = self._loop, None
        if loop is not None:
            self._close_fds(loop)

    def _pty_pair(self) -> tuple[int, str]:
        master, slave = os.openpty()
        self._fds += [master, slave]
        tty.setraw(slave)  # no echo, no line discipline: bytes pass unchanged
        os.set_blocking(master, False)
        # The slave stays open here too, so the master never sees a hang-up while
        # the driver or server reopens the port.
        return master, os.ttyname(slave)

    def _relay(self, source: int) -> None:
        target = self._device_master if source == self._driver_master else self._driver_master
        try:
            data = os.read(source, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the far end went away; nothing to relay
            return
        if data and target is not None:
            _write_all(target, data)

    def _close_fds(self, loop: asyncio.AbstractEventLoop) -> None:
        for fd in (self._driver_master, self._device_master):
            if fd is not None:
                loop.remove_reader(fd)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []
        self._driver_master = self._device_master = None


def _write_all(fd: int, data: bytes) -> None:
    """Write to a non-blocking pty master; frames are far below the pty buffer."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            _log.warning("sim rs485: pty buffer full, %d bytes lost", len(view))
            return
        view = view[written:]


class SimModbusRtuServer:
    """Modbus RTU meters on one simulated RS-485 line (pymodbus serial server).

    Each device id serves its model's register map exactly like
    ``SimModbusMeterServer`` over TCP (same register image, function code and
    "illegal address" for registers outside the map's blocks). A request for an
    id nobody has gets no answer, as on a real line.

    Fault injection: ``meter(id).set_answering(False)`` silences one device,
    ``meter(id).freeze(True)`` freezes its registers, ``mangle_next_answer``
    corrupts the next answer on the wire (bad CRC, truncation, wrong id, noise),
    ``inject`` writes raw bytes to the driver at any time.

    Args:
        devices: Device id (1..247) -> the register map it serves.
        baudrate: Line speed the server opens its port with (a pty ignores it).
        parity: "N", "E" or "O".
        stopbits: 1 or 2.
        bytesize: 7 or 8.

    Raises:
        ValueError: No devices, or a device id outside 1..247.
    """

    def __init__(
        self,
        devices: Mapping[int, RegisterMap],
        *,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
    ) -> None:
        if not devices:
            raise ValueError("at least one device is needed")
        for device_id in devices:
            if not 1 <= device_id <= 247:
                raise ValueError(f"device id must be 1..247, got {device_id}")
        self._meters = {
            device_id: SimModbusMeterServer(register_map, device_id=device_id)
            for device_id, register_map in devices.items()
        }
        self._serial = {
            "baudrate": baudrate,
            "parity": parity,
            "stopbits": stopbits,
            "bytesize": bytesize,
        }
        self._line = SimRs485Line()
        self._server: ModbusSerialServer | None = None
        self._mangles: collections.deque[Callable[[bytes], bytes]] = collections.deque()
        self.answers_sent = 0
        """Answer frames put on the wire (mangled ones included)."""
        self.wire_log: collections.deque[tuple[str, int]] = collections.deque(maxlen=1000)
        """The line as the devices see it, oldest first: ("request", device id) for
        each request decoded, ("answer", device id) for each answer put on the
        wire. One request at a time means strict request/answer pairs."""

    @property
    def port(self) -> str:
        """The tty path a driver opens (``SerialSettings.port``).

        Raises:
            RuntimeError: Before ``start``.
        """
        return self._line.driver_port

    @property
    def device_ids(self) -> list[int]:
        """Ids of the simulated devices, sorted."""
        return sorted(self._meters)

    def meter(self, device_id: int) -> SimModbusMeterServer:
        """The register image and controls of one device (``update``, ``freeze``...).

        Raises:
            KeyError: No such device on this line.
        """
        return self._meters[device_id]

    def mangle_next_answer(self, mangle: Callable[[bytes], bytes]) -> None:
        """Pass the next answer frame through ``mangle`` before it goes on the wire.

        Calls queue up: each applies to one answer, in order. ``mangle`` gets the
        whole RTU frame (id, PDU, CRC) and returns the bytes to send.
        """
        self._mangles.append(mangle)

    def inject(self, data: bytes) -> None:
        """Write raw bytes on the wire towards the driver now (line noise).

        Raises:
            RuntimeError: Before ``start``.
        """
        self._line.inject(data)

    async def start(self) -> None:
        """Open the line and start answering in the background.

        Raises:
            RuntimeError: Already started, or the server cannot open its port.
        """
        if self._server is not None:
            raise RuntimeError("SimModbusRtuServer already started")
        self._line.open()
        try:
            devices = [m.sim_device() for m in self._meters.values()]
            devices.append(_nobody())
            server = ModbusSerialServer(
                devices,
                port=self._line.device_port,
                trace_packet=self._trace_packet,
                trace_pdu=self._trace_pdu,
                reconnect_delay=0,
                **self._serial,  # type: ignore[arg-type]
            )
            await server.serve_forever(background=True)
        except BaseException:
            self._line.close()
            raise
        self._server = server
        _log.debug("sim rtu line %s: devices %s", self._line.driver_port, self.device_ids)

    async def stop(self) -> None:
        """Stop answering and close the line. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
        self._line.close()

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """pymodbus hook on every frame: drop answers of silent or unknown devices."""
        if not sending or not data:
            return data
        meter = self._meters.get(data[0])
        if meter is None or not meter.answering:
            return b""
        self.wire_log.append(("answer", data[0]))
        if self._mangles:
            data = self._mangles.popleft()(data)
        self.answers_sent += 1
        return data

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        """pymodbus hook on every decoded PDU: log the requests."""
        if not sending:
            self.wire_log.append(("request", pdu.dev_id))
        return pdu


def _nobody() -> SimDevice:
    """Device id 0 is pymodbus' catch-all: it answers ids nobody has with an
    exception response, which ``_trace_packet`` then drops (silence, like a real
    line). Without it pymodbus logs a KeyError traceback for each such request."""
    no_bits = [SimData(address=0, count=1, values=False, datatype=SimDataType.BITS)]
    no_regs = [SimData(address=0, count=1, datatype=SimDataType.INVALID)]
    return SimDevice(id=0, simdata=(no_bits, list(no_bits), no_regs, list(no_regs)))
