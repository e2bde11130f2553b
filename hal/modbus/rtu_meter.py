"""ModbusRtuPowerMeter: a PowerMeter read over Modbus RTU on a shared RS-485 line."""

from __future__ import annotations

from hal.faults import MeterError
from hal.modbus.bus import BusError, BusTimeoutError, ModbusRtuBus
from hal.modbus.polled_meter import PolledModbusMeter
from hal.modbus.registers import RegisterMap


class ModbusRtuPowerMeter(PolledModbusMeter):
    """An energy meter polled over Modbus RTU (implements ``hal.meter.PowerMeter``).

    The meter does no serial I/O itself: each block is one request queued on
    ``bus``, the single owner of the line, so several meters (different device
    ids) can share one RS-485 wire. Polling, debounce, frozen-register and
    monotonic-energy handling are those of ``PolledModbusMeter``.

    A poll reads all blocks in one turn on the line and stops at the first
    block without an answer, so a silent meter holds the line for one
    ``timeout_s`` per poll, and every other meter on the line waits at most one
    such turn per poll. The per-request timeout and the serial settings belong to
    the bus (``SerialSettings``).

    Args:
        bus: The line the meter hangs on.
        device_id: Modbus device id, 1..247.
        register_map: The meter model's layout.
        poll_interval_s: Period of the polls, s (REFERENCE 5.7: at most 1 Hz per
            meter on a shared line is the rule of thumb).
        fault_after_s: Debounce before a silent meter is a fault, s.
        frozen_after_s: How long energy may stand still under load, s.
        frozen_min_power_w: Power above which the energy register must move, W.
        frozen_min_energy_wh: Energy the power must account for while the
            register stands still before it counts as frozen, Wh.
        owns_bus: When True, ``stop`` also closes ``bus`` (a line of its own);
            leave False when the bus is shared (its owner closes it).

    Raises:
        ValueError: A device id outside 1..247, or a period or debounce that is
            not > 0.
    """

    def __init__(
        self,
        *,
        bus: ModbusRtuBus,
        device_id: int = 1,
        register_map: RegisterMap,
        poll_interval_s: float = 1.0,
        fault_after_s: float = 5.0,
        frozen_after_s: float = 5.0,
        frozen_min_power_w: float = 50.0,
        frozen_min_energy_wh: float = 10.0,
        owns_bus: bool = False,
    ) -> None:
        if not 1 <= device_id <= 247:
            raise ValueError(f"device_id must be 1..247, got {device_id}")
        super().__init__(
            label=f"{bus.settings.port}#{device_id}",
            register_map=register_map,
            poll_interval_s=poll_interval_s,
            fault_after_s=fault_after_s,
            frozen_after_s=frozen_after_s,
            frozen_min_power_w=frozen_min_power_w,
            frozen_min_energy_wh=frozen_min_energy_wh,
        )
        self._bus = bus
        self._device_id = device_id
        self._owns_bus = owns_bus

    @property
    def bus(self) -> ModbusRtuBus:
        """The line this meter is read through."""
        return self._bus

    @property
    def device_id(self) -> int:
        """The meter's Modbus device id."""
        return self._device_id

    async def stop(self) -> None:
        """Cancel polling; close the bus too when this meter owns it. Idempotent."""
        await super().stop()
        if self._owns_bus:
            await self._bus.close()

    async def _read_blocks(self) -> list[list[int]]:
        """All blocks in one turn on the line (see ``ModbusRtuBus.read_blocks``)."""
        try:
            return await self._bus.read_blocks(
                self._device_id,
                self._map.function_code,
                [(block.address, block.count) for block in self._map.blocks],
            )
        except BusTimeoutError as exc:
            raise MeterError(f"no answer: {exc}") from exc
        except BusError as exc:
            raise MeterError(str(exc)) from exc
