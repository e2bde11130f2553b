"""``evse-agent demo --ocpp 2.0.1``: the demo session of `hil.demo` on OCPP 2.0.1.

The same station (simulated hardware, in-process ``App``) against `hil.csms201.
CsmsEmulator201` on loopback: boot, status, the EV plugs in, the CSMS starts a
session with RequestStartTransaction, the station reports TransactionEvent Started /
Updated (with meter values) while charging, the CSMS stops it with
RequestStopTransaction, the EV is unplugged (TransactionEvent Ended). Part 2 is
the 1.6 demo's smart-charging part in 2.0.1 messages: a TxDefaultProfile for every
EVSE, a TxProfile stepping down at its period boundaries (below 6 A the EVSE
suspends), GetCompositeSchedule, ClearChargingProfile. Prints a timeline and a
summary; exits 0 when the CSMS saw the whole story.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
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
    pilot_shown,
    run_scripted_session,
)

REMOTE_START_ID = 1
SMART_REMOTE_START_ID = 2


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
    part_one_s = time.monotonic() - started_s

    smart_ok = await _smart_charging_part(app, csms, timeline)
    code = _summary(csms, tx_id, start, stop, part_one_s)
    print(f"  smart charging   : {'OK' if smart_ok else 'FAILED'}")
    return code if smart_ok else 1


def _profile(
    profile_id: int, purpose: str, stack_level: int, periods: list[tuple[int, float]], **kw: Any
) -> dict[str, Any]:
    """A 2.0.1 ChargingProfileType (snake_case, as the ocpp library takes it)."""
    schedule: dict[str, Any] = {
        "id": profile_id,
        "charging_rate_unit": "A",
        "charging_schedule_period": [{"start_period": s, "limit": a} for s, a in periods],
        "start_schedule": kw.pop("start_schedule"),
    }
    return {
        "id": profile_id,
        "stack_level": stack_level,
        "charging_profile_purpose": purpose,
        "charging_profile_kind": "Absolute",
        "charging_schedule": [schedule],
        **kw,
    }


async def _smart_charging_part(app: App, csms: CsmsEmulator201, timeline: Timeline) -> bool:
    """A TxDefaultProfile, then a TxProfile stepping down at period boundaries (K01,
    K08, K10), as the 1.6 demo's part 2."""
    print()
    timeline.say("demo", "part 2: smart charging")
    async with pilot_shown(app, timeline):
        long_ago = "2026-01-01T00:00:00Z"  # Absolute: in force before the session starts
        default = _profile(1, "TxDefaultProfile", 0, [(0, 16.0)], start_schedule=long_ago)
        answer = await csms.call(
            CHARGE_POINT_ID, call.SetChargingProfile(evse_id=0, charging_profile=default)
        )
        timeline.say("csms", f"TxDefaultProfile 16 A for every EVSE: {answer.status}")
        app.apply_sim(1, "plug", None)
        await csms.call(
            CHARGE_POINT_ID,
            call.RequestStartTransaction(
                id_token={"id_token": TOKEN, "type": "Central"},
                remote_start_id=SMART_REMOTE_START_ID,
                evse_id=1,
            ),
        )
        start = await _tx_event(csms, "Started", count=2)
        tx_id = str(start.payload["transactionInfo"]["transactionId"])
        await app.wait_status(1, "Charging")

        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        steps = [(0, 10.0), (3, 6.0), (6, 4.0)]
        tx_profile = _profile(2, "TxProfile", 1, steps, start_schedule=now, transaction_id=tx_id)
        answer = await csms.call(
            CHARGE_POINT_ID, call.SetChargingProfile(evse_id=1, charging_profile=tx_profile)
        )
        timeline.say(
            "csms",
            f"TxProfile 10 A, after 3 s 6 A, after 6 s 4 A (below 6 A: suspend): {answer.status}",
        )
        composite = await csms.call(
            CHARGE_POINT_ID,
            call.GetCompositeSchedule(duration=10, evse_id=1, charging_rate_unit="A"),
        )
        periods = composite.schedule["charging_schedule_period"] if composite.schedule else []
        timeline.say(
            "csms",
            "GetCompositeSchedule(evse 1, 10 s): "
            + ", ".join(f"+{p['start_period']} s {p['limit']} A" for p in periods),
        )
        await app.wait_status(1, "SuspendedEVSE")
        answer = await csms.call(CHARGE_POINT_ID, call.ClearChargingProfile(charging_profile_id=2))
        timeline.say("csms", f"ClearChargingProfile(2): {answer.status}; back to the default")
        await app.wait_status(1, "Charging")
        await csms.call(CHARGE_POINT_ID, call.RequestStopTransaction(transaction_id=tx_id))
        await app.wait_status(1, "Finishing")
        app.apply_sim(1, "unplug", None)
        await _tx_event(csms, "Ended", count=2)
        await _until_status(csms, "Available", count=3)
        return composite.status == "Accepted" and len(periods) == 3


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
