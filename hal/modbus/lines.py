"""ModbusRtuLines: one ``ModbusRtuBus`` per RS-485 port, shared by every meter on it.

Kept apart from ``hal.modbus.bus`` so that the composition root can own the lines
of a station without importing pymodbus: the bus module is loaded when the first
"modbus-rtu" meter asks for its line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hal.modbus.bus import ModbusRtuBus, SerialSettings


class ModbusRtuLines:
    """One ``ModbusRtuBus`` per serial port, shared by every meter on that line.

    The composition root makes one and hands it to the meter factories (through
    ``hal.registry.BackendContext``); it closes them all at shutdown.
    """

    def __init__(self) -> None:
        self._buses: dict[str, ModbusRtuBus] = {}

    def bus(self, settings: SerialSettings) -> ModbusRtuBus:
        """The bus of ``settings.port``, made on first use.

        Raises:
            ValueError: The port is already used with different settings (two
                meters on one wire must agree on baud rate, parity, framing and
                timeout).
        """
        from hal.modbus.bus import ModbusRtuBus

        existing = self._buses.get(settings.port)
        if existing is None:
            existing = self._buses[settings.port] = ModbusRtuBus(settings)
        elif existing.settings != settings:
            raise ValueError(
                f"{settings.port} is already used with {existing.settings}, "
                f"not {settings}: meters on one line must share its settings"
            )
        return existing

    async def close(self) -> None:
        """Close every bus. Idempotent."""
        for bus in self._buses.values():
            await bus.close()
