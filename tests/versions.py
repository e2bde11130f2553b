"""What a version-neutral whole-app test expects, per OCPP version.

A test parametrized over ``ocpp_version`` ("1.6" / "2.0.1") builds its scenario from
an `OcppVersion`: the same story ("a transaction started with this token", "the EVSE
is charging with the contactor closed", "the transaction ended with reason Remote")
projected onto the messages the CSMS of that version receives:

=================  ===============================  ===========================================
neutral            1.6                              2.0.1
=================  ===============================  ===========================================
started            StartTransaction                 TransactionEvent Started
meter value        MeterValues of the transaction   TransactionEvent Updated, MeterValuePeriodic
stopped(reason)    StopTransaction reason           TransactionEvent Ended, stoppedReason
status(s)          StatusNotification status        StatusNotification connectorStatus (Occupied
                                                    for Preparing...Finishing, sent on change)
                                                    plus the EVSE's own status
authorize          Authorize idTag                  Authorize idToken.idToken
remote start/stop  RemoteStart/StopTransaction      RequestStart/StopTransaction
availability       ChangeAvailability connector 1   ChangeAvailability evse 1
=================  ===============================  ===========================================

A status step always checks the EVSE's own (neutral) status and the contactor coil, so
a 2.0.1 scenario is as strict about the hardware as the 1.6 one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from hil.csms import CsmsEmulator, ReceivedCall
from hil.csms201 import CsmsEmulator201
from hil.scenario import AllOf, Csms, Expect, ExpectLocal, ExpectNone, ExpectStatus, Step

VERSIONS = ("1.6", "2.0.1")

# 1.6 ChargePointStatus -> 2.0.1 ConnectorStatusEnumType (REFERENCE 4.5)
CONNECTOR_STATUS_201 = {
    "Available": "Available",
    "Preparing": "Occupied",
    "Charging": "Occupied",
    "SuspendedEV": "Occupied",
    "SuspendedEVSE": "Occupied",
    "Finishing": "Occupied",
    "Reserved": "Reserved",
    "Unavailable": "Unavailable",
    "Faulted": "Faulted",
}


def all_of(*parts: Sequence[Step]) -> list[Step]:
    """Steps whose CSMS messages may arrive in any order (see `hil.scenario.AllOf`).

    The CSMS expectations of ``parts`` form one `AllOf`; local checks (`ExpectLocal`)
    follow it in order.
    """
    unordered: list[Expect | ExpectStatus] = []
    after: list[Step] = []
    for part in parts:
        for step in part:
            if isinstance(step, Expect | ExpectStatus):
                unordered.append(step)
            else:
                after.append(step)
    return [AllOf(*unordered), *after] if unordered else after


class OcppVersion:
    """Base of the per-version expectations; one instance per scenario (it remembers the
    last connector status the CSMS was told, for versions that report only changes)."""

    name = ""
    start_action = ""
    meter_action = ""
    stop_action = ""
    tx_actions: frozenset[str] = frozenset()
    """The transaction-related actions: the ones the journal delivers exactly once."""

    def make_csms(self) -> CsmsEmulator:
        """An emulator (not started) that speaks this version."""
        raise NotImplementedError

    def csms_options(self) -> dict[str, Any]:
        """``[csms]`` config values that select this version."""
        return {"ocpp_version": self.name}

    def is_boot_status(self, received: ReceivedCall) -> bool:
        """Whether ``received`` is the StatusNotification of EVSE 1 sent after boot."""
        raise NotImplementedError

    def starts(self, received: Sequence[ReceivedCall]) -> list[ReceivedCall]:
        """The transaction starts among ``received``."""
        raise NotImplementedError

    def stops(self, received: Sequence[ReceivedCall]) -> list[ReceivedCall]:
        """The transaction ends among ``received``."""
        raise NotImplementedError

    def stop_reason(self, stop: ReceivedCall) -> str:
        """The stop reason of a transaction end (1.6 ``reason``, 2.0.1 ``stoppedReason``)."""
        raise NotImplementedError

    def tx_id_of(self, received: ReceivedCall, csms: CsmsEmulator) -> Any:
        """The CSMS's transaction id of a start or an end."""
        raise NotImplementedError

    def meter_keys(self, received: Sequence[ReceivedCall]) -> list[tuple[Any, str]]:
        """(transaction id, sample timestamp) of every meter value delivered during a
        transaction, start and end excluded (a duplicate delivery repeats a key)."""
        raise NotImplementedError

    def sequence_problems(self, received: Sequence[ReceivedCall]) -> list[str]:
        """Version-specific ordering faults of the transaction messages in ``received``
        (2.0.1: each transaction's seqNo runs 0, 1, 2... once; 1.6 has no such field)."""
        del received
        return []

    def authorize(self, token: str) -> list[Step]:
        """The CSMS is asked to authorize ``token``."""
        raise NotImplementedError

    def started(self, token: str, *, offline: bool = False) -> list[Step]:
        """A transaction of ``token`` starts (2.0.1: flagged ``offline`` if it began so)."""
        raise NotImplementedError

    def meter_value(self) -> list[Step]:
        """A periodic meter value of the running transaction arrives."""
        raise NotImplementedError

    def stopped(self, reason: str) -> list[Step]:
        """The transaction ends with ``reason`` (the 1.6 / 2.0.1 reason names agree)."""
        raise NotImplementedError

    def no_start(self) -> list[Step]:
        """No transaction has started since the scenario began."""
        return [ExpectNone(self.start_action)]

    def status(
        self,
        status: str,
        *,
        contactor_on: bool | None = None,
        error_code: str | None = None,
        local: bool = False,
    ) -> list[Step]:
        """EVSE 1 reaches ``status`` (1.6 ChargePointStatus names): the CSMS is told (unless
        ``local``: the CSMS is offline), then the coil is checked if ``contactor_on`` is
        given. ``error_code``: the 1.6 errorCode."""
        raise NotImplementedError

    def remote_start(self, token: str) -> list[Step]:
        """The CSMS starts a transaction of ``token`` on EVSE 1 (Accepted)."""
        raise NotImplementedError

    def remote_stop(self) -> list[Step]:
        """The CSMS stops the latest transaction it saw started."""
        raise NotImplementedError

    def set_operative(self, operative: bool) -> list[Step]:
        """The CSMS makes EVSE 1 Operative / Inoperative (Accepted)."""
        raise NotImplementedError


class Ocpp16(OcppVersion):
    """OCPP 1.6J: `hil.csms.CsmsEmulator` numbers transactions 1, 2, ..."""

    name = "1.6"
    start_action = "StartTransaction"
    meter_action = "MeterValues"
    stop_action = "StopTransaction"
    tx_actions = frozenset({"StartTransaction", "MeterValues", "StopTransaction"})

    def make_csms(self) -> CsmsEmulator:
        return CsmsEmulator(heartbeat_interval_s=300)

    def is_boot_status(self, received: ReceivedCall) -> bool:
        return received.action == "StatusNotification" and received.payload["connectorId"] == 1

    def starts(self, received: Sequence[ReceivedCall]) -> list[ReceivedCall]:
        return [c for c in received if c.action == "StartTransaction"]

    def stops(self, received: Sequence[ReceivedCall]) -> list[ReceivedCall]:
        return [c for c in received if c.action == "StopTransaction"]

    def stop_reason(self, stop: ReceivedCall) -> str:
        return str(stop.payload.get("reason", "Local"))

    def tx_id_of(self, received: ReceivedCall, csms: CsmsEmulator) -> Any:
        if received.action == "StartTransaction":
            answer = csms.answers.get(received.seq)
            return answer.get("transactionId") if isinstance(answer, dict) else None
        return received.payload["transactionId"]

    def meter_keys(self, received: Sequence[ReceivedCall]) -> list[tuple[Any, str]]:
        return [
            (c.payload.get("transactionId"), mv["timestamp"])
            for c in received
            if c.action == "MeterValues"
            for mv in c.payload["meterValue"]
        ]

    def authorize(self, token: str) -> list[Step]:
        return [Expect("Authorize", idTag=token)]

    def started(self, token: str, *, offline: bool = False) -> list[Step]:
        del offline  # 1.6 has no offline flag
        return [Expect("StartTransaction", idTag=token, connectorId=1)]

    def meter_value(self) -> list[Step]:
        return [Expect("MeterValues", transactionId=1)]

    def stopped(self, reason: str) -> list[Step]:
        return [Expect("StopTransaction", transactionId=1, reason=reason)]

    def status(
        self,
        status: str,
        *,
        contactor_on: bool | None = None,
        error_code: str | None = None,
        local: bool = False,
    ) -> list[Step]:
        if local:
            return [ExpectLocal(1, status, contactor_on=contactor_on)]
        return [ExpectStatus(1, status, error_code=error_code, contactor_on=contactor_on)]

    def remote_start(self, token: str) -> list[Step]:
        return [
            Csms(call16.RemoteStartTransaction(id_tag=token, connector_id=1), status="Accepted")
        ]

    def remote_stop(self) -> list[Step]:
        async def latest(csms: CsmsEmulator, cp_id: str) -> Any:
            start = csms.calls("StartTransaction", cp_id)[-1]
            answer = await csms.wait_answer(start)
            assert isinstance(answer, dict), answer
            return call16.RemoteStopTransaction(transaction_id=answer["transactionId"])

        return [Csms(latest, status="Accepted")]

    def set_operative(self, operative: bool) -> list[Step]:
        kind = "Operative" if operative else "Inoperative"
        return [Csms(call16.ChangeAvailability(connector_id=1, type=kind), status="Accepted")]


class Ocpp201(OcppVersion):
    """OCPP 2.0.1: the station chooses transaction ids; EVSE 1 has connector 1."""

    name = "2.0.1"
    start_action = "TransactionEvent"
    meter_action = "TransactionEvent"
    stop_action = "TransactionEvent"
    tx_actions = frozenset({"TransactionEvent"})

    def __init__(self) -> None:
        self._reported = "Available"  # what the boot StatusNotification said

    def make_csms(self) -> CsmsEmulator:
        return CsmsEmulator201(heartbeat_interval_s=300)

    def is_boot_status(self, received: ReceivedCall) -> bool:
        return received.action == "StatusNotification" and received.payload["evseId"] == 1

    def starts(self, received: Sequence[ReceivedCall]) -> list[ReceivedCall]:
        return _events(received, "Started")

    def stops(self, received: Sequence[ReceivedCall]) -> list[ReceivedCall]:
        return _events(received, "Ended")

    def no_start(self) -> list[Step]:
        return [ExpectNone("TransactionEvent")]

    def stop_reason(self, stop: ReceivedCall) -> str:
        return str(stop.payload["transactionInfo"].get("stoppedReason", "Local"))

    def tx_id_of(self, received: ReceivedCall, csms: CsmsEmulator) -> Any:
        del csms
        return received.payload["transactionInfo"]["transactionId"]

    def meter_keys(self, received: Sequence[ReceivedCall]) -> list[tuple[Any, str]]:
        return [
            (c.payload["transactionInfo"]["transactionId"], mv["timestamp"])
            for c in _events(received, "Updated")
            for mv in c.payload.get("meterValue", [])
        ]

    def sequence_problems(self, received: Sequence[ReceivedCall]) -> list[str]:
        seq_nos: dict[str, list[int]] = {}
        for c in received:
            if c.action == "TransactionEvent":
                tx_id = str(c.payload["transactionInfo"]["transactionId"])
                seq_nos.setdefault(tx_id, []).append(int(c.payload["seqNo"]))
        return [
            f"transaction {tx_id}: seqNo {got}, expected 0..{len(got) - 1} once each"
            for tx_id, got in seq_nos.items()
            if got != list(range(len(got)))
        ]

    def authorize(self, token: str) -> list[Step]:
        return [Expect("Authorize", idToken={"idToken": token})]

    def started(self, token: str, *, offline: bool = False) -> list[Step]:
        fields: dict[str, Any] = {"eventType": "Started", "idToken": {"idToken": token}}
        if offline:
            fields["offline"] = True
        return [Expect("TransactionEvent", **fields)]

    def meter_value(self) -> list[Step]:
        return [Expect("TransactionEvent", eventType="Updated", triggerReason="MeterValuePeriodic")]

    def stopped(self, reason: str) -> list[Step]:
        return [
            Expect("TransactionEvent", eventType="Ended", transactionInfo={"stoppedReason": reason})
        ]

    def status(
        self,
        status: str,
        *,
        contactor_on: bool | None = None,
        error_code: str | None = None,
        local: bool = False,
    ) -> list[Step]:
        del error_code  # 2.0.1 reports the error itself with NotifyEvent
        steps: list[Step] = []
        reported = CONNECTOR_STATUS_201[status]
        if reported != self._reported and not local:
            self._reported = reported
            steps.append(
                Expect("StatusNotification", evseId=1, connectorId=1, connectorStatus=reported)
            )
        steps.append(ExpectLocal(1, status, contactor_on=contactor_on))
        return steps

    def remote_start(self, token: str) -> list[Step]:
        payload = call201.RequestStartTransaction(
            id_token={"id_token": token, "type": "Central"}, remote_start_id=1, evse_id=1
        )
        return [Csms(payload, status="Accepted")]

    def remote_stop(self) -> list[Step]:
        def latest(csms: CsmsEmulator, cp_id: str) -> Any:
            start = _events(csms.calls("TransactionEvent", cp_id), "Started")[-1]
            tx_id = start.payload["transactionInfo"]["transactionId"]
            return call201.RequestStopTransaction(transaction_id=tx_id)

        return [Csms(latest, status="Accepted")]

    def set_operative(self, operative: bool) -> list[Step]:
        kind = "Operative" if operative else "Inoperative"
        payload = call201.ChangeAvailability(operational_status=kind, evse={"id": 1})
        return [Csms(payload, status="Accepted")]


def _events(received: Sequence[ReceivedCall], event_type: str) -> list[ReceivedCall]:
    return [
        c
        for c in received
        if c.action == "TransactionEvent" and c.payload.get("eventType") == event_type
    ]


def ocpp_version(name: str) -> OcppVersion:
    """A fresh `OcppVersion` for ``name`` ("1.6" or "2.0.1")."""
    return Ocpp16() if name == "1.6" else Ocpp201()
