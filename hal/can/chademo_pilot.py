"""ChademoCanPilot: the CHAdeMO vehicle link seen through the ControlPilot role.

A CHAdeMO (DC) connector has no IEC 61851 PWM pilot; the vehicle talks CAN
(REFERENCE 6.2). This backend lets the version-neutral core drive it like a CP
line, so sessions, authorization and faults work unchanged:

    vehicle -> core (``on_state``)              core -> vehicle (``set_output``)
    no 0x102 / vehicle gone      -> A           PWM duty -> 0x108 available current
    0x102 not permitting         -> B           steady   -> 0 A, not charging
    0x102 charging enabled (and  -> C           error    -> 0 A, charger stop control
      in Park, no fault, no stop request)
    frames lost while in session -> B + EVCommunicationError fault

A lost link is B, not E: E/F are CP faults (status Faulted), while OCPP 1.6 reports
EVCommunicationError with SuspendedEVSE during a session (REFERENCE 2.3); the fault
alone stops the energy. Vehicle fault flags (0x102 bytes 4/5) become
``FaultReport``s. The 0x102 state of charge is offered as ``soc_pct``.

Loss of the vehicle's 0x102 for ``timeout_s`` is a communication fault unless
the vehicle said goodbye first: its last 0x102 asked for a normal stop with
charging disabled, after which silence is the end of the session (state A).
While the link is lost or the vehicle reports a fault, the backend makes its
own output safe at once (0 A, stop control) whatever the core commands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import can

from hal.can.chademo_frames import (
    VEHICLE_IDS,
    VEHICLE_STATUS_ID,
    ChargerCapability,
    ChargerStatus,
    ChargerStatusFlag,
    Frame,
    RejectReason,
    VehicleChargingTime,
    VehicleFault,
    VehicleLimits,
    VehicleStatus,
    VehicleStatusFlag,
)
from hal.can.duty import whole_amperes_for_duty
from hal.can.endpoint import CanEndpoint
from hal.faults import FaultLatch
from hal.pilot import PilotMode, PilotOutput
from hal.types import CpState, FaultCode, FaultReport

_log = logging.getLogger(__name__)

CHARGER_PROTOCOL_NUMBER = 1
"""CHAdeMO 1.x: no dynamic control frames (0x110/0x118) are sent."""

VEHICLE_FAULT_CODES: Mapping[VehicleFault, FaultCode] = {
    VehicleFault.BATTERY_OVER_VOLTAGE: FaultCode.OVER_VOLTAGE,
    VehicleFault.BATTERY_UNDER_VOLTAGE: FaultCode.UNDER_VOLTAGE,
    VehicleFault.BATTERY_CURRENT_DEVIATION: FaultCode.OTHER_ERROR,
    VehicleFault.HIGH_BATTERY_TEMPERATURE: FaultCode.HIGH_TEMPERATURE,
    VehicleFault.BATTERY_VOLTAGE_DEVIATION: FaultCode.OTHER_ERROR,
}
"""0x102 byte 4 bits -> fault codes; 0x102.5.2 (charging-system fault) is OtherError."""


def cp_state_for(status: VehicleStatus | None) -> CpState:
    """The CP state the core should see for the vehicle's last 0x102 (None: no vehicle).

    C only while the vehicle permits charging, its shift lever is in Park, it
    reports no fault and asks for no stop; any connected vehicle otherwise is B.
    """
    if status is None:
        return CpState.A
    blocked = (
        VehicleStatusFlag.NOT_IN_PARK
        | VehicleStatusFlag.CHARGING_SYSTEM_FAULT
        | VehicleStatusFlag.NORMAL_STOP_REQUEST
    )
    if (
        VehicleStatusFlag.CHARGING_ENABLED in status.status
        and not status.status & blocked
        and not status.faults
    ):
        return CpState.C
    return CpState.B


def vehicle_faults(status: VehicleStatus) -> dict[FaultCode, str]:
    """Active fault codes of a 0x102 with the flag names behind each (pure)."""
    names: dict[FaultCode, list[str]] = {}
    for flag, code in VEHICLE_FAULT_CODES.items():
        if flag in status.faults:
            names.setdefault(code, []).append(str(flag.name).lower())
    if VehicleStatusFlag.CHARGING_SYSTEM_FAULT in status.status:
        names.setdefault(FaultCode.OTHER_ERROR, []).append("charging_system_fault")
    return {code: "CHAdeMO vehicle: " + ", ".join(flags) for code, flags in names.items()}


def _said_goodbye(status: VehicleStatus | None) -> bool:
    return status is not None and (
        VehicleStatusFlag.NORMAL_STOP_REQUEST in status.status
        and VehicleStatusFlag.CHARGING_ENABLED not in status.status
    )


class ChademoCanPilot:
    """A CHAdeMO charger's vehicle link on python-can (implements ``hal.pilot.ControlPilot``).

    Timing: 0x108/0x109 go out every ``tx_period_s`` and at once on every
    ``set_output`` and every change of the vehicle's state or faults. Callbacks
    run in the event loop thread. Loss of 0x102 for ``timeout_s`` raises
    ``EVCommunicationError`` (then state B) within about one loop iteration of
    the deadline; the next valid 0x102 clears it.

    Args:
        open_bus: Opens the python-can bus (``hal.can.endpoint.open_bus`` with the
            configured interface/channel/bitrate).
        max_voltage_v: Charger's maximum output voltage, V (0x108 available voltage).
        max_current_a: Charger's maximum output current, A (caps 0x108, <= 255).
        timeout_s: Vehicle silence before the communication fault, s.
        tx_period_s: Transmit period, s (CHAdeMO: 0.1).
        name: For logs and task names.

    Raises:
        ValueError: A rating outside what the frames can carry.
    """

    def __init__(
        self,
        *,
        open_bus: Callable[[], can.BusABC],
        max_voltage_v: int = 500,
        max_current_a: int = 125,
        timeout_s: float = 1.0,
        tx_period_s: float = 0.1,
        name: str = "chademo",
    ) -> None:
        if not 0 < max_voltage_v <= 0xFFFF:
            raise ValueError(f"max_voltage_v must be 1..65535, got {max_voltage_v}")
        if not 0 < max_current_a <= 0xFF:
            raise ValueError(f"max_current_a must be 1..255, got {max_current_a}")
        self._max_voltage_v = max_voltage_v
        self._max_current_a = max_current_a
        self._timeout_s = timeout_s
        self._endpoint = CanEndpoint(
            open_bus=open_bus,
            accept=VEHICLE_IDS,
            frames=self._charger_frames,
            on_frame=self._on_frame,
            on_silence=self._on_silence,
            watch=frozenset({VEHICLE_STATUS_ID}),
            timeout_s=timeout_s,
            tx_period_s=tx_period_s,
            name=name,
        )
        self._output = PilotOutput.steady()
        self._state = CpState.A
        self._limits: VehicleLimits | None = None
        self._times: VehicleChargingTime | None = None
        self._status: VehicleStatus | None = None
        self._present_voltage_v = 0
        self._present_current_a = 0
        self._on_state: Callable[[CpState], None] | None = None
        self._link_fault: FaultLatch | None = None
        self._vehicle_latches: dict[FaultCode, FaultLatch] = {}

    # --- ControlPilot ---------------------------------------------------------------

    @property
    def state(self) -> CpState:
        """The CP state last reported (A before any vehicle, E while the link is lost)."""
        return self._state

    @property
    def output(self) -> PilotOutput:
        return self._output

    @property
    def soc_pct(self) -> float | None:
        """Vehicle state of charge, % (0x102 byte 6 scaled by the 0x100 reference),
        or None without a vehicle or while the link is lost."""
        status = self._status
        if status is None or self.link_lost:
            return None
        reference = self._limits.charged_rate_reference_pct if self._limits else 100
        return status.soc_pct * 100.0 / reference if reference > 0 else float(status.soc_pct)

    @property
    def link_lost(self) -> bool:
        """True while the EVCommunicationError fault is raised."""
        return self._link_fault is not None and self._link_fault.active

    @property
    def vehicle_status(self) -> VehicleStatus | None:
        """The last valid 0x102, or None without a vehicle."""
        return self._status

    @property
    def rejected(self) -> Mapping[RejectReason, int]:
        """Received frames ignored since start, per reason."""
        return self._endpoint.rejected

    @property
    def rx_errors(self) -> int:
        """Receive errors of the CAN interface since start."""
        return self._endpoint.rx_errors

    async def probe(self) -> tuple[bool, str]:
        """``hal.probe.Probeable``: CAN traffic seen since start (no vehicle is not a
        failure: the link is idle until one is plugged in); receive errors fail."""
        rejected = sum(self._endpoint.rejected.values())
        detail = (
            f"CAN up, {self._endpoint.accepted} vehicle frames, {rejected} rejected, "
            f"{self.rx_errors} receive errors"
        )
        if self._status is None:
            detail += ", no vehicle"
        elif self.soc_pct is not None:
            detail += f", vehicle SoC {self.soc_pct:.0f} %"
        return self.rx_errors == 0, detail

    def set_output(self, output: PilotOutput) -> None:
        """Apply the core's command to the next 0x108/0x109 and send them at once.

        Raises:
            ValueError: A PWM duty outside 0..100 %.
        """
        if not 0.0 <= output.duty_pct <= 100.0:
            raise ValueError(f"duty_pct must be 0..100, got {output.duty_pct}")
        self._output = output
        self._endpoint.send_now()

    def report_output(self, voltage_v: float, current_a: float) -> None:
        """The DC power stage's present output for 0x109 (V, A); 0/0 until called."""
        self._present_voltage_v = max(0, min(0xFFFF, round(voltage_v)))
        self._present_current_a = max(0, min(0xFF, round(current_a)))

    async def start(
        self,
        on_state: Callable[[CpState], None],
        on_fault: Callable[[FaultReport], None],
    ) -> None:
        """Open the bus, start the 100 ms cycle, report the initial state (A).

        Raises:
            hal.can.endpoint.CanLinkError: The CAN interface cannot be opened.
            RuntimeError: Already started.
        """
        if self._on_state is not None:
            raise RuntimeError("ChademoCanPilot already started")
        self._link_fault = FaultLatch(FaultCode.EV_COMMUNICATION_ERROR, on_fault)
        self._vehicle_latches = {
            code: FaultLatch(code, on_fault) for code in set(VEHICLE_FAULT_CODES.values())
        }
        await self._endpoint.start()
        self._on_state = on_state
        on_state(self._state)

    async def stop(self) -> None:
        """Send stop control with 0 A (the CHAdeMO form of state F), close the bus.
        Idempotent."""
        self._output = PilotOutput.error()
        self._endpoint.send_now()
        self._on_state = None
        await self._endpoint.stop()

    # --- vehicle side (loop thread) -----------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        match frame:
            case VehicleLimits():
                self._limits = frame
            case VehicleChargingTime():
                self._times = frame
            case VehicleStatus():
                self._on_status(frame)

    def _on_status(self, status: VehicleStatus) -> None:
        previous = self._status
        self._status = status
        assert self._link_fault is not None
        self._link_fault.clear("CHAdeMO vehicle frames back")
        active = vehicle_faults(status)
        for code, latch in self._vehicle_latches.items():
            if code in active:
                latch.raise_(active[code])
            else:
                latch.clear()
        self._report(cp_state_for(status))
        if previous is None or (previous.status, previous.faults) != (
            status.status,
            status.faults,
        ):
            self._endpoint.send_now()

    def _on_silence(self) -> None:
        if _said_goodbye(self._status):
            _log.info("CHAdeMO vehicle ended the session and went quiet")
            self._forget_vehicle()
            self._report(CpState.A)
            return
        assert self._link_fault is not None
        # Safe output first (the frames say stop), then the fault, then the state.
        self._link_fault.raise_(f"no CHAdeMO vehicle status (0x102) for {self._timeout_s} s")
        self._endpoint.send_now()
        self._report(CpState.B)  # still connected as far as we know; not a CP fault

    def _forget_vehicle(self) -> None:
        self._status = None
        self._limits = None
        self._times = None
        for latch in self._vehicle_latches.values():
            latch.clear("vehicle gone")

    def _report(self, state: CpState) -> None:
        if state == self._state:
            return
        self._state = state
        if self._on_state is not None:
            self._on_state(state)

    # --- charger side -------------------------------------------------------------------

    def _charger_frames(self) -> Sequence[Frame]:
        faulted = self.link_lost or any(latch.active for latch in self._vehicle_latches.values())
        offering = self._output.mode == PilotMode.PWM and not faulted
        available_a = (
            min(whole_amperes_for_duty(self._output.duty_pct), self._max_current_a)
            if offering
            else 0
        )
        flags = ChargerStatusFlag.NONE
        if self._output.mode == PilotMode.ERROR or faulted:
            flags |= ChargerStatusFlag.STOP_CONTROL
        charging = available_a > 0 and self._state == CpState.C
        if charging:
            flags |= ChargerStatusFlag.CHARGING
        threshold_v = self._max_voltage_v
        if self._limits is not None and self._limits.max_battery_voltage_v > 0:
            threshold_v = min(threshold_v, self._limits.max_battery_voltage_v)
        remaining_min = self._times.estimated_charging_time_min if self._times else 0
        return (
            ChargerCapability(
                welding_detection=0,
                available_voltage_v=self._max_voltage_v,
                available_current_a=available_a,
                threshold_voltage_v=threshold_v,
            ),
            ChargerStatus(
                protocol_number=CHARGER_PROTOCOL_NUMBER,
                present_voltage_v=self._present_voltage_v if charging else 0,
                present_current_a=self._present_current_a if charging else 0,
                status=flags,
                remaining_time_min=remaining_min,
            ),
        )
