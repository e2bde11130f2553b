"""OCPP 2.0.1 device model over the wire (B05-B08): Get/SetVariables with every result
status, one source of truth with the 1.6 keys, GetBaseReport / GetReport paging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from ocpp.exceptions import OccurrenceConstraintViolationError
from ocpp.v201 import call

from hil.csms201 import CsmsEmulator201
from tests.conftest import GUARD_S, StartApp
from tests.ocpp.v201_helpers import CP, start_registered

ITEMS_PER_MESSAGE = 10


@pytest.fixture
async def csms201(make_csms: object) -> AsyncIterator[CsmsEmulator201]:
    del make_csms  # torn down after the Apps, before the leak check
    async with CsmsEmulator201() as csms:
        yield csms


@pytest.fixture
async def agent(csms201: CsmsEmulator201, start_app: StartApp) -> None:
    await start_registered(
        csms201, start_app, ocpp={"device_model_items_per_message": ITEMS_PER_MESSAGE}
    )


def item(component: str, variable: str, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"component": {"name": component}, "variable": {"name": variable}}
    for key, value in extra.items():
        if key == "instance":
            out["variable"]["instance"] = value
        elif key == "evse":
            out["component"]["evse"] = value
        else:
            out[key] = value
    return out


@pytest.mark.usefixtures("agent")
async def test_get_variables_answers_every_status_in_request_order(
    csms201: CsmsEmulator201,
) -> None:
    result = await csms201.call(
        CP,
        call.GetVariables(
            get_variable_data=[
                item("OCPPCommCtrlr", "HeartbeatInterval"),
                item("NoSuchCtrlr", "HeartbeatInterval"),
                item("OCPPCommCtrlr", "NoSuchVariable"),
                item("OCPPCommCtrlr", "HeartbeatInterval", attribute_type="MaxSet"),
                item("SecurityCtrlr", "BasicAuthPassword"),
                item("OCPPCommCtrlr", "MessageAttempts", instance="TransactionEvent"),
                item("EVSE", "AvailabilityState", evse={"id": 1}),
                item("EVSE", "AvailabilityState", evse={"id": 7}),
            ]
        ),
    )
    statuses = [r["attribute_status"] for r in result.get_variable_result]
    assert statuses == [
        "Accepted",
        "UnknownComponent",
        "UnknownVariable",
        "NotSupportedAttributeType",
        "Rejected",  # write-only: never read back
        "Accepted",
        "Accepted",
        "UnknownComponent",
    ]
    values = [r.get("attribute_value") for r in result.get_variable_result]
    assert values[0] == "300"  # the interval BootNotification gave (emulator default)
    assert values[4] is None
    assert values[6] == "Available"


@pytest.mark.usefixtures("agent")
async def test_set_variables_statuses_and_the_value_is_shared_with_1_6(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    result = await csms201.call(
        CP,
        call.SetVariables(
            set_variable_data=[
                item("OCPPCommCtrlr", "HeartbeatInterval", attribute_value="120"),
                item("OCPPCommCtrlr", "HeartbeatInterval", attribute_value="-5"),
                item("OCPPCommCtrlr", "HeartbeatInterval", attribute_value="soon"),
                item("ClockCtrlr", "DateTime", attribute_value="2026-01-01T00:00:00Z"),
                item("NoSuchCtrlr", "X", attribute_value="1"),
                item("TxCtrlr", "NoSuchVariable", attribute_value="1"),
                item(
                    "OCPPCommCtrlr",
                    "HeartbeatInterval",
                    attribute_value="1",
                    attribute_type="Target",
                ),
                item(
                    "OCPPCommCtrlr",
                    "NetworkConfigurationPriority",
                    attribute_value="1",
                ),
            ]
        ),
    )
    statuses = [r["attribute_status"] for r in result.set_variable_result]
    assert statuses == [
        "Accepted",
        "Rejected",
        "Rejected",
        "Rejected",
        "UnknownComponent",
        "UnknownVariable",
        "NotSupportedAttributeType",
        "RebootRequired",
    ]
    reasons = [
        r.get("attribute_status_info", {}).get("reason_code") for r in result.set_variable_result
    ]
    assert reasons[1] == "ValueOutOfRange" and reasons[2] == "InvalidValue"
    assert reasons[3] == "ReadOnly"
    got = await csms201.call(
        CP, call.GetVariables(get_variable_data=[item("OCPPCommCtrlr", "HeartbeatInterval")])
    )
    assert got.get_variable_result[0]["attribute_value"] == "120"


async def test_a_value_set_over_2_0_1_is_what_1_6_reads_after_a_version_change(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    """One source of truth: SetVariables writes the setting the 1.6 key reads; it is
    persisted, so a restart on 1.6 (same data directory) reports the same value."""
    from ocpp.v16 import call as call16

    from hil.csms201 import PREFER_OCPP16

    first = await start_registered(csms201, start_app)
    await csms201.call(
        CP,
        call.SetVariables(
            set_variable_data=[item("OCPPCommCtrlr", "WebSocketPingInterval", attribute_value="45")]
        ),
    )
    await first.stop()
    async with CsmsEmulator201(subprotocols=PREFER_OCPP16) as csms16:
        second = await start_app(
            csms16, csms_options={"ocpp_version": "auto"}, data_dir=first.data_dir
        )
        await csms16.wait_for("StatusNotification", timeout_s=GUARD_S)
        conf = await csms16.call(CP, call16.GetConfiguration(key=["WebSocketPingInterval"]))
        assert conf.configuration_key[0]["value"] == "45"
        await second.stop()


@pytest.mark.usefixtures("agent")
async def test_more_items_than_items_per_message_is_refused(csms201: CsmsEmulator201) -> None:
    too_many = [item("OCPPCommCtrlr", "HeartbeatInterval")] * (ITEMS_PER_MESSAGE + 1)
    with pytest.raises(OccurrenceConstraintViolationError):
        await csms201.call(CP, call.GetVariables(get_variable_data=too_many), suppress=False)


@pytest.mark.usefixtures("agent")
async def test_full_inventory_comes_in_pages_after_the_answer(csms201: CsmsEmulator201) -> None:
    answer = await csms201.call(CP, call.GetBaseReport(request_id=11, report_base="FullInventory"))
    assert answer.status == "Accepted"
    data = await csms201.wait_report(11, timeout_s=GUARD_S)
    pages = [c.payload for c in csms201.calls("NotifyReport") if c.payload["requestId"] == 11]
    assert len(pages) == -(-len(data) // ITEMS_PER_MESSAGE)  # ceil
    assert [p["seqNo"] for p in pages] == list(range(len(pages)))
    assert [p.get("tbc", False) for p in pages] == [True] * (len(pages) - 1) + [False]
    assert all(len(p["reportData"]) <= ITEMS_PER_MESSAGE for p in pages)
    assert len({p["generatedAt"] for p in pages}) == 1
    names = {(d["component"]["name"], d["variable"]["name"]) for d in data}
    assert ("OCPPCommCtrlr", "HeartbeatInterval") in names
    assert ("ChargingStation", "AvailabilityState") in names
    password = [d for d in data if d["variable"]["name"] == "BasicAuthPassword"]
    assert password and all("value" not in a for a in password[0]["variableAttribute"])


@pytest.mark.usefixtures("agent")
async def test_configuration_and_summary_inventories(csms201: CsmsEmulator201) -> None:
    config = await csms201.call(
        CP, call.GetBaseReport(request_id=12, report_base="ConfigurationInventory")
    )
    summary = await csms201.call(
        CP, call.GetBaseReport(request_id=13, report_base="SummaryInventory")
    )
    assert config.status == summary.status == "Accepted"
    config_data = await csms201.wait_report(12, timeout_s=GUARD_S)
    summary_data = await csms201.wait_report(13, timeout_s=GUARD_S)
    assert all(a["mutability"] != "ReadOnly" for d in config_data for a in d["variableAttribute"])
    assert {d["variable"]["name"] for d in summary_data} <= {
        "AvailabilityState",
        "Available",
        "Problem",
    }


@pytest.mark.usefixtures("agent")
async def test_get_report_with_criteria_and_empty_result(csms201: CsmsEmulator201) -> None:
    answer = await csms201.call(
        CP,
        call.GetReport(
            request_id=21,
            component_variable=[{"component": {"name": "TxCtrlr"}}],
        ),
    )
    assert answer.status == "Accepted"
    data = await csms201.wait_report(21, timeout_s=GUARD_S)
    assert data and {d["component"]["name"] for d in data} == {"TxCtrlr"}
    empty = await csms201.call(
        CP,
        call.GetReport(
            request_id=22,
            component_variable=[{"component": {"name": "TxCtrlr"}}],
            component_criteria=["Problem"],
        ),
    )
    assert empty.status == "EmptyResultSet"
    assert not [c for c in csms201.calls("NotifyReport") if c.payload["requestId"] == 22]
