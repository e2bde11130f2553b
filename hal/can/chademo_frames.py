"""CHAdeMO (IEEE 2030.1.1) CAN frames: a pure codec, no I/O (REFERENCE 6.2).

All frames are 8 data bytes with 11-bit identifiers, sent every ~100 ms. The
vehicle sends 0x100 (limits), 0x101 (charging time, battery capacity) and 0x102
(status); the charger sends 0x108 (capability) and 0x109 (status). Multi-byte
fields are little-endian (REFERENCE 6.2: the spec lists "high byte 5, low byte 4"
and captured 0x102 traffic ``02 9A 01`` decodes to 410 V). Reserved bytes are
sent as 0 and ignored on receipt.

``decode`` raises ``FrameError`` with a ``RejectReason`` for anything that must
not be acted on: an unknown or extended identifier, a remote frame, a data length
other than 8, or values no vehicle may send (SoC above 100 %, minimum battery
voltage above the maximum). Both directions are implemented so the simulated
vehicle (``hal.sim.chademo_vehicle``) speaks the same codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag, StrEnum
from typing import ClassVar

VEHICLE_LIMITS_ID = 0x100
VEHICLE_CHARGING_TIME_ID = 0x101
VEHICLE_STATUS_ID = 0x102
CHARGER_CAPABILITY_ID = 0x108
CHARGER_STATUS_ID = 0x109

FRAME_LEN = 8
"""Every CHAdeMO frame carries exactly 8 data bytes."""

TIME_IN_MINUTES = 0xFF
"""A 10 s time byte of 0xFF means "look at the minutes byte instead"."""


class RejectReason(StrEnum):
    """Why a received frame was not acted on (the counters' keys)."""

    UNKNOWN_ID = "unknown_id"  # not a CHAdeMO id this side listens to (or extended)
    WRONG_LENGTH = "wrong_length"  # DLC other than 8
    BAD_VALUE = "bad_value"  # a field no conforming sender produces
    NOT_DATA = "not_data"  # remote or error frame


class FrameError(ValueError):
    """A frame was rejected; ``reason`` says why, the message gives the detail."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class VehicleFault(IntFlag):
    """0x102 byte 4: faults the vehicle detected (spec labels 102.4.0-4)."""

    NONE = 0
    BATTERY_OVER_VOLTAGE = 0x01
    BATTERY_UNDER_VOLTAGE = 0x02
    BATTERY_CURRENT_DEVIATION = 0x04
    HIGH_BATTERY_TEMPERATURE = 0x08
    BATTERY_VOLTAGE_DEVIATION = 0x10


class VehicleStatusFlag(IntFlag):
    """0x102 byte 5: vehicle status (spec labels 102.5.x)."""

    NONE = 0
    CHARGING_ENABLED = 0x01  # the vehicle permits charging
    NOT_IN_PARK = 0x02  # shift lever not in Park
    CHARGING_SYSTEM_FAULT = 0x04  # vehicle charging-system fault
    CONTACTOR_OPEN = 0x08  # vehicle contactor open / welding check done
    NORMAL_STOP_REQUEST = 0x10  # the vehicle asks to stop charging
    DISCHARGE_COMPATIBLE = 0x80  # V2H capable


class ChargerStatusFlag(IntFlag):
    """0x109 byte 5: charger status (spec labels 109.5.x)."""

    NONE = 0
    CHARGING = 0x01  # charger energising / charging
    MALFUNCTION = 0x02  # charger malfunction
    CONNECTOR_LOCKED = 0x04  # connector locked / voltage on the output (> 10 V)
    BATTERY_INCOMPATIBLE = 0x08
    SYSTEM_MALFUNCTION = 0x10  # charging-system malfunction
    STOP_CONTROL = 0x20  # charger stop control: the charger stops / is stopped


def _u8(value: int, name: str) -> int:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{name} must fit one byte (0..255), got {value}")
    return value


def _u16(value: int, name: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{name} must fit two bytes (0..65535), got {value}")
    return value.to_bytes(2, "little")


def _le16(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 2], "little")


@dataclass(frozen=True, slots=True)
class VehicleLimits:
    """0x100 (vehicle): battery limits.

    Attributes:
        min_charge_current_a: Lowest current the vehicle accepts, A (byte 0).
        min_battery_voltage_v: Minimum battery voltage, V (bytes 2-3).
        max_battery_voltage_v: Maximum battery voltage, V: the charger stops above (bytes 4-5).
        charged_rate_reference_pct: Reference of the SoC byte, fixed 100 % (byte 6).
    """

    CAN_ID: ClassVar[int] = VEHICLE_LIMITS_ID

    min_charge_current_a: int = 0
    min_battery_voltage_v: int = 0
    max_battery_voltage_v: int = 0
    charged_rate_reference_pct: int = 100

    def to_bytes(self) -> bytes:
        return bytes(
            [
                _u8(self.min_charge_current_a, "min_charge_current_a"),
                0,
                *_u16(self.min_battery_voltage_v, "min_battery_voltage_v"),
                *_u16(self.max_battery_voltage_v, "max_battery_voltage_v"),
                _u8(self.charged_rate_reference_pct, "charged_rate_reference_pct"),
                0,
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> VehicleLimits:
        frame = cls(data[0], _le16(data, 2), _le16(data, 4), data[6])
        if frame.min_battery_voltage_v > frame.max_battery_voltage_v:
            raise FrameError(
                RejectReason.BAD_VALUE,
                f"0x100 minimum battery voltage {frame.min_battery_voltage_v} V above "
                f"maximum {frame.max_battery_voltage_v} V",
            )
        return frame


@dataclass(frozen=True, slots=True)
class VehicleChargingTime:
    """0x101 (vehicle): charging time limits and battery capacity.

    Attributes:
        max_charging_time_10s: Maximum charging time in 10 s units (byte 1);
            ``TIME_IN_MINUTES`` (0xFF) means "use ``max_charging_time_min``".
        max_charging_time_min: Maximum charging time, min (byte 2).
        estimated_charging_time_min: Estimated charging time, min (byte 3).
        rated_capacity_wh: Rated battery capacity, Wh (bytes 5-6, 0.1 kWh units;
            encoding rounds to 100 Wh).
    """

    CAN_ID: ClassVar[int] = VEHICLE_CHARGING_TIME_ID

    max_charging_time_10s: int = TIME_IN_MINUTES
    max_charging_time_min: int = 0
    estimated_charging_time_min: int = 0
    rated_capacity_wh: int = 0

    @property
    def max_charging_time_s(self) -> int:
        """The maximum charging time, s, from whichever byte is in use."""
        if self.max_charging_time_10s != TIME_IN_MINUTES:
            return self.max_charging_time_10s * 10
        return self.max_charging_time_min * 60

    def to_bytes(self) -> bytes:
        return bytes(
            [
                0,
                _u8(self.max_charging_time_10s, "max_charging_time_10s"),
                _u8(self.max_charging_time_min, "max_charging_time_min"),
                _u8(self.estimated_charging_time_min, "estimated_charging_time_min"),
                0,
                *_u16(round(self.rated_capacity_wh / 100), "rated_capacity_wh / 100"),
                0,
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> VehicleChargingTime:
        return cls(data[1], data[2], data[3], _le16(data, 5) * 100)


@dataclass(frozen=True, slots=True)
class VehicleStatus:
    """0x102 (vehicle): what the vehicle wants and whether it permits charging.

    Attributes:
        protocol_number: CHAdeMO protocol number (0 = 0.9.1, 1 = 1.x, 2 = 2.0) (byte 0).
        target_voltage_v: Target battery voltage, V (bytes 1-2).
        current_request_a: Charging current request, A (byte 3).
        faults: Vehicle faults (byte 4).
        status: Vehicle status flags (byte 5).
        soc_pct: Charged rate (state of charge), % of the 0x100 reference (byte 6).
    """

    CAN_ID: ClassVar[int] = VEHICLE_STATUS_ID

    protocol_number: int = 1
    target_voltage_v: int = 0
    current_request_a: int = 0
    faults: VehicleFault = VehicleFault.NONE
    status: VehicleStatusFlag = VehicleStatusFlag.NONE
    soc_pct: int = 0

    def to_bytes(self) -> bytes:
        return bytes(
            [
                _u8(self.protocol_number, "protocol_number"),
                *_u16(self.target_voltage_v, "target_voltage_v"),
                _u8(self.current_request_a, "current_request_a"),
                _u8(int(self.faults), "faults"),
                _u8(int(self.status), "status"),
                _u8(self.soc_pct, "soc_pct"),
                0,
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> VehicleStatus:
        if data[6] > 100:
            raise FrameError(RejectReason.BAD_VALUE, f"0x102 state of charge {data[6]} % > 100 %")
        return cls(
            protocol_number=data[0],
            target_voltage_v=_le16(data, 1),
            current_request_a=data[3],
            faults=VehicleFault(data[4]),
            status=VehicleStatusFlag(data[5]),
            soc_pct=data[6],
        )


@dataclass(frozen=True, slots=True)
class ChargerCapability:
    """0x108 (charger): what the charger can deliver now.

    Attributes:
        welding_detection: Welding-detection support identifier, 0 = not supported (byte 0).
        available_voltage_v: Available output voltage, V (bytes 1-2).
        available_current_a: Available output current, A (byte 3).
        threshold_voltage_v: Stop level: the lower of the vehicle's maximum battery
            voltage and the charger's maximum, V (bytes 4-5).
    """

    CAN_ID: ClassVar[int] = CHARGER_CAPABILITY_ID

    welding_detection: int = 0
    available_voltage_v: int = 0
    available_current_a: int = 0
    threshold_voltage_v: int = 0

    def to_bytes(self) -> bytes:
        return bytes(
            [
                _u8(self.welding_detection, "welding_detection"),
                *_u16(self.available_voltage_v, "available_voltage_v"),
                _u8(self.available_current_a, "available_current_a"),
                *_u16(self.threshold_voltage_v, "threshold_voltage_v"),
                0,
                0,
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ChargerCapability:
        return cls(data[0], _le16(data, 1), data[3], _le16(data, 4))


@dataclass(frozen=True, slots=True)
class ChargerStatus:
    """0x109 (charger): what the charger is doing.

    Attributes:
        protocol_number: CHAdeMO protocol number the charger speaks (byte 0).
        present_voltage_v: Present output voltage, V (bytes 1-2).
        present_current_a: Present charging current, A (byte 3).
        status: Charger status flags (byte 5).
        remaining_time_10s: Remaining charging time in 10 s units (byte 6);
            ``TIME_IN_MINUTES`` (0xFF) means "use ``remaining_time_min``".
        remaining_time_min: Remaining charging time, min (byte 7).
    """

    CAN_ID: ClassVar[int] = CHARGER_STATUS_ID

    protocol_number: int = 1
    present_voltage_v: int = 0
    present_current_a: int = 0
    status: ChargerStatusFlag = ChargerStatusFlag.NONE
    remaining_time_10s: int = TIME_IN_MINUTES
    remaining_time_min: int = 0

    def to_bytes(self) -> bytes:
        return bytes(
            [
                _u8(self.protocol_number, "protocol_number"),
                *_u16(self.present_voltage_v, "present_voltage_v"),
                _u8(self.present_current_a, "present_current_a"),
                0,
                _u8(int(self.status), "status"),
                _u8(self.remaining_time_10s, "remaining_time_10s"),
                _u8(self.remaining_time_min, "remaining_time_min"),
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ChargerStatus:
        return cls(
            protocol_number=data[0],
            present_voltage_v=_le16(data, 1),
            present_current_a=data[3],
            status=ChargerStatusFlag(data[5]),
            remaining_time_10s=data[6],
            remaining_time_min=data[7],
        )


VehicleFrame = VehicleLimits | VehicleChargingTime | VehicleStatus
ChargerFrame = ChargerCapability | ChargerStatus
Frame = VehicleFrame | ChargerFrame

_DECODERS: dict[int, type[Frame]] = {
    VEHICLE_LIMITS_ID: VehicleLimits,
    VEHICLE_CHARGING_TIME_ID: VehicleChargingTime,
    VEHICLE_STATUS_ID: VehicleStatus,
    CHARGER_CAPABILITY_ID: ChargerCapability,
    CHARGER_STATUS_ID: ChargerStatus,
}

VEHICLE_IDS = frozenset({VEHICLE_LIMITS_ID, VEHICLE_CHARGING_TIME_ID, VEHICLE_STATUS_ID})
"""What a charger listens to."""

CHARGER_IDS = frozenset({CHARGER_CAPABILITY_ID, CHARGER_STATUS_ID})
"""What a vehicle listens to."""


def encode(frame: Frame) -> tuple[int, bytes]:
    """A frame as (11-bit CAN id, 8 data bytes).

    Raises:
        ValueError: A field does not fit its bytes (e.g. a current above 255 A).
    """
    return frame.CAN_ID, frame.to_bytes()


def decode(
    can_id: int,
    data: bytes,
    *,
    accept: frozenset[int] = VEHICLE_IDS,
    is_extended_id: bool = False,
) -> Frame:
    """Decode one received frame.

    Args:
        can_id: Arbitration id.
        data: Data bytes (must be exactly 8).
        accept: The ids this side listens to (a charger: ``VEHICLE_IDS``).
        is_extended_id: 29-bit frames are never CHAdeMO.

    Raises:
        FrameError: Unknown/unaccepted/extended id, wrong length or a bad value;
            the caller counts it and must not act on the frame.
    """
    if is_extended_id or can_id not in accept or can_id not in _DECODERS:
        kind = "extended " if is_extended_id else ""
        raise FrameError(RejectReason.UNKNOWN_ID, f"{kind}id 0x{can_id:03X}")
    if len(data) != FRAME_LEN:
        raise FrameError(
            RejectReason.WRONG_LENGTH, f"0x{can_id:03X} with {len(data)} bytes (need 8)"
        )
    return _DECODERS[can_id].from_bytes(bytes(data))
