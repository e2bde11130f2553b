"""Power loss: SIGKILL the whole agent process and restart it on the same data directory.

Requirement: after a SIGKILL at any moment and a restart, an interrupted transaction
is stopped with reason PowerLoss and the last durable meter value, and the CSMS gets
exactly one StartTransaction and one StopTransaction per transaction and every queued
MeterValues, none twice (OCPP 1.6 3.7).

"Exactly once" is from the charger's point of view: OCPP 1.6 has no idempotency key,
so a message the CSMS received but whose answer the charger never journalled is sent
again after the restart (the in-flight tests show it for StartTransaction and
StopTransaction). ``harness.check_exactly_once`` allows that one resend per lost
connection and nothing else. A start whose answer was lost that way leaves the CSMS
with a transaction id nobody will ever stop; 1.6 offers no way to avoid it.

The agent runs as a real subprocess (``python -m agent run --config F --sim``) against
the CSMS emulator in the test's loop; the simulated EV is driven over its control socket.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hil.csms import Answer, CsmsEmulator, ReceivedCall
from tests.powerloss.harness import (
    KILL_SEED,
    AgentProcess,
    ConnectionLoss,
    JournalSnapshot,
    QueueRow,
    TxRow,
    answered_tx_id,
    check_exactly_once,
    energy_wh,
    kill_agent,
    read_journal,
    resends_after_losses,
    take_offline,
    tx_calls,
    wait_journal,
)
from tests.powerloss.rig import (
    GUARD_S,
    boot,
    charge,
    kill_at_random_points,
    last_clean_session,
    logged_agent,
    restart_offline,
    wait_drained,
)
from tests.versions import ocpp_version

CP_ID = "CP-POWERLOSS"
# Soak runs: EVSE_POWERLOSS_SEED=7 EVSE_POWERLOSS_KILLS=30 pytest tests/powerloss -k random
KILLS = int(os.environ.get("EVSE_POWERLOSS_KILLS", "6"))

process_test = pytest.mark.timeout(120)


# ``csms`` (tests/conftest.py): an emulator on 127.0.0.1, stopped after ``agent``, with a
# check that no asyncio task is left behind.


@pytest.fixture
async def agent(tmp_path: Path, csms: CsmsEmulator) -> AsyncIterator[AgentProcess]:
    process = AgentProcess.create(tmp_path, csms_url=csms.url, charge_point_id=CP_ID)
    async with logged_agent(process):
        yield process


async def drained(agent: AgentProcess, csms: CsmsEmulator, stop: ReceivedCall) -> None:
    """Wait until ``stop`` (the last expected message) is answered and the queue is empty."""
    await csms.wait_answer(stop, timeout_s=GUARD_S)
    await wait_drained(agent)


def assert_exactly_once(
    csms: CsmsEmulator, losses: list[ConnectionLoss], agent: AgentProcess
) -> JournalSnapshot:
    final = read_journal(agent.data_dir)
    problems = check_exactly_once(csms, CP_ID, losses, final)
    assert not problems, "\n".join(problems)
    assert_last_samples_delivered(csms, final)
    return final


def assert_last_samples_delivered(csms: CsmsEmulator, final: JournalSnapshot) -> None:
    """With sampling on, a transaction's last durable reading is its last queued sample.

    So the sample a PowerLoss stop quotes must have reached the CSMS: catches a
    sample dropped from the queue before it was delivered.
    """
    delivered = {
        (c.payload["transactionId"], mv["timestamp"])
        for c in csms.calls("MeterValues", CP_ID)
        for mv in c.payload["meterValue"]
    }
    for tx in final.transactions:
        if tx.last_meter_time is not None:
            assert (tx.csms_tx_id, tx.last_meter_time) in delivered, tx


# --------------------------------------------------------------- scenarios


@pytest.mark.slow
@process_test
async def test_kill_while_charging_online_stops_with_power_loss(
    agent: AgentProcess, csms: CsmsEmulator
) -> None:
    """Killed while charging with everything acknowledged: PowerLoss, nothing twice."""
    start = await charge(agent, csms, ocpp_version("1.6"), "TAG-ONLINE")
    tx_id = answered_tx_id(csms, start)
    meter2 = await csms.wait_for("MeterValues", count=2, timeout_s=GUARD_S)
    await csms.wait_answer(meter2, timeout_s=GUARD_S)
    # the charger has journalled the answers: nothing is in flight
    await wait_journal(agent.data_dir, lambda j: not j.queue, what="an empty queue")
    loss = await kill_agent(agent, csms)

    # the cut left a running transaction with its CSMS id and nothing to send
    assert not loss.journal.queue, f"a message was in flight at the kill: {loss.journal.queue}"
    [interrupted] = loss.journal.running
    assert tx_id is not None and interrupted.csms_tx_id == tx_id
    seen = tx_calls(csms, CP_ID)
    last_seen_wh = max(
        energy_wh(mv for c in seen if c.action == "MeterValues" for mv in c.payload["meterValue"])
    )
    assert interrupted.last_meter_wh == last_seen_wh

    await boot(agent, csms)
    stop = await csms.wait_for("StopTransaction", timeout_s=GUARD_S)
    await drained(agent, csms, stop)
    assert await agent.terminate() == 0

    assert stop.payload["reason"] == "PowerLoss"
    assert stop.payload["transactionId"] == tx_id
    assert stop.payload["meterStop"] >= last_seen_wh
    assert stop.payload["timestamp"] == interrupted.last_meter_time
    assert len(csms.calls("StartTransaction")) == 1
    assert len(csms.calls("StopTransaction")) == 1
    pairs = [
        (c.payload["transactionId"], mv["timestamp"])
        for c in csms.calls("MeterValues")
        for mv in c.payload["meterValue"]
    ]
    assert len(pairs) == len(set(pairs)) >= 2
    # nothing was in flight, so not even the one allowed resend happened
    assert_exactly_once(csms, [loss], agent)
    assert not resends_after_losses(tx_calls(csms, CP_ID), [loss])


@pytest.mark.slow
@process_test
async def test_kill_while_offline_delivers_queue_once_after_restart(
    agent: AgentProcess, csms: CsmsEmulator
) -> None:
    """Killed offline with a queued start and samples: all of it once, ids mapped."""
    await boot(agent, csms)
    losses = [await take_offline(csms, agent)]
    await agent.sim("plug")
    await agent.sim("swipe", "TAG-OFFLINE")  # unknown tag: AllowOfflineTxForUnknownId
    await wait_journal(
        agent.data_dir,
        lambda j: len(j.queued("meter")) >= 3,
        what="an offline start with 3 queued MeterValues",
    )
    losses.append(await kill_agent(agent, csms))
    at_kill = losses[-1].journal
    [interrupted] = at_kill.running
    assert interrupted.csms_tx_id is None  # never reached the CSMS
    queued_times = [t for q in at_kill.queued("meter") for t in q.sample_times]
    assert [q.kind for q in at_kill.queue] == ["start"] + ["meter"] * len(queued_times)

    await restart_offline(agent)
    # the restart stops the transaction before anything is sent: the stop is queued
    await wait_journal(
        agent.data_dir, lambda j: bool(j.queued("stop")), what="the PowerLoss stop queued"
    )
    assert not tx_calls(csms, CP_ID)
    await csms.go_online()
    stop = await csms.wait_for("StopTransaction", timeout_s=GUARD_S)
    await drained(agent, csms, stop)
    assert await agent.terminate() == 0

    [start] = csms.calls("StartTransaction")
    tx_id = answered_tx_id(csms, start)
    assert start.payload["idTag"] == "TAG-OFFLINE"
    assert start.payload["timestamp"] == interrupted.start_time
    delivered = [
        (c.payload["transactionId"], mv["timestamp"])
        for c in csms.calls("MeterValues")
        for mv in c.payload["meterValue"]
    ]
    # every queued sample exactly once, in order, under the id the CSMS assigned later
    assert delivered == [(tx_id, t) for t in queued_times]
    assert stop.payload["transactionId"] == tx_id
    assert stop.payload["reason"] == "PowerLoss"
    assert stop.payload["meterStop"] == interrupted.last_meter_wh
    assert stop.payload["meterStop"] >= max(
        energy_wh(mv for c in csms.calls("MeterValues") for mv in c.payload["meterValue"])
    )
    assert len(csms.calls("StopTransaction")) == 1
    assert_exactly_once(csms, losses, agent)


@pytest.mark.slow
@process_test
async def test_kill_with_start_in_flight_resends_identical_start(
    agent: AgentProcess, csms: CsmsEmulator
) -> None:
    """Killed with StartTransaction received but unanswered: the same start again."""
    await boot(agent, csms)
    csms.hold_responses("StartTransaction")
    await agent.sim("plug")
    await agent.sim("swipe", "TAG-INFLIGHT")
    first = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    loss = await kill_agent(agent, csms)  # the CSMS has it; the charger has no answer
    [interrupted] = loss.journal.running
    assert interrupted.csms_tx_id is None
    assert [q.kind for q in loss.journal.queue][:1] == ["start"]
    assert first.seq not in csms.answers

    await boot(agent, csms)
    second = await csms.wait_for("StartTransaction", count=2, timeout_s=GUARD_S)
    csms.release_responses("StartTransaction")
    stop = await csms.wait_for("StopTransaction", timeout_s=GUARD_S)
    await drained(agent, csms, stop)
    assert await agent.terminate() == 0

    # What the CSMS sees: the same start twice (no idempotency key in OCPP 1.6), the
    # first never answered; the charger's queue held exactly one start.
    assert second.payload == first.payload
    assert {k: first.payload[k] for k in ("idTag", "meterStart", "timestamp")} == {
        "idTag": "TAG-INFLIGHT",
        "meterStart": interrupted.meter_start_wh,
        "timestamp": interrupted.start_time,
    }
    assert [c.seq for c in csms.calls("StartTransaction")] == [first.seq, second.seq]
    tx_id = answered_tx_id(csms, second)
    assert tx_id is not None and answered_tx_id(csms, first) is None
    assert list(csms.transactions) == [tx_id]
    final = assert_exactly_once(csms, [loss], agent)
    assert [t.csms_tx_id for t in final.transactions] == [tx_id]
    later = [c for c in tx_calls(csms, CP_ID) if c.action != "StartTransaction"]
    assert later and all(c.payload["transactionId"] == tx_id for c in later)
    assert stop.payload["reason"] == "PowerLoss"


@pytest.mark.slow
@process_test
async def test_kill_with_stop_in_flight_resends_the_same_stop(
    agent: AgentProcess, csms: CsmsEmulator
) -> None:
    """A transaction that ended normally keeps its own reason across the cut."""
    start = await charge(agent, csms, ocpp_version("1.6"), "TAG-STOPPING")
    csms.hold_responses("StopTransaction")
    await agent.sim("unplug")
    first = await csms.wait_for("StopTransaction", timeout_s=GUARD_S)
    loss = await kill_agent(agent, csms)
    [ended] = loss.journal.transactions
    assert not ended.running and ended.stop_reason == "EVDisconnected"
    assert [q.kind for q in loss.journal.queue] == ["stop"]

    await boot(agent, csms)
    second = await csms.wait_for("StopTransaction", count=2, timeout_s=GUARD_S)
    csms.release_responses("StopTransaction")
    await drained(agent, csms, second)
    assert await agent.terminate() == 0

    assert second.payload == first.payload  # the same stop, sent again: nothing new
    assert first.seq not in csms.answers
    assert second.payload["reason"] == "EVDisconnected"
    assert second.payload["transactionId"] == answered_tx_id(csms, start)
    assert len(csms.calls("StartTransaction")) == 1
    assert_exactly_once(csms, [loss], agent)


@pytest.mark.slow
@process_test
async def test_random_kill_points_lose_and_duplicate_nothing(
    agent: AgentProcess, csms: CsmsEmulator
) -> None:
    """Kill at seeded random moments over plug/swipe/charge/unplug cycles."""
    rng = random.Random(KILL_SEED)
    plan: list[str] = []
    cycle = 0

    async def run_cycle(kill_after_step: int | None) -> None:
        """One session; with ``kill_after_step`` it is cut after that step."""
        nonlocal cycle
        cycle += 1
        tag = f"TAG-CYCLE-{cycle}"

        def mine(c: ReceivedCall) -> bool:
            return c.payload.get("idTag") == tag

        def step(n: int) -> bool:
            """True when the kill is due after step ``n``."""
            return kill_after_step == n

        await agent.sim("plug")
        if step(1):
            return
        await agent.sim("swipe", tag)
        start = await csms.wait_for("StartTransaction", predicate=mine, timeout_s=GUARD_S)
        if step(2):
            return
        await csms.wait_answer(start, timeout_s=GUARD_S)
        tx_id = answered_tx_id(csms, start)

        def of_tx(c: ReceivedCall) -> bool:
            return c.payload.get("transactionId") == tx_id

        await csms.wait_for("MeterValues", predicate=of_tx, timeout_s=GUARD_S)
        if step(3):
            return
        await csms.wait_for("MeterValues", count=2, predicate=of_tx, timeout_s=GUARD_S)
        if step(4):
            return
        await agent.sim("unplug")
        stop = await csms.wait_for("StopTransaction", predicate=of_tx, timeout_s=GUARD_S)
        if step(5):
            return
        await csms.wait_answer(stop, timeout_s=GUARD_S)

    losses = await kill_at_random_points(agent, csms, rng, KILLS, run_cycle, plan)
    # a last clean session, then let everything drain
    final = await last_clean_session(agent, csms, run_cycle)
    problems = check_exactly_once(csms, CP_ID, losses, final)
    resent = sorted(resends_after_losses(tx_calls(csms, CP_ID), losses))
    answered = {answered_tx_id(csms, c) for c in csms.calls("StartTransaction")}
    superseded = answered - {None, *(t.csms_tx_id for t in final.transactions)}
    print(f"seed {KILL_SEED}", *plan, f"resends after a kill: {resent}", sep="\n")
    print(f"CSMS ids of superseded starts (never stopped, OCPP 1.6): {superseded}")
    assert not problems, "\n".join([*plan, *problems])
    assert_last_samples_delivered(csms, final)
    # every transaction a kill interrupted was stopped with PowerLoss and its last
    # durable reading
    for n, loss in enumerate(losses, 1):
        for cut in loss.journal.running:
            ended = final.tx(cut.tx_id)
            assert ended is not None, plan
            assert ended.stop_reason == "PowerLoss", (n, plan)
            expected_wh = cut.last_meter_wh if cut.last_meter_wh is not None else cut.meter_start_wh
            assert ended.meter_stop_wh == expected_wh, (n, plan)
            assert ended.stop_time == (cut.last_meter_time or cut.start_time), (n, plan)
    interrupted = {t.tx_id for loss in losses for t in loss.journal.running}
    assert {t.tx_id for t in final.transactions if t.stop_reason == "PowerLoss"} == interrupted
    assert final.transactions, "no transaction was ever journalled"


# ------------------------------------------- the checker itself (fast, no process)


@dataclass
class FakeCsmsLog:
    """A CSMS log built by hand: CALLs in order, answers by seq."""

    received: list[ReceivedCall] = field(default_factory=list)
    answers: dict[int, Answer] = field(default_factory=dict)

    def add(self, action: str, payload: dict[str, Any], answer: Answer | None = None) -> int:
        seq = len(self.received) + 1
        self.received.append(ReceivedCall(CP_ID, action, payload, 0.0, seq, f"m{seq}"))
        if answer is not None:
            self.answers[seq] = answer
        return seq


T0, T1, T2, T3 = (f"2025-01-01T00:00:0{n}.000Z" for n in range(4))
START = {"connectorId": 1, "idTag": "TAG", "meterStart": 0, "timestamp": T0}
STOP = {"meterStop": 20, "timestamp": T2, "transactionId": 7, "reason": "PowerLoss"}
FINAL = JournalSnapshot(
    transactions=(TxRow("tx1", 1, "TAG", T0, 0, 7, 20, T2, T2, 20, "PowerLoss"),)
)


def meter(stamp: str, wh: int, tx_id: int = 7) -> dict[str, Any]:
    value = {"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
    return {
        "connectorId": 1,
        "transactionId": tx_id,
        "meterValue": [{"timestamp": stamp, "sampledValue": [value]}],
    }


def loss_at(log: FakeCsmsLog, queue: Sequence[QueueRow] = ()) -> ConnectionLoss:
    return ConnectionLoss(len(log.received), JournalSnapshot(FINAL.transactions, tuple(queue)))


def check(log: FakeCsmsLog, losses: Sequence[ConnectionLoss] = ()) -> list[str]:
    return check_exactly_once(log, CP_ID, losses, FINAL)


def clean_log(**answers: Mapping[str, Any]) -> FakeCsmsLog:
    log = FakeCsmsLog()
    log.add("StartTransaction", START, {"transactionId": 7, "idTagInfo": {"status": "Accepted"}})
    log.add("MeterValues", meter(T1, 10), {})
    log.add("MeterValues", meter(T2, 20), {})
    return log


def test_checker_accepts_a_clean_log() -> None:
    log = clean_log()
    log.add("StopTransaction", STOP, {})
    assert check(log) == []


def test_checker_accepts_one_resend_after_a_loss_only() -> None:
    log = clean_log()
    loss = loss_at(log)
    log.add("MeterValues", meter(T2, 20), {})  # the answer was lost with the process
    log.add("StopTransaction", STOP, {})
    assert check(log, [loss]) == []
    assert check(log) == [f"MeterValues (7, {T2}) received 2 times (#4 not a resend)"]


def test_checker_accepts_a_superseded_start_but_not_its_id() -> None:
    log = FakeCsmsLog()
    log.add("StartTransaction", START, {"transactionId": 6, "idTagInfo": {"status": "Accepted"}})
    loss = loss_at(log)
    log.add("StartTransaction", START, {"transactionId": 7, "idTagInfo": {"status": "Accepted"}})
    log.add("MeterValues", meter(T1, 10), {})
    log.add("StopTransaction", STOP, {})
    assert check(log, [loss]) == []
    log.add("MeterValues", meter(T3, 20, tx_id=6), {})
    assert check(log, [loss]) == ["MeterValues #5 uses superseded transaction id 6"]


def test_checker_flags_lost_and_wrong_messages() -> None:
    log = clean_log()
    queued = QueueRow(9, "tx1", "meter", (T3,), 0)
    assert check(log, [loss_at(log, [queued])]) == [
        "StopTransaction of id 7 (tx1) never received",
        f"loss 1: queued MeterValues {T3} never delivered",
    ]
    log.add("StopTransaction", {**STOP, "reason": "Local", "meterStop": 15}, {})
    problems = check(log)
    assert len(problems) == 2
    assert "Local" in problems[0] and "meterStop 15 below" in problems[1]
