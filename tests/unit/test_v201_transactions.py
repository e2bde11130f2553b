"""OCPP 2.0.1 TransactionEvent projection of the neutral journal (pure mapping tables)."""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources
from typing import Any

import jsonschema
import pytest

from agent.events import MeterSample, ReadingContext, SampledValue, StopReason
from agent.ocpp.v201 import transactions as tx201
from agent.ocpp.v201.transactions import get_transaction_status, transaction_event
from agent.transactions.journal import MessageKind, QueuedTxMessage, TxRecord

TX_ID = "0123456789abcdef0123456789abcdef"
T_START = "2026-11-24T19:00:00.000Z"
T_STOP = "2026-11-24T20:00:00.000Z"


def schema_validator(action: str) -> jsonschema.Draft6Validator:
    text = resources.files("ocpp.v201").joinpath("schemas", f"{action}.json").read_text("utf-8")
    return jsonschema.Draft6Validator(json.loads(text))


EVENT_SCHEMA = schema_validator("TransactionEventRequest")
STATUS_SCHEMA = schema_validator("GetTransactionStatusResponse")


def record(**changes: Any) -> TxRecord:
    base = TxRecord(
        tx_id=TX_ID,
        evse_id=2,
        connector_id=2,
        id_tag="04A2B3C4",
        start_time=T_START,
        meter_start_wh=1000,
        remote_start_id=None,
        reservation_id=None,
        csms_tx_id=None,
        id_tag_status=None,
        last_meter_wh=None,
        last_meter_time=None,
        stop_time=None,
        meter_stop_wh=None,
        stop_reason=None,
    )
    return replace(base, **changes)


def ended(reason: StopReason = StopReason.LOCAL, **changes: Any) -> TxRecord:
    return record(stop_time=T_STOP, meter_stop_wh=8500, stop_reason=reason, **changes)


def sample(
    context: ReadingContext = ReadingContext.SAMPLE_PERIODIC,
    minute: int = 15,
    values: tuple[SampledValue, ...] = (
        SampledValue("Energy.Active.Import.Register", 2500.0, "Wh"),
        SampledValue("Current.Import", 15.5, "A", "L1"),
    ),
) -> MeterSample:
    return MeterSample(f"2026-11-24T19:{minute:02d}:00.000Z", context, values)


def message(
    kind: MessageKind, rec: TxRecord, samples: tuple[MeterSample, ...] = ()
) -> QueuedTxMessage:
    return QueuedTxMessage(
        seq=7, tx_id=rec.tx_id, kind=kind, samples=samples, attempts=0, record=rec,
        seq_no=0, offline=False,
    )  # fmt: skip


def project(
    kind: MessageKind,
    rec: TxRecord,
    samples: tuple[MeterSample, ...] = (),
    *,
    seq_no: int = 0,
    offline: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    payload = transaction_event(
        message(kind, rec, samples), rec, seq_no=seq_no, offline=offline, **kwargs
    )
    EVENT_SCHEMA.validate(payload)  # every projection is a valid 2.0.1 request
    return payload


# --------------------------------------------------------------------- Started


def test_started_names_evse_connector_token_and_start_register() -> None:
    payload = project("start", record())
    assert payload == {
        "eventType": "Started",
        "timestamp": T_START,
        "triggerReason": "Authorized",
        "seqNo": 0,
        "transactionInfo": {"transactionId": TX_ID, "chargingState": "EVConnected"},
        "evse": {"id": 2, "connectorId": 1},
        "idToken": {"idToken": "04A2B3C4", "type": "ISO14443"},
        "meterValue": [
            {
                "timestamp": T_START,
                "sampledValue": [
                    {
                        "value": 1000,
                        "measurand": "Energy.Active.Import.Register",
                        "context": "Transaction.Begin",
                        "unitOfMeasure": {"unit": "Wh"},
                    }
                ],
            }
        ],
    }


def test_remote_start_has_trigger_remote_start_and_its_id() -> None:
    payload = project("start", record(remote_start_id=4711))
    assert payload["triggerReason"] == "RemoteStart"
    assert payload["transactionInfo"]["remoteStartId"] == 4711


def test_remote_start_id_only_on_the_first_event() -> None:
    rec = record(remote_start_id=4711)
    assert "remoteStartId" not in project("meter", rec, (sample(),))["transactionInfo"]
    stop = project(
        "stop", replace(rec, stop_time=T_STOP, meter_stop_wh=1, stop_reason=StopReason.REMOTE)
    )
    assert "remoteStartId" not in stop["transactionInfo"]


@pytest.mark.parametrize(
    ("reservation_id", "expected"), [(None, False), (3, True)], ids=["none", "reserved"]
)
def test_reservation_id_on_started_when_set(reservation_id: int | None, expected: bool) -> None:
    payload = project("start", record(reservation_id=reservation_id))
    assert ("reservationId" in payload) is expected
    if expected:
        assert payload["reservationId"] == reservation_id


@pytest.mark.parametrize(
    ("id_tag", "given_type", "expected_type"),
    [
        ("04A2B3C4", None, "ISO14443"),
        ("", None, "NoAuthorization"),
        ("csms-user", "Central", "Central"),
    ],
)
def test_id_token_type(id_tag: str, given_type: str | None, expected_type: str) -> None:
    payload = project("start", record(id_tag=id_tag), id_token_type=given_type)
    assert payload["idToken"] == {"idToken": id_tag, "type": expected_type}


# --------------------------------------------------------------------- Updated


@pytest.mark.parametrize(
    ("context", "trigger"),
    [
        (ReadingContext.SAMPLE_PERIODIC, "MeterValuePeriodic"),
        (ReadingContext.SAMPLE_CLOCK, "MeterValueClock"),
        (ReadingContext.TRIGGER, "Trigger"),
        (ReadingContext.OTHER, "MeterValuePeriodic"),
    ],
)
def test_updated_trigger_reason_follows_the_reading_context(
    context: ReadingContext, trigger: str
) -> None:
    payload = project("meter", record(), (sample(context),))
    assert payload["eventType"] == "Updated"
    assert payload["triggerReason"] == trigger
    assert payload["timestamp"] == "2026-11-24T19:15:00.000Z"  # when it was sampled
    assert payload["transactionInfo"] == {"transactionId": TX_ID}
    assert "evse" not in payload and "idToken" not in payload
    assert payload["meterValue"][0]["sampledValue"][0]["context"] == context.value


def test_sampled_values_in_2_0_1_shape() -> None:
    values = (
        SampledValue("Energy.Active.Import.Register", 2500.0, "Wh"),
        SampledValue("Current.Import", 15.5, "A", "L1"),
        SampledValue("SoC", 42.0, "Percent", None, "EV"),
    )
    payload = project("meter", record(), (sample(values=values),))
    assert payload["meterValue"] == [
        {
            "timestamp": "2026-11-24T19:15:00.000Z",
            "sampledValue": [
                {
                    "value": 2500,
                    "measurand": "Energy.Active.Import.Register",
                    "context": "Sample.Periodic",
                    "unitOfMeasure": {"unit": "Wh"},
                },
                {
                    "value": 15.5,
                    "measurand": "Current.Import",
                    "context": "Sample.Periodic",
                    "unitOfMeasure": {"unit": "A"},
                    "phase": "L1",
                },
                {
                    "value": 42,
                    "measurand": "SoC",
                    "context": "Sample.Periodic",
                    "unitOfMeasure": {"unit": "Percent"},
                    "location": "EV",
                },
            ],
        }
    ]


def test_measurands_2_0_1_lacks_are_left_out() -> None:
    values = (
        SampledValue("Temperature", 31.0, "Celsius", None, "Body"),
        SampledValue("Voltage", 230.1, "V", "L1-N"),
    )
    payload = project("meter", record(), (sample(values=values),))
    assert [v["measurand"] for v in payload["meterValue"][0]["sampledValue"]] == ["Voltage"]


def test_a_sample_with_only_unknown_measurands_leaves_no_meter_value() -> None:
    only_rpm = (SampledValue("RPM", 3.0, "RPM"),)
    payload = project("meter", record(), (sample(values=only_rpm),))
    assert "meterValue" not in payload  # a MeterValue needs >= 1 sampledValue


def test_a_meter_row_without_sample_is_refused() -> None:
    with pytest.raises(ValueError, match="no sample"):
        transaction_event(message("meter", record()), record(), seq_no=1, offline=False)


def test_non_finite_values_are_refused() -> None:
    bad = (SampledValue("Voltage", float("nan"), "V"),)
    with pytest.raises(ValueError, match="non-finite"):
        transaction_event(
            message("meter", record(), (sample(values=bad),)), record(), seq_no=1, offline=False
        )


# ----------------------------------------------------------------------- Ended

STOP_TABLE = [
    (StopReason.EMERGENCY_STOP, "AbnormalCondition", "EmergencyStop"),
    (StopReason.EV_DISCONNECTED, "EVCommunicationLost", "EVDisconnected"),
    (StopReason.HARD_RESET, "ResetCommand", "ImmediateReset"),
    (StopReason.SOFT_RESET, "ResetCommand", "ImmediateReset"),
    (StopReason.LOCAL, "StopAuthorized", "Local"),
    (StopReason.OTHER, "AbnormalCondition", "Other"),
    (StopReason.POWER_LOSS, "AbnormalCondition", "PowerLoss"),
    (StopReason.REBOOT, "AbnormalCondition", "Reboot"),
    (StopReason.REMOTE, "RemoteStop", "Remote"),
    (StopReason.UNLOCK_COMMAND, "UnlockCommand", "Other"),
    (StopReason.DEAUTHORIZED, "Deauthorized", "DeAuthorized"),
    (StopReason.STOPPED_BY_EV, "ChargingStateChanged", "StoppedByEV"),
    (StopReason.TIMEOUT, "EVConnectTimeout", "Timeout"),
    (StopReason.MASTER_PASS, "StopAuthorized", "MasterPass"),
]


def test_the_stop_table_covers_every_neutral_reason() -> None:
    assert {row[0] for row in STOP_TABLE} == set(StopReason)
    assert set(tx201.STOP_TRIGGER_REASON) == set(StopReason) == set(tx201.STOPPED_REASON)


@pytest.mark.parametrize(("reason", "trigger", "stopped"), STOP_TABLE)
def test_ended_reasons(reason: StopReason, trigger: str, stopped: str) -> None:
    payload = project("stop", ended(reason), seq_no=9)
    assert payload["eventType"] == "Ended"
    assert payload["timestamp"] == T_STOP
    assert payload["seqNo"] == 9
    assert payload["triggerReason"] == trigger
    assert payload["transactionInfo"]["stoppedReason"] == stopped
    assert ("idToken" in payload) is (reason is StopReason.LOCAL)  # E07: the stopping token
    assert "evse" not in payload
    state = payload["transactionInfo"].get("chargingState")
    assert state == ("Idle" if reason is StopReason.EV_DISCONNECTED else None)


def test_ended_without_transaction_data_reports_the_stop_register() -> None:
    payload = project("stop", ended())
    assert payload["meterValue"] == [
        {
            "timestamp": T_STOP,
            "sampledValue": [
                {
                    "value": 8500,
                    "measurand": "Energy.Active.Import.Register",
                    "context": "Transaction.End",
                    "unitOfMeasure": {"unit": "Wh"},
                }
            ],
        }
    ]


def test_ended_carries_the_kept_transaction_data_in_order() -> None:
    data = (
        sample(ReadingContext.TRANSACTION_BEGIN, 0),
        sample(ReadingContext.SAMPLE_PERIODIC, 30),
        sample(ReadingContext.TRANSACTION_END, 59),
    )
    payload = project("stop", ended(), data)
    contexts = [mv["sampledValue"][0]["context"] for mv in payload["meterValue"]]
    assert contexts == ["Transaction.Begin", "Sample.Periodic", "Transaction.End"]


def test_a_stop_row_of_a_running_transaction_is_refused() -> None:
    with pytest.raises(ValueError, match="running"):
        transaction_event(message("stop", record()), record(), seq_no=2, offline=False)


# -------------------------------------------------------------- common fields


@pytest.mark.parametrize("kind", ["start", "meter", "stop"])
@pytest.mark.parametrize("offline", [False, True])
def test_seq_no_and_offline_come_from_the_caller(kind: MessageKind, offline: bool) -> None:
    rec = ended() if kind == "stop" else record()
    samples = (sample(),) if kind == "meter" else ()
    payload = project(kind, rec, samples, seq_no=5, offline=offline)
    assert payload["seqNo"] == 5
    assert payload.get("offline", False) is offline
    assert payload["transactionInfo"]["transactionId"] == TX_ID  # station-generated id


def test_csms_id_of_1_6_is_not_used() -> None:
    payload = project("start", record(csms_tx_id=42))
    assert payload["transactionInfo"]["transactionId"] == TX_ID


def test_mismatched_record_and_negative_seq_no_are_refused() -> None:
    with pytest.raises(ValueError, match="projected with record"):
        transaction_event(
            message("start", record()), record(tx_id="f" * 32), seq_no=0, offline=False
        )
    with pytest.raises(ValueError, match="seq_no"):
        transaction_event(message("start", record()), record(), seq_no=-1, offline=False)


# ------------------------------------------------------- GetTransactionStatus


@pytest.mark.parametrize(
    ("rec", "transaction_id", "queued", "expected"),
    [
        (None, None, 0, {"messagesInQueue": False}),
        (None, None, 3, {"messagesInQueue": True}),
        (record(), TX_ID, 0, {"messagesInQueue": False, "ongoingIndicator": True}),
        (ended(), TX_ID, 2, {"messagesInQueue": True, "ongoingIndicator": False}),
        (None, "unknown-tx", 0, {"messagesInQueue": False, "ongoingIndicator": False}),
    ],
    ids=["station-empty", "station-queued", "running", "ended-queued", "unknown"],
)
def test_get_transaction_status(
    rec: TxRecord | None, transaction_id: str | None, queued: int, expected: dict[str, Any]
) -> None:
    payload = get_transaction_status(rec, transaction_id=transaction_id, messages_in_queue=queued)
    STATUS_SCHEMA.validate(payload)
    assert payload == expected
