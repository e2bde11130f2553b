"""Tables for the pure 2.0.1 projections (agent/ocpp/v201/mapping.py)."""

from __future__ import annotations

import pytest

from agent.events import (
    AuthorizationStatus,
    ConnectorStatus,
    EvseStatusChanged,
    FaultCode,
    MeterSample,
    ReadingContext,
    SampledValue,
)
from agent.ocpp.v201 import mapping
from agent.station import AvailabilityResult, ResetKind, UnlockResult

T = "2026-11-24T22:00:00.000Z"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (ConnectorStatus.AVAILABLE, "Available"),
        (ConnectorStatus.PREPARING, "Occupied"),
        (ConnectorStatus.CHARGING, "Occupied"),
        (ConnectorStatus.SUSPENDED_EV, "Occupied"),
        (ConnectorStatus.SUSPENDED_EVSE, "Occupied"),
        (ConnectorStatus.FINISHING, "Occupied"),
        (ConnectorStatus.RESERVED, "Reserved"),
        (ConnectorStatus.UNAVAILABLE, "Unavailable"),
        (ConnectorStatus.FAULTED, "Faulted"),
    ],
)
def test_connector_status(status: ConnectorStatus, expected: str) -> None:
    assert mapping.connector_status(status) == expected
    assert mapping.availability_state(status) == expected


def test_every_neutral_status_has_a_2_0_1_status() -> None:
    for status in ConnectorStatus:
        assert mapping.connector_status(status) in (
            "Available",
            "Occupied",
            "Reserved",
            "Unavailable",
            "Faulted",
        )


def test_status_notification_fields_and_no_connector_zero() -> None:
    event = EvseStatusChanged(2, ConnectorStatus.CHARGING, None, None, T)
    assert mapping.status_notification(event) == {
        "timestamp": T,
        "connector_status": "Occupied",
        "evse_id": 2,
        "connector_id": 1,
    }
    station = EvseStatusChanged(0, ConnectorStatus.UNAVAILABLE, None, None, T)
    assert mapping.status_notification(station) is None


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "PowerUp"),
        ({"reset": ResetKind.HARD}, "RemoteReset"),
        ({"reset": ResetKind.SOFT}, "RemoteReset"),
        ({"firmware_updated": True}, "FirmwareUpdate"),
        ({"firmware_updated": True, "reset": ResetKind.HARD}, "FirmwareUpdate"),
        ({"triggered": True, "reset": ResetKind.HARD}, "Triggered"),
    ],
)
def test_boot_reason(kwargs: dict[str, object], expected: str) -> None:
    assert mapping.boot_reason(**kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reset_type", "kind"), [("Immediate", ResetKind.HARD), ("OnIdle", ResetKind.SOFT)]
)
def test_reset_kind(reset_type: str, kind: ResetKind) -> None:
    assert mapping.reset_kind(reset_type) == kind


@pytest.mark.parametrize(("text", "operative"), [("Operative", True), ("Inoperative", False)])
def test_operative(text: str, operative: bool) -> None:
    assert mapping.operative(text) is operative


@pytest.mark.parametrize("result", list(AvailabilityResult))
def test_change_availability_status(result: AvailabilityResult) -> None:
    assert mapping.change_availability_status(result) in ("Accepted", "Rejected", "Scheduled")


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (UnlockResult.UNLOCKED, "Unlocked"),
        (UnlockResult.UNLOCK_FAILED, "UnlockFailed"),
        (UnlockResult.NOT_SUPPORTED, "UnlockFailed"),
    ],
)
def test_unlock_status(result: UnlockResult, expected: str) -> None:
    assert mapping.unlock_status(result) == expected


@pytest.mark.parametrize(
    ("code", "component", "connector_level"),
    [
        (FaultCode.CONNECTOR_LOCK_FAILURE, "ConnectorPlugRetentionLock", True),
        (FaultCode.EV_COMMUNICATION_ERROR, "Connector", True),
        (FaultCode.GROUND_FAILURE, "EVSE", False),
        (FaultCode.POWER_SWITCH_FAILURE, "EVSE", False),
        (FaultCode.OTHER_ERROR, "EVSE", False),
    ],
)
def test_fault_event(code: FaultCode, component: str, connector_level: bool) -> None:
    raised = mapping.fault_event(event_id=4, evse_id=2, code=code, cleared=False, timestamp=T)
    cleared = mapping.fault_event(event_id=5, evse_id=2, code=code, cleared=True, timestamp=T)
    evse = {"id": 2, "connector_id": 1} if connector_level else {"id": 2}
    assert raised == {
        "event_id": 4,
        "timestamp": T,
        "trigger": "Delta",
        "actual_value": "true",
        "tech_code": code.value,
        "event_notification_type": "HardWiredNotification",
        "component": {"name": component, "evse": evse},
        "variable": {"name": "Problem"},
    }
    assert cleared["actual_value"] == "false" and cleared["cleared"] is True


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("Accepted", AuthorizationStatus.ACCEPTED),
        ("Blocked", AuthorizationStatus.BLOCKED),
        ("ConcurrentTx", AuthorizationStatus.CONCURRENT_TX),
        ("Expired", AuthorizationStatus.EXPIRED),
        ("Invalid", AuthorizationStatus.INVALID),
        ("NoCredit", AuthorizationStatus.INVALID),
        ("NotAllowedTypeEVSE", AuthorizationStatus.INVALID),
        ("NotAtThisLocation", AuthorizationStatus.INVALID),
        ("NotAtThisTime", AuthorizationStatus.INVALID),
        ("Unknown", AuthorizationStatus.INVALID),
        ("garbage", AuthorizationStatus.INVALID),
    ],
)
def test_authorization_status(text: str, status: AuthorizationStatus) -> None:
    assert mapping.authorization_status(text) == status


def test_id_token_of_a_local_card() -> None:
    assert mapping.id_token("04A1B2") == {"id_token": "04A1B2", "type": "ISO14443"}


def test_meter_value_numbers_and_units() -> None:
    sample = MeterSample(
        T,
        ReadingContext.TRIGGER,
        (
            SampledValue("Energy.Active.Import.Register", 1234.0, "Wh"),
            SampledValue("Current.Import", 15.5, "A", phase="L1"),
        ),
    )
    assert mapping.meter_value(sample) == {
        "timestamp": T,
        "sampled_value": [
            {
                "value": 1234.0,
                "context": "Trigger",
                "measurand": "Energy.Active.Import.Register",
                "location": "Outlet",
                "unit_of_measure": {"unit": "Wh"},
            },
            {
                "value": 15.5,
                "context": "Trigger",
                "measurand": "Current.Import",
                "location": "Outlet",
                "unit_of_measure": {"unit": "A"},
                "phase": "L1",
            },
        ],
    }


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("FormationViolation", "FormatViolation"),
        ("FormatViolation", "FormatViolation"),
        ("OccurenceConstraintViolation", "OccurrenceConstraintViolation"),
        ("NotImplemented", "NotImplemented"),
        ("ProtocolError", "ProtocolError"),
    ],
)
def test_error_code_201(code: str, expected: str) -> None:
    assert mapping.error_code_201(code) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [("integer", "integer"), ("MemberList", "MemberList"), ("passwordString", "string")],
)
def test_data_type(name: str, expected: str) -> None:
    assert mapping.data_type(name) == expected


@pytest.mark.parametrize(
    ("message", "evse_id", "expected"),
    [
        ("Heartbeat", None, "Accepted"),
        ("BootNotification", None, "Accepted"),
        ("StatusNotification", 1, "Accepted"),
        ("StatusNotification", None, "Rejected"),
        ("StatusNotification", 0, "Rejected"),
        ("StatusNotification", 3, "Rejected"),
        ("MeterValues", None, "Accepted"),
        ("MeterValues", 2, "Accepted"),
        ("MeterValues", 9, "Rejected"),
        ("FirmwareStatusNotification", None, "Accepted"),
        ("LogStatusNotification", None, "Accepted"),
        ("TransactionEvent", 1, "Accepted"),  # the adapter: Rejected without a transaction
        ("TransactionEvent", 9, "Rejected"),
        ("SignChargingStationCertificate", None, "NotImplemented"),
    ],
)
def test_trigger_status(message: str, evse_id: int | None, expected: str) -> None:
    assert mapping.trigger_status(message, evse_id, frozenset({1, 2})) == expected
