"""OCPP 2.0.1 provisioning (B01-B03, B11/B12) and availability (G01-G04) of the whole
agent against the 2.0.1 CSMS emulator over a real loopback WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from ocpp.v201 import call

from hil.csms201 import CsmsEmulator201
from tests.conftest import GUARD_S, StartApp
from tests.ocpp.v201_helpers import CP, V201, registered201, start_registered

GET_HEARTBEAT_INTERVAL = call.GetVariables(
    get_variable_data=[
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
    ]
)


@pytest.fixture
async def csms201(make_csms: object) -> AsyncIterator[CsmsEmulator201]:
    del make_csms  # torn down after the Apps, before the leak check
    async with CsmsEmulator201(heartbeat_interval_s=300) as csms:
        yield csms


async def test_boot_accepted_reports_identity_reason_and_every_connector(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    await start_registered(csms201, start_app)
    boot = csms201.calls("BootNotification")[0].payload
    assert boot["reason"] == "PowerUp"
    station = boot["chargingStation"]
    assert station["vendorName"] and station["model"] and station["firmwareVersion"]
    status = csms201.calls("StatusNotification")[0].payload
    assert status == {
        "timestamp": status["timestamp"],
        "connectorStatus": "Available",
        "evseId": 1,
        "connectorId": 1,
    }
    assert csms201.negotiated[CP] == "ocpp2.0.1"


async def test_heartbeat_interval_from_boot_is_used(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    csms201.heartbeat_interval_s = 1
    await start_registered(csms201, start_app)
    first = await csms201.wait_for("Heartbeat", timeout_s=GUARD_S)
    second = await csms201.wait_for("Heartbeat", count=2, timeout_s=GUARD_S)
    assert second.monotonic_s - first.monotonic_s > 0.5  # paced by the interval


async def test_pending_answers_requests_but_sends_nothing_until_accepted(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    csms201.boot_status = "Pending"
    csms201.heartbeat_interval_s = 1  # the retry interval while Pending
    await start_app(csms201, csms_options=V201)
    await csms201.wait_for("BootNotification", timeout_s=GUARD_S)
    # B02: the CSMS may configure the station while Pending
    got = await csms201.call(CP, GET_HEARTBEAT_INTERVAL)
    assert got.get_variable_result[0]["attribute_status"] == "Accepted"
    refused = await csms201.call(
        CP,
        call.RequestStartTransaction(
            id_token={"id_token": "T", "type": "ISO14443"}, remote_start_id=1
        ),
    )
    assert refused.status == "Rejected"
    retry = await csms201.wait_for("BootNotification", count=2, timeout_s=GUARD_S)
    await csms201.wait_answer(retry, timeout_s=GUARD_S)
    assert not csms201.calls("StatusNotification")
    assert not csms201.calls("Heartbeat")
    csms201.boot_status = "Accepted"
    boot = await csms201.wait_for("BootNotification", count=3, timeout_s=GUARD_S)
    await registered201(csms201, after_seq=boot.seq - 1)


async def test_triggered_boot_while_pending_registers_at_once(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    csms201.boot_status = "Pending"
    csms201.heartbeat_interval_s = 3600  # no retry on its own within the test
    await start_app(csms201, csms_options=V201)
    pending = await csms201.wait_for("BootNotification", timeout_s=GUARD_S)
    await csms201.wait_answer(pending, timeout_s=GUARD_S)
    csms201.boot_status = "Accepted"
    answer = await csms201.call(CP, call.TriggerMessage(requested_message="BootNotification"))
    assert answer.status == "Accepted"
    boot = await csms201.wait_for("BootNotification", count=2, timeout_s=GUARD_S)
    assert boot.payload["reason"] == "Triggered"
    await registered201(csms201, after_seq=boot.seq - 1)
    # F06.FR.17: once Accepted, a BootNotification is no longer triggered
    again = await csms201.call(CP, call.TriggerMessage(requested_message="BootNotification"))
    assert again.status == "Rejected"


async def test_rejected_answers_nothing_and_retries_after_the_interval(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    csms201.boot_status = "Rejected"
    csms201.heartbeat_interval_s = 1
    await start_app(csms201, csms_options=V201)
    await csms201.wait_for("BootNotification", timeout_s=GUARD_S)
    with pytest.raises(TimeoutError):  # B03: a CSMS request gets no answer while Rejected
        await csms201.call(CP, GET_HEARTBEAT_INTERVAL, timeout_s=0.5)
    first = csms201.calls("BootNotification")[0]
    second = await csms201.wait_for("BootNotification", count=2, timeout_s=GUARD_S)
    assert second.monotonic_s - first.monotonic_s >= 0.9
    assert not csms201.calls("StatusNotification")


async def test_status_change_is_reported_as_occupied(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    agent = await start_registered(csms201, start_app)
    agent.sim("plug")
    occupied = await csms201.wait_for(
        "StatusNotification",
        predicate=lambda c: c.payload["connectorStatus"] == "Occupied",
        timeout_s=GUARD_S,
    )
    assert occupied.payload["evseId"] == 1 and occupied.payload["connectorId"] == 1


async def test_change_availability_of_station_evse_and_connector(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    agent = await start_registered(csms201, start_app)
    result = await csms201.call(
        CP, call.ChangeAvailability(operational_status="Inoperative", evse={"id": 1})
    )
    assert result.status == "Accepted"
    await csms201.wait_for(
        "StatusNotification",
        predicate=lambda c: c.payload["connectorStatus"] == "Unavailable",
        timeout_s=GUARD_S,
    )
    back = await csms201.call(
        CP,
        call.ChangeAvailability(operational_status="Operative", evse={"id": 1, "connector_id": 1}),
    )
    assert back.status == "Accepted"
    await csms201.wait_for(
        "StatusNotification",
        count=2,
        predicate=lambda c: c.payload["connectorStatus"] == "Available",
        timeout_s=GUARD_S,
    )
    station = await csms201.call(CP, call.ChangeAvailability(operational_status="Inoperative"))
    assert station.status == "Accepted"
    await csms201.wait_for(
        "StatusNotification",
        count=2,
        predicate=lambda c: c.payload["connectorStatus"] == "Unavailable",
        timeout_s=GUARD_S,
    )
    unknown = await csms201.call(
        CP, call.ChangeAvailability(operational_status="Inoperative", evse={"id": 9})
    )
    assert unknown.status == "Rejected"
    bad_connector = await csms201.call(
        CP,
        call.ChangeAvailability(operational_status="Operative", evse={"id": 1, "connector_id": 2}),
    )
    assert bad_connector.status == "Rejected"
    assert not agent.task.done()


async def test_availability_survives_a_restart(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    first = await start_registered(csms201, start_app)
    result = await csms201.call(
        CP, call.ChangeAvailability(operational_status="Inoperative", evse={"id": 1})
    )
    assert result.status == "Accepted"
    await first.stop()
    boots = len(csms201.calls("BootNotification"))
    await start_app(csms201, csms_options=V201, data_dir=first.data_dir)
    boot = await csms201.wait_for("BootNotification", count=boots + 1, timeout_s=GUARD_S)
    status = await csms201.wait_for(
        "StatusNotification", predicate=lambda c: c.seq > boot.seq, timeout_s=GUARD_S
    )
    assert status.payload["connectorStatus"] == "Unavailable"


async def test_reset_immediate_restarts_and_next_boot_says_remote_reset(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    first = await start_registered(csms201, start_app)
    result = await csms201.call(CP, call.Reset(type="Immediate"))
    assert result.status == "Accepted"
    assert await first.exited() == "reset"
    await start_app(csms201, csms_options=V201, data_dir=first.data_dir)
    boot = await csms201.wait_for("BootNotification", count=2, timeout_s=GUARD_S)
    assert boot.payload["reason"] == "RemoteReset"


async def test_reset_on_idle_waits_for_the_transaction(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    agent = await start_registered(csms201, start_app)
    agent.sim("plug")
    agent.sim("swipe", "TAG1")
    await agent.app.wait_status(1, "Charging")
    result = await csms201.call(CP, call.Reset(type="OnIdle"))
    assert result.status == "Scheduled"
    assert not agent.task.done()
    agent.sim("unplug")
    assert await agent.exited() == "reset"


async def test_reset_of_an_unknown_evse_is_rejected_with_a_reason(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    # the per-EVSE reset itself: tests/ocpp/test_v201_reset.py
    agent = await start_registered(csms201, start_app)
    result = await csms201.call(CP, call.Reset(type="Immediate", evse_id=5))
    assert result.status == "Rejected"
    assert result.status_info["reason_code"] == "UnsupportedRequest"
    assert not agent.task.done()
