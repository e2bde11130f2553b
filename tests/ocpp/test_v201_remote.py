"""OCPP 2.0.1 remote control and the rest of the message set (F05, F06, P01/P02, N07,
C01) plus robustness: malformed frames and unknown actions get 2.0.1 CALLERRORs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ocpp.v201 import call

from hil.csms201 import CsmsEmulator201
from tests.conftest import GUARD_S, RunningApp, StartApp
from tests.ocpp.v201_helpers import CP, start_registered

# OCPP-J 2.0.1 Part 4 4.3 error codes (2.0.1 spellings).
ERROR_CODES_201 = frozenset(
    {
        "FormatViolation",
        "GenericError",
        "InternalError",
        "MessageTypeNotSupported",
        "NotImplemented",
        "NotSupported",
        "OccurrenceConstraintViolation",
        "PropertyConstraintViolation",
        "ProtocolError",
        "RpcFrameworkError",
        "SecurityError",
        "TypeConstraintViolation",
    }
)


@pytest.fixture
async def csms201(make_csms: object) -> AsyncIterator[CsmsEmulator201]:
    del make_csms  # torn down after the Apps, before the leak check
    async with CsmsEmulator201() as csms:
        yield csms


@pytest.fixture
async def agent(csms201: CsmsEmulator201, start_app: StartApp) -> RunningApp:
    return await start_registered(csms201, start_app)


# ------------------------------------------------------------ TriggerMessage


@pytest.mark.parametrize(
    ("message", "evse", "status", "action"),
    [
        ("Heartbeat", None, "Accepted", "Heartbeat"),
        ("StatusNotification", {"id": 1}, "Accepted", "StatusNotification"),
        ("StatusNotification", None, "Rejected", None),
        ("StatusNotification", {"id": 5}, "Rejected", None),
        ("MeterValues", {"id": 1}, "Accepted", "MeterValues"),
        ("FirmwareStatusNotification", None, "Accepted", "FirmwareStatusNotification"),
        ("LogStatusNotification", None, "Accepted", "LogStatusNotification"),
        ("BootNotification", None, "Rejected", None),  # F06.FR.17: already Accepted
        ("SignChargingStationCertificate", None, "NotImplemented", None),
    ],
)
async def test_trigger_message(
    csms201: CsmsEmulator201,
    agent: RunningApp,
    message: str,
    evse: dict[str, Any] | None,
    status: str,
    action: str | None,
) -> None:
    before = {a: len(csms201.calls(a)) for a in ("Heartbeat", "StatusNotification")}
    answer = await csms201.call(CP, call.TriggerMessage(requested_message=message, evse=evse))
    assert answer.status == status
    if action is not None:
        got = await csms201.wait_for(action, count=before.get(action, 0) + 1, timeout_s=GUARD_S)
        if action == "StatusNotification":
            assert got.payload["evseId"] == 1
        if action in ("FirmwareStatusNotification", "LogStatusNotification"):
            assert got.payload["status"] == "Idle"
    assert not agent.task.done()


async def test_triggered_meter_values_of_evse_zero_are_the_station_total(
    csms201: CsmsEmulator201, agent: RunningApp
) -> None:
    station = agent.app.station
    assert station is not None
    readings = [ctl.hw.meter.latest for ctl in station.controllers.values()]
    assert all(r is not None for r in readings)  # idle meters: their registers stand still
    total_wh = sum(r.energy_import_wh for r in readings if r is not None)
    before = len(csms201.calls("MeterValues"))
    answer = await csms201.call(
        CP, call.TriggerMessage(requested_message="MeterValues", evse={"id": 0})
    )
    assert answer.status == "Accepted"
    got = await csms201.wait_for("MeterValues", count=before + 1, timeout_s=GUARD_S)
    assert got.payload["evseId"] == 0
    [value] = [
        v
        for mv in got.payload["meterValue"]
        for v in mv["sampledValue"]
        if v.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"
    ]
    assert value["context"] == "Trigger"
    assert float(value["value"]) == pytest.approx(total_wh)


# ---------------------------------------------------------- DataTransfer


async def test_data_transfer_from_the_csms(csms201: CsmsEmulator201, agent: RunningApp) -> None:
    unknown = await csms201.call(CP, call.DataTransfer(vendor_id="com.example"))
    assert unknown.status == "UnknownVendorId"
    ours = await csms201.call(
        CP, call.DataTransfer(vendor_id="org.evse-agent", message_id="nothing")
    )
    assert ours.status == "UnknownMessageId"


async def test_data_transfer_to_the_csms(csms201: CsmsEmulator201, agent: RunningApp) -> None:
    adapter = agent.app.adapter201
    assert adapter is not None
    assert await adapter.data_transfer("evse-agent.test", "hello", {"a": 1}) == (
        "Accepted",
        None,
    )
    assert await adapter.data_transfer("com.other") == ("UnknownVendorId", None)
    sent = await csms201.wait_for("DataTransfer", timeout_s=GUARD_S)
    assert sent.payload == {"vendorId": "evse-agent.test", "messageId": "hello", "data": {"a": 1}}


# ------------------------------------------------------------- unlock, remote


async def test_unlock_connector(csms201: CsmsEmulator201, agent: RunningApp) -> None:
    unknown = await csms201.call(CP, call.UnlockConnector(evse_id=3, connector_id=1))
    assert unknown.status == "UnknownConnector"
    idle = await csms201.call(CP, call.UnlockConnector(evse_id=1, connector_id=1))
    assert idle.status == "UnlockFailed"  # the simulated socket has no lock


async def test_swipe_is_authorized_online_and_remote_stop_by_journal_id(
    csms201: CsmsEmulator201, agent: RunningApp
) -> None:
    agent.sim("plug")
    agent.sim("swipe", "TAG1")
    authorize = await csms201.wait_for("Authorize", timeout_s=GUARD_S)
    assert authorize.payload["idToken"] == {"idToken": "TAG1", "type": "ISO14443"}
    await agent.app.wait_status(1, "Charging")
    under_tx = await csms201.call(CP, call.UnlockConnector(evse_id=1, connector_id=1))
    assert under_tx.status == "OngoingAuthorizedTransaction"
    assert agent.app.station is not None
    (tx,) = agent.app.station.running_transactions()
    unknown = await csms201.call(CP, call.RequestStopTransaction(transaction_id="nope"))
    assert unknown.status == "Rejected"
    stopped = await csms201.call(CP, call.RequestStopTransaction(transaction_id=tx.tx_id))
    assert stopped.status == "Accepted"
    await agent.app.wait_status(1, "Finishing")


async def test_request_start_transaction(csms201: CsmsEmulator201, agent: RunningApp) -> None:
    agent.sim("plug")
    answer = await csms201.call(
        CP,
        call.RequestStartTransaction(
            id_token={"id_token": "REMOTE1", "type": "Central"}, remote_start_id=77, evse_id=1
        ),
    )
    assert answer.status == "Accepted"
    await agent.app.wait_status(1, "Charging")
    busy = await csms201.call(
        CP,
        call.RequestStartTransaction(
            id_token={"id_token": "REMOTE2", "type": "Central"}, remote_start_id=78, evse_id=1
        ),
    )
    assert busy.status == "Rejected"


# -------------------------------------------------------------- NotifyEvent


async def test_a_hardware_fault_and_its_clearing_are_notify_events(
    csms201: CsmsEmulator201, agent: RunningApp
) -> None:
    agent.sim("plug")
    agent.sim("swipe", "TAG1")
    await agent.app.wait_status(1, "Charging")
    agent.sim("fault", "cp-error")
    raised = await csms201.wait_for("NotifyEvent", timeout_s=GUARD_S)
    await csms201.wait_for(
        "StatusNotification",
        predicate=lambda c: c.payload["connectorStatus"] == "Faulted",
        timeout_s=GUARD_S,
    )
    agent.sim("clear")
    cleared = await csms201.wait_for("NotifyEvent", count=2, timeout_s=GUARD_S)
    (up,) = raised.payload["eventData"]
    (down,) = cleared.payload["eventData"]
    assert up["actualValue"] == "true" and "cleared" not in up
    assert down["actualValue"] == "false" and down["cleared"] is True
    for event in (up, down):
        assert event["component"]["evse"]["id"] == 1
        assert event["variable"]["name"] == "Problem"
        assert event["trigger"] == "Delta"
        assert event["eventNotificationType"] == "HardWiredNotification"
    assert up["techCode"] == down["techCode"]
    assert down["eventId"] > up["eventId"]
    assert cleared.payload["seqNo"] == raised.payload["seqNo"] == 0  # one message each


# ---------------------------------------------------------- malformed frames


async def call_error(csms: CsmsEmulator201, frame: str) -> list[Any]:
    answer = json.loads(await csms.send_raw(CP, frame, timeout_s=GUARD_S))
    assert isinstance(answer, list) and len(answer) == 5, answer
    assert answer[0] == 4
    assert answer[2] in ERROR_CODES_201
    assert isinstance(answer[3], str) and isinstance(answer[4], dict)
    return answer


@pytest.mark.parametrize(
    ("frame", "message_id", "code"),
    [
        ("{not json", "-1", "FormatViolation"),
        ('{"a": 1}', "-1", "ProtocolError"),
        ('[2, "m1", "NoSuchAction", {}]', "m1", "NotImplemented"),
        ('[2, "m2", "SetDisplayMessage", {}]', "m2", "NotSupported"),
        ('[2, "m3", "Reset", {"type": 5}]', "m3", None),
        ('[2, "m4", "Reset", {}]', "m4", None),
        ('[2, "m5", "Reset", {"type": "Immediate", "extra": 1}]', "m5", None),
    ],
)
async def test_malformed_frames_get_a_2_0_1_call_error(
    csms201: CsmsEmulator201, agent: RunningApp, frame: str, message_id: str, code: str | None
) -> None:
    answer = await call_error(csms201, frame)
    assert answer[1] == message_id
    if code is not None:
        assert answer[2] == code
    # still serving on the same connection
    got = await csms201.call(CP, call.TriggerMessage(requested_message="Heartbeat"))
    assert got.status == "Accepted"
    assert csms201.connections[CP] == 1
    assert not agent.task.done()
