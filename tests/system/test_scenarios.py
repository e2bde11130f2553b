"""Whole-app scenarios: the agent built by ``agent.app.App`` from a config, on
simulated hardware, against the CSMS emulator over loopback, for both OCPP versions.

Each scenario is a function of `tests.versions.OcppVersion`: the same story, with the
expectations projected onto the version the CSMS speaks. A behaviour one version lacks
shows as a failing case (known gaps are marked ``xfail(strict=True)`` in `GAPS`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agent.app import App, ExitReason
from agent.config import parse_config, sim_defaults
from hil.csms import CsmsEmulator
from hil.scenario import Offline, Online, Sim, Step, run_scenario
from tests.versions import VERSIONS, OcppVersion, all_of, ocpp_version

CP = "SYS-CP"
GUARD_S = 10.0


def local_session_with_a_pause(v: OcppVersion) -> list[Step]:
    return [
        Sim("plug"),
        *v.status("Preparing", contactor_on=False),
        Sim("swipe", "TAG-1"),
        *v.authorize("TAG-1"),
        *all_of(v.started("TAG-1"), v.status("Charging", contactor_on=True)),
        *v.meter_value(),
        Sim("pause"),
        *v.status("SuspendedEV", contactor_on=False),
        Sim("resume"),
        *v.status("Charging", contactor_on=True),
        Sim("unplug"),
        *all_of(v.stopped("EVDisconnected"), v.status("Available", contactor_on=False)),
    ]


def remote_start_then_plug(v: OcppVersion) -> list[Step]:
    return [
        *v.remote_start("REMOTE-1"),
        *v.status("Preparing"),
        *v.no_start(),
        Sim("plug"),
        *all_of(v.started("REMOTE-1"), v.status("Charging", contactor_on=True)),
        *v.remote_stop(),
        *all_of(v.stopped("Remote"), v.status("Finishing", contactor_on=False)),
        Sim("unplug"),
        *v.status("Available"),
    ]


def welded_contactor_faults_and_recovers(v: OcppVersion) -> list[Step]:
    # A weld shows when the coil opens and the mirror contact stays closed.
    return [
        Sim("plug"),
        Sim("swipe", "TAG-2"),
        *v.status("Charging", contactor_on=True),
        Sim("fault", "contactor-welded"),
        Sim("pause"),
        *v.status("Faulted", error_code="PowerSwitchFailure", contactor_on=False),
        Sim("clear"),
        *v.status("SuspendedEV", contactor_on=False),
        Sim("resume"),
        *v.status("Charging", contactor_on=True),
        Sim("swipe", "TAG-2"),
        *v.stopped("Local"),
    ]


def pilot_error_faults_and_recovers(v: OcppVersion) -> list[Step]:
    return [
        Sim("plug"),
        Sim("swipe", "TAG-3"),
        *v.status("Charging", contactor_on=True),
        Sim("fault", "cp-error"),
        *v.status("Faulted", error_code="OtherError", contactor_on=False),
        Sim("clear"),
        *v.status("Charging", contactor_on=True),
    ]


def inoperative_refuses_operative_again_starts(v: OcppVersion) -> list[Step]:
    return [
        *v.set_operative(False),
        *v.status("Unavailable"),
        Sim("plug"),
        Sim("swipe", "TAG-4"),
        *v.set_operative(True),
        *v.status("Preparing"),
        *v.no_start(),
        Sim("swipe", "TAG-4"),
        *v.started("TAG-4"),
    ]


def offline_session_is_delivered_after_reconnect(v: OcppVersion) -> list[Step]:
    return [
        Offline(),
        Sim("plug"),
        Sim("swipe", "OFFLINE-1"),
        *v.status("Charging", contactor_on=True, local=True),
        Sim("pause"),
        *v.status("SuspendedEV", contactor_on=False, local=True),
        Sim("resume"),
        *v.status("Charging", contactor_on=True, local=True),
        Sim("unplug"),
        *v.status("Available", contactor_on=False, local=True),
        Online(),
        *v.started("OFFLINE-1", offline=True),
        *v.stopped("EVDisconnected"),
    ]


SCENARIOS: dict[str, Callable[[OcppVersion], list[Step]]] = {
    "local session with a pause": local_session_with_a_pause,
    "remote start then plug": remote_start_then_plug,
    "welded contactor faults and recovers": welded_contactor_faults_and_recovers,
    "pilot error faults and recovers": pilot_error_faults_and_recovers,
    "inoperative refuses, operative again starts": inoperative_refuses_operative_again_starts,
    "offline session is delivered after reconnect": offline_session_is_delivered_after_reconnect,
}

GAPS: dict[tuple[str, str], str] = {}
"""(scenario, version) -> why that version cannot pass it yet (strict xfail)."""


def _cases() -> list[object]:
    cases: list[object] = []
    for version in VERSIONS:
        for name in SCENARIOS:
            gap = GAPS.get((name, version))
            marks = [pytest.mark.xfail(strict=True, reason=gap)] if gap else []
            cases.append(pytest.param(version, name, marks=marks, id=f"{version}-{name}"))
    return cases


@pytest.fixture
async def csms(ocpp: OcppVersion) -> AsyncIterator[CsmsEmulator]:
    async with ocpp.make_csms() as emulator:
        yield emulator


@pytest.fixture
def ocpp(request: pytest.FixtureRequest) -> OcppVersion:
    return ocpp_version(request.node.callspec.params["version"])


@pytest.fixture
async def app(ocpp: OcppVersion, csms: CsmsEmulator, tmp_path: Path) -> AsyncIterator[App]:
    data = sim_defaults(tmp_path, csms.url, CP)
    data["ocpp"] = {"meter_value_sample_interval_s": 1, "allow_offline_tx_for_unknown_id": True}
    data["csms"].update(reconnect_min_s=0.05, reconnect_max_s=0.2, **ocpp.csms_options())
    agent = App(parse_config(data))
    runner = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.started.wait(), GUARD_S)
    await csms.wait_for(
        "StatusNotification", cp_id=CP, predicate=ocpp.is_boot_status, timeout_s=GUARD_S
    )
    yield agent
    agent.stop()
    assert await runner == ExitReason.STOPPED


@pytest.mark.parametrize(("version", "name"), _cases())
async def test_scenario(
    version: str, name: str, ocpp: OcppVersion, app: App, csms: CsmsEmulator
) -> None:
    assert ocpp.name == version
    received = await run_scenario(SCENARIOS[name](ocpp), target=app, csms=csms, cp_id=CP)
    starts, stops = ocpp.starts(received), ocpp.stops(received)
    assert len(starts) <= 1 and len(stops) <= 1, "a transaction was sent twice"
