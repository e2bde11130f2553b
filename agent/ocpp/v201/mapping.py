"""Pure projections of the neutral vocabulary onto OCPP 2.0.1 payload content.

Tested as tables (tests/unit/test_v201_mapping.py). No I/O and no ``ocpp`` import:
the adapter wraps these values into the library's payload classes (snake_case
keys, which the library turns into the wire's camelCase).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from agent.events import (
    AuthorizationStatus,
    ConnectorStatus,
    EvseStatusChanged,
    FaultCode,
    MeterSample,
    SampledValue,
)
from agent.station import AvailabilityResult, ResetKind, UnlockResult

CONNECTOR_ID = 1
"""Every EVSE of this station has one connector, id 1 (Part 1 §7 numbering)."""


class BootReason(StrEnum):
    """BootReasonEnumType (2.0.1 spelling)."""

    APPLICATION_RESET = "ApplicationReset"
    FIRMWARE_UPDATE = "FirmwareUpdate"
    LOCAL_RESET = "LocalReset"
    POWER_UP = "PowerUp"
    REMOTE_RESET = "RemoteReset"
    SCHEDULED_RESET = "ScheduledReset"
    TRIGGERED = "Triggered"
    UNKNOWN = "Unknown"
    WATCHDOG = "Watchdog"


# ------------------------------------------------------------ status (G01)

_CONNECTOR_STATUS = {
    ConnectorStatus.AVAILABLE: "Available",
    ConnectorStatus.PREPARING: "Occupied",
    ConnectorStatus.CHARGING: "Occupied",
    ConnectorStatus.SUSPENDED_EV: "Occupied",
    ConnectorStatus.SUSPENDED_EVSE: "Occupied",
    ConnectorStatus.FINISHING: "Occupied",
    ConnectorStatus.RESERVED: "Reserved",
    ConnectorStatus.UNAVAILABLE: "Unavailable",
    ConnectorStatus.FAULTED: "Faulted",
}


def connector_status(status: ConnectorStatus) -> str:
    """ConnectorStatusEnumType: every "a vehicle is involved" 1.6 status is Occupied."""
    return _CONNECTOR_STATUS[status]


def status_notification(event: EvseStatusChanged) -> dict[str, Any] | None:
    """StatusNotificationRequest fields, or None for the whole station (evse 0):
    2.0.1 reports a station-wide change per connector, not for a connector 0."""
    if event.evse_id == 0:
        return None
    return {
        "timestamp": event.timestamp,
        "connector_status": connector_status(event.status),
        "evse_id": event.evse_id,
        "connector_id": CONNECTOR_ID,
    }


def availability_state(status: ConnectorStatus) -> str:
    """The device model's AvailabilityState of an EVSE/connector (same values)."""
    return connector_status(status)


# ------------------------------------------------------------ boot (B01)


def boot_reason(
    *, reset: ResetKind | None = None, firmware_updated: bool = False, triggered: bool = False
) -> BootReason:
    """Why this BootNotification is sent, from what the agent knows.

    Args:
        reset: The kind of the CSMS Reset that caused this start, if one did.
        firmware_updated: The agent runs a newly installed firmware (first boot).
        triggered: A TriggerMessage(BootNotification) asked for it.
    """
    if triggered:
        return BootReason.TRIGGERED
    if firmware_updated:
        return BootReason.FIRMWARE_UPDATE
    if reset is not None:
        return BootReason.REMOTE_RESET
    return BootReason.POWER_UP


# ------------------------------------------------------- reset (B11/B12)


def reset_kind(reset_type: str) -> ResetKind:
    """ResetEnumType -> the neutral reset: Immediate stops transactions at once
    (like a 1.6 Hard reset); OnIdle waits for them (the adapter waits, then Soft)."""
    return ResetKind.HARD if reset_type == "Immediate" else ResetKind.SOFT


# -------------------------------------------------- availability (G03/G04)


def operative(operational_status: str) -> bool:
    """OperationalStatusEnumType -> operative."""
    return operational_status == "Operative"


def change_availability_status(result: AvailabilityResult) -> str:
    """ChangeAvailabilityStatusEnumType (same spellings as the neutral result)."""
    return result.value


def unlock_status(result: UnlockResult) -> str:
    """UnlockStatusEnumType. 2.0.1 has no NotSupported: without a lock the connector
    cannot be unlocked, which is UnlockFailed (F05.FR.04)."""
    if result == UnlockResult.UNLOCKED:
        return "Unlocked"
    return "UnlockFailed"


# ----------------------------------------------------- faults (N07, G05)


@dataclass(frozen=True, slots=True)
class FaultTarget:
    """Where a fault is reported in the device model.

    Attributes:
        component: Component name.
        variable: Variable name whose value changes ("Problem": "true"/"false").
        connector_level: The component is the connector (else the EVSE).
    """

    component: str
    variable: str
    connector_level: bool


# G05: a lock failure is ConnectorPlugRetentionLock.Problem; everything else is the
# EVSE's Problem variable with the neutral fault code as techCode (N07 hard-wired
# notification), so a CSMS needs no vendor table to see what failed.
_FAULT_TARGETS = {
    FaultCode.CONNECTOR_LOCK_FAILURE: FaultTarget("ConnectorPlugRetentionLock", "Problem", True),
    FaultCode.EV_COMMUNICATION_ERROR: FaultTarget("Connector", "Problem", True),
}
_DEFAULT_TARGET = FaultTarget("EVSE", "Problem", False)


def fault_target(code: FaultCode) -> FaultTarget:
    """The component/variable of a hardware fault (see the table above)."""
    return _FAULT_TARGETS.get(code, _DEFAULT_TARGET)


def fault_event(
    *, event_id: int, evse_id: int, code: FaultCode, cleared: bool, timestamp: str
) -> dict[str, Any]:
    """One EventDataType of NotifyEvent for a fault raised (``cleared`` False) or
    cleared: trigger Delta, HardWiredNotification, actualValue "true"/"false"."""
    target = fault_target(code)
    component: dict[str, Any] = {"name": target.component, "evse": {"id": evse_id}}
    if target.connector_level:
        component["evse"]["connector_id"] = CONNECTOR_ID
    data: dict[str, Any] = {
        "event_id": event_id,
        "timestamp": timestamp,
        "trigger": "Delta",
        "actual_value": "false" if cleared else "true",
        "tech_code": code.value,
        "event_notification_type": "HardWiredNotification",
        "component": component,
        "variable": {"name": target.variable},
    }
    if cleared:
        data["cleared"] = True
    return data


# -------------------------------------------------------- authorization


_AUTHORIZATION = {
    "Accepted": AuthorizationStatus.ACCEPTED,
    "Blocked": AuthorizationStatus.BLOCKED,
    "ConcurrentTx": AuthorizationStatus.CONCURRENT_TX,
    "Expired": AuthorizationStatus.EXPIRED,
}


def authorization_status(text: str) -> AuthorizationStatus:
    """AuthorizationStatusEnumType -> neutral: Invalid, NoCredit, NotAllowedTypeEVSE,
    NotAtThisLocation, NotAtThisTime, Unknown and anything else are Invalid."""
    return _AUTHORIZATION.get(text, AuthorizationStatus.INVALID)


def id_token(id_tag: str) -> dict[str, str]:
    """IdTokenType of a locally presented token: the agent's readers are RFID cards
    (ISO14443 UIDs); a token given by the CSMS keeps the type it came with."""
    return {"id_token": id_tag, "type": "ISO14443"}


# ----------------------------------------------------------- metering


def sampled_value(value: SampledValue, context: str) -> dict[str, Any]:
    """SampledValueType: a number (not a string as in 1.6), unit in unitOfMeasure."""
    out: dict[str, Any] = {
        "value": float(value.value),
        "context": context,
        "measurand": value.measurand,
        "location": value.location or "Outlet",
        "unit_of_measure": {"unit": value.unit},
    }
    if value.phase is not None:
        out["phase"] = value.phase
    return out


def meter_value(sample: MeterSample) -> dict[str, Any]:
    """One MeterValueType (timestamp + sampledValue list; the 1.6 context names are
    the 2.0.1 ReadingContextEnumType names)."""
    return {
        "timestamp": sample.timestamp,
        "sampled_value": [sampled_value(v, sample.context.value) for v in sample.values],
    }


# ------------------------------------------------------------ device model

_DATA_TYPES_201 = frozenset(
    {
        "string",
        "decimal",
        "integer",
        "dateTime",
        "boolean",
        "OptionList",
        "SequenceList",
        "MemberList",
    }
)


def data_type(name: str) -> str:
    """DataEnumType of 2.0.1: types it lacks (OCPP 2.1 passwordString) are strings."""
    return name if name in _DATA_TYPES_201 else "string"


# ------------------------------------------------------- OCPP-J errors

_ERROR_CODES_201 = {
    "FormationViolation": "FormatViolation",
    "OccurenceConstraintViolation": "OccurrenceConstraintViolation",
}


def error_code_201(code: str) -> str:
    """The OCPP-J 2.0.1 spelling of a CALLERROR code (the library has 1.6 spellings
    for two of them)."""
    return _ERROR_CODES_201.get(code, code)


# ---------------------------------------------------- TriggerMessage (F06)

TRIGGERABLE = frozenset(
    {
        "BootNotification",
        "Heartbeat",
        "StatusNotification",
        "MeterValues",
        "FirmwareStatusNotification",
        "LogStatusNotification",
        "TransactionEvent",
    }
)
"""MessageTriggerEnumType values this station sends on request; the others
(SignChargingStationCertificate, SignV2GCertificate, SignCombinedCertificate,
PublishFirmwareStatusNotification) are NotImplemented."""


def trigger_status(message: str, evse_id: int | None, evse_ids: frozenset[int]) -> str:
    """TriggerMessageStatusEnumType of one request (F06).

    StatusNotification needs an EVSE (F06.FR.12, Rejected without); an unknown EVSE
    is Rejected; BootNotification after an Accepted boot is Rejected by the adapter
    (F06.FR.17), not here.
    """
    if message not in TRIGGERABLE:
        return "NotImplemented"
    if evse_id is not None and evse_id != 0 and evse_id not in evse_ids:
        return "Rejected"
    if message == "StatusNotification" and not evse_id:
        return "Rejected"
    return "Accepted"
