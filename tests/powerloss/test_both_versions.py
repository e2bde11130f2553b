"""Power loss in both OCPP versions: SIGKILL the agent process and restart it.

The version-neutral core of `test_sigkill`: after a cut while charging (online) and
after a cut while offline with a queued start and samples, the CSMS ends with exactly
one start and one end of the transaction (1.6 StartTransaction / StopTransaction,
2.0.1 TransactionEvent Started / Ended), the end says PowerLoss, and every meter value
arrives once (2.0.1: seqNo 0, 1, 2... once each). Where nothing is in flight at the
kill, not even the one resend tolerated after a lost answer may happen; where a message
is in flight (held unanswered by the CSMS), the restarted agent sends exactly that
message again, identical (2.0.1: the same seqNo), and nothing else twice.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from hil.csms import CsmsEmulator, ReceivedCall
from tests.powerloss.harness import (
    KILL_SEED,
    AgentProcess,
    ConnectionLoss,
    JournalSnapshot,
    kill_agent,
    take_offline,
    wait_journal,
)
from tests.powerloss.rig import (
    GUARD_S,
    boot,
    charge,
    csms,
    kill_at_random_points,
    last_clean_session,
    logged_agent,
    ocpp,
    restart_offline,
    wait_drained,
    wait_start,
)
from tests.versions import OcppVersion

__all__ = ["csms", "ocpp"]  # the fixtures, imported

CP_ID = "CP-POWERLOSS-V"
KILLS_BOTH = int(os.environ.get("EVSE_POWERLOSS_KILLS_BOTH", "3"))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
async def agent(
    tmp_path: Path, csms: CsmsEmulator, ocpp: OcppVersion
) -> AsyncIterator[AgentProcess]:
    process = AgentProcess.create(
        tmp_path, csms_url=csms.url, charge_point_id=CP_ID, ocpp_version=ocpp.name
    )
    async with logged_agent(process):
        yield process


async def wait_stop(
    agent: AgentProcess, csms: CsmsEmulator, ocpp: OcppVersion, after: int = 0
) -> ReceivedCall:
    """Wait for the transaction's end received after CALL ``after``, its answer and an
    empty journal queue."""
    stop = await csms.wait_for(
        ocpp.stop_action,
        predicate=lambda c: c.seq > after and bool(ocpp.stops([c])),
        timeout_s=GUARD_S,
    )
    await csms.wait_answer(stop, timeout_s=GUARD_S)
    await wait_drained(agent)
    return stop


def superseded_copies(
    received: Sequence[ReceivedCall], ocpp: OcppVersion, losses: Sequence[ConnectionLoss]
) -> set[int]:
    """Seqs of transaction CALLs that were in flight at a loss and were sent again after it.

    The last transaction CALL before a loss is superseded when the first one after the
    loss is identical (its answer never reached the journal, so it still headed the
    queue). Only that one copy per loss is tolerated; the resend is the one that counts.
    """
    calls = [c for c in received if c.action in ocpp.tx_actions]
    superseded = set()
    for loss in losses:
        before = [c for c in calls if c.seq <= loss.received_count]
        after = [c for c in calls if c.seq > loss.received_count]
        if (
            before
            and after
            and (before[-1].action, before[-1].payload)
            == (
                after[0].action,
                after[0].payload,
            )
        ):
            superseded.add(before[-1].seq)
    return superseded


def assert_exactly_once(
    csms: CsmsEmulator,
    ocpp: OcppVersion,
    losses: Sequence[ConnectionLoss] = (),
    *,
    reason: str = "PowerLoss",
) -> tuple[ReceivedCall, ...]:
    """One start, one end (``reason``) of one transaction; every meter value once.

    With ``losses``, the one copy in flight at each loss and resent identically after it
    (`superseded_copies`) is left out first; anything else twice fails.
    """
    mine = [c for c in csms.received if c.charge_point_id == CP_ID]
    superseded = superseded_copies(mine, ocpp, losses)
    received = [c for c in mine if c.seq not in superseded]
    starts, stops = ocpp.starts(received), ocpp.stops(received)
    assert len(starts) == 1, f"{len(starts)} starts"
    assert len(stops) == 1, f"{len(stops)} ends"
    (start,), (stop,) = starts, stops
    assert ocpp.tx_id_of(stop, csms) == ocpp.tx_id_of(start, csms) is not None
    assert ocpp.stop_reason(stop) == reason
    keys = ocpp.meter_keys(received)
    assert len(keys) == len(set(keys)), "a meter value was delivered twice"
    assert not ocpp.sequence_problems(received)
    return start, stop


async def test_kill_while_charging_online_ends_once_with_power_loss(
    agent: AgentProcess, csms: CsmsEmulator, ocpp: OcppVersion
) -> None:
    await charge(agent, csms, ocpp, "TAG-ONLINE")
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

    await restart_offline(agent)
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


async def test_kill_with_start_in_flight_resends_the_identical_start(
    agent: AgentProcess, csms: CsmsEmulator, ocpp: OcppVersion
) -> None:
    """The CSMS got the start but the charger never its answer: the same start again."""
    await boot(agent, csms)
    csms.hold_responses(ocpp.start_action)
    await agent.sim("plug")
    await agent.sim("swipe", "TAG-INFLIGHT")
    first = await wait_start(csms, ocpp)
    loss = await kill_agent(agent, csms)
    [interrupted] = loss.journal.running
    assert [q.kind for q in loss.journal.queue][:1] == ["start"]
    assert first.seq not in csms.answers

    await boot(agent, csms)
    second = await wait_start(csms, ocpp, count=2)
    csms.release_responses(ocpp.start_action)
    await wait_stop(agent, csms, ocpp)
    assert await agent.terminate() == 0

    assert second.payload == first.payload  # the same start (2.0.1: the same seqNo 0)
    assert first.seq not in csms.answers
    start, _ = assert_exactly_once(csms, ocpp, [loss])
    assert start is second
    assert interrupted.start_time is not None


async def test_kill_with_end_in_flight_resends_the_same_end(
    agent: AgentProcess, csms: CsmsEmulator, ocpp: OcppVersion
) -> None:
    """A transaction that ended normally keeps its own reason across the cut."""
    await charge(agent, csms, ocpp, "TAG-STOPPING")
    mark = len(csms.received)
    for action in ocpp.tx_actions:  # whatever transaction message comes next stays in flight
        csms.hold_responses(action)
    await agent.sim("unplug")
    held = await _next_tx_call(csms, ocpp, mark)
    await wait_journal(
        agent.data_dir,
        lambda j: not j.running and bool(j.queued("stop")),
        what="the end journalled",
    )
    loss = await kill_agent(agent, csms)
    [ended] = loss.journal.transactions
    assert ended.stop_reason == "EVDisconnected"
    assert held.seq not in csms.answers

    await boot(agent, csms)
    resent = await _next_tx_call(csms, ocpp, loss.received_count)
    for action in ocpp.tx_actions:
        csms.release_responses(action)
    await wait_stop(agent, csms, ocpp, after=loss.received_count)
    assert await agent.terminate() == 0

    assert (resent.action, resent.payload) == (held.action, held.payload)
    assert_exactly_once(csms, ocpp, [loss], reason="EVDisconnected")


async def _next_tx_call(csms: CsmsEmulator, ocpp: OcppVersion, after: int) -> ReceivedCall:
    """The first transaction-related CALL of this charger with a seq above ``after``."""

    def mine(c: ReceivedCall) -> bool:
        return c.seq > after and c.charge_point_id == CP_ID

    waits = {
        asyncio.create_task(csms.wait_for(action, predicate=mine, timeout_s=GUARD_S))
        for action in ocpp.tx_actions
    }
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        await asyncio.wait(waits)
    return min((t.result() for t in done), key=lambda c: c.seq)


def tag_of(call: ReceivedCall) -> str | None:
    """The token of a transaction start (1.6 ``idTag``, 2.0.1 ``idToken.idToken``)."""
    if "idTag" in call.payload:
        return str(call.payload["idTag"])
    token = call.payload.get("idToken")
    return str(token["idToken"]) if isinstance(token, dict) else None


def transaction_problems(
    csms: CsmsEmulator,
    ocpp: OcppVersion,
    losses: Sequence[ConnectionLoss],
    final: JournalSnapshot,
) -> list[str]:
    """Version-neutral "nothing lost, nothing twice" over many transactions and kills.

    After leaving out the one superseded copy per loss: one start and one end per
    journal transaction, the ends' reasons those of the journal, every meter value once
    and every sample queued at a loss delivered, 2.0.1 seqNo 0..n once each.
    """
    mine = [c for c in csms.received if c.charge_point_id == CP_ID]
    superseded = superseded_copies(mine, ocpp, losses)
    received = [c for c in mine if c.seq not in superseded]
    problems = []
    if final.queue or final.running:
        problems.append(f"journal not drained: {final}")
    start_ids = [ocpp.tx_id_of(c, csms) for c in ocpp.starts(received)]
    stops = ocpp.stops(received)
    stop_ids = [ocpp.tx_id_of(c, csms) for c in stops]
    if len(start_ids) != len(final.transactions) or len(set(start_ids)) != len(start_ids):
        problems.append(f"starts {start_ids} for {len(final.transactions)} transactions")
    if sorted(map(str, stop_ids)) != sorted(map(str, start_ids)):
        problems.append(f"ends {stop_ids} != starts {start_ids}")
    reasons = sorted(ocpp.stop_reason(c) for c in stops)
    if reasons != sorted(str(t.stop_reason) for t in final.transactions):
        problems.append(f"end reasons {reasons} != journal {final.transactions}")
    keys = ocpp.meter_keys(received)
    if len(keys) != len(set(keys)):
        problems.append(f"a meter value delivered twice: {keys}")
    delivered = {stamp for _, stamp in keys}
    for n, loss in enumerate(losses, 1):
        for row in loss.journal.queued("meter"):
            problems.extend(
                f"loss {n}: queued sample {stamp} never delivered"
                for stamp in row.sample_times
                if stamp not in delivered
            )
    problems.extend(ocpp.sequence_problems(received))
    return problems


async def test_random_kill_points_lose_and_duplicate_nothing(
    agent: AgentProcess, csms: CsmsEmulator, ocpp: OcppVersion
) -> None:
    """Kill at seeded random moments of plug/swipe/charge/unplug cycles (fewer kills than
    the 1.6 soak in `test_sigkill`; ``EVSE_POWERLOSS_KILLS_BOTH`` raises it)."""
    rng = random.Random(KILL_SEED)
    plan: list[str] = []
    cycle = 0

    async def run_cycle(kill_after_step: int | None) -> None:
        nonlocal cycle
        cycle += 1
        tag = f"TAG-CYCLE-{cycle}"
        await agent.sim("plug")
        if kill_after_step == 1:
            return
        await agent.sim("swipe", tag)
        start = await csms.wait_for(
            ocpp.start_action,
            predicate=lambda c: bool(ocpp.starts([c])) and tag_of(c) == tag,
            timeout_s=GUARD_S,
        )
        if kill_after_step == 2:
            return
        await csms.wait_answer(start, timeout_s=GUARD_S)
        tx_id = ocpp.tx_id_of(start, csms)

        def meter_of_tx(c: ReceivedCall) -> bool:
            return any(key[0] == tx_id for key in ocpp.meter_keys([c]))

        for step in (3, 4):
            await csms.wait_for(
                ocpp.meter_action, predicate=meter_of_tx, count=step - 2, timeout_s=GUARD_S
            )
            if kill_after_step == step:
                return
        await agent.sim("unplug")
        stop = await csms.wait_for(
            ocpp.stop_action,
            predicate=lambda c: bool(ocpp.stops([c])) and ocpp.tx_id_of(c, csms) == tx_id,
            timeout_s=GUARD_S,
        )
        if kill_after_step == 5:
            return
        await csms.wait_answer(stop, timeout_s=GUARD_S)

    losses = await kill_at_random_points(agent, csms, rng, KILLS_BOTH, run_cycle, plan)
    final = await last_clean_session(agent, csms, run_cycle)
    print(f"seed {KILL_SEED}", *plan, sep="\n")
    problems = transaction_problems(csms, ocpp, losses, final)
    assert not problems, "\n".join([*plan, *problems])
    interrupted = {t.tx_id for loss in losses for t in loss.journal.running}
    assert {t.tx_id for t in final.transactions if t.stop_reason == "PowerLoss"} == interrupted
    assert final.transactions, "no transaction was ever journalled"
