"""OCPP 1.6 SmartCharging over loopback: profiles reach the control pilot, persist, compose."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.v16 import call

from agent.clock import parse_iso, to_iso
from agent.evse.controller import PWM_UPDATE_INTERVAL_S
from hal.pilot import PilotMode, PilotOutput
from hal.sim.pilot import OutputChange, SimControlPilot
from hil.csms import CsmsEmulator, ReceivedCall
from tests.conftest import GUARD_S, RunningApp, StartApp, registered
from tests.ocpp.schedule_timing import assert_periods_not_early, next_whole_second

CP = "CP1"
LONG_AGO = "2024-01-01T00:00:00.000Z"


def profile(
    profile_id: int,
    periods: list[tuple[int, float]] | list[tuple[int, float, int]],
    *,
    purpose: str = "TxDefaultProfile",
    stack_level: int = 0,
    kind: str = "Absolute",
    start_schedule: str | None = LONG_AGO,
    unit: str = "A",
    transaction_id: int | None = None,
) -> dict[str, Any]:
    """A 1.6 csChargingProfiles object (camelCase, as on the wire)."""
    schedule: dict[str, Any] = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [
            {"startPeriod": p[0], "limit": p[1]} | ({"numberPhases": p[2]} if len(p) > 2 else {})
            for p in periods
        ],
    }
    if start_schedule is not None and kind != "Relative":
        schedule["start_schedule"] = start_schedule
    out: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
    }
    if transaction_id is not None:
        out["transactionId"] = transaction_id
    return out


async def set_profile(csms: CsmsEmulator, connector_id: int, body: dict[str, Any]) -> str:
    result = await csms.call(
        CP, call.SetChargingProfile(connector_id=connector_id, cs_charging_profiles=body)
    )
    assert result is not None
    return str(result.status)


async def wait_status(
    csms: CsmsEmulator, connector_id: int, status: str, *, after_seq: int
) -> ReceivedCall:
    def match(c: ReceivedCall) -> bool:
        p = c.payload
        return c.seq > after_seq and p["connectorId"] == connector_id and p["status"] == status

    return await csms.wait_for("StatusNotification", predicate=match, timeout_s=GUARD_S)


def last_seq(csms: CsmsEmulator) -> int:
    return csms.received[-1].seq if csms.received else 0


async def charging(csms: CsmsEmulator, agent: RunningApp, id_tag: str = "SC-1") -> int:
    """Start a session and wait until it charges; return the CSMS transaction id."""
    mark = last_seq(csms)
    start = await agent.start_charging(csms, id_tag)
    await wait_status(csms, 1, "Charging", after_seq=mark)
    answer = csms.answers[start.seq]
    assert isinstance(answer, dict)
    return int(answer["transactionId"])


def pwm_duty(agent: RunningApp) -> float:
    output = agent.rig.pilot.output
    assert output.mode is PilotMode.PWM, output
    return output.duty_pct


async def test_tx_default_profile_limits_the_next_session(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    assert await set_profile(csms, 0, profile(1, [(0, 10)])) == "Accepted"
    await charging(csms, agent)
    assert pwm_duty(agent) == pytest.approx(16.6)  # 10 A / 0.6, rounded down to 0.1 %


async def test_tx_profile_below_6_a_suspends_and_clearing_resumes(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    tx_id = await charging(csms, agent)
    assert pwm_duty(agent) == pytest.approx(53.3)  # 32 A hardware limit
    mark = last_seq(csms)
    body = profile(5, [(0, 4)], purpose="TxProfile", transaction_id=tx_id)
    assert await set_profile(csms, 1, body) == "Accepted"
    await wait_status(csms, 1, "SuspendedEVSE", after_seq=mark)
    assert not agent.app.coil_is_on(1)
    assert agent.rig.pilot.output.mode is PilotMode.STEADY

    mark = last_seq(csms)
    cleared = await csms.call(CP, call.ClearChargingProfile(id=5))
    assert cleared.status == "Accepted"
    await wait_status(csms, 1, "Charging", after_seq=mark)
    assert agent.app.coil_is_on(1)
    assert pwm_duty(agent) == pytest.approx(53.3)
    again = await csms.call(CP, call.ClearChargingProfile(id=5))
    assert again.status == "Unknown"


async def test_period_boundaries_change_the_duty(csms: CsmsEmulator, start_app: StartApp) -> None:
    agent = await start_app(csms)
    await registered(csms)
    tx_id = await charging(csms, agent)
    history = agent.rig.pilot.output_history
    seen_before = len(history)
    # starts on the next whole second, so every boundary is a timer of the agent
    start = next_whole_second()
    # 16 A, 8 A at 2 s; 4 A at 4 s suspends: that status is the event to wait for
    body = profile(
        6,
        [(0, 16), (2, 8), (4, 4)],
        purpose="TxProfile",
        start_schedule=start.iso,
        transaction_id=tx_id,
    )
    mark = last_seq(csms)
    assert await set_profile(csms, 1, body) == "Accepted"
    await wait_status(csms, 1, "SuspendedEVSE", after_seq=mark)
    changes = [c for c in list(history)[seen_before:] if c.output.mode is PilotMode.PWM]
    duties = [round(c.output.duty_pct, 1) for c in changes]
    assert duties == [26.6, 13.3], duties
    assert_periods_not_early(changes, start, [0, 2])  # each period on its boundary


async def test_composite_schedule_per_reference(csms: CsmsEmulator, start_app: StartApp) -> None:
    await start_app(csms)
    await registered(csms)
    now = datetime.now(UTC).replace(microsecond=0)
    assert await set_profile(csms, 0, profile(1, [(0, 16)], purpose="ChargePointMaxProfile")) == (
        "Accepted"
    )
    tx_default = profile(2, [(0, 10), (3600, 20)], start_schedule=to_iso(now))
    assert await set_profile(csms, 0, tx_default) == "Accepted"

    answer = await csms.call(
        CP, call.GetCompositeSchedule(connector_id=1, duration=7200, charging_rate_unit="A")
    )
    assert answer.status == "Accepted"
    assert answer.connector_id == 1
    schedule = answer.charging_schedule  # the library hands nested fields as snake_case
    start = parse_iso(answer.schedule_start)
    assert parse_iso(schedule["start_schedule"]) == start
    assert schedule["duration"] == 7200
    assert schedule["charging_rate_unit"] == "A"
    boundary_s = int((now + timedelta(seconds=3600) - start).total_seconds())
    assert schedule["charging_schedule_period"] == [
        {"start_period": 0, "limit": 10.0, "number_phases": 3},
        {"start_period": boundary_s, "limit": 16.0, "number_phases": 3},  # capped by station max
    ]

    # connector 0: the total expected flow (1.6 §5.7): the sum of the connectors' own
    # composites (one connector: 10 A, then 20 A), capped by the station max (16 A)
    station = await csms.call(CP, call.GetCompositeSchedule(connector_id=0, duration=7200))
    assert station.status == "Accepted"
    assert station.charging_schedule["charging_schedule_period"] == [
        {"start_period": 0, "limit": 10.0, "number_phases": 3},
        {"start_period": boundary_s, "limit": 16.0, "number_phases": 3},
    ]
    # the same in W: P = I * 230 V * 3 phases (REFERENCE 3.3)
    watts = await csms.call(
        CP, call.GetCompositeSchedule(connector_id=1, duration=7200, charging_rate_unit="W")
    )
    assert watts.status == "Accepted"
    assert watts.charging_schedule["charging_rate_unit"] == "W"
    assert watts.charging_schedule["charging_schedule_period"] == [
        {"start_period": 0, "limit": 6900.0, "number_phases": 3},
        {"start_period": boundary_s, "limit": 11040.0, "number_phases": 3},
    ]
    for bad in (
        call.GetCompositeSchedule(connector_id=7, duration=600),
        call.GetCompositeSchedule(connector_id=1, duration=0),
    ):
        assert (await csms.call(CP, bad)).status == "Rejected"


async def test_composite_without_profiles_reports_the_hardware_limit(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    await start_app(csms)
    await registered(csms)
    answer = await csms.call(CP, call.GetCompositeSchedule(connector_id=1, duration=60))
    assert answer.status == "Accepted"
    assert answer.charging_schedule["charging_schedule_period"] == [
        {"start_period": 0, "limit": 32.0, "number_phases": 3}
    ]


async def test_profiles_survive_a_restart(csms: CsmsEmulator, start_app: StartApp) -> None:
    first = await start_app(csms)
    boot = await registered(csms)
    assert await set_profile(csms, 1, profile(3, [(0, 10)])) == "Accepted"
    await first.stop()

    second = await start_app(csms, data_dir=first.data_dir)
    await registered(csms, after_seq=boot.seq)
    answer = await csms.call(CP, call.GetCompositeSchedule(connector_id=1, duration=60))
    assert answer.charging_schedule["charging_schedule_period"][0]["limit"] == 10.0
    await charging(csms, second)
    assert pwm_duty(second) == pytest.approx(16.6)


@pytest.mark.parametrize(
    ("connector_id", "body"),
    [
        pytest.param(1, profile(1, [(10, 16)]), id="first-start-period-not-0"),
        pytest.param(1, profile(1, [(0, 16), (0, 8)]), id="periods-not-increasing"),
        pytest.param(1, profile(1, [(0, 16)], purpose="TxProfile"), id="tx-without-transaction"),
        pytest.param(
            1, profile(1, [(0, 16)], purpose="ChargePointMaxProfile"), id="station-max-on-1"
        ),
        pytest.param(2, profile(1, [(0, 16)]), id="unknown-connector"),
        pytest.param(1, profile(1, [(0, 16)], stack_level=99), id="stack-level-too-high"),
    ],
)
async def test_bad_profiles_are_rejected(
    csms: CsmsEmulator, start_app: StartApp, connector_id: int, body: dict[str, Any]
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    assert await set_profile(csms, connector_id, body) == "Rejected"
    service = agent.app.station.smart_charging if agent.app.station else None
    assert service is not None and service.profiles == ()


async def test_remote_start_profile_applies_to_its_transaction(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    agent.sim("plug")
    mark = last_seq(csms)
    tx_profile = profile(9, [(0, 4)], purpose="TxProfile", kind="Relative")
    answer = await csms.call(
        CP,
        call.RemoteStartTransaction(connector_id=1, id_tag="REMOTE-1", charging_profile=tx_profile),
    )
    assert answer.status == "Accepted"
    await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    await wait_status(csms, 1, "SuspendedEVSE", after_seq=mark)
    assert not agent.app.coil_is_on(1)


async def test_remote_start_refuses_a_profile_that_is_not_a_tx_profile(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    agent.sim("plug")
    answer = await csms.call(
        CP,
        call.RemoteStartTransaction(
            connector_id=1, id_tag="REMOTE-2", charging_profile=profile(9, [(0, 10)])
        ),
    )
    assert answer.status == "Rejected"


async def test_smart_charging_keys_are_read_only_and_reported(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    await start_app(csms)
    await registered(csms)
    names = [
        "ChargeProfileMaxStackLevel",
        "ChargingScheduleAllowedChargingRateUnit",
        "ChargingScheduleMaxPeriods",
        "MaxChargingProfilesInstalled",
    ]
    answer = await csms.call(CP, call.GetConfiguration(key=names))
    by_key = {item["key"]: item for item in answer.configuration_key}
    assert by_key["ChargingScheduleAllowedChargingRateUnit"]["value"] == "Current,Power"
    assert all(by_key[n]["readonly"] for n in names)
    assert int(by_key["ChargeProfileMaxStackLevel"]["value"]) >= 1
    changed = await csms.call(CP, call.ChangeConfiguration(key=names[2], value="5"))
    assert changed.status == "Rejected"


async def test_tx_profile_ends_with_its_transaction(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    tx_id = await charging(csms, agent, "SC-A")
    other_tx = profile(8, [(0, 4)], purpose="TxProfile", transaction_id=tx_id + 100)
    assert await set_profile(csms, 1, other_tx) == "Rejected"
    mark = last_seq(csms)
    body = profile(8, [(0, 4)], purpose="TxProfile", transaction_id=tx_id)
    assert await set_profile(csms, 1, body) == "Accepted"
    await wait_status(csms, 1, "SuspendedEVSE", after_seq=mark)
    stop = await csms.call(CP, call.RemoteStopTransaction(transaction_id=tx_id))
    assert stop.status == "Accepted"
    await csms.wait_for("StopTransaction", timeout_s=GUARD_S)
    agent.sim("unplug")
    await wait_status(csms, 1, "Available", after_seq=mark)
    # the next session is not limited by the ended transaction's profile
    await charging(csms, agent, "SC-B")
    assert pwm_duty(agent) == pytest.approx(53.3)


@pytest.mark.parametrize(("limit_a", "duty_pct"), [(10.5, 17.5), (10.0, 16.6)])
async def test_fractional_limits_are_accepted(
    csms: CsmsEmulator, start_app: StartApp, limit_a: float, duty_pct: float
) -> None:
    # The ocpp library hands SetChargingProfile numbers over as Decimal (it parses the
    # payload that way for the one-decimal schema check); 10.5 and 10.0 must work.
    agent = await start_app(csms)
    await registered(csms)
    await charging(csms, agent)
    assert await set_profile(csms, 1, profile(11, [(0, limit_a)], kind="Relative")) == "Accepted"
    await agent.app.wait_status(1, "Charging")
    assert pwm_duty(agent) == duty_pct


# ------------------------------------------- the first PWM of a session obeys its profile


def pwm_duties_since(agent: RunningApp, seen: int) -> list[float]:
    history = list(agent.rig.pilot.output_history)[seen:]
    return [c.output.duty_pct for c in history if c.output.mode is PilotMode.PWM]


def statuses_since(csms: CsmsEmulator, connector_id: int, mark: int) -> list[str]:
    return [
        c.payload["status"]
        for c in csms.received
        if c.action == "StatusNotification"
        and c.seq > mark
        and c.payload["connectorId"] == connector_id
    ]


async def test_first_pwm_obeys_a_relative_tx_default(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    # A Relative schedule starts with the transaction: the limit of the new transaction
    # must be in force before its PWM starts, not one step later.
    agent = await start_app(csms)
    await registered(csms)
    body = profile(1, [(0, 10), (3600, 16)], kind="Relative")
    assert await set_profile(csms, 0, body) == "Accepted"
    seen = len(agent.rig.pilot.output_history)
    mark = last_seq(csms)
    await charging(csms, agent)
    duties = pwm_duties_since(agent, seen)
    assert duties and max(duties) == pytest.approx(16.6), duties  # 10 A, never 32 A
    assert "SuspendedEVSE" not in statuses_since(csms, 1, mark)


async def test_first_pwm_obeys_a_remote_start_tx_profile(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    agent.sim("plug")
    await wait_status(csms, 1, "Preparing", after_seq=0)
    seen = len(agent.rig.pilot.output_history)
    mark = last_seq(csms)
    tx_profile = profile(9, [(0, 10)], purpose="TxProfile", kind="Relative")
    answer = await csms.call(
        CP,
        call.RemoteStartTransaction(connector_id=1, id_tag="REMOTE-3", charging_profile=tx_profile),
    )
    assert answer.status == "Accepted"
    await wait_status(csms, 1, "Charging", after_seq=mark)
    # the profile is in force for the transaction
    composite = await csms.call(CP, call.GetCompositeSchedule(connector_id=1, duration=60))
    assert composite.charging_schedule["charging_schedule_period"] == [
        {"start_period": 0, "limit": 10.0, "number_phases": 3}
    ]
    duties = pwm_duties_since(agent, seen)
    assert duties and max(duties) == pytest.approx(16.6), duties  # 10 A, never 32 A
    assert "SuspendedEVSE" not in statuses_since(csms, 1, mark)


async def test_a_remote_start_with_an_unusable_profile_is_rejected(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    agent.sim("plug")
    bad = profile(9, [(0, 10)], purpose="TxProfile", kind="Relative", stack_level=99)
    answer = await csms.call(
        CP, call.RemoteStartTransaction(connector_id=1, id_tag="REMOTE-4", charging_profile=bad)
    )
    assert answer.status == "Rejected"
    # nothing expected: a later plain start is not limited
    await charging(csms, agent, "SC-C")
    assert pwm_duty(agent) == pytest.approx(53.3)


# ------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("periods", "duty_pct"),
    [
        pytest.param([(0, 6900.0)], 16.6, id="3-phase-default"),  # 6900 / (230 * 3) = 10 A
        pytest.param([(0, 2300.0, 1)], 16.6, id="1-phase"),  # 2300 / 230 = 10 A
        pytest.param([(0, 11040.0, 3)], 26.6, id="reference-3.5"),  # 16 A
    ],
)
async def test_power_profiles_limit_the_current(
    csms: CsmsEmulator,
    start_app: StartApp,
    periods: list[tuple[int, float]] | list[tuple[int, float, int]],
    duty_pct: float,
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    assert await set_profile(csms, 0, profile(1, periods, unit="W")) == "Accepted"
    await charging(csms, agent)
    assert pwm_duty(agent) == pytest.approx(duty_pct)


# ----------------------------------------------------------------- PWM update rate


class DutyWatch:
    """Wakes a test whenever the agent sets the simulated CP output (no polling)."""

    def __init__(self, pilot: SimControlPilot) -> None:
        self._pilot = pilot
        self._changed = asyncio.Event()
        original = pilot.set_output

        def spy(output: PilotOutput) -> None:
            original(output)
            self._changed.set()

        pilot.set_output = spy  # type: ignore[method-assign]

    async def wait(self, predicate: Callable[[PilotOutput], bool]) -> OutputChange:
        async with asyncio.timeout(GUARD_S):
            while not predicate(self._pilot.output):
                self._changed.clear()
                await self._changed.wait()
        return self._pilot.output_history[-1]


async def test_duty_increases_wait_for_the_pwm_update_interval(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    # REFERENCE 1.4: the duty changes at most once per 5 s; lower limits apply at once.
    agent = await start_app(csms)
    await registered(csms)
    tx_id = await charging(csms, agent)
    watch = DutyWatch(agent.rig.pilot)
    last_change_s = agent.rig.pilot.output_history[-1].monotonic_s  # charging began
    asked = time.monotonic()
    body = profile(5, [(0, 10)], purpose="TxProfile", transaction_id=tx_id)
    assert await set_profile(csms, 1, body) == "Accepted"
    lowered = await watch.wait(lambda o: o == PilotOutput.pwm(16.6))
    # a decrease is not held back: a hold would keep the old duty until
    # PWM_UPDATE_INTERVAL_S after the last change
    assert lowered.monotonic_s < last_change_s + PWM_UPDATE_INTERVAL_S
    cleared = await csms.call(CP, call.ClearChargingProfile(id=5))
    assert cleared.status == "Accepted"
    raised = await watch.wait(lambda o: o == PilotOutput.pwm(53.3))
    spacing_s = raised.monotonic_s - lowered.monotonic_s
    assert spacing_s >= PWM_UPDATE_INTERVAL_S - 0.05  # an increase waits
    history = [c.output for c in agent.rig.pilot.output_history if c.monotonic_s >= asked]
    assert history == [PilotOutput.pwm(16.6), PilotOutput.pwm(53.3)]  # nothing in between
