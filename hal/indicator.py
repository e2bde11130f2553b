"""StatusIndicator role (optional): lamps or LEDs that show the connector status."""

from __future__ import annotations

from typing import Protocol


class StatusIndicator(Protocol):
    """Status lamps of one EVSE.

    Contract:
        * ``show(status, faulted)`` is called by the core in the loop thread on
          every status change, with the connector status as the core names it
          (the OCPP 1.6 spelling: "Available", "Preparing", "Charging",
          "SuspendedEV", "SuspendedEVSE", "Finishing", "Reserved",
          "Unavailable", "Faulted") and whether a fault is active. It returns
          at once (pin writes only) and never raises for an unknown status
          (it shows nothing special for it).
        * ``stop`` turns every lamp off and releases the hardware.
    """

    def show(self, status: str, faulted: bool) -> None: ...

    async def stop(self) -> None: ...
