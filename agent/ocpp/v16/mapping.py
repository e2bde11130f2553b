"""Pure mappings between the neutral vocabulary and OCPP 1.6 payload content.

Tested as tables (tests/unit/test_v16_mapping.py). No I/O and no ``ocpp`` import:
the adapter wraps these dicts into the library's payload classes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from agent.events import (
    AuthorizationStatus,
    EvseStatusChanged,
    FaultCode,
    MeterSample,
    SampledValue,
    StopReason,
)

# 1.6 UnitOfMeasure has no Hz: frequency is sent without a unit.
_UNITS_16 = frozenset(
    {
        "Wh",
        "kWh",
        "varh",
        "kvarh",
        "W",
        "kW",
        "VA",
        "kVA",
        "var",
        "kvar",
        "A",
        "V",
        "K",
        "Celsius",
        "Fahrenheit",
        "Percent",
    }
)

# OCPP-J 1.6 4.2.3 error codes; the ocpp library uses 2.0.1 spellings for two.
_ERROR_CODES_16 = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
}


def error_code_16(code: str) -> str:
    """The OCPP-J 1.6 spelling of a CALLERROR code."""
    return _ERROR_CODES_16.get(code, code)


def status_notification(event: EvseStatusChanged) -> dict[str, Any]:
    """StatusNotification.req fields (snake_case, as the ocpp library takes them)."""
    fields: dict[str, Any] = {
        "connector_id": event.evse_id,
        "error_code": error_code_of(event.error_code),
        "status": event.status.value,
        "timestamp": event.timestamp,
    }
    if event.info:
        fields["info"] = event.info[:50]  # CiString50
    vendor_code = _VENDOR_ERROR_CODES_16.get(event.error_code) if event.error_code else None
    if vendor_code is not None:
        fields["vendor_error_code"] = vendor_code  # CiString50
        fields.setdefault("info", vendor_code)
    return fields


# Neutral fault codes 1.6 has no ChargePointErrorCode for: OtherError plus a vendor code.
_VENDOR_ERROR_CODES_16 = {
    code: code.value
    for code in (FaultCode.EMERGENCY_STOP, FaultCode.DIODE_FAULT, FaultCode.CABLE_FAULT)
}


def error_code_of(code: FaultCode | None) -> str:
    """ChargePointErrorCode: the neutral names are the 1.6 names (codes 1.6 lacks are
    OtherError, see ``status_notification``); None is NoError."""
    if code is None:
        return "NoError"
    return "OtherError" if code in _VENDOR_ERROR_CODES_16 else code.value


def sampled_value(value: SampledValue, context: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "value": _number(value.value),
        "context": context,
        "measurand": value.measurand,
        "location": value.location or "Outlet",
    }
    if value.unit in _UNITS_16:
        out["unit"] = value.unit
    if value.phase is not None:
        out["phase"] = value.phase
    return out


def meter_value(sample: MeterSample) -> dict[str, Any]:
    """One MeterValue (timestamp + sampledValue list)."""
    return {
        "timestamp": sample.timestamp,
        "sampled_value": [sampled_value(v, sample.context.value) for v in sample.values],
    }


def _number(value: float) -> str:
    """A value as OCPP 1.6 sends it: a decimal string, all digits kept, no exponent,
    integers without a trailing ".0"."""
    if float(value).is_integer():
        return str(int(value))
    return format(Decimal(repr(float(value))), "f")


def stop_reason(reason: StopReason) -> str:
    """1.6 Reason: the neutral names are the 1.6 names, except the 2.0.1-only
    StoppedByEV and Timeout (1.6's start/stop points never produce them) and MasterPass
    (2.0.1 C16; empty master_pass_group_id by default), sent as Other."""
    if reason in (StopReason.STOPPED_BY_EV, StopReason.TIMEOUT, StopReason.MASTER_PASS):
        return StopReason.OTHER.value
    return reason.value


def authorization_status(text: str) -> AuthorizationStatus:
    """Parse a 1.6 AuthorizationStatus; anything unknown counts as Invalid."""
    try:
        return AuthorizationStatus(text)
    except ValueError:
        return AuthorizationStatus.INVALID
