"""SimChademoVehicle: a CHAdeMO vehicle on a python-can bus (the virtual bus in tests).

It speaks the real frames (``hal.can.chademo_frames``) through the same
``CanEndpoint`` as the charger backend: 0x100/0x101/0x102 every ``tx_period_s``
while plugged, and it reacts to the charger's 0x108/0x109. Its battery charges
while the charger says it is charging and offers current: the vehicle draws
min(its request, the available current) at its target voltage and the state of
charge rises with the energy.

Charging is enabled (0x102.5.0) while the driver wants to charge (``permit``),
the charger offers at least the vehicle's minimum current without stop control,
no fault flag is raised and no stop was requested. Test hooks: ``go_silent`` /
``resume`` (frame loss), ``send_garbage``, ``raise_fault`` / ``clear_faults``,
``unplug`` (a normal stop request, then silence), ``wait_for_charger``. A full
battery (100 %) makes the vehicle request a normal stop by itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from enum import StrEnum

import can

from hal.can.chademo_frames import (
    CHARGER_IDS,
    CHARGER_STATUS_ID,
    VEHICLE_STATUS_ID,
    ChargerCapability,
    ChargerStatus,
    ChargerStatusFlag,
    Frame,
    VehicleChargingTime,
    VehicleFault,
    VehicleLimits,
    VehicleStatus,
    VehicleStatusFlag,
)
from hal.can.endpoint import CanEndpoint, open_bus


class Garbage(StrEnum):
    """Malformed traffic ``send_garbage`` can put on the bus."""

    SHORT = "short"  # 0x102 with 5 bytes
    UNKNOWN_ID = "unknown-id"  # 0x1FF
    EXTENDED_ID = "extended-id"  # 29-bit 0x102
    BAD_SOC = "bad-soc"  # 0x102 claiming 150 % (and charging enabled)


class SimChademoVehicle:
    """A simulated CHAdeMO vehicle.

    Args:
        channel: Bus channel (a unique name per test on the "virtual" interface).
        interface: python-can interface.
        battery_wh: Usable battery capacity, Wh.
        soc_pct: State of charge at start, %.
        target_voltage_v: Charging voltage, V (0x102 target, used for energy).
        max_battery_voltage_v: 0x100 maximum battery voltage, V.
        current_request_a: Current the vehicle asks for, A.
        min_charge_current_a: Below this offered current it does not enable charging, A.
        tx_period_s: Transmit period, s.
        clock: Monotonic clock, s, for energy integration.
    """

    def __init__(
        self,
        *,
        channel: str,
        interface: str = "virtual",
        battery_wh: float = 40_000.0,
        soc_pct: float = 40.0,
        target_voltage_v: int = 400,
        max_battery_voltage_v: int = 410,
        current_request_a: int = 100,
        min_charge_current_a: int = 6,
        tx_period_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if battery_wh <= 0 or not 0.0 <= soc_pct <= 100.0:
            raise ValueError("battery_wh must be > 0 and soc_pct 0..100")
        self._battery_wh = battery_wh
        self._soc_pct = soc_pct
        self._target_voltage_v = target_voltage_v
        self._max_battery_voltage_v = max_battery_voltage_v
        self._current_request_a = current_request_a
        self._min_charge_current_a = min_charge_current_a
        self._clock = clock
        self._interface = interface
        self._channel = channel
        self._endpoint = CanEndpoint(
            open_bus=lambda: open_bus(interface, channel, 500_000),
            accept=CHARGER_IDS,
            frames=self._frames,
            on_frame=self._on_frame,
            on_silence=self._on_charger_silence,
            watch=frozenset({CHARGER_STATUS_ID}),
            tx_period_s=tx_period_s,
            name=f"sim-chademo-ev-{channel}",
        )
        self.plugged = False
        self.silent = False
        self.wants_charge = False
        self.stop_requested = False
        self.faults = VehicleFault.NONE
        self.charger_capability: ChargerCapability | None = None
        self.charger_status: ChargerStatus | None = None
        self.current_a = 0.0
        self.charger_status_count = 0
        self._last_tick_s: float | None = None
        self._waiters: list[tuple[Callable[[SimChademoVehicle], bool], asyncio.Future[None]]] = []

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Open the bus (nothing is sent until ``plug``)."""
        await self._endpoint.start()

    async def stop(self) -> None:
        """Stop sending and close the bus. Idempotent."""
        await self._endpoint.stop()

    # --- driver and test hooks ------------------------------------------------------

    @property
    def interface(self) -> str:
        """The python-can interface the vehicle is on."""
        return self._interface

    @property
    def channel(self) -> str:
        """The bus channel the vehicle is on."""
        return self._channel

    @property
    def soc_pct(self) -> float:
        """State of charge, % (the 0x102 byte is this rounded down)."""
        return self._soc_pct

    @property
    def charging_enabled(self) -> bool:
        """What 0x102.5.0 says now."""
        cap, status = self.charger_capability, self.charger_status
        return (
            self.plugged
            and self.wants_charge
            and not self.stop_requested
            and not self.faults
            and cap is not None
            and status is not None
            and cap.available_current_a >= self._min_charge_current_a
            and ChargerStatusFlag.STOP_CONTROL not in status.status
        )

    def plug(self) -> None:
        """Connect: start sending 0x100/0x101/0x102 (not permitting yet)."""
        self.plugged = True
        self.stop_requested = False
        self._endpoint.send_now()

    def permit(self, wants_charge: bool = True) -> None:
        """The driver starts (or withdraws) charging; enabled once the charger offers."""
        self.wants_charge = wants_charge
        self._endpoint.send_now()

    def request_stop(self) -> None:
        """A normal stop request (0x102.5.4): charging is disabled."""
        self.stop_requested = True
        self._endpoint.send_now()

    def unplug(self) -> None:
        """End the session properly: send a normal stop request, then go quiet."""
        self.request_stop()
        self.plugged = False
        self.wants_charge = False

    def go_silent(self) -> None:
        """Stop sending (the link breaks) while staying plugged."""
        self.silent = True

    def resume(self) -> None:
        """Send again after ``go_silent``."""
        self.silent = False
        self._endpoint.send_now()

    def raise_fault(self, fault: VehicleFault) -> None:
        """Set fault flags in 0x102 byte 4 (charging is disabled while any is set)."""
        self.faults |= fault
        self._endpoint.send_now()

    def clear_faults(self) -> None:
        self.faults = VehicleFault.NONE
        self._endpoint.send_now()

    def send_garbage(self, kind: Garbage) -> None:
        """Put one malformed frame on the bus (after ``start``)."""
        data = bytearray(
            VehicleStatus(
                1, 400, 100, VehicleFault.NONE, VehicleStatusFlag.CHARGING_ENABLED, 50
            ).to_bytes()
        )
        can_id = VEHICLE_STATUS_ID
        if kind == Garbage.SHORT:
            data = data[:5]
        elif kind == Garbage.UNKNOWN_ID:
            can_id = 0x1FF
        elif kind == Garbage.BAD_SOC:
            data[6] = 150
        self._endpoint.send_raw(
            can.Message(
                arbitration_id=can_id,
                data=bytes(data),
                is_extended_id=kind == Garbage.EXTENDED_ID,
            )
        )

    async def wait_for_charger(
        self, predicate: Callable[[SimChademoVehicle], bool], timeout_s: float = 10.0
    ) -> None:
        """Return once ``predicate(self)`` holds after a charger frame (or already does).

        Raises:
            TimeoutError: Not within ``timeout_s`` (a guard, not a delay).
        """
        if predicate(self):
            return
        waiter = asyncio.get_running_loop().create_future()
        entry = (predicate, waiter)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(waiter, timeout_s)
        finally:
            self._waiters.remove(entry)

    # --- endpoint callbacks (loop thread) -------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        was_enabled = self.charging_enabled
        if isinstance(frame, ChargerCapability):
            self.charger_capability = frame
        elif isinstance(frame, ChargerStatus):
            self.charger_status = frame
            self.charger_status_count += 1
        if self.charging_enabled != was_enabled:
            self._endpoint.send_now()
        for predicate, waiter in self._waiters:
            if not waiter.done() and predicate(self):
                waiter.set_result(None)

    def _on_charger_silence(self) -> None:
        # The charger went quiet: a real vehicle opens its contactor and stops.
        self.charger_capability = None
        self.charger_status = None
        self._endpoint.send_now()

    def _tick(self) -> None:
        now = self._clock()
        dt_s = 0.0 if self._last_tick_s is None else now - self._last_tick_s
        self._last_tick_s = now
        cap, status = self.charger_capability, self.charger_status
        delivering = (
            self.charging_enabled
            and cap is not None
            and status is not None
            and ChargerStatusFlag.CHARGING in status.status
        )
        self.current_a = (
            float(min(self._current_request_a, cap.available_current_a))
            if delivering and cap is not None
            else 0.0
        )
        energy_wh = self.current_a * self._target_voltage_v * dt_s / 3600.0
        self._soc_pct = min(100.0, self._soc_pct + 100.0 * energy_wh / self._battery_wh)
        if self._soc_pct >= 100.0 and self.plugged:
            self.stop_requested = True  # full: a normal stop request ends the charge

    def _frames(self) -> Sequence[Frame]:
        self._tick()
        if self.silent or not (self.plugged or self.stop_requested):
            return ()
        flags = VehicleStatusFlag.NONE
        if self.charging_enabled:
            flags |= VehicleStatusFlag.CHARGING_ENABLED
        if self.current_a == 0.0:
            flags |= VehicleStatusFlag.CONTACTOR_OPEN
        if self.stop_requested:
            flags |= VehicleStatusFlag.NORMAL_STOP_REQUEST
        frames: tuple[Frame, ...] = (
            VehicleLimits(
                min_charge_current_a=self._min_charge_current_a,
                min_battery_voltage_v=250,
                max_battery_voltage_v=self._max_battery_voltage_v,
            ),
            VehicleChargingTime(
                max_charging_time_min=90,
                estimated_charging_time_min=60,
                rated_capacity_wh=int(round(self._battery_wh, -2)),
            ),
            VehicleStatus(
                protocol_number=1,
                target_voltage_v=self._target_voltage_v,
                current_request_a=self._current_request_a,
                faults=self.faults,
                status=flags,
                soc_pct=int(self._soc_pct),
            ),
        )
        if not self.plugged:
            # unplug(): the goodbye frame went out once; quiet from now on
            self.stop_requested = False
        return frames
