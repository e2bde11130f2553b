"""OCPP 1.6 metering over loopback: clock-aligned data (connector 0 and EVSEs, idle and in a
transaction, across an offline period), phases, contexts, offered limits, transactionData.

The agent's clock is moved (``App.clock.set_utc``) to just before a boundary and the interval
is (re)set after that, so each boundary comes a fraction of a second later and its timestamp
can be asserted exactly.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from ocpp.v16 import call

from agent.events import ReadingContext
from hil.csms import CsmsEmulator, ReceivedCall
from tests.conftest import GUARD_S, RunningApp, StartApp, registered

CP = "CP1"
ENERGY = "Energy.Active.Import.Register"
LONG_AGO = "2024-01-01T00:00:00.000Z"


def last_seq(csms: CsmsEmulator) -> int:
    return csms.received[-1].seq if csms.received else 0


async def change_configuration(csms: CsmsEmulator, key: str, value: str) -> str:
    result = await csms.call(CP, call.ChangeConfiguration(key=key, value=value))
    return str(result.status)


def values_of(meter_values: ReceivedCall) -> list[dict[str, Any]]:
    (meter_value,) = meter_values.payload["meterValue"]
    return list(meter_value["sampledValue"])


def contexts(meter_value: dict[str, Any]) -> set[str]:
    return {v["context"] for v in meter_value["sampledValue"]}


async def wait_clock_sample(csms: CsmsEmulator, connector_id: int, after_seq: int) -> ReceivedCall:
    def match(c: ReceivedCall) -> bool:
        return (
            c.seq > after_seq
            and c.payload["connectorId"] == connector_id
            and any(v["context"] == "Sample.Clock" for v in values_of(c))
        )

    return await csms.wait_for("MeterValues", predicate=match, timeout_s=GUARD_S)


async def wait_status(
    csms: CsmsEmulator, connector_id: int, status: str, after_seq: int
) -> ReceivedCall:
    def match(c: ReceivedCall) -> bool:
        p = c.payload
        return c.seq > after_seq and p["connectorId"] == connector_id and p["status"] == status

    return await csms.wait_for("StatusNotification", predicate=match, timeout_s=GUARD_S)


async def trigger_meter_values(csms: CsmsEmulator) -> list[dict[str, Any]]:
    mark = last_seq(csms)
    answer = await csms.call(
        CP, call.TriggerMessage(requested_message="MeterValues", connector_id=1)
    )
    assert answer.status == "Accepted"
    got = await csms.wait_for("MeterValues", predicate=lambda c: c.seq > mark, timeout_s=GUARD_S)
    values = values_of(got)
    assert {v["context"] for v in values} == {"Trigger"}
    return values


async def start_tx(csms: CsmsEmulator, agent: RunningApp, id_tag: str = "MTR-1") -> int:
    start = await agent.start_charging(csms, id_tag)
    answer = csms.answers[start.seq]
    assert isinstance(answer, dict)
    return int(answer["transactionId"])


async def wait_stop(csms: CsmsEmulator, tx_id: int) -> ReceivedCall:
    return await csms.wait_for(
        "StopTransaction",
        predicate=lambda c: c.payload["transactionId"] == tx_id,
        timeout_s=GUARD_S,
    )


# ------------------------------------------------------------ clock-aligned data


async def test_aligned_data_while_idle_for_each_connector_and_the_station(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(
        csms,
        evse_count=2,
        ocpp={"meter_values_aligned_data": [ENERGY, "Voltage.L2", "Current.Offered"]},
    )
    await registered(csms)
    mark = last_seq(csms)
    agent.app.clock.set_utc(datetime(2030, 1, 1, 0, 14, 59, 700_000, tzinfo=UTC))
    assert await change_configuration(csms, "ClockAlignedDataInterval", "900") == "Accepted"

    got = {n: await wait_clock_sample(csms, n, mark) for n in (0, 1, 2)}
    for meter_values in got.values():
        assert "transactionId" not in meter_values.payload  # no transaction runs
        (meter_value,) = meter_values.payload["meterValue"]
        assert meter_value["timestamp"] == "2030-01-01T00:15:00.000Z"  # the boundary, exactly
        assert contexts(meter_value) == {"Sample.Clock"}
    for n in (1, 2):
        values = values_of(got[n])
        assert [(v["measurand"], v.get("phase")) for v in values] == [
            (ENERGY, None),
            ("Voltage", "L2-N"),  # Voltage.L1 names a phase; voltages are line-to-neutral
            ("Current.Offered", None),
        ]
        assert values[2]["value"] == "0"  # idle: nothing offered
    # connector 0: the station total, only what sums (energy)
    (total,) = values_of(got[0])
    assert total["measurand"] == ENERGY
    assert int(total["value"]) == sum(int(values_of(got[n])[0]["value"]) for n in (1, 2))


async def test_aligned_data_in_a_transaction_and_in_its_stop_transaction(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(
        csms,
        ocpp={
            "meter_value_sample_interval_s": 1,
            "meter_values_aligned_data": [ENERGY],
            "stop_txn_aligned_data": [ENERGY],
            "stop_txn_sampled_data": [ENERGY],
        },
    )
    await registered(csms)
    tx_id = await start_tx(csms, agent)
    mark = last_seq(csms)
    agent.app.clock.set_utc(datetime(2030, 1, 1, 0, 29, 59, 700_000, tzinfo=UTC))
    assert await change_configuration(csms, "ClockAlignedDataInterval", "900") == "Accepted"

    in_tx = await wait_clock_sample(csms, 1, mark)
    assert in_tx.payload["transactionId"] == tx_id
    assert in_tx.payload["meterValue"][0]["timestamp"] == "2030-01-01T00:30:00.000Z"
    station = await wait_clock_sample(csms, 0, mark)
    assert "transactionId" not in station.payload  # connector 0 is never in a transaction
    await csms.wait_for(  # a periodic sample after the clock-aligned one
        "MeterValues",
        predicate=lambda c: c.seq > in_tx.seq and values_of(c)[0]["context"] == "Sample.Periodic",
        timeout_s=GUARD_S,
    )

    agent.sim("swipe", "MTR-1")
    stop = await wait_stop(csms, tx_id)
    data = stop.payload["transactionData"]
    assert contexts(data[0]) == {"Transaction.Begin"}
    assert contexts(data[-1]) == {"Transaction.End"}
    middle = [contexts(d) for d in data[1:-1]]
    assert {"Sample.Clock"} in middle and {"Sample.Periodic"} in middle
    (clock,) = [d for d in data if contexts(d) == {"Sample.Clock"}]
    assert clock["timestamp"] == "2030-01-01T00:30:00.000Z"
    energies = [int(d["sampledValue"][0]["value"]) for d in data]
    assert energies == sorted(energies)  # one register, read in order
    assert energies[-1] == stop.payload["meterStop"]


async def test_aligned_sample_taken_offline_is_delivered_with_its_transaction(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    tx_id = await start_tx(csms, agent)
    assert agent.app.station is not None and agent.app.adapter is not None
    journal = agent.app.station.journal
    queued = asyncio.Event()
    unsubscribe = agent.app.station.subscribe_tx_messages(queued.set)

    async def clock_sample_queued() -> bool:
        return any(
            m.kind == "meter" and m.samples[0].context is ReadingContext.SAMPLE_CLOCK
            for m in await journal.next_messages(100)
        )

    await csms.go_offline()
    agent.app.clock.set_utc(datetime(2030, 1, 1, 0, 44, 59, 800_000, tzinfo=UTC))
    await agent.app.adapter.settings.set("clock_aligned_data_interval_s", 900)
    async with asyncio.timeout(GUARD_S):
        while not await clock_sample_queued():
            queued.clear()
            await queued.wait()
    unsubscribe()
    mark = last_seq(csms)

    await csms.go_online()
    delivered = await wait_clock_sample(csms, 1, mark)
    assert delivered.payload["transactionId"] == tx_id
    assert delivered.payload["meterValue"][0]["timestamp"] == "2030-01-01T00:45:00.000Z"


# ------------------------------------------------------------ phases, contexts, offered


async def test_phase_entries_are_accepted_and_narrow_the_values(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    await start_app(csms)
    await registered(csms)
    for bad in ("Voltage.L4", "Current.Import.N", "Energy.Active.Import.Register.L1", "Bogus"):
        assert await change_configuration(csms, "MeterValuesSampledData", bad) == "Rejected"
    entries = "Voltage.L1,Current.Import.L2,Energy.Active.Import.Register"
    assert await change_configuration(csms, "MeterValuesSampledData", entries) == "Accepted"

    values = await trigger_meter_values(csms)
    assert [(v["measurand"], v.get("phase"), v.get("unit")) for v in values] == [
        ("Voltage", "L1-N", "V"),
        ("Current.Import", "L2", "A"),
        (ENERGY, None, "Wh"),
    ]


def profile(
    profile_id: int,
    limit_a: float,
    *,
    purpose: str = "TxDefaultProfile",
    transaction_id: int | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": 0,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "startSchedule": LONG_AGO,
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit_a}],
        },
    }
    if transaction_id is not None:
        body["transactionId"] = transaction_id
    return body


async def set_profile(csms: CsmsEmulator, connector_id: int, body: dict[str, Any]) -> None:
    result = await csms.call(
        CP, call.SetChargingProfile(connector_id=connector_id, cs_charging_profiles=body)
    )
    assert result.status == "Accepted"


def offered(values: list[dict[str, Any]]) -> tuple[float, float, float]:
    """(Current.Offered A, Power.Offered W, sum of the phase voltages V) of one sample."""
    by = {(v["measurand"], v.get("phase")): float(v["value"]) for v in values}
    volts = sum(value for (m, _), value in by.items() if m == "Voltage")
    return by[("Current.Offered", None)], by[("Power.Offered", None)], volts


async def test_offered_values_follow_the_charging_profiles(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(
        csms, ocpp={"meter_values_sampled_data": ["Current.Offered", "Power.Offered", "Voltage"]}
    )
    await registered(csms)
    await set_profile(csms, 0, profile(1, 10))
    mark = last_seq(csms)
    tx_id = await start_tx(csms, agent)
    await wait_status(csms, 1, "Charging", mark)

    current_a, power_w, volts = offered(await trigger_meter_values(csms))
    assert current_a == 10.0  # the TxDefaultProfile, not the 32 A hardware limit
    assert power_w == pytest.approx(10.0 * volts, abs=2.0)  # volts are rounded to 0.1 V

    mark = last_seq(csms)
    await set_profile(csms, 1, profile(5, 4, purpose="TxProfile", transaction_id=tx_id))
    await wait_status(csms, 1, "SuspendedEVSE", mark)  # below 6 A: nothing is offered
    assert offered(await trigger_meter_values(csms))[:2] == (0.0, 0.0)

    mark = last_seq(csms)
    cleared = await csms.call(CP, call.ClearChargingProfile(id=5))
    assert cleared.status == "Accepted"
    await wait_status(csms, 1, "Charging", mark)
    assert offered(await trigger_meter_values(csms))[0] == 10.0
