"""GpioStatusIndicator: one GPIO output per status lamp."""

from __future__ import annotations

from typing import Any

from gpiozero import DigitalOutputDevice

# Which lamp shows which connector status (OCPP 1.6 spelling, as the core names them).
LAMP_OF_STATUS: dict[str, str] = {
    "Available": "available",
    "Preparing": "occupied",
    "SuspendedEV": "occupied",
    "SuspendedEVSE": "occupied",
    "Finishing": "occupied",
    "Reserved": "occupied",
    "Charging": "charging",
    "Faulted": "fault",
}
LAMPS: tuple[str, ...] = ("available", "occupied", "charging", "fault")


class GpioStatusIndicator:
    """Status lamps on GPIO outputs (implements ``hal.indicator.StatusIndicator``).

    Exactly one lamp is lit for a status (``LAMP_OF_STATUS``); "Unavailable" and
    unknown statuses light none; ``faulted`` lights the fault lamp whatever the
    status. A lamp without a pin is simply not shown. All lamps start off.

    Args:
        pin_factory: The gpiozero pin factory.
        available_pin, occupied_pin, charging_pin, fault_pin: Lamp outputs, or None.
        active_high: True when a high output lights a lamp.

    Raises:
        ValueError: No lamp pin at all.
        gpiozero.GPIOZeroError: A pin is invalid or in use.
    """

    def __init__(
        self,
        *,
        pin_factory: Any,
        available_pin: int | str | None = None,
        occupied_pin: int | str | None = None,
        charging_pin: int | str | None = None,
        fault_pin: int | str | None = None,
        active_high: bool = True,
    ) -> None:
        pins = dict(zip(LAMPS, (available_pin, occupied_pin, charging_pin, fault_pin), strict=True))
        if all(pin is None for pin in pins.values()):
            raise ValueError("at least one lamp pin is needed")
        self._lamps: dict[str, Any] = {}
        try:
            for lamp, pin in pins.items():
                if pin is not None:
                    self._lamps[lamp] = DigitalOutputDevice(
                        pin, active_high=active_high, initial_value=False, pin_factory=pin_factory
                    )
        except Exception:
            for device in self._lamps.values():
                device.close()
            raise
        self._closed = False

    @property
    def lit(self) -> frozenset[str]:
        """Names of the lamps lit now."""
        return frozenset(name for name, device in self._lamps.items() if device.value)

    def show(self, status: str, faulted: bool) -> None:
        """Light the lamp of ``status`` (the fault lamp when ``faulted``), the others off."""
        if self._closed:
            return
        wanted = "fault" if faulted else LAMP_OF_STATUS.get(status)
        for name, device in self._lamps.items():
            if name == wanted:
                device.on()
            else:
                device.off()

    async def stop(self) -> None:
        """All lamps off, pins released. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for device in self._lamps.values():
            device.off()
            device.close()
