"""Project the neutral transaction journal onto OCPP 2.0.1 TransactionEvent (pure).

Every queued journal row is one TransactionEventRequest: ``start`` -> Started,
``meter`` and ``update`` (charging state changed, id accepted after a cable-first
start) -> Updated, ``stop`` -> Ended (REFERENCE 4.4). Payloads are plain dicts
with the 2.0.1 JSON field names (camelCase), so this module needs no ``ocpp``
import; the adapter sends them. ``seqNo`` and ``offline`` are facts the journal
recorded when the event happened (:class:`~agent.transactions.journal.QueuedTxMessage`),
never derived at send time.

The station's own transaction id (``TxRecord.tx_id``, 32 hex digits) is the 2.0.1
``transactionId``: in 2.0.1 the station generates it (Part 1 §7, max 36 chars).

Each EVSE of this station has exactly one connector (``agent.config``); the
core's ``connector_id`` is the 1.6 connector number (= EVSE id), so in 2.0.1
numbering (connectors 1..m per EVSE) it is always connector 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from agent.events import MeterSample, ReadingContext, SampledValue, StopReason, TxPoint
from agent.transactions.journal import QueuedTxMessage, TxRecord

__all__ = [
    "CONNECTOR_ID",
    "MEASURANDS",
    "STOPPED_REASON",
    "STOP_TRIGGER_REASON",
    "get_transaction_status",
    "meter_trigger_reason",
    "meter_value",
    "sampled_value",
    "start_trigger_reason",
    "transaction_event",
]

CONNECTOR_ID: Final = 1
"""2.0.1 connectorId of every transaction: each EVSE has one connector."""

ENERGY_REGISTER: Final = "Energy.Active.Import.Register"

MEASURANDS: Final = frozenset(
    {
        "Current.Export",
        "Current.Import",
        "Current.Offered",
        "Energy.Active.Export.Register",
        "Energy.Active.Import.Register",
        "Energy.Reactive.Export.Register",
        "Energy.Reactive.Import.Register",
        "Energy.Active.Export.Interval",
        "Energy.Active.Import.Interval",
        "Energy.Active.Net",
        "Energy.Reactive.Export.Interval",
        "Energy.Reactive.Import.Interval",
        "Energy.Reactive.Net",
        "Energy.Apparent.Net",
        "Energy.Apparent.Import",
        "Energy.Apparent.Export",
        "Frequency",
        "Power.Active.Export",
        "Power.Active.Import",
        "Power.Factor",
        "Power.Offered",
        "Power.Reactive.Export",
        "Power.Reactive.Import",
        "SoC",
        "Voltage",
    }
)
"""2.0.1 MeasurandEnumType. 1.6's Temperature and RPM are not in it: such values are
left out of a 2.0.1 message rather than sent invalid."""

STOP_TRIGGER_REASON: Final[Mapping[StopReason, str]] = {
    StopReason.EMERGENCY_STOP: "AbnormalCondition",
    # E09/E10: the cable was unplugged (EV side or station side). EVDeparted is the
    # parking-bay detector's trigger, which this station does not have.
    StopReason.EV_DISCONNECTED: "EVCommunicationLost",
    StopReason.HARD_RESET: "ResetCommand",
    StopReason.SOFT_RESET: "ResetCommand",
    StopReason.LOCAL: "StopAuthorized",
    StopReason.OTHER: "AbnormalCondition",
    StopReason.POWER_LOSS: "AbnormalCondition",
    StopReason.REBOOT: "AbnormalCondition",
    StopReason.REMOTE: "RemoteStop",
    StopReason.UNLOCK_COMMAND: "UnlockCommand",
    StopReason.DEAUTHORIZED: "Deauthorized",
    StopReason.MASTER_PASS: "StopAuthorized",  # C16: a MasterPass token was presented
    StopReason.STOPPED_BY_EV: "ChargingStateChanged",  # stop point EnergyTransfer
    StopReason.TIMEOUT: "EVConnectTimeout",
}
"""triggerReason of the Ended event, by why the transaction ended."""

STOPPED_REASON: Final[Mapping[StopReason, str]] = {
    StopReason.EMERGENCY_STOP: "EmergencyStop",
    StopReason.EV_DISCONNECTED: "EVDisconnected",
    # 2.0.1 has no Hard/Soft reset reasons: a Reset that ends a running transaction
    # is an Immediate reset (an OnIdle one waits for the transaction to end).
    StopReason.HARD_RESET: "ImmediateReset",
    StopReason.SOFT_RESET: "ImmediateReset",
    StopReason.LOCAL: "Local",
    StopReason.OTHER: "Other",
    StopReason.POWER_LOSS: "PowerLoss",
    StopReason.REBOOT: "Reboot",
    StopReason.REMOTE: "Remote",
    StopReason.UNLOCK_COMMAND: "Other",  # no 2.0.1 reason; the trigger says UnlockCommand
    StopReason.DEAUTHORIZED: "DeAuthorized",
    StopReason.MASTER_PASS: "MasterPass",
    StopReason.STOPPED_BY_EV: "StoppedByEV",
    StopReason.TIMEOUT: "Timeout",
}
"""transactionInfo.stoppedReason (2.0.1 ReasonEnumType), by neutral stop reason."""

_METER_TRIGGER_REASON: Final[Mapping[ReadingContext, str]] = {
    ReadingContext.SAMPLE_CLOCK: "MeterValueClock",
    ReadingContext.TRIGGER: "Trigger",
}

_ID_TOKEN_TYPE_LOCAL: Final = "ISO14443"
_ID_TOKEN_TYPE_NONE: Final = "NoAuthorization"


def start_trigger_reason(record: TxRecord, started_by: TxPoint | None = None) -> str:
    """triggerReason of the Started event, by what reached the start point last.

    ``started_by`` EV_CONNECTED (the cable came last, or alone with TxStartPoint
    EVConnected) -> CablePluggedIn; ENERGY_TRANSFER (the EV's power request) ->
    ChargingStateChanged; AUTHORIZED or unknown (rows journaled before it was
    recorded) -> RemoteStart for a transaction a RequestStartTransaction began (it
    has a ``remote_start_id``), else Authorized.
    """
    if started_by is TxPoint.EV_CONNECTED:
        return "CablePluggedIn"
    if started_by is TxPoint.ENERGY_TRANSFER:
        return "ChargingStateChanged"
    return "RemoteStart" if record.remote_start_id is not None else "Authorized"


def meter_trigger_reason(context: ReadingContext) -> str:
    """triggerReason of an Updated event carrying a sample taken for ``context``.

    Sample.Clock -> MeterValueClock, Trigger -> Trigger, anything else (the core
    queues Sample.Periodic) -> MeterValuePeriodic.
    """
    return _METER_TRIGGER_REASON.get(context, "MeterValuePeriodic")


def sampled_value(value: SampledValue, context: ReadingContext) -> dict[str, Any] | None:
    """One 2.0.1 SampledValueType, or None for a measurand 2.0.1 does not have.

    ``value`` is a JSON number (an integer when it is whole); ``unitOfMeasure.unit``
    is the neutral unit (2.0.1 spells Wh, W, A, V, Percent... the same way).

    Raises:
        ValueError: The value is NaN or infinite.
    """
    if value.measurand not in MEASURANDS:
        return None
    if not math.isfinite(value.value):
        raise ValueError(f"non-finite {value.measurand} value: {value.value}")
    out: dict[str, Any] = {
        "value": _number(value.value),
        "measurand": value.measurand,
        "context": context.value,
        "unitOfMeasure": {"unit": value.unit},
    }
    if value.phase is not None:
        out["phase"] = value.phase
    if value.location is not None:
        out["location"] = value.location
    return out


def meter_value(sample: MeterSample) -> dict[str, Any] | None:
    """One 2.0.1 MeterValueType, or None when none of its values exists in 2.0.1
    (a MeterValue needs at least one sampledValue).

    Raises:
        ValueError: A value is NaN or infinite.
    """
    values = [sampled_value(v, sample.context) for v in sample.values]
    kept = [v for v in values if v is not None]
    if not kept:
        return None
    return {"timestamp": sample.timestamp, "sampledValue": kept}


def transaction_event(
    msg: QueuedTxMessage,
    record: TxRecord,
    *,
    seq_no: int,
    offline: bool,
    id_token_type: str | None = None,
) -> dict[str, Any]:
    """The TransactionEventRequest payload for one queued journal row (pure).

    Args:
        msg: The queued row (``start``, ``meter``, ``update`` or ``stop``) with its
            samples and event fields.
        record: Its transaction as it is now (``msg.record`` or a newer read).
        seq_no: ``msg.seq_no``: the event's place in its transaction, from 0.
        offline: ``msg.offline``: the station was offline when it happened.
        id_token_type: 2.0.1 IdTokenEnumType of ``record.id_tag`` when the caller
            knows it (e.g. the type a RequestStartTransaction named). None: ISO14443
            (the station's RFID reader), NoAuthorization for an empty tag.

    Returns:
        A dict in 2.0.1 JSON field names: ``eventType``, ``timestamp``,
        ``triggerReason``, ``seqNo``, ``transactionInfo`` and, where they apply,
        ``offline`` (only when true), ``evse`` + ``idToken`` (when it began with
        one) + ``reservationId`` (Started), ``idToken`` (Updated with triggerReason
        Authorized), ``meterValue``. Started carries the start register reading
        (Transaction.Begin); Updated its sample; Ended the transaction data the
        journal kept (begin, periodic, end samples) or, when there is none, the
        stop register reading (Transaction.End).

    Raises:
        ValueError: ``msg`` does not belong to ``record``, ``seq_no`` is negative,
            a ``meter`` row has no sample, an ``update`` row lacks its trigger,
            charging state or timestamp, a ``stop`` row's transaction has not
            ended, or a value is not finite.
    """
    if msg.tx_id != record.tx_id:
        raise ValueError(f"message of {msg.tx_id} projected with record {record.tx_id}")
    if seq_no < 0:
        raise ValueError(f"seq_no must be >= 0, got {seq_no}")
    info: dict[str, Any] = {"transactionId": record.tx_id}
    payload: dict[str, Any]
    meter_values: list[dict[str, Any] | None]
    match msg.kind:
        case "start":
            # REFERENCE 4.4: the first event names the EVSE and connector, the token
            # and, for a remote start, the remoteStartId
            # rows journaled before the charging state was recorded: the 1.6 start
            # point, plugged in and authorized
            charging_state = msg.charging_state
            info["chargingState"] = "EVConnected" if charging_state is None else charging_state
            if record.remote_start_id is not None and msg.authorized:
                info["remoteStartId"] = record.remote_start_id  # else on its Updated
            trigger = start_trigger_reason(record, msg.started_by)
            payload = _event("Started", record.start_time, trigger)
            payload["evse"] = {"id": record.evse_id, "connectorId": CONNECTOR_ID}
            if msg.authorized:  # cable first: the id comes with Updated(Authorized)
                payload["idToken"] = _id_token(record.id_tag, id_token_type)
            if record.reservation_id is not None:
                payload["reservationId"] = record.reservation_id
            meter_values = [
                _register(
                    record.start_time, record.meter_start_wh, ReadingContext.TRANSACTION_BEGIN
                )
            ]
        case "meter":
            if not msg.samples:
                raise ValueError(f"queued meter message {msg.seq} has no sample")
            first = msg.samples[0]
            payload = _event("Updated", first.timestamp, meter_trigger_reason(first.context))
            meter_values = [meter_value(s) for s in msg.samples]
        case "update":
            if msg.trigger is None or msg.charging_state is None or msg.timestamp is None:
                raise ValueError(f"queued update {msg.seq} lacks its event fields")
            info["chargingState"] = msg.charging_state.value
            payload = _event("Updated", msg.timestamp, msg.trigger.value)
            if msg.id_tag:
                payload["idToken"] = _id_token(msg.id_tag, id_token_type)
            if msg.remote_start_id is not None:
                info["remoteStartId"] = msg.remote_start_id
            meter_values = []
        case "stop":
            if record.stop_time is None or record.stop_reason is None:
                raise ValueError(f"stop message {msg.seq} for running transaction {record.tx_id}")
            reason = record.stop_reason
            info["stoppedReason"] = STOPPED_REASON[reason]
            if reason is StopReason.EV_DISCONNECTED:
                info["chargingState"] = "Idle"  # nothing is connected any more
            payload = _event("Ended", record.stop_time, STOP_TRIGGER_REASON[reason])
            if reason is StopReason.LOCAL:
                # E07: stopped by presenting a token; the journal keeps only the
                # transaction's own token, which is what is reported
                payload["idToken"] = _id_token(record.id_tag, id_token_type)
            meter_values = [meter_value(s) for s in msg.samples]
            if record.meter_stop_wh is not None and not any(meter_values):
                meter_values = [
                    _register(
                        record.stop_time, record.meter_stop_wh, ReadingContext.TRANSACTION_END
                    )
                ]
    payload["seqNo"] = seq_no
    payload["transactionInfo"] = info
    kept = [m for m in meter_values if m is not None]
    if kept:
        payload["meterValue"] = kept
    if offline:
        payload["offline"] = True
    return payload


def get_transaction_status(
    record: TxRecord | None, *, transaction_id: str | None, messages_in_queue: int
) -> dict[str, Any]:
    """The GetTransactionStatusResponse payload (OCPP 2.0.1 E14) (pure).

    Args:
        record: The transaction named by ``transaction_id`` as the journal has it
            (``TransactionJournal.get``), None when unknown or none was named.
        transaction_id: The requested transactionId, None when the CSMS asked about
            the station's queue as a whole.
        messages_in_queue: Queued transaction messages: of that transaction when one
            was named (``TransactionJournal.pending_count(tx_id)``), else all of them.

    Returns:
        ``{"messagesInQueue": bool}`` plus, when a transaction was named,
        ``ongoingIndicator`` (False for an unknown or ended one).
    """
    payload: dict[str, Any] = {"messagesInQueue": messages_in_queue > 0}
    if transaction_id is not None:
        payload["ongoingIndicator"] = record is not None and record.running
    return payload


def _event(event_type: str, timestamp: str, trigger_reason: str) -> dict[str, Any]:
    return {"eventType": event_type, "timestamp": timestamp, "triggerReason": trigger_reason}


def _id_token(id_tag: str, id_token_type: str | None) -> dict[str, str]:
    if id_token_type is None:
        id_token_type = _ID_TOKEN_TYPE_LOCAL if id_tag else _ID_TOKEN_TYPE_NONE
    return {"idToken": id_tag, "type": id_token_type}


def _register(timestamp: str, energy_wh: int, context: ReadingContext) -> dict[str, Any] | None:
    return meter_value(
        MeterSample(
            timestamp=timestamp,
            context=context,
            values=(SampledValue(ENERGY_REGISTER, float(energy_wh), "Wh"),),
        )
    )


def _number(value: float) -> int | float:
    """A JSON number: whole values as integers (``1000``, not ``1000.0``)."""
    return int(value) if float(value).is_integer() else float(value)
