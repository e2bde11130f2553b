"""CHAdeMO frame codec (REFERENCE 6.2), the duty -> current inverse, and the pure
vehicle-status -> CP-state mapping of the chademo-can pilot. No bus, no loop."""

from __future__ import annotations

import logging
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.evse.iec61851 import duty_for_current
from hal.can.chademo_frames import (
    CHARGER_IDS,
    VEHICLE_IDS,
    ChargerCapability,
    ChargerStatus,
    ChargerStatusFlag,
    FrameError,
    RejectReason,
    VehicleChargingTime,
    VehicleFault,
    VehicleLimits,
    VehicleStatus,
    VehicleStatusFlag,
    decode,
    encode,
)
from hal.can.chademo_pilot import cp_state_for, vehicle_faults
from hal.can.duty import current_for_duty, whole_amperes_for_duty
from hal.can.endpoint import RateLimitedLog
from hal.types import CpState, FaultCode

ALL_IDS = VEHICLE_IDS | CHARGER_IDS

# --- known bytes ---------------------------------------------------------------------


def test_captured_vehicle_status_is_little_endian() -> None:
    # REFERENCE 6.2: captured 0x102 "02 9A 01 ..." is protocol 2, target 0x019A = 410 V.
    frame = decode(0x102, bytes([0x02, 0x9A, 0x01, 0x7D, 0x00, 0x09, 0x37, 0x00]))
    assert frame == VehicleStatus(
        protocol_number=2,
        target_voltage_v=410,
        current_request_a=125,
        faults=VehicleFault.NONE,
        status=VehicleStatusFlag.CHARGING_ENABLED | VehicleStatusFlag.CONTACTOR_OPEN,
        soc_pct=55,
    )


def test_vehicle_limits_known_bytes() -> None:
    # byte 0 min current, 2-3 min voltage, 4-5 max voltage ("high byte 5, low byte 4"), 6 = 100
    data = bytes([0x05, 0x00, 0xFA, 0x00, 0x9A, 0x01, 0x64, 0x00])
    frame = VehicleLimits(5, 250, 410, 100)
    assert decode(0x100, data) == frame
    assert encode(frame) == (0x100, data)


def test_vehicle_charging_time_known_bytes() -> None:
    data = bytes([0x00, 0xFF, 0x5A, 0x3C, 0x00, 0x90, 0x01, 0x00])
    frame = VehicleChargingTime(0xFF, 90, 60, 40_000)  # 0x0190 = 400 x 0.1 kWh
    assert decode(0x101, data) == frame
    assert encode(frame) == (0x101, data)
    assert frame.max_charging_time_s == 90 * 60
    assert VehicleChargingTime(max_charging_time_10s=30).max_charging_time_s == 300


def test_vehicle_fault_bits_follow_the_spec_labels() -> None:
    frame = decode(0x102, bytes([1, 0x90, 0x01, 10, 0b0000_1001, 0b0001_0010, 80, 0]))
    assert isinstance(frame, VehicleStatus)
    assert frame.faults == VehicleFault.BATTERY_OVER_VOLTAGE | VehicleFault.HIGH_BATTERY_TEMPERATURE
    assert frame.status == VehicleStatusFlag.NOT_IN_PARK | VehicleStatusFlag.NORMAL_STOP_REQUEST


def test_charger_capability_known_bytes() -> None:
    frame = ChargerCapability(
        welding_detection=1,
        available_voltage_v=500,
        available_current_a=125,
        threshold_voltage_v=410,
    )
    assert encode(frame) == (0x108, bytes([0x01, 0xF4, 0x01, 0x7D, 0x9A, 0x01, 0x00, 0x00]))


def test_charger_status_known_bytes() -> None:
    frame = ChargerStatus(
        protocol_number=1,
        present_voltage_v=395,
        present_current_a=100,
        status=ChargerStatusFlag.CHARGING | ChargerStatusFlag.CONNECTOR_LOCKED,
        remaining_time_10s=0xFF,
        remaining_time_min=45,
    )
    assert encode(frame) == (0x109, bytes([0x01, 0x8B, 0x01, 0x64, 0x00, 0x05, 0xFF, 0x2D]))
    stop = ChargerStatus(status=ChargerStatusFlag.STOP_CONTROL)
    assert encode(stop)[1][5] == 0x20


# --- round trips and fuzzing ---------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)


@st.composite
def frames(draw: st.DrawFn) -> object:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        low, high = sorted((draw(u16), draw(u16)))
        return VehicleLimits(draw(u8), low, high, draw(u8))
    if kind == 1:
        return VehicleChargingTime(draw(u8), draw(u8), draw(u8), draw(u16) * 100)
    if kind == 2:
        return VehicleStatus(
            draw(u8),
            draw(u16),
            draw(u8),
            VehicleFault(draw(u8)),
            VehicleStatusFlag(draw(u8)),
            draw(st.integers(0, 100)),
        )
    if kind == 3:
        return ChargerCapability(draw(u8), draw(u16), draw(u8), draw(u16))
    return ChargerStatus(
        draw(u8), draw(u16), draw(u8), ChargerStatusFlag(draw(u8)), draw(u8), draw(u8)
    )


@given(frames())
def test_every_frame_round_trips(frame: object) -> None:
    can_id, data = encode(frame)  # type: ignore[arg-type]
    assert len(data) == 8
    assert decode(can_id, data, accept=ALL_IDS) == frame


@given(st.sampled_from(sorted(ALL_IDS)), st.binary(min_size=8, max_size=8))
def test_decoding_any_payload_is_a_frame_or_a_counted_rejection(can_id: int, data: bytes) -> None:
    try:
        frame = decode(can_id, data, accept=ALL_IDS)
    except FrameError as exc:
        assert exc.reason == RejectReason.BAD_VALUE
        return
    # what was decoded re-encodes to the same bytes except the reserved ones (sent as 0)
    again = encode(frame)[1]
    assert all(a == b or a == 0 for a, b in zip(again, data, strict=True))
    assert decode(can_id, again, accept=ALL_IDS) == frame


@given(st.integers(0, 0x7FF).filter(lambda i: i not in VEHICLE_IDS), st.binary(max_size=8))
def test_a_charger_rejects_every_other_id(can_id: int, data: bytes) -> None:
    with pytest.raises(FrameError) as info:
        decode(can_id, data)
    assert info.value.reason == RejectReason.UNKNOWN_ID


@pytest.mark.parametrize("length", [0, 1, 5, 7])
@pytest.mark.parametrize("can_id", sorted(VEHICLE_IDS))
def test_wrong_length_is_rejected(can_id: int, length: int) -> None:
    with pytest.raises(FrameError) as info:
        decode(can_id, bytes(length))
    assert info.value.reason == RejectReason.WRONG_LENGTH


def test_extended_ids_are_never_chademo() -> None:
    with pytest.raises(FrameError) as info:
        decode(0x102, bytes(8), is_extended_id=True)
    assert info.value.reason == RejectReason.UNKNOWN_ID


@pytest.mark.parametrize(
    ("can_id", "data"),
    [
        (0x102, bytes([1, 0x90, 0x01, 10, 0, 1, 101, 0])),  # SoC above 100 %
        (0x102, bytes([1, 0x90, 0x01, 10, 0, 1, 0xFF, 0])),
        (0x100, bytes([5, 0, 0x9A, 0x01, 0xFA, 0x00, 100, 0])),  # min 410 V > max 250 V
    ],
)
def test_impossible_values_are_rejected(can_id: int, data: bytes) -> None:
    with pytest.raises(FrameError) as info:
        decode(can_id, data)
    assert info.value.reason == RejectReason.BAD_VALUE


def test_fields_that_do_not_fit_refuse_to_encode() -> None:
    with pytest.raises(ValueError, match="available_current_a"):
        encode(ChargerCapability(available_current_a=256))
    with pytest.raises(ValueError, match="available_voltage_v"):
        encode(ChargerCapability(available_voltage_v=70_000))


# --- duty -> current ---------------------------------------------------------------


# 52 A has no duty of its own (the two formulas leave a gap; the core signals 51 A)
@pytest.mark.parametrize("current_a", [a for a in range(6, 81) if a != 52])
def test_whole_amperes_invert_the_cores_duty_exactly(current_a: int) -> None:
    duty = duty_for_current(current_a)
    assert duty is not None
    assert whole_amperes_for_duty(duty) == current_a


# Limits in (51, 52.75) all end on the 85 % duty, which Table A.8 reads as 51 A.
@given(st.floats(6.0, 51.0) | st.floats(52.75, 80.0))
def test_whole_amperes_never_exceed_a_limit_by_more_than_one_duty_step(limit_a: float) -> None:
    duty = duty_for_current(limit_a)
    assert duty is not None
    step_a = 0.06 if duty <= 85.0 else 0.25
    assert math.floor(limit_a) <= whole_amperes_for_duty(duty) <= limit_a + step_a


@pytest.mark.parametrize("duty_pct", [0.0, 5.0, 8.0, 9.9, 96.5, 100.0])
def test_duties_that_offer_no_current(duty_pct: float) -> None:
    assert current_for_duty(duty_pct) is None
    assert whole_amperes_for_duty(duty_pct) == 0


@pytest.mark.parametrize(
    ("duty_pct", "current_a"),
    [(10.0, 6.0), (53.3, 31.98), (85.0, 51.0), (89.2, 63.0), (96.0, 80.0)],
)
def test_current_for_duty_worked_values(duty_pct: float, current_a: float) -> None:
    assert current_for_duty(duty_pct) == pytest.approx(current_a)


# --- vehicle status -> CP state and faults ---------------------------------------------

ENABLED = VehicleStatusFlag.CHARGING_ENABLED


@pytest.mark.parametrize(
    ("status", "faults", "expected"),
    [
        (VehicleStatusFlag.NONE, VehicleFault.NONE, CpState.B),
        (VehicleStatusFlag.CONTACTOR_OPEN, VehicleFault.NONE, CpState.B),
        (ENABLED, VehicleFault.NONE, CpState.C),
        (ENABLED | VehicleStatusFlag.CONTACTOR_OPEN, VehicleFault.NONE, CpState.C),
        (ENABLED | VehicleStatusFlag.DISCHARGE_COMPATIBLE, VehicleFault.NONE, CpState.C),
        (ENABLED | VehicleStatusFlag.NOT_IN_PARK, VehicleFault.NONE, CpState.B),
        (ENABLED | VehicleStatusFlag.NORMAL_STOP_REQUEST, VehicleFault.NONE, CpState.B),
        (ENABLED | VehicleStatusFlag.CHARGING_SYSTEM_FAULT, VehicleFault.NONE, CpState.B),
        (ENABLED, VehicleFault.HIGH_BATTERY_TEMPERATURE, CpState.B),
    ],
)
def test_cp_state_for_vehicle_status(
    status: VehicleStatusFlag, faults: VehicleFault, expected: CpState
) -> None:
    assert cp_state_for(VehicleStatus(faults=faults, status=status, soc_pct=50)) == expected


def test_no_vehicle_is_state_a() -> None:
    assert cp_state_for(None) == CpState.A


def test_vehicle_fault_flags_map_to_fault_codes() -> None:
    status = VehicleStatus(
        faults=VehicleFault.BATTERY_OVER_VOLTAGE
        | VehicleFault.BATTERY_CURRENT_DEVIATION
        | VehicleFault.BATTERY_VOLTAGE_DEVIATION,
        status=VehicleStatusFlag.CHARGING_SYSTEM_FAULT,
    )
    active = vehicle_faults(status)
    assert set(active) == {FaultCode.OVER_VOLTAGE, FaultCode.OTHER_ERROR}
    assert "battery_current_deviation" in active[FaultCode.OTHER_ERROR]
    assert "charging_system_fault" in active[FaultCode.OTHER_ERROR]
    assert vehicle_faults(VehicleStatus()) == {}


# --- bounded logging -------------------------------------------------------------------


def test_rate_limited_log_reports_once_per_interval_with_the_dropped_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    log = RateLimitedLog(logging.getLogger("test.chademo"), interval_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.chademo"):
        for _ in range(100):
            log.warning("bad frame %s", "x")
        now[0] = 10.0
        log.warning("bad frame %s", "y")
    assert [r.getMessage() for r in caplog.records] == [
        "bad frame x",
        "bad frame y (99 more since the last report)",
    ]
