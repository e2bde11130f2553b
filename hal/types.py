"""Values the HAL reports: pilot states, meter readings, fault codes.

These live in ``hal`` because the hardware layer produces them; the core
re-exports them from ``agent.events``. Nothing here knows about OCPP sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CpState(StrEnum):
    """IEC 61851-1 control pilot state as seen at the EVSE (REFERENCE 1.1)."""

    A = "A"  # +12 V: no EV
    B = "B"  # +9 V: EV connected, not requesting energy
    C = "C"  # +6 V: EV requests energy
    D = "D"  # +3 V: EV requests energy with ventilation
    E = "E"  # 0 V: CP shorted to PE or no supply
    F = "F"  # -12 V: EVSE not available (or diode fault seen by the HAL)


class FaultCode(StrEnum):
    """Hardware fault reported by the HAL or raised by the core.

    The values are the generic charger error names; they match OCPP 1.6
    ChargePointErrorCode, so that mapping is the identity (except the codes 1.6
    lacks: ``EMERGENCY_STOP``, ``DIODE_FAULT`` and ``CABLE_FAULT`` are OtherError
    with their value as vendorErrorCode), and the 2.0.1 adapter maps them onto
    NotifyEvent components.
    """

    CABLE_FAULT = "CableFault"  # PP: no valid cable while an EV is connected
    CONNECTOR_LOCK_FAILURE = "ConnectorLockFailure"
    DIODE_FAULT = "DiodeFault"  # CP: the EV's diode is missing (REFERENCE 1.4)
    EMERGENCY_STOP = "EmergencyStop"
    EV_COMMUNICATION_ERROR = "EVCommunicationError"
    GROUND_FAILURE = "GroundFailure"
    HIGH_TEMPERATURE = "HighTemperature"
    INTERNAL_ERROR = "InternalError"
    OTHER_ERROR = "OtherError"
    OVER_CURRENT_FAILURE = "OverCurrentFailure"
    OVER_VOLTAGE = "OverVoltage"
    POWER_METER_FAILURE = "PowerMeterFailure"
    POWER_SWITCH_FAILURE = "PowerSwitchFailure"
    READER_FAILURE = "ReaderFailure"
    UNDER_VOLTAGE = "UnderVoltage"


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One reading of an energy meter.

    Attributes:
        energy_import_wh: Monotonic active import energy register, Wh.
        power_w: Total active power, W (negative when exporting).
        current_a: Current per phase L1..L3, A (one entry on a single-phase meter).
        voltage_v: Line-to-neutral voltage per phase, V.
        frequency_hz: Line frequency, Hz, or None where the meter has no register.
        energy_export_wh: Active export energy register, Wh, or None.
        monotonic_s: ``time.monotonic()`` when the meter answered (never when it
            was merely polled), so a frozen meter cannot look fresh.
        power_phase_w: Active power per phase L1..L3, W, where the meter reports
            it; empty when it reports only the total.
    """

    energy_import_wh: float
    power_w: float
    current_a: tuple[float, ...]
    voltage_v: tuple[float, ...]
    frequency_hz: float | None
    energy_export_wh: float | None
    monotonic_s: float
    power_phase_w: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class FaultReport:
    """A device fault raised or cleared.

    Attributes:
        code: What is wrong.
        active: True when raised, False when cleared.
        detail: Human-readable detail for logs and the OCPP ``info`` field.
    """

    code: FaultCode
    active: bool
    detail: str = ""
