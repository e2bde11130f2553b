"""Transaction events over 2.0.1 (E01-E12 subset): the journal's messages delivered by
the 2.0.1 adapter as TransactionEvent Started / Updated / Ended, and a queued message
surviving a move from 1.6 to 2.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from ocpp.v201 import call

from hil.csms201 import PREFER_OCPP16, PREFER_OCPP201, CsmsEmulator201
from tests.conftest import GUARD_S, RunningApp, StartApp
from tests.ocpp.v201_helpers import CP, registered201, start_registered


@pytest.fixture
async def csms201(make_csms: object) -> AsyncIterator[CsmsEmulator201]:
    del make_csms  # torn down after the Apps, before the leak check
    async with CsmsEmulator201() as csms:
        yield csms


def events(csms: CsmsEmulator201) -> list[dict[str, Any]]:
    return [c.payload for c in csms.calls("TransactionEvent")]


async def test_local_session_started_and_ended_by_remote_stop(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    agent = await start_registered(csms201, start_app)
    agent.sim("plug")
    agent.sim("swipe", "TAG1")
    started = await csms201.wait_for("TransactionEvent", timeout_s=GUARD_S)
    payload = started.payload
    assert payload["eventType"] == "Started"
    assert payload["seqNo"] == 0
    assert payload["evse"] == {"id": 1, "connectorId": 1}
    assert payload["idToken"] == {"idToken": "TAG1", "type": "ISO14443"}
    assert "offline" not in payload
    tx_id = payload["transactionInfo"]["transactionId"]
    stop = await csms201.call(CP, call.RequestStopTransaction(transaction_id=tx_id))
    assert stop.status == "Accepted"
    ended = await csms201.wait_for(
        "TransactionEvent",
        predicate=lambda c: c.payload["eventType"] == "Ended",
        timeout_s=GUARD_S,
    )
    assert ended.payload["transactionInfo"]["stoppedReason"] == "Remote"
    assert ended.payload["triggerReason"] == "RemoteStop"
    seq_nos = [e["seqNo"] for e in events(csms201)]
    assert seq_nos == list(range(len(seq_nos)))  # no gap, in event order
    await csms201.wait_answer(ended, timeout_s=GUARD_S)
    assert csms201.transactions[tx_id]["stop"] == ended.payload
    await agent.app.wait_status(1, "Finishing")
    status = await csms201.call(CP, call.GetTransactionStatus(transaction_id=tx_id))
    assert status.ongoing_indicator is False
    unknown = await csms201.call(CP, call.GetTransactionStatus(transaction_id="nope"))
    assert unknown.ongoing_indicator is False and unknown.messages_in_queue is False


async def test_get_transaction_status_of_a_running_transaction(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    agent = await start_registered(csms201, start_app)
    agent.sim("plug")
    agent.sim("swipe", "TAG1")
    started = await csms201.wait_for("TransactionEvent", timeout_s=GUARD_S)
    await csms201.wait_answer(started, timeout_s=GUARD_S)
    tx_id = started.payload["transactionInfo"]["transactionId"]
    status = await csms201.call(CP, call.GetTransactionStatus(transaction_id=tx_id))
    assert status.ongoing_indicator is True
    whole = await csms201.call(CP, call.GetTransactionStatus())
    assert whole.ongoing_indicator is None


async def test_remote_start_names_its_id_and_token_type(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    agent = await start_registered(csms201, start_app)
    agent.sim("plug")
    answer = await csms201.call(
        CP,
        call.RequestStartTransaction(
            id_token={"id_token": "APP-USER", "type": "Central"}, remote_start_id=77, evse_id=1
        ),
    )
    assert answer.status == "Accepted"
    started = await csms201.wait_for("TransactionEvent", timeout_s=GUARD_S)
    assert started.payload["triggerReason"] == "RemoteStart"
    assert started.payload["transactionInfo"]["remoteStartId"] == 77
    assert started.payload["idToken"] == {"idToken": "APP-USER", "type": "Central"}


async def test_refused_event_is_retried(csms201: CsmsEmulator201, start_app: StartApp) -> None:
    agent = await start_registered(
        csms201, start_app, ocpp={"transaction_message_retry_interval_s": 0}
    )
    csms201.fail_next("TransactionEvent")
    agent.sim("plug")
    agent.sim("swipe", "TAG1")
    second = await csms201.wait_for("TransactionEvent", count=2, timeout_s=GUARD_S)
    first = csms201.calls("TransactionEvent")[0]
    assert first.payload == second.payload  # the same event again, same seqNo


async def test_a_message_queued_on_1_6_is_delivered_after_moving_to_2_0_1(
    make_csms: object, start_app: StartApp
) -> None:
    """Issue 6: a CSMS moves a charger from 1.6 to 2.0.1 without losing a queued
    message. The start happens offline on 1.6; the agent restarts (the configuration
    change) and the first CSMS it reaches speaks 2.0.1: the start arrives as a
    Started event flagged offline, the power-cut stop as Ended(PowerLoss)."""
    del make_csms
    options = {"ocpp_version": "auto"}
    offline_ok = {"allow_offline_tx_for_unknown_id": True, "local_authorize_offline": True}
    async with CsmsEmulator201(subprotocols=PREFER_OCPP16) as csms16:
        first: RunningApp = await start_app(csms16, csms_options=options, ocpp=offline_ok)
        await csms16.wait_for("StatusNotification", timeout_s=GUARD_S)
        assert csms16.negotiated[CP] == "ocpp1.6"
        await csms16.go_offline()
        first.sim("plug")
        first.sim("swipe", "OFFLINE1")
        await first.app.wait_status(1, "Charging")
        await first.stop()
        assert not csms16.calls("StartTransaction")
    async with CsmsEmulator201(subprotocols=PREFER_OCPP201) as csms201:
        await start_app(csms201, csms_options=options, data_dir=first.data_dir, ocpp=offline_ok)
        await registered201(csms201)
        ended = await csms201.wait_for(
            "TransactionEvent",
            predicate=lambda c: c.payload["eventType"] == "Ended",
            timeout_s=GUARD_S,
        )
        started = csms201.calls("TransactionEvent")[0].payload
        assert started["eventType"] == "Started"
        assert started["offline"] is True
        assert started["idToken"]["idToken"] == "OFFLINE1"
        assert ended.payload["transactionInfo"]["stoppedReason"] == "PowerLoss"
        assert (
            ended.payload["transactionInfo"]["transactionId"]
            == started["transactionInfo"]["transactionId"]
        )


async def set_tx_points(csms: CsmsEmulator201, start: str, stop: str) -> None:
    result = await csms.call(
        CP,
        call.SetVariables(
            set_variable_data=[
                {
                    "component": {"name": "TxCtrlr"},
                    "variable": {"name": name},
                    "attribute_value": value,
                }
                for name, value in (("TxStartPoint", start), ("TxStopPoint", stop))
            ]
        ),
    )
    assert [r["attribute_status"] for r in result.set_variable_result] == ["Accepted"] * 2


async def test_cable_first_with_start_point_ev_connected(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    """E02 cable first, TxStartPoint=EVConnected: Started at plug-in without a token,
    Updated(Authorized) with the token, Updated(ChargingStateChanged) Charging, Ended."""
    agent = await start_registered(csms201, start_app)
    await set_tx_points(csms201, "EVConnected", "EVConnected,Authorized")
    agent.sim("plug")
    started = await csms201.wait_for("TransactionEvent", timeout_s=GUARD_S)
    assert started.payload["eventType"] == "Started"
    assert started.payload["triggerReason"] == "CablePluggedIn"
    assert started.payload["transactionInfo"]["chargingState"] == "EVConnected"
    assert started.payload["evse"] == {"id": 1, "connectorId": 1}
    assert "idToken" not in started.payload
    tx_id = started.payload["transactionInfo"]["transactionId"]
    agent.sim("swipe", "TAG1")
    authorized = await csms201.wait_for(
        "TransactionEvent",
        predicate=lambda c: c.payload["triggerReason"] == "Authorized",
        timeout_s=GUARD_S,
    )
    assert authorized.payload["eventType"] == "Updated"
    assert authorized.payload["idToken"] == {"idToken": "TAG1", "type": "ISO14443"}
    charging = await csms201.wait_for(
        "TransactionEvent",
        predicate=lambda c: c.payload["transactionInfo"].get("chargingState") == "Charging",
        timeout_s=GUARD_S,
    )
    assert charging.payload["eventType"] == "Updated"
    assert charging.payload["triggerReason"] == "ChargingStateChanged"
    agent.sim("unplug")
    ended = await csms201.wait_for(
        "TransactionEvent",
        predicate=lambda c: c.payload["eventType"] == "Ended",
        timeout_s=GUARD_S,
    )
    assert ended.payload["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    sent = events(csms201)
    assert {e["transactionInfo"]["transactionId"] for e in sent} == {tx_id}
    assert [e["seqNo"] for e in sent] == list(range(len(sent)))
    assert [e["eventType"] for e in sent].count("Started") == 1
    assert authorized.seq < charging.seq < ended.seq


async def test_start_point_authorized_times_out_without_a_cable(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    """TxStartPoint=Authorized: the badge starts the transaction; EVConnectionTimeOut
    ends it with Timeout when no EV is plugged in."""
    agent = await start_registered(csms201, start_app)
    await set_tx_points(csms201, "Authorized", "EVConnected,Authorized")
    set_timeout = await csms201.call(
        CP,
        call.SetVariables(
            set_variable_data=[
                {
                    "component": {"name": "TxCtrlr"},
                    "variable": {"name": "EVConnectionTimeOut"},
                    "attribute_value": "1",
                }
            ]
        ),
    )
    assert set_timeout.set_variable_result[0]["attribute_status"] == "Accepted"
    agent.sim("swipe", "TAG1")
    started = await csms201.wait_for("TransactionEvent", timeout_s=GUARD_S)
    assert started.payload["triggerReason"] == "Authorized"
    assert started.payload["idToken"]["idToken"] == "TAG1"
    assert started.payload["transactionInfo"]["chargingState"] == "Idle"
    ended = await csms201.wait_for(
        "TransactionEvent",
        predicate=lambda c: c.payload["eventType"] == "Ended",
        timeout_s=GUARD_S,
    )
    assert ended.payload["triggerReason"] == "EVConnectTimeout"
    assert ended.payload["transactionInfo"]["stoppedReason"] == "Timeout"


async def test_remote_start_after_the_cable_authorizes_the_running_transaction(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    """F01 cable first: RequestStartTransaction names the running transaction; the
    Updated event carries triggerReason RemoteStart, the idToken and remoteStartId."""
    agent = await start_registered(csms201, start_app)
    await set_tx_points(csms201, "EVConnected", "EVConnected,Authorized")
    agent.sim("plug")
    started = await csms201.wait_for("TransactionEvent", timeout_s=GUARD_S)
    tx_id = started.payload["transactionInfo"]["transactionId"]
    answer = await csms201.call(
        CP,
        call.RequestStartTransaction(
            id_token={"id_token": "APP-USER", "type": "Central"}, remote_start_id=78, evse_id=1
        ),
    )
    assert answer.status == "Accepted"
    assert answer.transaction_id == tx_id
    update = await csms201.wait_for(
        "TransactionEvent",
        predicate=lambda c: c.payload["triggerReason"] == "RemoteStart",
        timeout_s=GUARD_S,
    )
    assert update.payload["eventType"] == "Updated"
    assert update.payload["idToken"] == {"idToken": "APP-USER", "type": "Central"}
    assert update.payload["transactionInfo"]["remoteStartId"] == 78
    assert update.payload["transactionInfo"]["transactionId"] == tx_id
    await agent.app.wait_status(1, "Charging")
    assert [e["eventType"] for e in events(csms201)].count("Started") == 1


async def test_status_notifications_go_out_only_when_the_2_0_1_status_changes(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    agent = await start_registered(csms201, start_app)
    agent.sim("plug")  # Preparing -> Occupied
    agent.sim("swipe", "TAG1")  # Charging: still Occupied
    started = await csms201.wait_for("TransactionEvent", timeout_s=GUARD_S)
    await agent.app.wait_status(1, "Charging")
    tx_id = started.payload["transactionInfo"]["transactionId"]
    await csms201.call(CP, call.RequestStopTransaction(transaction_id=tx_id))
    await agent.app.wait_status(1, "Finishing")  # Occupied still
    agent.sim("unplug")
    await csms201.wait_for(
        "StatusNotification",
        predicate=lambda c: c.seq > started.seq and c.payload["connectorStatus"] == "Available",
        timeout_s=GUARD_S,
    )
    sent = [c.payload["connectorStatus"] for c in csms201.calls("StatusNotification")]
    assert sent == ["Available", "Occupied", "Available"]


async def test_clock_aligned_meter_values_of_idle_evses_and_the_station(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    energy = "Energy.Active.Import.Register"
    agent = await start_registered(
        csms201, start_app, evse_count=2, ocpp={"meter_values_aligned_data": [energy]}
    )
    agent.app.clock.set_utc(datetime(2030, 1, 1, 0, 14, 59, 700_000, tzinfo=UTC))
    answer = await csms201.call(
        CP,
        call.SetVariables(
            set_variable_data=[
                {
                    "component": {"name": "AlignedDataCtrlr"},
                    "variable": {"name": "Interval"},
                    "attribute_value": "900",
                }
            ]
        ),
    )
    assert answer.set_variable_result[0]["attribute_status"] == "Accepted"
    got = {}
    for evse_id in (0, 1, 2):
        got[evse_id] = await csms201.wait_for(
            "MeterValues",
            predicate=lambda c, n=evse_id: c.payload["evseId"] == n,
            timeout_s=GUARD_S,
        )
    for meter_values in got.values():
        (meter_value,) = meter_values.payload["meterValue"]
        assert meter_value["timestamp"].startswith("2030-01-01T00:15:00")  # the boundary
        (sampled,) = meter_value["sampledValue"]
        assert sampled["context"] == "Sample.Clock"
        assert sampled["measurand"] == energy
    station_wh = got[0].payload["meterValue"][0]["sampledValue"][0]["value"]
    evse_wh = [got[n].payload["meterValue"][0]["sampledValue"][0]["value"] for n in (1, 2)]
    assert station_wh == sum(evse_wh)  # evse 0: the station total


async def test_trigger_transaction_event_reports_the_running_transaction(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    agent = await start_registered(csms201, start_app)
    nothing = await csms201.call(
        CP, call.TriggerMessage(requested_message="TransactionEvent", evse={"id": 1})
    )
    assert nothing.status == "Rejected"  # no transaction to report on
    agent.sim("plug")
    agent.sim("swipe", "TAG1")
    started = await csms201.wait_for("TransactionEvent", timeout_s=GUARD_S)
    await agent.app.wait_status(1, "Charging")
    answer = await csms201.call(
        CP, call.TriggerMessage(requested_message="TransactionEvent", evse={"id": 1})
    )
    assert answer.status == "Accepted"
    triggered = await csms201.wait_for(
        "TransactionEvent",
        predicate=lambda c: c.payload["triggerReason"] == "Trigger",
        timeout_s=GUARD_S,
    )
    payload = triggered.payload
    assert payload["eventType"] == "Updated"
    assert (
        payload["transactionInfo"]["transactionId"]
        == (started.payload["transactionInfo"]["transactionId"])
    )
    assert {v["context"] for mv in payload["meterValue"] for v in mv["sampledValue"]} == {"Trigger"}
