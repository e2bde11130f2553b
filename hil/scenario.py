"""A small scenario runner: scripted steps against a running agent and a CSMS emulator.

A scenario is a list of steps; each step either acts (drives the simulated EV,
sends a CSMS command, takes the CSMS offline) or waits for something the CSMS
must receive (or, while it is offline, for a local EVSE status). Expectations are
ordered: each one waits for a match received after the previous expectation's
match. Waiting is always on conditions, never on time, so the same scenario runs
fast in tests and unchanged against slower hardware.

    steps = [
        Sim("plug"),
        ExpectStatus(1, "Preparing"),
        Sim("swipe", "TAG"),
        Expect("StartTransaction", idTag="TAG"),
        ExpectStatus(1, "Charging", contactor_on=True),
    ]
    await run_scenario(steps, app=app, csms=csms, cp_id="CP1")
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hil.csms import CsmsEmulator, ReceivedCall

DEFAULT_TIMEOUT_S = 15.0


class SimTarget(Protocol):
    """What scenarios drive: ``agent.app.App`` (or a hardware rig later)."""

    def apply_sim(self, evse_id: int, command: str, arg: str | None) -> str: ...

    def coil_is_on(self, evse_id: int) -> bool: ...

    async def wait_status(self, evse_id: int, status: str) -> None: ...


@dataclass(frozen=True)
class Sim:
    """Drive the simulated EV: plug, unplug, swipe TOKEN, pause, resume, fault NAME, clear."""

    command: str
    arg: str | None = None
    evse: int = 1


@dataclass(frozen=True)
class Csms:
    """Send a CSMS -> charger call; optionally check the answer's status.

    ``payload`` is an ``ocpp`` call payload, or a callable ``(csms, cp_id) -> payload``
    (or an awaitable of it) evaluated when the step runs, e.g. to name the transaction id
    of the latest start.
    """

    payload: Any
    status: str | None = None


@dataclass(frozen=True)
class Expect:
    """Wait until the CSMS has received the ``count``-th ``action`` whose payload
    contains ``fields`` (counting from the start of the scenario)."""

    action: str
    count: int = 1
    fields: dict[str, Any] = field(default_factory=dict)

    def __init__(self, action: str, count: int = 1, **fields: Any) -> None:
        object.__setattr__(self, "action", action)
        object.__setattr__(self, "count", count)
        object.__setattr__(self, "fields", fields)


@dataclass(frozen=True)
class ExpectStatus:
    """Wait for a StatusNotification; then optionally check the contactor coil."""

    connector: int
    status: str
    error_code: str | None = None
    contactor_on: bool | None = None


@dataclass(frozen=True)
class ExpectLocal:
    """Wait until the EVSE itself reports ``status`` (the CSMS may be offline)."""

    evse: int
    status: str
    contactor_on: bool | None = None


@dataclass(frozen=True)
class ExpectNone:
    """Assert the CSMS has received no ``action`` since the scenario started."""

    action: str


@dataclass(frozen=True)
class AllOf:
    """Expectations whose relative order is not defined (e.g. StartTransaction and
    the Charging StatusNotification travel on separate senders): each must match
    after the previous step; the scenario goes on after the last of them."""

    steps: tuple[Expect | ExpectStatus, ...]

    def __init__(self, *steps: Expect | ExpectStatus) -> None:
        object.__setattr__(self, "steps", steps)


@dataclass(frozen=True)
class Offline:
    """The CSMS becomes unreachable."""


@dataclass(frozen=True)
class Online:
    """The CSMS is reachable again."""


Step = Sim | Csms | Expect | ExpectStatus | ExpectLocal | ExpectNone | AllOf | Offline | Online


class ScenarioFailed(AssertionError):
    """A step's expectation did not hold; the message names the step."""


def _contains(actual: Any, expected: Any) -> bool:
    """``expected`` is ``actual``, or a dict whose items ``actual`` contains (recursively)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and _contains(actual[k], v) for k, v in expected.items()
        )
    return bool(actual == expected)


def _matches(call: ReceivedCall, fields: dict[str, Any]) -> bool:
    return _contains(call.payload, fields)


class _Cursor:
    """The sequence number of the last matched CSMS message."""

    def __init__(self, seq: int) -> None:
        self.seq = seq


async def run_scenario(
    steps: Sequence[Step],
    *,
    target: SimTarget,
    csms: CsmsEmulator,
    cp_id: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[ReceivedCall]:
    """Run ``steps`` in order; return what the CSMS received during the scenario.

    Raises:
        ScenarioFailed: a step's expectation failed (message: step number and step).
    """
    first_seq = csms.received[-1].seq if csms.received else 0
    cursor = _Cursor(first_seq)
    for number, step in enumerate(steps, 1):
        try:
            await asyncio.wait_for(_run_step(step, target, csms, cp_id, cursor), timeout_s)
        except (TimeoutError, AssertionError) as e:
            raise ScenarioFailed(f"step {number} {step}: {e or 'timed out'}") from e
    return [c for c in csms.received if c.seq > first_seq]


async def _wait_after(
    csms: CsmsEmulator, cursor: _Cursor, cp_id: str, action: str, fields: dict[str, Any]
) -> None:
    match = await csms.wait_for(
        action,
        cp_id=cp_id,
        predicate=lambda c: c.seq > cursor.seq and _matches(c, fields),
        timeout_s=DEFAULT_TIMEOUT_S * 4,  # the step's own timeout is the bound
    )
    cursor.seq = match.seq


async def _run_step(
    step: Step, target: SimTarget, csms: CsmsEmulator, cp_id: str, cursor: _Cursor
) -> None:
    match step:
        case Sim(command=command, arg=arg, evse=evse):
            target.apply_sim(evse, command, arg)
        case Csms(payload=payload, status=status):
            if callable(payload):
                payload = payload(csms, cp_id)
                if inspect.isawaitable(payload):
                    payload = await payload
            answer = await csms.call(cp_id, payload)
            if status is not None:
                got = getattr(answer, "status", None)
                assert got == status, f"answer status {got!r}, expected {status!r}"
        case Expect(action=action, count=count, fields=fields):
            for _ in range(count):
                await _wait_after(csms, cursor, cp_id, action, fields)
        case ExpectStatus(connector=connector, status=status, error_code=code, contactor_on=on):
            wanted: dict[str, Any] = {"connectorId": connector, "status": status}
            if code is not None:
                wanted["errorCode"] = code
            await _wait_after(csms, cursor, cp_id, "StatusNotification", wanted)
            _check_coil(target, connector, on)
        case ExpectLocal(evse=evse, status=status, contactor_on=on):
            await target.wait_status(evse, status)
            _check_coil(target, evse, on)
        case AllOf(steps=group):
            start = cursor.seq
            ends = []
            for member in group:
                branch = _Cursor(start)
                await _run_step(member, target, csms, cp_id, branch)
                ends.append(branch.seq)
            cursor.seq = max(ends)
        case ExpectNone(action=action):
            seen = [c for c in csms.calls(action, cp_id=cp_id) if c.seq > cursor.seq]
            assert not seen, f"unexpected {action}: {seen[0].payload}"
        case Offline():
            await csms.go_offline()
        case Online():
            await csms.go_online()


def _check_coil(target: SimTarget, evse_id: int, on: bool | None) -> None:
    if on is not None:
        actual = target.coil_is_on(evse_id)
        assert actual == on, f"contactor coil {'on' if actual else 'off'}"
