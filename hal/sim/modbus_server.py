"""A simulated Modbus energy meter: a pymodbus server speaking a register map.

The server answers the real Modbus protocol, so the real meter driver runs against
it. Values come from the simulated EV (``update``) and are encoded with the same
register map the driver decodes with.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimDataType
from pymodbus.simulator import SimData, SimDevice

from hal.modbus.registers import QUANTITIES, RegisterMap

_log = logging.getLogger(__name__)


class SimModbusMeterServer:
    """A Modbus TCP server that behaves like one meter of ``register_map``'s model.

    Only the registers in the map's read blocks exist (other addresses answer
    "illegal address", like a strict meter), in the map's function code
    (input registers for FC04, holding registers for FC03).

    Args:
        register_map: The model to impersonate.
        host: Interface to bind; loopback by default.
        port: TCP port; 0 picks a free one (read ``port`` after ``start``).
        device_id: Modbus unit id the meter answers to.
    """

    def __init__(
        self,
        register_map: RegisterMap,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        device_id: int = 1,
    ) -> None:
        self._map = register_map
        self._host = host
        self._requested_port = port
        self._device_id = device_id
        self._server: ModbusTcpServer | None = None
        self._port: int | None = None
        self._answering = True
        self._frozen = False
        # Register image: address -> 16-bit value, for every served register.
        self._image: dict[int, int] = {}
        for block in register_map.blocks:
            for address in range(block.address, block.end):
                self._image[address] = 0
        self.requests_served = 0
        """Number of read requests answered (for tests and benchmarks)."""

    @property
    def register_map(self) -> RegisterMap:
        """The map this server impersonates."""
        return self._map

    @property
    def port(self) -> int:
        """The bound TCP port.

        Raises:
            RuntimeError: Before ``start``.
        """
        if self._port is None:
            raise RuntimeError("SimModbusMeterServer not started")
        return self._port

    @property
    def answering(self) -> bool:
        """False while the meter is "lost" (requests get no answer at all)."""
        return self._answering

    @property
    def frozen(self) -> bool:
        """True while the registers keep their values whatever ``update`` says."""
        return self._frozen

    def set_answering(self, answering: bool) -> None:
        """Make the meter answer again, or go silent (requests time out at the client)."""
        self._answering = answering

    def freeze(self, frozen: bool) -> None:
        """Freeze (True) or unfreeze the registers: a frozen meter ignores ``update``."""
        self._frozen = frozen

    def update(self, values: Mapping[str, float]) -> None:
        """Set register values from SI quantities.

        Args:
            values: Quantity name (``hal.modbus.registers.QUANTITIES``) -> SI value
                (Wh, W, A, V, Hz). Quantities the map does not have are ignored.

        Raises:
            KeyError: A name that is not a known quantity at all.
            ValueError: A value that does not fit its register type.
        """
        for name in values:
            if name not in QUANTITIES:
                raise KeyError(f"unknown quantity {name!r} (known: {', '.join(QUANTITIES)})")
        if self._frozen:
            return
        for name, si_value in values.items():
            spec = self._map.quantities.get(name)
            if spec is None:
                continue
            for i, register in enumerate(self._map.encode_quantity(name, si_value)):
                self._image[spec.address + i] = register

    def sim_device(self) -> SimDevice:
        """This meter as a pymodbus device (registers and access hook) for another server.

        The RTU simulator (``hal.sim.rtu_server``) serves several of these on one
        serial line; ``update``, ``freeze`` and ``requests_served`` work the same
        there. ``start``/``port`` are the TCP server and are not needed for that.
        """
        return SimDevice(id=self._device_id, simdata=self._simdata(), action=self._on_access)

    @property
    def device_id(self) -> int:
        """The Modbus unit id this meter answers to."""
        return self._device_id

    def registers(self, address: int, count: int) -> list[int]:
        """The current register image (what a read would return), for tests."""
        return [self._image[a] for a in range(address, address + count)]

    async def start(self) -> None:
        """Bind and start serving in the background.

        Raises:
            RuntimeError: Already started, or the address cannot be bound.
        """
        if self._server is not None:
            raise RuntimeError("SimModbusMeterServer already started")
        device = SimDevice(
            id=self._device_id,
            simdata=self._simdata(),
            action=self._on_access,
        )
        server = ModbusTcpServer(
            device,
            address=(self._host, self._requested_port),
            trace_packet=self._trace_packet,
        )
        await server.serve_forever(background=True)
        self._server = server
        sockets = getattr(server.transport, "sockets", None) or ()
        if not sockets:
            await server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None
            raise RuntimeError("SimModbusMeterServer: no listening socket")
        self._port = int(sockets[0].getsockname()[1])
        _log.debug("sim meter %s listening on %s:%d", self._map.model, self._host, self._port)

    async def stop(self) -> None:
        """Stop serving and drop client connections. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]

    def _simdata(
        self,
    ) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        """Separate blocks per table, so only the map's function code finds the values."""
        ranges = _merged_ranges(sorted(self._image))
        served = [
            SimData(address=start, count=count, values=0, datatype=SimDataType.REGISTERS)
            for start, count in ranges
        ]
        # Every table needs at least one entry; a lone invalid register answers
        # "illegal address" like an absent table would.
        no_regs = [SimData(address=0, count=1, datatype=SimDataType.INVALID)]
        no_bits = [SimData(address=0, count=1, values=False, datatype=SimDataType.BITS)]
        holding, inputs = (served, no_regs) if self._map.function_code == 3 else (no_regs, served)
        return (no_bits, list(no_bits), holding, inputs)

    async def _on_access(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus hook before each access: copy the image into the served block."""
        if set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # a meter's measurements are read-only
        if function_code != self._map.function_code:
            return ExcCodes.ILLEGAL_ADDRESS
        for a in range(address, address + count):
            current_registers[a - start_address] = self._image.get(a, 0)
        self.requests_served += 1
        return None

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """Drop every outgoing frame while the meter is "lost"."""
        if sending and not self._answering:
            return b""
        return data


def _merged_ranges(addresses: list[int]) -> list[tuple[int, int]]:
    """Sorted addresses -> (start, count) runs of consecutive addresses."""
    ranges: list[tuple[int, int]] = []
    for a in addresses:
        if ranges and ranges[-1][0] + ranges[-1][1] == a:
            start, count = ranges[-1]
            ranges[-1] = (start, count + 1)
        else:
            ranges.append((a, 1))
    return ranges
