"""The 2.0.1 CSMS emulator (hil/csms201.py) against bare `ocpp.v201.ChargePoint` clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from ocpp.exceptions import InternalError
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from hil.bare_cp import receive_loop
from hil.csms import CP_TO_CSMS, CSMS_FROM_CP, CSMS_TO_CP, CallErrorReply
from hil.csms201 import PREFER_OCPP16, PREFER_OCPP201, CsmsEmulator201

OCPP201 = [Subprotocol("ocpp2.0.1")]
BOTH = [Subprotocol("ocpp2.0.1"), Subprotocol("ocpp1.6")]
GUARD_S = 10.0  # only a guard against hangs; every wait below is event based
NOW = "2026-11-24T22:00:00Z"


class BareChargePoint(ChargePoint):  # type: ignore[misc]
    """A 2.0.1 charger built only from the `ocpp` library, with one CSMS->CS handler."""

    def __init__(self, cp_id: str, ws: ClientConnection) -> None:
        super().__init__(cp_id, ws)
        self.asked: list[list[dict[str, Any]]] = []

    @on(Action.get_variables)  # type: ignore[untyped-decorator]
    def on_get_variables(
        self, get_variable_data: list[dict[str, Any]], **_: Any
    ) -> call_result.GetVariables:
        self.asked.append(get_variable_data)
        return call_result.GetVariables(
            get_variable_result=[
                {
                    "attribute_status": "Accepted",
                    "attribute_value": "300",
                    "component": item["component"],
                    "variable": item["variable"],
                }
                for item in get_variable_data
            ]
        )


@pytest.fixture
async def emulator() -> AsyncIterator[CsmsEmulator201]:
    async with CsmsEmulator201(heartbeat_interval_s=42) as csms:
        yield csms


@contextlib.asynccontextmanager
async def charger(
    csms: CsmsEmulator201, cp_id: str = "CP1", subprotocols: list[Subprotocol] = OCPP201
) -> AsyncIterator[BareChargePoint]:
    """Connect a 2.0.1 charger and run its receive loop for the duration of the block."""
    async with connect(f"{csms.url}/{cp_id}", subprotocols=subprotocols) as ws:
        assert ws.subprotocol == "ocpp2.0.1"
        cp = BareChargePoint(cp_id, ws)
        async with receive_loop(cp):
            yield cp


def boot_request() -> call.BootNotification:
    return call.BootNotification(
        charging_station={"model": "M1", "vendor_name": "evse-agent"}, reason="PowerUp"
    )


def tx_event(
    event_type: str, seq_no: int, tx_id: str = "tx-1", id_token: str | None = None
) -> call.TransactionEvent:
    return call.TransactionEvent(
        event_type=event_type,
        timestamp=NOW,
        trigger_reason="Authorized" if id_token else "CablePluggedIn",
        seq_no=seq_no,
        transaction_info={"transaction_id": tx_id},
        id_token=None if id_token is None else {"id_token": id_token, "type": "ISO14443"},
        evse={"id": 1, "connector_id": 1},
    )


@pytest.mark.parametrize("status", ["Accepted", "Pending", "Rejected"])
async def test_boot_notification_answers_scripted_status_interval_and_utc_time(
    emulator: CsmsEmulator201, status: str
) -> None:
    emulator.boot_status = status
    async with charger(emulator) as cp:
        response = await cp.call(boot_request())

    assert response.status == status
    assert response.interval == 42
    datetime.fromisoformat(response.current_time.replace("Z", "+00:00"))
    (boot,) = emulator.calls("BootNotification", "CP1")
    assert boot.payload == {
        "chargingStation": {"model": "M1", "vendorName": "evse-agent"},
        "reason": "PowerUp",
    }
    assert emulator.negotiated["CP1"] == "ocpp2.0.1"


async def test_authorize_answers_the_scripted_id_token_status(emulator: CsmsEmulator201) -> None:
    emulator.set_authorize_status("STOLEN", "Blocked")
    async with charger(emulator) as cp:
        stolen = await cp.call(call.Authorize(id_token={"id_token": "STOLEN", "type": "ISO14443"}))
        known = await cp.call(call.Authorize(id_token={"id_token": "TAG1", "type": "ISO14443"}))

    assert stolen.id_token_info["status"] == "Blocked"
    assert known.id_token_info["status"] == "Accepted"


async def test_transaction_events_are_grouped_by_transaction_id(
    emulator: CsmsEmulator201,
) -> None:
    emulator.set_authorize_status("BAD", "Invalid")
    async with charger(emulator) as cp:
        started = await cp.call(tx_event("Started", 0))
        authorized = await cp.call(tx_event("Updated", 1, id_token="TAG1"))
        ended = await cp.call(tx_event("Ended", 2))
        other = await cp.call(tx_event("Started", 0, tx_id="tx-2", id_token="BAD"))

    assert started.id_token_info is None  # no idToken, no idTokenInfo
    assert authorized.id_token_info == {"status": "Accepted"}
    assert ended.id_token_info is None
    assert other.id_token_info == {"status": "Invalid"}
    first = emulator.transactions["tx-1"]
    assert first["chargePointId"] == "CP1"
    assert first["start"]["eventType"] == "Started"
    assert first["stop"]["eventType"] == "Ended"
    assert [e["seqNo"] for e in first["events"]] == [0, 1, 2]
    assert first["events"][1]["idToken"] == {"idToken": "TAG1", "type": "ISO14443"}
    assert emulator.transactions["tx-2"]["stop"] is None


async def test_transaction_event_answer_hook_overrides_the_defaults() -> None:
    seen: list[tuple[str, str]] = []

    def answer(cp_id: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        seen.append((cp_id, payload["eventType"]))
        if payload["eventType"] != "Updated":
            return None
        return {"totalCost": 1.25, "chargingPriority": 3, "idTokenInfo": {"status": "Expired"}}

    async with (
        CsmsEmulator201(transaction_event_answer=answer) as csms,
        charger(csms) as cp,
    ):
        plain = await cp.call(tx_event("Started", 0))
        scripted = await cp.call(tx_event("Updated", 1, id_token="TAG1"))

    assert seen == [("CP1", "Started"), ("CP1", "Updated")]
    assert (plain.total_cost, plain.charging_priority) == (None, None)
    assert (scripted.total_cost, scripted.charging_priority) == (1.25, 3)
    assert scripted.id_token_info == {"status": "Expired"}


CS_TO_CSMS: list[Any] = [
    call.Heartbeat(),
    call.StatusNotification(timestamp=NOW, connector_status="Available", evse_id=1, connector_id=1),
    call.MeterValues(
        evse_id=1,
        meter_value=[{"timestamp": NOW, "sampled_value": [{"value": 1234.0}]}],
    ),
    call.NotifyReport(request_id=1, generated_at=NOW, seq_no=0),
    call.NotifyEvent(
        generated_at=NOW,
        seq_no=0,
        event_data=[
            {
                "event_id": 1,
                "timestamp": NOW,
                "trigger": "Delta",
                "actual_value": "Faulted",
                "event_notification_type": "HardWiredNotification",
                "component": {"name": "Connector", "evse": {"id": 1, "connector_id": 1}},
                "variable": {"name": "AvailabilityState"},
            }
        ],
    ),
    call.SecurityEventNotification(type="StartupOfTheDevice", timestamp=NOW),
    call.FirmwareStatusNotification(status="Downloading", request_id=7),
    call.LogStatusNotification(status="Uploading", request_id=8),
    call.ReportChargingProfiles(
        request_id=9,
        charging_limit_source="CSO",
        evse_id=1,
        charging_profile=[
            {
                "id": 1,
                "stack_level": 0,
                "charging_profile_purpose": "TxDefaultProfile",
                "charging_profile_kind": "Absolute",
                "charging_schedule": [
                    {
                        "id": 1,
                        "charging_rate_unit": "A",
                        "charging_schedule_period": [{"start_period": 0, "limit": 16.0}],
                    }
                ],
            }
        ],
    ),
    call.NotifyChargingLimit(charging_limit={"charging_limit_source": "EMS"}, evse_id=1),
    call.SignCertificate(csr="-----BEGIN CERTIFICATE REQUEST-----"),
]


@pytest.mark.parametrize("request_", CS_TO_CSMS, ids=[type(r).__name__ for r in CS_TO_CSMS])
async def test_every_station_message_is_answered_and_recorded(
    emulator: CsmsEmulator201, request_: Any
) -> None:
    action = type(request_).__name__
    async with charger(emulator) as cp:
        response = await cp.call(request_, suppress=False)
        received = await emulator.wait_for(action, cp_id="CP1", timeout_s=GUARD_S)
        answer = await emulator.wait_answer(received, timeout_s=GUARD_S)

    assert type(response).__name__ == action  # a CALLRESULT of the right action
    assert not isinstance(answer, CallErrorReply)
    assert received.charge_point_id == "CP1"


@pytest.mark.parametrize(
    ("vendor_id", "status"),
    [("evse-agent.test", "Accepted"), ("someone.else", "UnknownVendorId")],
)
async def test_data_transfer_knows_one_vendor(
    emulator: CsmsEmulator201, vendor_id: str, status: str
) -> None:
    async with charger(emulator) as cp:
        response = await cp.call(call.DataTransfer(vendor_id=vendor_id))
    assert response.status == status


async def test_csms_call_reaches_the_charger_and_the_hook_sees_both_ways() -> None:
    seen: list[tuple[str, str, str, dict[str, Any]]] = []
    async with (
        CsmsEmulator201(on_message=lambda *event: seen.append(event)) as csms,
        charger(csms) as cp,
    ):
        await cp.call(call.Heartbeat())
        result = await csms.call(
            "CP1",
            call.GetVariables(
                get_variable_data=[
                    {
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                    }
                ]
            ),
            timeout_s=GUARD_S,
        )

    assert result.get_variable_result[0]["attribute_value"] == "300"
    assert cp.asked == [
        [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]
    ]
    assert [(d, a) for d, _, a, _ in seen] == [
        (CP_TO_CSMS, "Heartbeat"),
        (CSMS_TO_CP, "GetVariables"),
        (CSMS_FROM_CP, "GetVariables"),
    ]
    assert seen[2][3]["getVariableResult"][0]["attributeValue"] == "300"


async def test_fail_next_answers_a_call_error(emulator: CsmsEmulator201) -> None:
    emulator.fail_next("TransactionEvent")
    async with charger(emulator) as cp:
        with pytest.raises(InternalError):
            await cp.call(tx_event("Started", 0), suppress=False)
        retried = await cp.call(tx_event("Started", 0), suppress=False)

    assert retried.id_token_info is None
    assert len(emulator.calls("TransactionEvent")) == 2
    assert isinstance(emulator.answers[emulator.calls("TransactionEvent")[0].seq], CallErrorReply)


async def test_held_responses_wait_for_release(emulator: CsmsEmulator201) -> None:
    emulator.hold_responses("TransactionEvent")
    async with charger(emulator) as cp:
        pending = asyncio.create_task(cp.call(tx_event("Started", 0)))
        received = await emulator.wait_for("TransactionEvent", timeout_s=GUARD_S)
        assert received.seq not in emulator.answers
        emulator.release_responses("TransactionEvent")
        await asyncio.wait_for(pending, GUARD_S)
        await emulator.wait_answer(received, timeout_s=GUARD_S)


async def test_wait_report_assembles_the_pages_in_seq_no_order(
    emulator: CsmsEmulator201,
) -> None:
    def item(name: str) -> dict[str, Any]:
        return {
            "component": {"name": "OCPPCommCtrlr"},
            "variable": {"name": name},
            "variable_attribute": [{"value": "1"}],
        }

    async with charger(emulator) as cp:
        waiter = asyncio.create_task(emulator.wait_report(5, cp_id="CP1", timeout_s=GUARD_S))
        await cp.call(call.NotifyReport(5, NOW, 0, report_data=[item("A")], tbc=True))
        await cp.call(call.NotifyReport(6, NOW, 0, report_data=[item("Other")]))
        await cp.call(call.NotifyReport(5, NOW, 1, report_data=[item("B"), item("C")]))
        items = await asyncio.wait_for(waiter, GUARD_S)

    assert [i["variable"]["name"] for i in items] == ["A", "B", "C"]


async def test_wait_report_times_out_on_an_incomplete_report(emulator: CsmsEmulator201) -> None:
    async with charger(emulator) as cp:
        await cp.call(call.NotifyReport(5, NOW, 0, tbc=True))
        with pytest.raises(TimeoutError, match="report 5"):
            await emulator.wait_report(5, timeout_s=0.2)


async def test_a_client_offering_both_versions_gets_2_0_1_by_default() -> None:
    async with (
        CsmsEmulator201(subprotocols=PREFER_OCPP201) as csms,
        charger(csms, subprotocols=BOTH) as cp,
    ):
        response = await cp.call(boot_request())
    assert response.status == "Accepted"
    assert csms.negotiated == {"CP1": "ocpp2.0.1"}


async def test_prefer_ocpp16_serves_a_dual_client_as_1_6() -> None:
    async with (
        CsmsEmulator201(subprotocols=PREFER_OCPP16, heartbeat_interval_s=42) as csms,
        connect(f"{csms.url}/CP16", subprotocols=BOTH) as ws,
    ):
        assert ws.subprotocol == "ocpp1.6"
        cp = ChargePoint16("CP16", ws)
        receive_loop = asyncio.create_task(cp.start())
        try:
            response = await cp.call(
                call16.BootNotification(charge_point_model="M1", charge_point_vendor="evse-agent")
            )
            started = await cp.call(
                call16.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=0, timestamp=NOW)
            )
        finally:
            receive_loop.cancel()
            await asyncio.wait({receive_loop})
    assert (response.status, response.interval) == ("Accepted", 42)
    assert started.transaction_id == 1
    assert csms.negotiated == {"CP16": "ocpp1.6"}
    assert csms.transactions[1]["start"]["idTag"] == "TAG1"


async def test_a_1_6_only_client_is_refused_by_a_2_0_1_only_emulator(
    emulator: CsmsEmulator201,
) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{emulator.url}/CP1", subprotocols=[Subprotocol("ocpp1.6")]):
            pass
    assert info.value.response.status_code == 400
    assert emulator.connections["CP1"] == 0


def test_unknown_subprotocols_are_refused() -> None:
    with pytest.raises(ValueError, match="subprotocols"):
        CsmsEmulator201(subprotocols=("ocpp2.1",))
    with pytest.raises(ValueError, match="subprotocols"):
        CsmsEmulator201(subprotocols=())


async def test_charger_reconnects_after_drop_and_offline(emulator: CsmsEmulator201) -> None:
    async with charger(emulator):
        await emulator.wait_connected("CP1", timeout_s=GUARD_S)
        await emulator.drop_connections()
        assert not emulator.is_connected("CP1")
    async with charger(emulator) as cp:
        await cp.call(call.Heartbeat())
        assert emulator.connections["CP1"] == 2
    await emulator.go_offline()
    with pytest.raises(OSError):
        async with connect(f"{emulator.url}/CP1", subprotocols=OCPP201):
            pass
    await emulator.go_online()
    async with charger(emulator) as cp:
        await cp.call(call.Heartbeat())
    assert emulator.connections["CP1"] == 3
