"""OCPP 2.0.1 smart charging (K01, K05, K08-K10) over loopback on the shared engine:
profiles reach the control pilot at their period boundaries, composite schedules,
profile reports, clearing, and the 2.0.1 rejection rules with their reason codes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.v201 import call

from agent.clock import parse_iso, to_iso
from agent.smart_charging import (
    ChargingProfile,
    ChargingSchedule,
    Kind,
    Purpose,
    RateUnit,
    SchedulePeriod,
)
from hal.pilot import PilotMode
from hil.csms201 import CsmsEmulator201
from tests.conftest import GUARD_S, RunningApp, StartApp
from tests.ocpp.schedule_timing import assert_periods_not_early, next_whole_second
from tests.ocpp.v201_helpers import CP, V201, registered201, start_registered

LONG_AGO = "2024-01-01T00:00:00.000Z"


@pytest.fixture
async def csms201(make_csms: object) -> AsyncIterator[CsmsEmulator201]:
    del make_csms  # torn down after the Apps, before the leak check
    async with CsmsEmulator201() as csms:
        yield csms


@pytest.fixture
async def agent(csms201: CsmsEmulator201, start_app: StartApp) -> RunningApp:
    return await start_registered(csms201, start_app)


def profile(
    profile_id: int,
    periods: list[tuple[int, float]],
    *,
    purpose: str = "TxDefaultProfile",
    stack_level: int = 0,
    kind: str = "Absolute",
    start_schedule: str | None = LONG_AGO,
    unit: str = "A",
    transaction_id: str | None = None,
    schedules: int = 1,
) -> dict[str, Any]:
    """A 2.0.1 ChargingProfileType (snake_case: the library turns it into camelCase)."""
    schedule: dict[str, Any] = {
        "id": profile_id,
        "charging_rate_unit": unit,
        "charging_schedule_period": [{"start_period": s, "limit": limit} for s, limit in periods],
    }
    if start_schedule is not None and kind != "Relative":
        schedule["start_schedule"] = start_schedule
    out: dict[str, Any] = {
        "id": profile_id,
        "stack_level": stack_level,
        "charging_profile_purpose": purpose,
        "charging_profile_kind": kind,
        "charging_schedule": [{**schedule, "id": profile_id * 10 + n} for n in range(schedules)],
    }
    if transaction_id is not None:
        out["transaction_id"] = transaction_id
    return out


async def set_profile(
    csms: CsmsEmulator201, evse_id: int, body: dict[str, Any]
) -> tuple[str, str | None]:
    """SetChargingProfile; (status, statusInfo.reasonCode or None)."""
    answer = await csms.call(CP, call.SetChargingProfile(evse_id=evse_id, charging_profile=body))
    info = answer.status_info or {}
    return str(answer.status), info.get("reason_code")


async def charging(csms: CsmsEmulator201, agent: RunningApp, token: str = "SC-1") -> str:
    """Plug in, swipe, wait until charging; the station's transaction id."""
    mark = csms.received[-1].seq if csms.received else 0
    agent.sim("plug")
    agent.sim("swipe", token)
    started = await csms.wait_for(
        "TransactionEvent",
        predicate=lambda c: c.seq > mark and c.payload["eventType"] == "Started",
        timeout_s=GUARD_S,
    )
    await agent.app.wait_status(1, "Charging")
    return str(started.payload["transactionInfo"]["transactionId"])


def pwm_duty(agent: RunningApp) -> float:
    output = agent.rig.pilot.output
    assert output.mode is PilotMode.PWM, output
    return output.duty_pct


def pwm_duties_since(agent: RunningApp, seen: int) -> list[float]:
    history = list(agent.rig.pilot.output_history)[seen:]
    return [c.output.duty_pct for c in history if c.output.mode is PilotMode.PWM]


def service_profiles(agent: RunningApp) -> tuple[Any, ...]:
    station = agent.app.station
    assert station is not None and station.smart_charging is not None
    return station.smart_charging.profiles


# ------------------------------------------------------------------- K01: to the PWM


async def test_station_wide_tx_default_limits_the_next_session(
    csms201: CsmsEmulator201, agent: RunningApp
) -> None:
    assert await set_profile(csms201, 0, profile(1, [(0, 10)])) == ("Accepted", None)
    await charging(csms201, agent)
    assert pwm_duty(agent) == pytest.approx(16.6)  # 10 A / 0.6, rounded down


async def test_tx_profile_periods_reach_the_duty_at_their_boundaries(
    csms201: CsmsEmulator201, agent: RunningApp
) -> None:
    tx_id = await charging(csms201, agent)
    assert pwm_duty(agent) == pytest.approx(53.3)  # 32 A hardware limit
    wrong = profile(6, [(0, 16)], purpose="TxProfile", transaction_id="not-" + tx_id)
    assert await set_profile(csms201, 1, wrong) == ("Rejected", "UnknownTxId")
    no_id = profile(6, [(0, 16)], purpose="TxProfile")
    assert await set_profile(csms201, 1, no_id) == ("Rejected", "InvalidProfile")

    history = agent.rig.pilot.output_history
    seen = len(history)
    # starts on the next whole second, so every boundary is a timer of the agent
    start = next_whole_second()
    # 16 A, 8 A at 2 s, 4 A at 4 s: below 6 A the EVSE suspends (the event to wait for)
    body = profile(
        6,
        [(0, 16), (2, 8), (4, 4)],
        purpose="TxProfile",
        start_schedule=start.iso,
        transaction_id=tx_id,
    )
    assert await set_profile(csms201, 1, body) == ("Accepted", None)
    await agent.app.wait_status(1, "SuspendedEVSE")
    assert not agent.app.coil_is_on(1)
    changes = [c for c in list(history)[seen:] if c.output.mode is PilotMode.PWM]
    assert [round(c.output.duty_pct, 1) for c in changes] == [26.6, 13.3]
    assert_periods_not_early(changes, start, [0, 2])  # each period on its boundary

    # the TxProfile dies with its transaction (K01.FR.?? / REFERENCE 3.1)
    stop = await csms201.call(CP, call.RequestStopTransaction(transaction_id=tx_id))
    assert stop.status == "Accepted"
    await csms201.wait_for(
        "TransactionEvent",
        predicate=lambda c: c.payload["eventType"] == "Ended",
        timeout_s=GUARD_S,
    )
    agent.sim("unplug")
    await agent.app.wait_status(1, "Available")
    assert service_profiles(agent) == ()


async def test_the_same_id_replaces_a_profile(csms201: CsmsEmulator201, agent: RunningApp) -> None:
    assert await set_profile(csms201, 0, profile(1, [(0, 10)])) == ("Accepted", None)
    assert await set_profile(csms201, 0, profile(1, [(0, 12)], stack_level=2)) == (
        "Accepted",
        None,
    )
    (installed,) = service_profiles(agent)
    assert (installed.stack_level, installed.schedule.periods[0].limit) == (2, 12.0)


# ------------------------------------------------------------ K01: rejection rules


REJECTED: list[Any] = [
    pytest.param(
        0,
        profile(1, [(0, 16)], purpose="ChargingStationExternalConstraints"),
        "InvalidProfile",
        id="external-constraints-from-the-csms",
    ),
    pytest.param(
        1,
        profile(1, [(0, 16)], purpose="TxProfile", transaction_id="x"),
        "TxNotFound",
        id="tx-profile-without-transaction",
    ),
    pytest.param(
        0,
        profile(1, [(0, 16)], purpose="TxProfile", transaction_id="x"),
        "InvalidProfile",
        id="tx-profile-on-evse-0",
    ),
    pytest.param(1, profile(1, [(0, 16)], schedules=2), "TooManyElements", id="two-schedules"),
    pytest.param(1, profile(1, [(10, 16)]), "InvalidSchedule", id="first-start-period-not-0"),
    pytest.param(1, profile(1, [(0, 16), (0, 8)]), "InvalidSchedule", id="periods-not-increasing"),
    pytest.param(
        1,
        profile(1, [(0, 16)], purpose="ChargingStationMaxProfile"),
        "InvalidProfile",
        id="station-max-on-an-evse",
    ),
    pytest.param(
        0,
        profile(1, [(0, 16)], purpose="ChargingStationMaxProfile", kind="Relative"),
        "InvalidProfile",
        id="station-max-relative",
    ),
    pytest.param(
        1, profile(1, [(0, 16)], start_schedule=None), "InvalidSchedule", id="absolute-no-start"
    ),
    pytest.param(2, profile(1, [(0, 16)]), "UnknownEvse", id="unknown-evse"),
    pytest.param(1, profile(1, [(0, 16)], stack_level=99), "InvalidStackLevel", id="stack-level"),
]


@pytest.mark.parametrize(("evse_id", "body", "reason"), REJECTED)
async def test_profiles_breaking_a_2_0_1_rule_are_rejected_with_a_reason(
    csms201: CsmsEmulator201, agent: RunningApp, evse_id: int, body: dict[str, Any], reason: str
) -> None:
    answer = await csms201.call(CP, call.SetChargingProfile(evse_id=evse_id, charging_profile=body))
    assert answer.status == "Rejected"
    assert answer.status_info["reason_code"] == reason
    assert answer.status_info["additional_info"]
    assert service_profiles(agent) == ()


async def test_a_second_id_on_the_same_stack_level_is_rejected(
    csms201: CsmsEmulator201, agent: RunningApp
) -> None:
    assert await set_profile(csms201, 0, profile(1, [(0, 10)])) == ("Accepted", None)
    assert await set_profile(csms201, 0, profile(2, [(0, 12)])) == ("Rejected", "DuplicateProfile")
    # another EVSE, another purpose or another level is no conflict
    assert await set_profile(csms201, 1, profile(3, [(0, 12)])) == ("Accepted", None)
    assert await set_profile(csms201, 0, profile(4, [(0, 12)], stack_level=1)) == (
        "Accepted",
        None,
    )
    assert [p.profile_id for p in service_profiles(agent)] == [1, 3, 4]


# ------------------------------------------------------------------ K08 composite


async def test_composite_schedule(csms201: CsmsEmulator201, agent: RunningApp) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    station_max = profile(1, [(0, 16)], purpose="ChargingStationMaxProfile")
    assert await set_profile(csms201, 0, station_max) == ("Accepted", None)
    tx_default = profile(2, [(0, 10), (3600, 20)], start_schedule=to_iso(now))
    assert await set_profile(csms201, 0, tx_default) == ("Accepted", None)

    answer = await csms201.call(
        CP, call.GetCompositeSchedule(duration=7200, evse_id=1, charging_rate_unit="A")
    )
    assert answer.status == "Accepted"
    schedule = answer.schedule
    assert schedule["evse_id"] == 1
    assert schedule["duration"] == 7200
    assert schedule["charging_rate_unit"] == "A"
    start = parse_iso(schedule["schedule_start"])
    boundary_s = int((now + timedelta(seconds=3600) - start).total_seconds())
    assert schedule["charging_schedule_period"] == [
        {"start_period": 0, "limit": 10.0, "number_phases": 3},
        {"start_period": boundary_s, "limit": 16.0, "number_phases": 3},  # station max
    ]
    station = await csms201.call(CP, call.GetCompositeSchedule(duration=7200, evse_id=0))
    assert station.status == "Accepted"
    assert station.schedule["evse_id"] == 0
    assert station.schedule["charging_schedule_period"] == schedule["charging_schedule_period"]
    watts = await csms201.call(
        CP, call.GetCompositeSchedule(duration=7200, evse_id=1, charging_rate_unit="W")
    )
    assert watts.schedule["charging_schedule_period"] == [
        {"start_period": 0, "limit": 6900.0, "number_phases": 3},  # 10 A * 230 V * 3
        {"start_period": boundary_s, "limit": 11040.0, "number_phases": 3},
    ]
    unknown = await csms201.call(CP, call.GetCompositeSchedule(duration=600, evse_id=7))
    assert (unknown.status, unknown.status_info["reason_code"]) == ("Rejected", "UnknownEvse")
    empty = await csms201.call(CP, call.GetCompositeSchedule(duration=0, evse_id=1))
    assert empty.status == "Rejected"


async def test_composite_without_profiles_is_the_hardware_limit(
    csms201: CsmsEmulator201, agent: RunningApp
) -> None:
    answer = await csms201.call(CP, call.GetCompositeSchedule(duration=60, evse_id=1))
    assert answer.status == "Accepted"
    assert answer.schedule["charging_schedule_period"] == [
        {"start_period": 0, "limit": 32.0, "number_phases": 3}
    ]


# --------------------------------------------------------- K09 GetChargingProfiles


async def install_three(csms: CsmsEmulator201) -> None:
    station_max = profile(1, [(0, 16)], purpose="ChargingStationMaxProfile")
    assert await set_profile(csms, 0, station_max) == ("Accepted", None)
    assert await set_profile(csms, 0, profile(2, [(0, 10)])) == ("Accepted", None)
    assert await set_profile(csms, 1, profile(3, [(0, 12)], stack_level=1)) == ("Accepted", None)


async def get_profiles(
    csms: CsmsEmulator201, request_id: int, criterion: dict[str, Any], evse_id: int | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """GetChargingProfiles; (status, the ReportChargingProfiles payloads of the request)."""
    answer = await csms.call(
        CP,
        call.GetChargingProfiles(
            request_id=request_id, charging_profile=criterion, evse_id=evse_id
        ),
    )
    if answer.status != "Accepted":
        return str(answer.status), []
    await csms.wait_for(
        "ReportChargingProfiles",
        predicate=lambda c: c.payload["requestId"] == request_id and not c.payload.get("tbc"),
        timeout_s=GUARD_S,
    )
    reports = [
        c.payload
        for c in csms.calls("ReportChargingProfiles")
        if c.payload["requestId"] == request_id
    ]
    return str(answer.status), reports


async def test_get_charging_profiles_reports_after_the_answer(
    csms201: CsmsEmulator201, agent: RunningApp
) -> None:
    await install_three(csms201)
    status, reports = await get_profiles(csms201, 1, {})
    assert status == "Accepted"
    assert [(r["evseId"], r["tbc"], r["chargingLimitSource"]) for r in reports] == [
        (0, True, "CSO"),
        (1, False, "CSO"),
    ]
    assert [[p["id"] for p in r["chargingProfile"]] for r in reports] == [[1, 2], [3]]
    station_max = reports[0]["chargingProfile"][0]
    assert station_max["chargingProfilePurpose"] == "ChargingStationMaxProfile"
    assert station_max["chargingSchedule"][0]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 16.0}
    ]
    status, reports = await get_profiles(
        csms201, 2, {"charging_profile_purpose": "TxDefaultProfile"}, evse_id=1
    )
    assert status == "Accepted"
    assert [[p["id"] for p in r["chargingProfile"]] for r in reports] == [[3]]
    status, reports = await get_profiles(csms201, 3, {"charging_profile_id": [1, 3]})
    assert [[p["id"] for p in r["chargingProfile"]] for r in reports] == [[1], [3]]
    status, reports = await get_profiles(csms201, 4, {"stack_level": 1})
    assert [[p["id"] for p in r["chargingProfile"]] for r in reports] == [[3]]
    status, _ = await get_profiles(csms201, 5, {"charging_limit_source": ["CSO"]})
    assert status == "Accepted"


@pytest.mark.parametrize(
    ("criterion", "evse_id"),
    [
        ({"charging_profile_id": [99]}, None),
        ({"charging_limit_source": ["EMS", "SO"]}, None),
        ({"charging_profile_purpose": "ChargingStationExternalConstraints"}, None),
        ({"charging_profile_purpose": "TxProfile"}, None),
        ({}, 2),
    ],
)
async def test_get_charging_profiles_without_a_match(
    csms201: CsmsEmulator201, agent: RunningApp, criterion: dict[str, Any], evse_id: int | None
) -> None:
    await install_three(csms201)
    status, _ = await get_profiles(csms201, 9, criterion, evse_id)
    assert status == "NoProfiles"
    assert csms201.calls("ReportChargingProfiles") == []


# ------------------------------------------------------------ K10 ClearChargingProfile


async def test_clear_charging_profile_by_id_and_by_criteria(
    csms201: CsmsEmulator201, agent: RunningApp
) -> None:
    await install_three(csms201)

    async def clear(**kwargs: Any) -> str:
        return str((await csms201.call(CP, call.ClearChargingProfile(**kwargs))).status)

    assert await clear(charging_profile_id=3) == "Accepted"
    assert await clear(charging_profile_id=3) == "Unknown"
    external = {"charging_profile_purpose": "ChargingStationExternalConstraints"}
    assert await clear(charging_profile_criteria=external) == "Unknown"
    # the id wins over criteria that would match nothing (K10.FR.03)
    assert await clear(charging_profile_id=2, charging_profile_criteria={"evse_id": 1}) == (
        "Accepted"
    )
    assert [p.profile_id for p in service_profiles(agent)] == [1]
    wrong_purpose = {"evse_id": 0, "charging_profile_purpose": "TxDefaultProfile"}
    assert await clear(charging_profile_criteria=wrong_purpose) == "Unknown"
    station_max = {"evse_id": 0, "charging_profile_purpose": "ChargingStationMaxProfile"}
    assert await clear(charging_profile_criteria=station_max) == "Accepted"
    assert service_profiles(agent) == ()


async def test_clearing_a_limit_restores_the_duty(
    csms201: CsmsEmulator201, agent: RunningApp
) -> None:
    assert await set_profile(csms201, 1, profile(5, [(0, 4)], kind="Relative")) == (
        "Accepted",
        None,
    )
    agent.sim("plug")
    agent.sim("swipe", "SC-2")
    await agent.app.wait_status(1, "SuspendedEVSE")  # 4 A cannot be signalled
    assert not agent.app.coil_is_on(1)
    cleared = await csms201.call(CP, call.ClearChargingProfile())
    assert cleared.status == "Accepted"
    await agent.app.wait_status(1, "Charging")
    assert pwm_duty(agent) == pytest.approx(53.3)


# ----------------------------------------------- F01/K05: RequestStart with a profile


async def test_request_start_profile_is_in_force_from_the_first_pwm(
    csms201: CsmsEmulator201, agent: RunningApp
) -> None:
    agent.sim("plug")
    await agent.app.wait_status(1, "Preparing")
    seen = len(agent.rig.pilot.output_history)
    tx_profile = profile(9, [(0, 10)], purpose="TxProfile", kind="Relative")
    answer = await csms201.call(
        CP,
        call.RequestStartTransaction(
            id_token={"id_token": "REMOTE-1", "type": "Central"},
            remote_start_id=5,
            evse_id=1,
            charging_profile=tx_profile,
        ),
    )
    assert answer.status == "Accepted"
    await agent.app.wait_status(1, "Charging")
    duties = pwm_duties_since(agent, seen)
    assert duties and max(duties) == pytest.approx(16.6), duties  # 10 A, never 32 A
    composite = await csms201.call(CP, call.GetCompositeSchedule(duration=60, evse_id=1))
    assert composite.schedule["charging_schedule_period"] == [
        {"start_period": 0, "limit": 10.0, "number_phases": 3}
    ]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(profile(9, [(0, 10)], kind="Relative"), id="not-a-tx-profile"),
        pytest.param(
            profile(9, [(0, 10)], purpose="TxProfile", kind="Relative", transaction_id="t"),
            id="with-a-transaction-id",
        ),
        pytest.param(
            profile(9, [(0, 10)], purpose="TxProfile", kind="Relative", stack_level=99),
            id="invalid",
        ),
    ],
)
async def test_request_start_with_an_unusable_profile_is_rejected(
    csms201: CsmsEmulator201, agent: RunningApp, body: dict[str, Any]
) -> None:
    agent.sim("plug")
    answer = await csms201.call(
        CP,
        call.RequestStartTransaction(
            id_token={"id_token": "REMOTE-2", "type": "Central"},
            remote_start_id=6,
            evse_id=1,
            charging_profile=body,
        ),
    )
    assert answer.status == "Rejected"
    # nothing is left waiting: a later local start is not limited
    agent.sim("swipe", "SC-3")
    await agent.app.wait_status(1, "Charging")
    assert pwm_duty(agent) == pytest.approx(53.3)


# ----------------------------------------------- external constraints (station-set)


async def test_external_constraints_limit_are_reported_and_survive_csms_clears(
    csms201: CsmsEmulator201, agent: RunningApp
) -> None:
    station = agent.app.station
    assert station is not None and station.smart_charging is not None
    constraint = ChargingProfile(
        profile_id=50,
        stack_level=0,
        purpose=Purpose.EXTERNAL,
        kind=Kind.ABSOLUTE,
        schedule=ChargingSchedule(RateUnit.A, (SchedulePeriod(0, 10.0),), parse_iso(LONG_AGO)),
    )
    assert (await station.smart_charging.install(constraint)).accepted  # the station's EMS
    await charging(csms201, agent)
    assert pwm_duty(agent) == pytest.approx(16.6)  # 10 A
    composite = await csms201.call(CP, call.GetCompositeSchedule(duration=60, evse_id=1))
    assert composite.schedule["charging_schedule_period"][0]["limit"] == 10.0

    status, reports = await get_profiles(csms201, 1, {"charging_limit_source": ["EMS"]})
    assert status == "Accepted"
    (report,) = reports
    assert (report["evseId"], report["chargingLimitSource"]) == (0, "EMS")
    assert report["chargingProfile"][0]["chargingProfilePurpose"] == (
        "ChargingStationExternalConstraints"
    )
    for clear in (
        call.ClearChargingProfile(),
        call.ClearChargingProfile(charging_profile_id=50),
        call.ClearChargingProfile(
            charging_profile_criteria={
                "charging_profile_purpose": "ChargingStationExternalConstraints"
            }
        ),
    ):
        assert (await csms201.call(CP, clear)).status == "Unknown"
    assert service_profiles(agent) == (constraint,)


# ------------------------------------------------------------------ persistence


async def test_profiles_survive_a_restart(csms201: CsmsEmulator201, start_app: StartApp) -> None:
    first = await start_registered(csms201, start_app)
    boot = csms201.calls("BootNotification")[-1]
    assert await set_profile(csms201, 1, profile(3, [(0, 10)])) == ("Accepted", None)
    await first.stop()

    second = await start_app(csms201, csms_options=V201, data_dir=first.data_dir)
    await registered201(csms201, after_seq=boot.seq)
    status, reports = await get_profiles(csms201, 1, {})
    assert status == "Accepted"
    assert [[p["id"] for p in r["chargingProfile"]] for r in reports] == [[3]]
    await charging(csms201, second)
    assert pwm_duty(second) == pytest.approx(16.6)
