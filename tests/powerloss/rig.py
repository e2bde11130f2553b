"""What every power-loss test module sets up: fixtures and steps around ``harness``.

`ocpp` and `csms` (the emulator of that version) are fixtures for the modules that run
for both versions, which import them; `logged_agent` is the body of each module's
``agent`` fixture; `boot`, `restart_offline`, `charge`, `wait_drained`,
`kill_at_random_points` and `last_clean_session` are the steps the scenarios share.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from hil.csms import CsmsEmulator, ReceivedCall
from tests.powerloss.harness import (
    AgentProcess,
    ConnectionLoss,
    JournalSnapshot,
    kill_agent,
    kill_schedule,
    read_journal,
    wait_journal,
)
from tests.versions import VERSIONS, OcppVersion, ocpp_version

GUARD_S = 20.0  # a guard against hangs only; every wait is on a condition

RunCycle = Callable[[int | None], Awaitable[None]]
"""One plug/swipe/charge/unplug session; with a step number it returns after that step
(the kill comes next), with None it runs to the answered end."""


@pytest.fixture(params=VERSIONS)
def ocpp(request: pytest.FixtureRequest) -> OcppVersion:
    """Each OCPP version in turn."""
    return ocpp_version(request.param)


@pytest.fixture
async def csms(ocpp: OcppVersion, make_csms: object) -> AsyncIterator[CsmsEmulator]:
    """The CSMS emulator of the `ocpp` version, on 127.0.0.1."""
    del make_csms  # its teardown checks for leftover tasks after this one stopped
    async with ocpp.make_csms() as emulator:
        yield emulator


@contextlib.asynccontextmanager
async def logged_agent(process: AgentProcess) -> AsyncIterator[AgentProcess]:
    """Yield ``process``; afterwards close it and print its log (pytest shows it only
    when the test failed)."""
    try:
        yield process
    finally:
        await process.close()
        print(f"----- agent log ({process.log_path}) -----\n{process.log_text()}")


async def boot(agent: AgentProcess, csms: CsmsEmulator) -> ReceivedCall:
    """(Re)start the agent and wait until it is registered and its EV can be driven.

    Earlier runs are dead (killed and disconnected), so the next BootNotification
    comes from this one; it is returned.
    """
    boots = len(csms.calls("BootNotification", agent.charge_point_id))
    await agent.start()
    boot_call = await csms.wait_for("BootNotification", count=boots + 1, timeout_s=GUARD_S)
    await agent.wait_control_socket()
    return boot_call


async def restart_offline(agent: AgentProcess) -> None:
    """Restart while the CSMS is unreachable: the control socket proves it is up."""
    await agent.start()
    await agent.wait_control_socket()


async def wait_start(csms: CsmsEmulator, ocpp: OcppVersion, count: int = 1) -> ReceivedCall:
    """Wait for the ``count``-th transaction start (1.6 StartTransaction, 2.0.1
    TransactionEvent Started) and return it."""
    return await csms.wait_for(
        ocpp.start_action,
        predicate=lambda c: bool(ocpp.starts([c])),
        count=count,
        timeout_s=GUARD_S,
    )


async def charge(
    agent: AgentProcess, csms: CsmsEmulator, ocpp: OcppVersion, tag: str
) -> ReceivedCall:
    """Boot, plug in, swipe ``tag``; wait for the transaction's start and its answer;
    return the start."""
    await boot(agent, csms)
    await agent.sim("plug")
    await agent.sim("swipe", tag)
    start = await wait_start(csms, ocpp)
    await csms.wait_answer(start, timeout_s=GUARD_S)
    return start


async def wait_drained(agent: AgentProcess) -> None:
    """Wait until the journal has nothing queued and no transaction running."""
    await wait_journal(
        agent.data_dir,
        lambda j: not j.queue and not j.running,
        what="an empty queue and no running transaction",
    )


async def kill_at_random_points(
    agent: AgentProcess,
    csms: CsmsEmulator,
    rng: random.Random,
    kills: int,
    run_cycle: RunCycle,
    plan: list[str],
) -> list[ConnectionLoss]:
    """Run the agent ``kills`` times, SIGKILLing each run at a seeded random point.

    Points (`kill_schedule`): 0: during start-up, n: after step n of ``run_cycle``; then
    a random delay, or none: the kill lands while the message the CSMS just got is in
    flight. Appends one line per run to ``plan``; returns the losses in order.
    """
    losses: list[ConnectionLoss] = []
    for kill_step in kill_schedule(rng, kills):
        in_flight = kill_step > 0 and rng.random() < 0.5
        jitter_s = 0.0 if in_flight else round(rng.uniform(0.0, 0.8 if kill_step else 1.5), 3)
        plan.append(f"run {agent.runs + 1}: kill after step {kill_step} + {jitter_s} s")
        if kill_step == 0:
            await agent.start()
        else:
            await boot(agent, csms)
            await run_cycle(kill_step)
        if jitter_s:  # the random part of the kill moment itself, not a wait for anything
            await asyncio.sleep(jitter_s)
        losses.append(await kill_agent(agent, csms))
    return losses


async def last_clean_session(
    agent: AgentProcess, csms: CsmsEmulator, run_cycle: RunCycle
) -> JournalSnapshot:
    """A last whole session, then let everything drain and stop the agent cleanly.

    Returns:
        The final journal.
    """
    await boot(agent, csms)
    await run_cycle(None)
    await wait_drained(agent)
    assert await agent.terminate() == 0
    return read_journal(agent.data_dir)
