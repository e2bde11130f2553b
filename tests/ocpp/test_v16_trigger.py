"""TriggerMessage (OCPP 1.6 RemoteTrigger, 5.17): the answer first, then the message."""

from __future__ import annotations

import pytest
from ocpp.v16 import call

from hil.csms import CsmsEmulator
from tests.conftest import GUARD_S, StartApp, registered

CP = "CP1"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("BootNotification", {}),
        ("Heartbeat", {}),
        ("StatusNotification", {"connectorId": 1, "status": "Available"}),
        ("DiagnosticsStatusNotification", {"status": "Idle"}),
        ("FirmwareStatusNotification", {"status": "Idle"}),
    ],
)
async def test_triggered_message_follows_the_answer(
    csms: CsmsEmulator, start_app: StartApp, message: str, expected: dict[str, object]
) -> None:
    await start_app(csms)
    await registered(csms)
    before = csms.received[-1].seq
    answer = await csms.call(CP, call.TriggerMessage(requested_message=message, connector_id=1))
    assert answer.status == "Accepted"
    got = await csms.wait_for(
        message,
        predicate=lambda c: (
            c.seq > before and all(c.payload.get(k) == v for k, v in expected.items())
        ),
        timeout_s=GUARD_S,
    )
    assert got.seq > before


async def test_triggered_meter_values_carry_the_transaction_and_trigger_context(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    start = await agent.start_charging(csms, "TRIG-1")
    tx_id = csms.answers[start.seq]["transactionId"]  # type: ignore[index]
    before = csms.received[-1].seq
    answer = await csms.call(
        CP, call.TriggerMessage(requested_message="MeterValues", connector_id=1)
    )
    assert answer.status == "Accepted"
    got = await csms.wait_for("MeterValues", predicate=lambda c: c.seq > before, timeout_s=GUARD_S)
    assert got.payload["transactionId"] == tx_id
    contexts = {v["context"] for mv in got.payload["meterValue"] for v in mv["sampledValue"]}
    assert contexts == {"Trigger"}


async def test_meter_values_for_connector_zero_are_the_station_total(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms, evse_count=2)
    await registered(csms)
    station = agent.app.station
    assert station is not None
    readings = [ctl.hw.meter.latest for ctl in station.controllers.values()]
    assert all(r is not None for r in readings)  # idle meters: their registers stand still
    total_wh = sum(r.energy_import_wh for r in readings if r is not None)
    before = csms.received[-1].seq
    answer = await csms.call(
        CP, call.TriggerMessage(requested_message="MeterValues", connector_id=0)
    )
    assert answer.status == "Accepted"
    got = await csms.wait_for("MeterValues", predicate=lambda c: c.seq > before, timeout_s=GUARD_S)
    assert got.payload["connectorId"] == 0 and "transactionId" not in got.payload
    [value] = [
        v
        for mv in got.payload["meterValue"]
        for v in mv["sampledValue"]
        if v.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"
    ]
    assert value["context"] == "Trigger"
    assert float(value["value"]) == pytest.approx(total_wh)


@pytest.mark.parametrize(
    ("message", "connector_id"),
    [("StatusNotification", 7), ("MeterValues", 3), ("Heartbeat", 2)],
)
async def test_unknown_connector_is_rejected(
    csms: CsmsEmulator, start_app: StartApp, message: str, connector_id: int
) -> None:
    await start_app(csms)
    await registered(csms)
    before = len(csms.calls(message))
    answer = await csms.call(
        CP, call.TriggerMessage(requested_message=message, connector_id=connector_id)
    )
    assert answer.status == "Rejected"
    # a heartbeat proves the agent is alive and sent nothing triggered meanwhile
    beat = await csms.call(CP, call.TriggerMessage(requested_message="Heartbeat"))
    assert beat.status == "Accepted"
    await csms.wait_for("Heartbeat", count=len(csms.calls("Heartbeat")) or 1, timeout_s=GUARD_S)
    if message != "Heartbeat":
        assert len(csms.calls(message)) == before


async def test_status_for_connector_zero_and_all(csms: CsmsEmulator, start_app: StartApp) -> None:
    await start_app(csms)
    await registered(csms)
    before = csms.received[-1].seq
    answer = await csms.call(CP, call.TriggerMessage(requested_message="StatusNotification"))
    assert answer.status == "Accepted"
    for connector in (0, 1):
        await csms.wait_for(
            "StatusNotification",
            predicate=lambda c, n=connector: c.seq > before and c.payload["connectorId"] == n,
            timeout_s=GUARD_S,
        )


async def test_supported_feature_profiles_lists_remote_trigger(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    await start_app(csms)
    await registered(csms)
    answer = await csms.call(CP, call.GetConfiguration(key=["SupportedFeatureProfiles"]))
    assert answer.configuration_key[0]["value"] == (
        "Core,LocalAuthListManagement,Reservation,RemoteTrigger,SmartCharging"
    )
