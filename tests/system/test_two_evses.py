"""Two EVSEs, each with its own simulated meter, contactor and pilot, charging at once."""

from __future__ import annotations

from ocpp.v16 import call

from hil.csms import CsmsEmulator, ReceivedCall
from tests.conftest import GUARD_S, StartApp, registered


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
