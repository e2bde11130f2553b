"""Neutral vocabulary -> OCPP 1.6 payload content, as tables.

Where a mapping produces payload content, the result is also checked against the
1.6 JSON schemas shipped with the ``ocpp`` library, so "what the CSMS would refuse"
is decided by the spec, not by this file.
"""

from __future__ import annotations

from typing import Any

import pytest
from ocpp.charge_point import snake_to_camel_case
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, validate_payload
from ocpp.v16 import enums

from agent.events import (
    AuthorizationStatus,
    ConnectorStatus,
    EvseStatusChanged,
    FaultCode,
    MeterSample,
    ReadingContext,
    SampledValue,
    StopReason,
)
from agent.ocpp.v16.mapping import (
    authorization_status,
    error_code_16,
    error_code_of,
    meter_value,
    sampled_value,
    status_notification,
    stop_reason,
)
from tests.conftest import OCPP_J_16_ERROR_CODES

TS = "2026-11-24T19:00:00.000Z"

# OCPP-J 1.6 4.2.3 (REFERENCE 2.1): the only CALLERROR codes a 1.6 peer knows.
ERROR_CODES_16 = OCPP_J_16_ERROR_CODES


async def assert_valid_16(action: str, payload: dict[str, Any]) -> None:
    await validate_payload(Call("1", action, snake_to_camel_case(payload)), "1.6")


def status(
    status: ConnectorStatus = ConnectorStatus.AVAILABLE,
    error: FaultCode | None = None,
    info: str | None = None,
    evse_id: int = 1,
) -> EvseStatusChanged:
    return EvseStatusChanged(evse_id, status, error, info, TS)


# ------------------------------------------------------------------ StatusNotification


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param(
            status(),
            {"connector_id": 1, "error_code": "NoError", "status": "Available", "timestamp": TS},
            id="no-error-no-info",
        ),
        pytest.param(
            status(ConnectorStatus.FAULTED, FaultCode.GROUND_FAILURE, "RCD tripped"),
            {
                "connector_id": 1,
                "error_code": "GroundFailure",
                "status": "Faulted",
                "timestamp": TS,
                "info": "RCD tripped",
            },
            id="error-and-info",
        ),
        pytest.param(
            status(ConnectorStatus.CHARGING, None, ""),
            {"connector_id": 1, "error_code": "NoError", "status": "Charging", "timestamp": TS},
            id="empty-info-omitted",
        ),
        pytest.param(
            status(ConnectorStatus.UNAVAILABLE, evse_id=0),
            {"connector_id": 0, "error_code": "NoError", "status": "Unavailable", "timestamp": TS},
            id="station-connector-0",
        ),
        pytest.param(
            status(ConnectorStatus.FAULTED, FaultCode.POWER_SWITCH_FAILURE, "x" * 60),
            {
                "connector_id": 1,
                "error_code": "PowerSwitchFailure",
                "status": "Faulted",
                "timestamp": TS,
                "info": "x" * 50,
            },
            id="info-truncated-to-50",
        ),
        pytest.param(
            status(ConnectorStatus.FAULTED, FaultCode.OTHER_ERROR, "y" * 50),
            {
                "connector_id": 1,
                "error_code": "OtherError",
                "status": "Faulted",
                "timestamp": TS,
                "info": "y" * 50,
            },
            id="info-exactly-50-kept",
        ),
    ],
)
async def test_status_notification(event: EvseStatusChanged, expected: dict[str, Any]) -> None:
    fields = status_notification(event)
    assert fields == expected
    await assert_valid_16("StatusNotification", fields)


async def test_untruncated_info_would_be_refused_by_the_schema() -> None:
    # Guards the truncation above: the schema really limits info to 50 characters.
    fields = status_notification(status(info="z" * 50)) | {"info": "z" * 51}
    with pytest.raises(OCPPError):
        await assert_valid_16("StatusNotification", fields)


@pytest.mark.parametrize("code", list(FaultCode))
def test_every_fault_code_is_a_1_6_error_code(code: FaultCode) -> None:
    assert error_code_of(code) in {e.value for e in enums.ChargePointErrorCode}


def test_no_fault_is_no_error() -> None:
    assert error_code_of(None) == "NoError"


@pytest.mark.parametrize("connector_status", list(ConnectorStatus))
def test_every_connector_status_is_a_1_6_status(connector_status: ConnectorStatus) -> None:
    fields = status_notification(status(connector_status))
    assert fields["status"] in {e.value for e in enums.ChargePointStatus}


# ------------------------------------------------------------------ MeterValues


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            SampledValue("Energy.Active.Import.Register", 12345.0, "Wh"),
            {"value": "12345", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            id="integer-without-dot-zero",
        ),
        pytest.param(
            SampledValue("Energy.Active.Import.Register", 0.0, "Wh"),
            {"value": "0", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            id="zero",
        ),
        pytest.param(
            SampledValue("Power.Active.Import", -0.0, "W"),
            {"value": "0", "measurand": "Power.Active.Import", "unit": "W"},
            id="negative-zero",
        ),
        pytest.param(
            SampledValue("Power.Active.Import", 7360.5, "W"),
            {"value": "7360.5", "measurand": "Power.Active.Import", "unit": "W"},
            id="decimal",
        ),
        pytest.param(
            SampledValue("Current.Import", 15.98, "A", "L2"),
            {"value": "15.98", "measurand": "Current.Import", "unit": "A", "phase": "L2"},
            id="phase",
        ),
        pytest.param(
            SampledValue("Voltage", 230.0, "V", "L1-N"),
            {"value": "230", "measurand": "Voltage", "unit": "V", "phase": "L1-N"},
            id="phase-to-neutral",
        ),
        pytest.param(
            SampledValue("Frequency", 50.02, "Hz"),
            {"value": "50.02", "measurand": "Frequency"},
            id="hz-has-no-1.6-unit",
        ),
        pytest.param(
            SampledValue("Current.Offered", 16.0, "A"),
            {"value": "16", "measurand": "Current.Offered", "unit": "A"},
            id="offered",
        ),
    ],
)
async def test_sampled_value(value: SampledValue, expected: dict[str, Any]) -> None:
    out = sampled_value(value, "Sample.Periodic")
    assert out == {**expected, "context": "Sample.Periodic", "location": "Outlet"}
    sample = {"timestamp": TS, "sampled_value": [out]}
    await assert_valid_16("MeterValues", {"connector_id": 1, "meter_value": [sample]})


async def test_hz_unit_would_be_refused_by_the_schema() -> None:
    # Guards the omission above: 1.6 UnitOfMeasure has no "Hz".
    out = sampled_value(SampledValue("Frequency", 50.0, "Hz"), "Sample.Periodic") | {"unit": "Hz"}
    sample = {"timestamp": TS, "sampled_value": [out]}
    with pytest.raises(OCPPError):
        await assert_valid_16("MeterValues", {"connector_id": 1, "meter_value": [sample]})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            SampledValue("SoC", 81.3, "Percent", location="EV"),
            {"value": "81.3", "measurand": "SoC", "unit": "Percent", "location": "EV"},
            id="soc-from-the-ev",
        ),
        pytest.param(
            SampledValue("Power.Offered", 11040.0, "W"),
            {"value": "11040", "measurand": "Power.Offered", "unit": "W", "location": "Outlet"},
            id="power-offered",
        ),
    ],
)
async def test_sampled_value_location(value: SampledValue, expected: dict[str, Any]) -> None:
    out = sampled_value(value, "Sample.Clock")
    assert out == {**expected, "context": "Sample.Clock"}
    sample = {"timestamp": TS, "sampled_value": [out]}
    await assert_valid_16("MeterValues", {"connector_id": 1, "meter_value": [sample]})


@pytest.mark.parametrize(
    ("number", "text"),
    [
        pytest.param(1234567.5, "1234567.5", id="seven-digit-energy"),
        pytest.param(150000.5, "150000.5", id="dc-power"),
        pytest.param(0.00001, "0.00001", id="small-not-scientific"),
    ],
)
def test_non_integers_keep_their_digits(number: float, text: str) -> None:
    out = sampled_value(SampledValue("Power.Active.Import", number, "W"), "Sample.Periodic")
    assert out["value"] == text


@pytest.mark.parametrize("context", list(ReadingContext))
async def test_meter_value_carries_context_and_timestamp(context: ReadingContext) -> None:
    sample = MeterSample(
        timestamp=TS,
        context=context,
        values=(
            SampledValue("Energy.Active.Import.Register", 100.0, "Wh"),
            SampledValue("Current.Import", 6.5, "A", "L1"),
        ),
    )
    mv = meter_value(sample)
    assert mv["timestamp"] == TS
    assert [v["context"] for v in mv["sampled_value"]] == [context.value] * 2
    assert [v["value"] for v in mv["sampled_value"]] == ["100", "6.5"]
    assert context.value in {e.value for e in enums.ReadingContext}
    await assert_valid_16("MeterValues", {"connector_id": 1, "meter_value": [mv]})


# ------------------------------------------------------------------ CALLERROR codes


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        pytest.param("FormatViolation", "FormationViolation", id="format"),
        pytest.param(
            "OccurrenceConstraintViolation", "OccurenceConstraintViolation", id="occurrence"
        ),
        *(pytest.param(c, c, id=c) for c in sorted(ERROR_CODES_16)),
    ],
)
def test_error_code_16(code: str, expected: str) -> None:
    assert error_code_16(code) == expected


def _library_error_codes() -> list[str]:
    def walk(cls: type[OCPPError]) -> list[type[OCPPError]]:
        return [cls, *(c for sub in cls.__subclasses__() for c in walk(sub))]

    return sorted({c.code for c in walk(OCPPError) if getattr(c, "code", None)})


@pytest.mark.parametrize("code", _library_error_codes())
def test_every_library_error_code_has_a_1_6_spelling(code: str) -> None:
    assert error_code_16(code) in ERROR_CODES_16


# ------------------------------------------------------------------ enums


@pytest.mark.parametrize("reason", list(StopReason))
def test_stop_reason_is_a_1_6_reason(reason: StopReason) -> None:
    assert stop_reason(reason) in {e.value for e in enums.Reason}


@pytest.mark.parametrize("value", [e.value for e in enums.AuthorizationStatus])
def test_authorization_status_known(value: str) -> None:
    assert authorization_status(value) == AuthorizationStatus(value)


@pytest.mark.parametrize("text", ["", "Unknown", "accepted", "ACCEPTED", " Accepted", "NoError"])
def test_authorization_status_unknown_is_invalid(text: str) -> None:
    assert authorization_status(text) is AuthorizationStatus.INVALID
