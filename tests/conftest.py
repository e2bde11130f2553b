"""Shared fixtures: a CSMS emulator on loopback and whole agents (``App``) run in-process.

Fixtures:

* ``make_csms(**kwargs)`` starts a ``hil.csms.CsmsEmulator`` (127.0.0.1, ephemeral port);
  ``csms`` is one with the defaults.
* ``start_app(csms, ...)`` builds an ``App`` on simulated hardware from
  ``agent.config.sim_defaults`` and runs it as a task; it returns a ``RunningApp``.

Plain helpers (import them from ``tests.conftest``): ``registered(csms)`` waits until the
agent has booted and reported its connector; ``GUARD_S`` bounds every event wait.

Teardown is strict, so a test cannot leak into the next one: every App still running is
stopped and awaited (an App that crashed fails the test), then every emulator is stopped,
then no asyncio task and no store thread may be left behind.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
from gpiozero.pins.mock import MockFactory

import agent
import hal
from agent.app import App, ExitReason
from agent.config import parse_config, sim_defaults
from agent.ocpp.v16.adapter import Trace
from hal.sim.rig import SimEvseRig
from hil.csms import CsmsEmulator, ReceivedCall

CHARGE_POINT_ID = "CP1"
# OCPP-J 1.6 4.2.3: the CALLERROR codes a 1.6 charger may send (spec spelling).
OCPP_J_16_ERROR_CODES = frozenset(
    {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    }
)

GUARD_S = 10.0
"""Upper bound for event waits: only a guard against hangs, never a delay."""

FAST_CSMS_OPTIONS: dict[str, Any] = {"reconnect_min_s": 0.05, "reconnect_max_s": 0.2}
"""``[csms]`` values every test App gets unless it overrides them: reconnect quickly."""


@dataclass
class RunningApp:
    """An ``App`` running as a task of the test's event loop.

    Attributes:
        app: The composition root (``app.rigs``, ``app.apply_sim``, ``app.station``).
        task: The ``app.run()`` task.
        data_dir: Its data directory (start another App on it to "reboot").
        charge_point_id: Identity it connects with.
    """

    app: App
    task: asyncio.Task[ExitReason]
    data_dir: Path
    charge_point_id: str
    siblings: list[RunningApp] = field(default_factory=list, repr=False)

    @property
    def rig(self) -> SimEvseRig:
        """The simulated hardware of EVSE 1."""
        return self.app.rigs[1]

    def sim(self, command: str, arg: str | None = None, evse_id: int = 1) -> str:
        """Drive the simulated EV: ``plug``, ``unplug``, ``swipe TAG``, ``fault NAME``..."""
        return self.app.apply_sim(evse_id, command, arg)

    async def stop(self) -> ExitReason:
        """Ask the App to stop and wait until ``run()`` returned (re-raises its error).

        Raises:
            AssertionError: A task running agent or HAL code outlived ``run()``.
        """
        if not self.task.done():
            self.app.stop()
        return await self.exited()

    async def exited(self, timeout_s: float = GUARD_S) -> ExitReason:
        """Wait until ``run()`` returns by itself (e.g. after a Reset) and return why.

        Raises:
            AssertionError: A task running agent or HAL code outlived ``run()``.
        """
        reason = await asyncio.wait_for(asyncio.shield(self.task), timeout_s)
        if not any(not other.task.done() for other in self.siblings):
            leftover = agent_tasks()
            for task in leftover:  # report here, once; do not let them haunt the teardown
                task.cancel()
            assert not leftover, f"tasks outlived App.run(): {leftover}"
        return reason

    async def start_charging(self, csms: CsmsEmulator, id_tag: str) -> ReceivedCall:
        """Plug in and swipe ``id_tag`` on EVSE 1; return the StartTransaction once the CSMS
        has answered it (its transaction id is in ``csms.answers[call.seq]``)."""
        already = len(csms.calls("StartTransaction"))
        self.sim("plug")
        self.sim("swipe", id_tag)
        start = await csms.wait_for("StartTransaction", count=already + 1, timeout_s=GUARD_S)
        await csms.wait_answer(start, timeout_s=GUARD_S)
        return start


async def registered(csms: CsmsEmulator, after_seq: int = 0) -> ReceivedCall:
    """Wait for a BootNotification received after ``after_seq`` and, after it, the status
    of connector 1 (the agent is then registered and reporting); return the boot CALL."""
    boot = await csms.wait_for(
        "BootNotification", predicate=lambda c: c.seq > after_seq, timeout_s=GUARD_S
    )
    await csms.wait_for(
        "StatusNotification",
        predicate=lambda c: c.seq > boot.seq and c.payload["connectorId"] == 1,
        timeout_s=GUARD_S,
    )
    return boot


def agent_tasks() -> list[asyncio.Task[Any]]:
    """Pending tasks whose coroutine is agent or HAL code (none may outlive ``App.run``)."""
    roots = tuple(os.path.join(Path(p).parent, "") for p in (agent.__file__, hal.__file__) if p)
    leftover = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if not task.done() and code is not None and code.co_filename.startswith(roots):
            leftover.append(task)
    return leftover


class StartApp(Protocol):
    """Signature of the ``start_app`` fixture."""

    def __call__(
        self,
        csms: CsmsEmulator,
        *,
        ocpp: dict[str, Any] | None = None,
        csms_options: dict[str, Any] | None = None,
        data_dir: Path | None = None,
        charge_point_id: str = CHARGE_POINT_ID,
        evse_count: int = 1,
        trace: Trace | None = None,
    ) -> Awaitable[RunningApp]: ...


@dataclass
class _Emulators:
    started: list[CsmsEmulator] = field(default_factory=list)

    async def make(self, **kwargs: Any) -> CsmsEmulator:
        emulator = CsmsEmulator(**kwargs)
        await emulator.start()
        self.started.append(emulator)
        return emulator


@pytest.fixture
async def make_csms() -> AsyncIterator[Callable[..., Awaitable[CsmsEmulator]]]:
    """Factory of started CSMS emulators: ``await make_csms(first_transaction_id=500)``.

    Keyword arguments go to ``CsmsEmulator``. At teardown every emulator is stopped and
    no asyncio task may be left running (besides the teardown itself).
    """
    emulators = _Emulators()
    yield emulators.make
    for emulator in emulators.started:
        await emulator.stop()
    current = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not leftover, f"tasks left behind: {leftover}"


@pytest.fixture
async def csms(make_csms: Callable[..., Awaitable[CsmsEmulator]]) -> CsmsEmulator:
    """A started emulator with the defaults (Accepted, heartbeat 300 s, ids from 1).

    ``boot_status`` and ``heartbeat_interval_s`` can be changed before the agent connects.
    """
    return await make_csms()


@pytest.fixture
async def start_app(
    tmp_path: Path, make_csms: Callable[..., Awaitable[CsmsEmulator]]
) -> AsyncIterator[StartApp]:
    """Factory of running Apps on simulated hardware.

    ``await start_app(csms, ocpp={...}, csms_options={...}, data_dir=...)``:

    * ``ocpp``: start-up setting values (``agent.settings`` names), the ``[ocpp]`` table;
    * ``csms_options``: ``[csms]`` values on top of the fast reconnect defaults, e.g.
      ``{"call_timeout_s": 0.5}``;
    * ``data_dir``: reuse a previous App's directory to restart "after a reboot"
      (default: a fresh directory per call);
    * ``trace``: the App's raw-frame hook, ``(direction "send" | "recv", frame)``.

    Returns once the App's controllers run and its connection task started (not once it is
    registered: wait on the emulator for that). Each App gets its own gpiozero
    ``MockFactory``. Every App still running at teardown is stopped; one whose ``run()``
    raised fails the test. The store's database thread must be gone afterwards.
    """
    del make_csms  # requested so that emulators are torn down after the Apps
    running: list[RunningApp] = []
    counter = 0

    async def start(
        csms: CsmsEmulator,
        *,
        ocpp: dict[str, Any] | None = None,
        csms_options: dict[str, Any] | None = None,
        data_dir: Path | None = None,
        charge_point_id: str = CHARGE_POINT_ID,
        evse_count: int = 1,
        trace: Trace | None = None,
    ) -> RunningApp:
        nonlocal counter
        counter += 1
        directory = data_dir if data_dir is not None else tmp_path / f"agent-{counter}"
        data = sim_defaults(directory, csms.url, charge_point_id, evse_count)
        data["csms"].update(FAST_CSMS_OPTIONS)
        data["sim"] = {"meter_fault_after_s": 2.5}  # 2.5 polls: a silent meter faults sooner
        data["csms"].update(csms_options or {})
        if ocpp:
            data["ocpp"] = dict(ocpp)
        app = App(parse_config(data), trace=trace, sim_pin_factory=MockFactory())
        task = asyncio.create_task(app.run(), name=f"app-{charge_point_id}-{counter}")
        started = asyncio.create_task(app.started.wait())
        done, _ = await asyncio.wait(
            {task, started}, timeout=GUARD_S, return_when=asyncio.FIRST_COMPLETED
        )
        if started not in done:
            started.cancel()
            await asyncio.wait({started})
        handle = RunningApp(app, task, directory, charge_point_id, running)
        running.append(handle)
        if task in done:
            task.result()  # run() ended during start-up: raise why
            raise AssertionError("App.run() returned during start-up")
        assert started in done, "App did not start within the guard time"
        return handle

    yield start
    errors: list[BaseException] = []
    for handle in running:
        try:
            await handle.stop()
        except BaseException as e:  # report every App, not only the first
            errors.append(e)
    store_threads = [t.name for t in threading.enumerate() if t.name.startswith("evse-store")]
    assert not store_threads, f"store threads left behind: {store_threads}"
    if errors:
        raise errors[0]
