"""``evse-agent demo --ocpp 2.0.1``: the demo session of `hil.demo` on OCPP 2.0.1.

The same station (simulated hardware, in-process ``App``) against `hil.csms201.
CsmsEmulator201` on loopback: boot, status, the EV plugs in, the CSMS starts a
session with RequestStartTransaction, the station reports TransactionEvent Started /
Updated (with meter values) while charging, the CSMS stops it with
RequestStopTransaction, the EV is unplugged (TransactionEvent Ended). Prints a
timeline and a summary; exits 0 when the CSMS saw the whole story.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from ocpp.v201 import call

from agent.app import App
from hil.csms import ReceivedCall
from hil.csms201 import CsmsEmulator201
from hil.demo import (
    CHARGE_POINT_ID,
    ENERGY_REGISTER,
    METER_VALUES_TO_WATCH,
    STEP_TIMEOUT_S,
    TOKEN,
    Timeline,
    run_scripted_session,
)

REMOTE_START_ID = 1


def describe201(action: str, payload: dict[str, Any]) -> str | None:
    """One line per OCPP 2.0.1 message the CSMS received (None: not worth a line)."""
    match action:
        case "BootNotification":
            station = payload.get("chargingStation", {})
            return (
                f"BootNotification {station.get('vendorName')} {station.get('model')} "
                f"fw {station.get('firmwareVersion')} ({payload.get('reason')})"
            )
        case "StatusNotification":
            return (
                f"StatusNotification EVSE {payload.get('evseId')} connector "
                f"{payload.get('connectorId')}: {payload.get('connectorStatus')}"
            )
        case "TransactionEvent":
            info = payload.get("transactionInfo", {})
            values = [
                f"{str(v.get('measurand', ENERGY_REGISTER)).split('.')[0]}={v.get('value')}"
                for mv in payload.get("meterValue", [])
                for v in mv.get("sampledValue", [])
            ]
            extra = f" [{', '.join(values)}]" if values else ""
            stopped = info.get("stoppedReason")
            return (
                f"TransactionEvent {payload.get('eventType')} seqNo {payload.get('seqNo')} "
                f"{payload.get('triggerReason')} {info.get('chargingState', '')}"
                f"{' reason=' + stopped if stopped else ''}{extra}"
            ).replace("  ", " ")
    return action


def energy_register_wh(event: dict[str, Any]) -> float | None:
    """The last Energy.Active.Import.Register value (Wh) in a TransactionEvent, if any."""
    found = None
    for mv in event.get("meterValue", []):
        for value in mv.get("sampledValue", []):
            if value.get("measurand", ENERGY_REGISTER) == ENERGY_REGISTER:
                found = float(value["value"])
    return found


async def run_demo201(*, quiet: bool = False) -> int:
    """Run the scripted 2.0.1 session; returns the process exit code."""
    return await run_scripted_session(
        CsmsEmulator201, describe201, _script, ocpp_version="2.0.1", quiet=quiet
    )


async def _until_status(csms: CsmsEmulator201, status: str, count: int = 1) -> None:
    await csms.wait_for(
        "StatusNotification",
        count=count,
        predicate=lambda c: c.payload["evseId"] == 1 and c.payload["connectorStatus"] == status,
        timeout_s=STEP_TIMEOUT_S,
    )


def _tx_event(csms: CsmsEmulator201, event_type: str, count: int = 1) -> Any:
    return csms.wait_for(
        "TransactionEvent",
        count=count,
        predicate=lambda c: c.payload["eventType"] == event_type,
        timeout_s=STEP_TIMEOUT_S,
    )


async def _script(app: App, csms: CsmsEmulator201, timeline: Timeline) -> int:
    started_s = time.monotonic()
    await asyncio.wait_for(app.started.wait(), STEP_TIMEOUT_S)
    await csms.wait_for("BootNotification", timeout_s=STEP_TIMEOUT_S)
    await _until_status(csms, "Available")

    timeline.say("ev", "the EV is plugged in (CP A -> B)")
    app.apply_sim(1, "plug", None)
    await _until_status(csms, "Occupied")

    timeline.say("csms", f"sends RequestStartTransaction({TOKEN}, remoteStartId {REMOTE_START_ID})")
    answer = await csms.call(
        CHARGE_POINT_ID,
        call.RequestStartTransaction(
            id_token={"id_token": TOKEN, "type": "Central"},
            remote_start_id=REMOTE_START_ID,
            evse_id=1,
        ),
    )
    timeline.say("csms", f"RequestStartTransaction answered {answer.status}")
    start: ReceivedCall = await _tx_event(csms, "Started")
    await app.wait_status(1, "Charging")
    await _tx_event(csms, "Updated", count=METER_VALUES_TO_WATCH)

    tx_id = str(start.payload["transactionInfo"]["transactionId"])
    timeline.say("csms", f"sends RequestStopTransaction({tx_id})")
    answer = await csms.call(CHARGE_POINT_ID, call.RequestStopTransaction(transaction_id=tx_id))
    timeline.say("csms", f"RequestStopTransaction answered {answer.status}")
    await app.wait_status(1, "Finishing")

    timeline.say("ev", "the EV is unplugged (CP -> A)")
    app.apply_sim(1, "unplug", None)
    stop: ReceivedCall = await _tx_event(csms, "Ended")
    await csms.wait_answer(stop, timeout_s=STEP_TIMEOUT_S)
    await _until_status(csms, "Available", count=2)
    return _summary(csms, tx_id, start, stop, time.monotonic() - started_s)


def _summary(
    csms: CsmsEmulator201, tx_id: str, start: ReceivedCall, stop: ReceivedCall, wall_s: float
) -> int:
    events = [  # as received (``csms.transactions`` fills in when the handler ran)
        c.payload
        for c in csms.calls("TransactionEvent")
        if c.payload.get("transactionInfo", {}).get("transactionId") == tx_id
    ]
    energies = [e for e in (energy_register_wh(event) for event in events) if e is not None]
    energy_wh = energies[-1] - energies[0] if len(energies) > 1 else 0.0
    session_s = stop.monotonic_s - start.monotonic_s
    counts = Counter(c.action for c in csms.received)
    kinds = Counter(str(e.get("eventType")) for e in events)
    seq_nos = [int(e.get("seqNo", -1)) for e in events]
    stopped = stop.payload.get("transactionInfo", {}).get("stoppedReason")
    ok = (
        energy_wh > 0
        and kinds["Started"] == 1
        and kinds["Ended"] == 1
        and kinds["Updated"] >= METER_VALUES_TO_WATCH
        and seq_nos == list(range(len(events)))
        and start.payload.get("transactionInfo", {}).get("remoteStartId") == REMOTE_START_ID
        and stopped == "Remote"
    )
    print()
    print("Summary (OCPP 2.0.1)")
    print(f"  transaction      : {tx_id}")
    print(f"  energy delivered : {energy_wh:.0f} Wh")
    print(f"  session duration : {session_s:.1f} s (demo wall time {wall_s:.1f} s)")
    print(f"  stop reason      : {stopped}")
    print("  TransactionEvent : " + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())))
    print("  messages to CSMS : " + ", ".join(f"{a} x{n}" for a, n in sorted(counts.items())))
    print(f"  result           : {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1
