"""OCPP 2.0.1 projection of the transaction-point facts (pure tables): the Started
event's triggerReason / chargingState / idToken by how the transaction began, ``update``
rows as Updated events, and the stop reasons only the 2.0.1 points produce."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from agent.events import StopReason, TxChargingState, TxPoint, TxUpdateTrigger
from agent.ocpp.v201.transactions import transaction_event
from agent.transactions.journal import QueuedTxMessage
from tests.unit.test_v201_transactions import EVENT_SCHEMA, ended, message, record

T_UPDATE = "2026-11-24T19:05:00.000Z"


def project(msg: QueuedTxMessage, **kwargs: Any) -> dict[str, Any]:
    payload = transaction_event(msg, msg.record, seq_no=3, offline=False, **kwargs)
    EVENT_SCHEMA.validate(payload)
    return payload


START_TABLE = [
    # started_by, remote_start_id, authorized, charging state -> trigger, idToken sent
    (None, None, True, None, "Authorized", True, "EVConnected"),
    (None, 5, True, None, "RemoteStart", True, "EVConnected"),
    (TxPoint.AUTHORIZED, None, True, TxChargingState.IDLE, "Authorized", True, "Idle"),
    (TxPoint.AUTHORIZED, 5, True, TxChargingState.SUSPENDED_EV, "RemoteStart", True, None),
    (TxPoint.EV_CONNECTED, None, False, TxChargingState.EV_CONNECTED, "CablePluggedIn", False,
     "EVConnected"),
    (TxPoint.EV_CONNECTED, None, True, TxChargingState.SUSPENDED_EV, "CablePluggedIn", True,
     "SuspendedEV"),
    (TxPoint.ENERGY_TRANSFER, None, True, TxChargingState.CHARGING, "ChargingStateChanged",
     True, "Charging"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("started_by", "rsid", "authorized", "state", "trigger", "with_token", "sent_state"),
    START_TABLE,
)
def test_started_event_by_how_the_transaction_began(
    started_by: TxPoint | None,
    rsid: int | None,
    authorized: bool,
    state: TxChargingState | None,
    trigger: str,
    with_token: bool,
    sent_state: str | None,
) -> None:
    rec = record(remote_start_id=rsid, id_tag="04A2B3C4" if authorized else "")
    msg = replace(
        message("start", rec), started_by=started_by, charging_state=state, authorized=authorized
    )
    payload = project(msg)
    assert payload["eventType"] == "Started"
    assert payload["triggerReason"] == trigger
    assert ("idToken" in payload) is with_token
    expected_state = sent_state if sent_state is not None else (state and state.value)
    assert payload["transactionInfo"]["chargingState"] == expected_state


def test_a_cable_first_start_sent_after_its_authorization_still_has_no_token() -> None:
    """The record has the id by now; the Started event describes the start."""
    msg = replace(message("start", record(id_tag="LATER")), authorized=False)
    assert "idToken" not in project(msg)


UPDATE_TABLE = [
    (TxUpdateTrigger.CHARGING_STATE_CHANGED, TxChargingState.CHARGING, None),
    (TxUpdateTrigger.CHARGING_STATE_CHANGED, TxChargingState.SUSPENDED_EV, None),
    (TxUpdateTrigger.CHARGING_STATE_CHANGED, TxChargingState.SUSPENDED_EVSE, None),
    (TxUpdateTrigger.CHARGING_STATE_CHANGED, TxChargingState.IDLE, None),
    (TxUpdateTrigger.AUTHORIZED, TxChargingState.SUSPENDED_EV, "TAG9"),
]


@pytest.mark.parametrize(("trigger", "state", "id_tag"), UPDATE_TABLE)
def test_update_rows_are_updated_events(
    trigger: TxUpdateTrigger, state: TxChargingState, id_tag: str | None
) -> None:
    msg = replace(
        message("update", record()),
        trigger=trigger,
        charging_state=state,
        id_tag=id_tag,
        timestamp=T_UPDATE,
    )
    payload = project(msg)
    assert payload["eventType"] == "Updated"
    assert payload["timestamp"] == T_UPDATE
    assert payload["triggerReason"] == trigger.value
    assert payload["transactionInfo"]["chargingState"] == state.value
    assert payload["seqNo"] == 3
    if id_tag is None:
        assert "idToken" not in payload
    else:
        assert payload["idToken"] == {"idToken": id_tag, "type": "ISO14443"}
    assert "meterValue" not in payload and "evse" not in payload


def test_a_remote_start_update_names_its_id_and_token_type() -> None:
    msg = replace(
        message("update", record(remote_start_id=9, id_tag="APP")),
        trigger=TxUpdateTrigger.REMOTE_START,
        charging_state=TxChargingState.SUSPENDED_EV,
        id_tag="APP",
        remote_start_id=9,
        timestamp=T_UPDATE,
    )
    payload = project(msg, id_token_type="Central")
    assert payload["triggerReason"] == "RemoteStart"
    assert payload["transactionInfo"]["remoteStartId"] == 9
    assert payload["idToken"] == {"idToken": "APP", "type": "Central"}
    started = project(replace(message("start", msg.record), authorized=False))
    assert "remoteStartId" not in started["transactionInfo"]  # it began without it


def test_an_update_row_without_its_fields_is_refused() -> None:
    with pytest.raises(ValueError, match="event fields"):
        project(message("update", record()))


@pytest.mark.parametrize(
    ("reason", "trigger", "stopped"),
    [
        (StopReason.STOPPED_BY_EV, "ChargingStateChanged", "StoppedByEV"),
        (StopReason.TIMEOUT, "EVConnectTimeout", "Timeout"),
    ],
)
def test_stop_reasons_of_the_2_0_1_points(reason: StopReason, trigger: str, stopped: str) -> None:
    payload = project(message("stop", ended(reason)))
    assert payload["triggerReason"] == trigger
    assert payload["transactionInfo"]["stoppedReason"] == stopped
