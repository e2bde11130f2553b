"""Power loss in both OCPP versions: SIGKILL the agent process and restart it.

The version-neutral core of `test_sigkill`: after a cut while charging (online) and
after a cut while offline with a queued start and samples, the CSMS ends with exactly
one start and one end of the transaction (1.6 StartTransaction / StopTransaction,
2.0.1 TransactionEvent Started / Ended), the end says PowerLoss, and every meter value
arrives once (2.0.1: seqNo 0, 1, 2... once each). Nothing is in flight at the kills
here, so not even the one resend 1.6 tolerates may happen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hil.csms import CsmsEmulator, ReceivedCall
from tests.powerloss.harness import AgentProcess, kill_agent, take_offline, wait_journal
from tests.versions import VERSIONS, OcppVersion, ocpp_version

CP_ID = "CP-POWERLOSS-V"
GUARD_S = 20.0  # a guard against hangs only; every wait is on a condition

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(params=VERSIONS)
def ocpp(request: pytest.FixtureRequest) -> OcppVersion:
    return ocpp_version(request.param)


@pytest.fixture
async def csms(ocpp: OcppVersion, make_csms: object) -> AsyncIterator[CsmsEmulator]:
    del make_csms  # its teardown checks for leftover tasks after this one stopped
    async with ocpp.make_csms() as emulator:
        yield emulator


@pytest.fixture
async def agent(
    tmp_path: Path, csms: CsmsEmulator, ocpp: OcppVersion
) -> AsyncIterator[AgentProcess]:
    process = AgentProcess.create(
        tmp_path, csms_url=csms.url, charge_point_id=CP_ID, ocpp_version=ocpp.name
    )
    try:
        yield process
    finally:
        await process.close()
        print(f"----- agent log ({process.log_path}) -----\n{process.log_text()}")


async def boot(agent: AgentProcess, csms: CsmsEmulator) -> None:
    boots = len(csms.calls("BootNotification", CP_ID))
    await agent.start()
    await csms.wait_for("BootNotification", count=boots + 1, timeout_s=GUARD_S)
    await agent.wait_control_socket()


async def wait_stop(agent: AgentProcess, csms: CsmsEmulator, ocpp: OcppVersion) -> ReceivedCall:
    """Wait for the transaction's end, its answer and an empty journal queue."""
    stop = await csms.wait_for(
        ocpp.stop_action, predicate=lambda c: bool(ocpp.stops([c])), timeout_s=GUARD_S
    )
    await csms.wait_answer(stop, timeout_s=GUARD_S)
    await wait_journal(
        agent.data_dir,
        lambda j: not j.queue and not j.running,
        what="an empty queue and no running transaction",
    )
    return stop


def assert_exactly_once(csms: CsmsEmulator, ocpp: OcppVersion) -> tuple[ReceivedCall, ...]:
    """One start, one end (PowerLoss) of one transaction; every meter value once."""
    received = [c for c in csms.received if c.charge_point_id == CP_ID]
    starts, stops = ocpp.starts(received), ocpp.stops(received)
    assert len(starts) == 1, f"{len(starts)} starts"
    assert len(stops) == 1, f"{len(stops)} ends"
    (start,), (stop,) = starts, stops
    assert ocpp.tx_id_of(stop, csms) == ocpp.tx_id_of(start, csms) is not None
    assert ocpp.stop_reason(stop) == "PowerLoss"
    keys = ocpp.meter_keys(received)
    assert len(keys) == len(set(keys)), "a meter value was delivered twice"
    assert not ocpp.sequence_problems(received)
    return start, stop


async def test_kill_while_charging_online_ends_once_with_power_loss(
    agent: AgentProcess, csms: CsmsEmulator, ocpp: OcppVersion
) -> None:
    await boot(agent, csms)
    await agent.sim("plug")
    await agent.sim("swipe", "TAG-ONLINE")
    start = await csms.wait_for(
        ocpp.start_action, predicate=lambda c: bool(ocpp.starts([c])), timeout_s=GUARD_S
    )
    await csms.wait_answer(start, timeout_s=GUARD_S)
    meter = await csms.wait_for(
        ocpp.meter_action,
        predicate=lambda c: bool(ocpp.meter_keys([c])),
        count=2,
        timeout_s=GUARD_S,
    )
    await csms.wait_answer(meter, timeout_s=GUARD_S)
    await wait_journal(agent.data_dir, lambda j: not j.queue, what="an empty queue")
    loss = await kill_agent(agent, csms)
    assert not loss.journal.queue, f"a message was in flight at the kill: {loss.journal.queue}"
    [interrupted] = loss.journal.running

    await boot(agent, csms)
    await wait_stop(agent, csms, ocpp)
    assert await agent.terminate() == 0
    assert_exactly_once(csms, ocpp)
    assert len(ocpp.meter_keys(csms.received)) >= 2
    assert interrupted.last_meter_wh is not None


async def test_kill_while_offline_delivers_the_queue_once_after_restart(
    agent: AgentProcess, csms: CsmsEmulator, ocpp: OcppVersion
) -> None:
    await boot(agent, csms)
    await take_offline(csms, agent)
    await agent.sim("plug")
    await agent.sim("swipe", "TAG-OFFLINE")  # unknown tag: allowed offline
    await wait_journal(
        agent.data_dir,
        lambda j: len(j.queued("meter")) >= 2,
        what="an offline start with 2 queued meter values",
    )
    loss = await kill_agent(agent, csms)
    queued_times = [t for q in loss.journal.queued("meter") for t in q.sample_times]
    kinds = [q.kind for q in loss.journal.queue if q.kind != "update"]  # 2.0.1-only rows
    assert kinds == ["start"] + ["meter"] * len(queued_times)
    sent_before = len(csms.received)

    await agent.start()  # offline: the control socket proves it is up
    await agent.wait_control_socket()
    await wait_journal(
        agent.data_dir, lambda j: bool(j.queued("stop")), what="the PowerLoss end queued"
    )
    assert not ocpp.starts(csms.received[sent_before:])
    await csms.go_online()
    await wait_stop(agent, csms, ocpp)
    assert await agent.terminate() == 0

    start, _ = assert_exactly_once(csms, ocpp)
    tx_id = ocpp.tx_id_of(start, csms)
    # every queued sample exactly once, in order, under the transaction's id
    assert ocpp.meter_keys(csms.received) == [(tx_id, t) for t in queued_times]
