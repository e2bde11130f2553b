"""Two EVSEs, each with its own simulated meter, contactor and pilot, charging at once."""

from __future__ import annotations

import time

from ocpp.v16 import call

from hal.pilot import PilotMode, PilotOutput
from hal.sim.rig import SimEvseRig
from hil.csms import CsmsEmulator, ReceivedCall
from tests.conftest import GUARD_S, StartApp, registered
from tests.ocpp.test_v16_smart_charging import last_seq, profile, set_profile, wait_status


def _status(c: ReceivedCall, connector: int, status: str) -> bool:
    return c.payload["connectorId"] == connector and c.payload["status"] == status


async def test_two_evses_charge_independently(csms: CsmsEmulator, start_app: StartApp) -> None:
    agent = await start_app(csms, evse_count=2, ocpp={"meter_value_sample_interval_s": 1})
    await registered(csms)
    for connector in (0, 1, 2):
        await csms.wait_for(
            "StatusNotification",
            predicate=lambda c, n=connector: _status(c, n, "Available"),
            timeout_s=GUARD_S,
        )

    for evse_id, tag in ((1, "TAG-A"), (2, "TAG-B")):
        agent.sim("plug", evse_id=evse_id)
        agent.sim("swipe", tag, evse_id=evse_id)
    starts = [
        await csms.wait_for(
            "StartTransaction",
            predicate=lambda c, n=n: c.payload["connectorId"] == n,
            timeout_s=GUARD_S,
        )
        for n in (1, 2)
    ]
    assert {s.payload["idTag"] for s in starts} == {"TAG-A", "TAG-B"}
    for n in (1, 2):
        await csms.wait_for(
            "StatusNotification",
            predicate=lambda c, n=n: _status(c, n, "Charging"),
            timeout_s=GUARD_S,
        )
    assert agent.app.coil_is_on(1) and agent.app.coil_is_on(2)
    tx = {}
    for s in starts:
        answer_to_start = await csms.wait_answer(s, timeout_s=GUARD_S)
        tx[s.payload["connectorId"]] = answer_to_start["transactionId"]  # type: ignore[index]
    for n in (1, 2):  # meter values per connector carry that connector's transaction
        mv = await csms.wait_for(
            "MeterValues",
            predicate=lambda c, n=n: c.payload["connectorId"] == n,
            timeout_s=GUARD_S,
        )
        assert mv.payload["transactionId"] == tx[n]

    # stopping one leaves the other charging
    answer = await csms.call("CP1", call.RemoteStopTransaction(transaction_id=tx[1]))
    assert answer.status == "Accepted"
    stop = await csms.wait_for("StopTransaction", timeout_s=GUARD_S)
    assert stop.payload["transactionId"] == tx[1]
    await csms.wait_for(
        "StatusNotification", predicate=lambda c: _status(c, 1, "Finishing"), timeout_s=GUARD_S
    )
    assert not agent.app.coil_is_on(1)
    assert agent.app.coil_is_on(2)
    assert agent.app.station is not None
    running = agent.app.station.running_transactions()
    assert [t.evse_id for t in running] == [2]

    # connector 0 Inoperative: the whole station; EVSE 2 finishes its session first
    answer = await csms.call("CP1", call.ChangeAvailability(connector_id=0, type="Inoperative"))
    assert answer.status == "Scheduled"
    await csms.wait_for(
        "StatusNotification", predicate=lambda c: _status(c, 0, "Unavailable"), timeout_s=GUARD_S
    )
    assert agent.app.coil_is_on(2)
    agent.sim("unplug", evse_id=2)
    await csms.wait_for(
        "StatusNotification", predicate=lambda c: _status(c, 2, "Unavailable"), timeout_s=GUARD_S
    )


# ------------------------------------------------ a station limit shared by both EVSEs


def _signalled_a(output: PilotOutput) -> float:
    """The current an EV reads from a CP output (IEC 61851-1 Table A.8, 10-85 %)."""
    if output.mode is not PilotMode.PWM:
        return 0.0
    assert 10.0 <= output.duty_pct <= 85.0, output
    return output.duty_pct * 0.6


def _station_current_a(rigs: list[SimEvseRig], since_s: float) -> list[tuple[float, float]]:
    """(time, sum of the signalled currents) after every CP output change since ``since_s``."""
    changes = sorted(
        (c.monotonic_s, index, c.output)
        for index, rig in enumerate(rigs)
        for c in rig.pilot.output_history
    )
    current = [0.0] * len(rigs)
    out = []
    for at_s, index, output in changes:
        current[index] = _signalled_a(output)
        if at_s >= since_s:
            out.append((at_s, sum(current)))
    return out


async def test_station_max_profile_is_shared_between_the_evses(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms, evse_count=2)
    await registered(csms)
    rigs = [agent.app.rigs[1], agent.app.rigs[2]]
    seen = [len(rig.pilot.output_history) for rig in rigs]
    cap = profile(1, [(0, 40)], purpose="ChargePointMaxProfile")
    assert await set_profile(csms, 0, cap) == "Accepted"
    since_s = time.monotonic()

    # alone, EVSE 1 is limited by its own 32 A, not by the 40 A station limit
    mark = last_seq(csms)
    agent.sim("plug", evse_id=1)
    agent.sim("swipe", "TAG-A", evse_id=1)
    await wait_status(csms, 1, "Charging", after_seq=mark)
    assert rigs[0].pilot.output == PilotOutput.pwm(53.3)

    # EVSE 2 starts: 20 A each, and its first PWM is already its share
    agent.sim("plug", evse_id=2)
    agent.sim("swipe", "TAG-B", evse_id=2)
    await wait_status(csms, 2, "Charging", after_seq=mark)
    assert [rig.pilot.output for rig in rigs] == [PilotOutput.pwm(33.3)] * 2
    duties_2 = [
        c.output.duty_pct
        for c in list(rigs[1].pilot.output_history)[seen[1] :]
        if c.output.mode is PilotMode.PWM
    ]
    assert duties_2 == [33.3]
    starts = {}
    tx = {}
    for n in (1, 2):
        starts[n] = await csms.wait_for(
            "StartTransaction",
            predicate=lambda c, n=n: c.payload["connectorId"] == n,
            timeout_s=GUARD_S,
        )
        answer = await csms.wait_answer(starts[n], timeout_s=GUARD_S)
        tx[n] = answer["transactionId"]  # type: ignore[index]

    # connector 0 reports the station-wide flow: 32 + 32 A wanted, 40 A allowed
    station = await csms.call("CP1", call.GetCompositeSchedule(connector_id=0, duration=600))
    assert station.status == "Accepted"
    assert station.charging_schedule["charging_schedule_period"] == [
        {"start_period": 0, "limit": 40.0, "number_phases": 3}
    ]
    watts = await csms.call(
        "CP1", call.GetCompositeSchedule(connector_id=0, duration=600, charging_rate_unit="W")
    )
    assert watts.charging_schedule["charging_schedule_period"] == [
        {"start_period": 0, "limit": 27600.0, "number_phases": 3}  # 40 A * 230 V * 3
    ]

    # 10 A for the station: 5 A each cannot be signalled, so the later session pauses
    mark = last_seq(csms)
    assert await set_profile(csms, 0, profile(1, [(0, 10)], purpose="ChargePointMaxProfile")) == (
        "Accepted"
    )
    await wait_status(csms, 2, "SuspendedEVSE", after_seq=mark)
    assert rigs[0].pilot.output == PilotOutput.pwm(16.6)
    assert agent.app.coil_is_on(1) and not agent.app.coil_is_on(2)
    lowered_s = time.monotonic()

    # the first session ends: the second one gets the room
    mark = last_seq(csms)
    assert (await csms.call("CP1", call.RemoteStopTransaction(transaction_id=tx[1]))).status == (
        "Accepted"
    )
    await wait_status(csms, 2, "Charging", after_seq=mark)
    assert rigs[1].pilot.output == PilotOutput.pwm(16.6)
    assert (await csms.call("CP1", call.RemoteStopTransaction(transaction_id=tx[2]))).status == (
        "Accepted"
    )
    await wait_status(csms, 2, "Finishing", after_seq=mark)
    await csms.wait_for(
        "StopTransaction",
        predicate=lambda c: c.payload["transactionId"] == tx[2],
        timeout_s=GUARD_S,
    )

    stops = {c.payload["transactionId"]: c.payload for c in csms.calls("StopTransaction")}
    assert set(stops) == {tx[1], tx[2]}
    for n in (1, 2):
        assert stops[tx[n]]["reason"] == "Remote"
        assert stops[tx[n]]["meterStop"] >= starts[n].payload["meterStart"]

    # the signalled currents never summed above the station limit in force
    for at_s, total_a in _station_current_a(rigs, since_s):
        assert total_a <= (10.0 if at_s >= lowered_s else 40.0) + 1e-9, (at_s, total_a)
    # connector 0 stayed Available: it reports the station, not the sessions (1.6 §4.9)
    assert {
        c.payload["status"]
        for c in csms.calls("StatusNotification")
        if c.payload["connectorId"] == 0
    } == {"Available"}
