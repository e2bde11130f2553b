"""ModbusTcpPowerMeter: a PowerMeter read over Modbus TCP with pymodbus."""

from __future__ import annotations

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from hal.faults import MeterError
from hal.modbus.polled_meter import PolledModbusMeter, one_line
from hal.modbus.registers import RegisterMap


class ModbusTcpPowerMeter(PolledModbusMeter):
    """An energy meter polled over Modbus TCP (implements ``hal.meter.PowerMeter``).

    Polling, debounce, frozen-register and monotonic-energy handling are those of
    ``PolledModbusMeter``. Over TCP, any failed read (no answer, exception response,
    connection error, data that does not decode) closes the connection; the next
    poll reconnects.

    Args:
        host: Meter (or gateway) address.
        port: TCP port.
        device_id: Modbus unit id.
        register_map: The meter model's layout.
        poll_interval_s: Period of the polls, s.
        timeout_s: Time to wait for a connection or an answer, s (no retries).
        fault_after_s: Debounce before a silent meter is a fault, s.
        frozen_after_s: How long energy may stand still under load, s.
        frozen_min_power_w: Power above which the energy register must move, W.
        frozen_min_energy_wh: Energy the power must account for while the
            register stands still before it counts as frozen, Wh (about the
            register's resolution; 0 for an exact simulator).

    Raises:
        ValueError: A period, timeout or debounce that is not > 0.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int = 502,
        device_id: int = 1,
        register_map: RegisterMap,
        poll_interval_s: float = 1.0,
        timeout_s: float = 1.0,
        fault_after_s: float = 5.0,
        frozen_after_s: float = 5.0,
        frozen_min_power_w: float = 50.0,
        frozen_min_energy_wh: float = 10.0,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(
                "poll_interval_s, timeout_s, fault_after_s, frozen_after_s must be > 0"
            )
        super().__init__(
            label=f"{host}:{port}",
            register_map=register_map,
            poll_interval_s=poll_interval_s,
            fault_after_s=fault_after_s,
            frozen_after_s=frozen_after_s,
            frozen_min_power_w=frozen_min_power_w,
            frozen_min_energy_wh=frozen_min_energy_wh,
        )
        self._host = host
        self._port = port
        self._device_id = device_id
        self._timeout_s = timeout_s
        self._client: AsyncModbusTcpClient | None = None

    async def _read_blocks(self) -> list[list[int]]:
        """Read every block over the (re)opened connection; close it on any failure."""
        try:
            client = await self._connected_client()
            blocks: list[list[int]] = []
            for block in self._map.blocks:
                if self._map.function_code == 3:
                    response = await client.read_holding_registers(
                        block.address, count=block.count, device_id=self._device_id
                    )
                else:
                    response = await client.read_input_registers(
                        block.address, count=block.count, device_id=self._device_id
                    )
                if response.isError():
                    raise MeterError(
                        f"exception response {getattr(response, 'exception_code', '?')} "
                        f"reading {block.count} registers at {block.address:#06x}"
                    )
                blocks.append(list(response.registers))
            return blocks
        except MeterError:
            self._close_link()
            raise
        except (ModbusException, OSError) as exc:
            self._close_link()
            raise MeterError(one_line(f"no answer: {exc}")) from exc

    def _on_bad_data(self) -> None:
        self._close_link()

    def _close_link(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def _connected_client(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self._close_link()
        # reconnect_delay=0: no background reconnect task; we reconnect per poll.
        client = AsyncModbusTcpClient(
            self._host,
            port=self._port,
            timeout=self._timeout_s,
            retries=0,
            reconnect_delay=0,
        )
        self._client = client
        if not await client.connect():
            self._close_link()
            raise MeterError(f"cannot connect to {self._host}:{self._port}")
        return client
