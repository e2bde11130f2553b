"""CPU time per transaction message: the agent process vs. a bare ``ocpp`` ChargePoint.

``cpu_us_per_message``: one transaction with `CPU_MESSAGES` meter readings is queued
in the journal of a fresh data directory while the agent is off; then ``python -m
agent run`` starts on it and replays the queue to the CSMS emulator (1.6:
StartTransaction, MeterValues..., StopTransaction; 2.0.1: TransactionEvent Started,
Updated..., Ended). The agent process's CPU time (``/proc/<pid>/stat`` utime + stime)
is read when the emulator receives the `CPU_WARMUP_MESSAGES`-th meter message and
when it receives the last one; the delta divided by the messages in between is the
CPU per message exchange (send a CALL, receive its CALLRESULT, journal bookkeeping).

``bare_cpu_us_per_message``: a child process with a bare ``ocpp.v16`` /
``ocpp.v201`` ChargePoint sends the very payloads the agent sent (recorded by the
emulator), one CALL at a time, to the same emulator right after the agent, measured
the same way. ``cpu_ratio_vs_bare_ocpp`` = agent / bare (target <= 1.5). The pair runs
`CPU_ROUNDS` times; the figures of the pair with the median ratio are reported.

Both sides validate messages inline (``ocpp.messages.ASYNC_VALIDATION = False``, as
the agent does), so the ratio compares the agent's own overhead, not thread pools.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agent.events import MeterSample, ReadingContext, SampledValue, StopReason
from agent.persistence.store import Store
from agent.transactions.journal import TransactionJournal
from hil.bare_cp import receive_loop
from hil.csms import CP_TO_CSMS, CsmsEmulator
from hil.csms201 import CsmsEmulator201

CPU_MESSAGES = 3_000
"""Meter messages queued for the agent (and sent by the bare client)."""
CPU_WARMUP_MESSAGES = 300
"""Messages before the CPU clock starts (imports, caches, connection set-up)."""
CPU_ROUNDS = 3
"""Agent/bare pairs, each pair back to back; the pair with the median ratio is
reported. A shared machine's load drifts over minutes: the two sides of one pair see
about the same machine, and one disturbed pair cannot move the median."""
AGENT_ID = "CPU-AGENT"
BARE_ID = "CPU-BARE"
STEP_TIMEOUT_S = 600.0

_METER_ACTION = {"1.6": "MeterValues", "2.0.1": "TransactionEvent"}
_SUBPROTOCOL = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}
_CAMEL_BOUNDARY = re.compile(r"(?<!^)(?=[A-Z])")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU time (s) of process ``pid`` so far, from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def meter_sample(i: int) -> MeterSample:
    """The ``i``-th periodic energy reading of a bench transaction (Wh, 0.1 s apart)."""
    return MeterSample(
        timestamp=f"2026-01-01T00:{i // 600 % 60:02d}:{i // 10 % 60:02d}.{i % 10}00Z",
        context=ReadingContext.SAMPLE_PERIODIC,
        values=(SampledValue("Energy.Active.Import.Register", 1000 + i, "Wh"),),
    )


async def queue_transaction(
    data_dir: Path, count: int, *, id_tag: str = "CPU-BENCH", csms_tx_id: int | None = None
) -> None:
    """Journal one whole transaction (start, ``count`` meter readings, stop), unsent.

    Args:
        data_dir: The agent's data directory (its journal is opened and closed here).
        count: Meter readings (`meter_sample` 0 to ``count - 1``).
        id_tag: The transaction's idTag.
        csms_tx_id: If set, the start counts as answered by the CSMS with this
            transaction id, so only the readings and the stop are left to send.
    """
    store = await Store.open(data_dir)
    try:
        journal = TransactionJournal(store)
        tx = await journal.begin(
            evse_id=1,
            connector_id=1,
            id_tag=id_tag,
            meter_start_wh=1000,
            timestamp="2026-01-01T00:00:00.000Z",
        )
        if csms_tx_id is not None:
            start = await journal.next_message()
            assert start is not None
            await journal.acknowledge_start(start.seq, csms_tx_id, "Accepted")
        for i in range(count):
            await journal.record_meter(tx.tx_id, meter_sample(i), 1000 + i)
        await journal.end(
            tx.tx_id,
            reason=StopReason.LOCAL,
            meter_stop_wh=1000 + count,
            timestamp="2026-01-01T03:00:00.000Z",
        )
    finally:
        await store.close()


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def _write_config(path: Path, data_dir: Path, url: str, version: str) -> Path:
    path.write_text(
        f'[station]\ncharge_point_id = "{AGENT_ID}"\ndata_dir = "{data_dir}"\n'
        f'[csms]\nurl = "{url}"\nocpp_version = "{version}"\n'
        "[ocpp]\nmeter_value_sample_interval_s = 0\n"
        '[[evse]]\nid = 1\nmeter = { backend = "sim" }\ncontactor = { backend = "sim" }\n'
        'pilot = { backend = "sim" }\ntoken_reader = { backend = "sim" }\n'
    )
    return path


class _CpuClock:
    """Reads a process's CPU time at the warm-up and the last meter message of one charger
    (called from the emulator's message hook, so the reading is taken on arrival)."""

    def __init__(self, cp_id: str, action: str, total: int) -> None:
        self.cp_id = cp_id
        self.action = action
        self.total = total
        self.pid = 0
        self.count = 0
        self.payloads: list[dict[str, Any]] = []
        self.cpu_s: list[float] = []
        self.done = asyncio.Event()

    def hook(self, direction: str, cp_id: str, action: str, payload: dict[str, Any]) -> None:
        if direction != CP_TO_CSMS or cp_id != self.cp_id or action != self.action:
            return
        if action == "TransactionEvent" and payload.get("eventType") != "Updated":
            self.payloads.append(payload)  # Started / Ended: replayed, not timed
            return
        self.payloads.append(payload)
        self.count += 1
        if self.count in (CPU_WARMUP_MESSAGES, self.total):
            self.cpu_s.append(proc_cpu_s(self.pid))
        if self.count == self.total:
            self.done.set()

    def us_per_message(self) -> float:
        return (self.cpu_s[1] - self.cpu_s[0]) / (self.total - CPU_WARMUP_MESSAGES) * 1e6


async def _agent_run(config: Path, log_path: Path, clock: _CpuClock) -> None:
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
    with log_path.open("w") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent",
            "run",
            "--config",
            str(config),
            "--log-level",
            "WARNING",
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        clock.pid = proc.pid
        try:
            await asyncio.wait_for(clock.done.wait(), STEP_TIMEOUT_S)
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def _bare_run(url: str, version: str, payloads: Path, clock: _CpuClock) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hil.bench_cpu",
        "--bare",
        url,
        "--ocpp",
        version,
        "--payloads",
        str(payloads),
    )
    clock.pid = proc.pid
    try:
        await asyncio.wait_for(clock.done.wait(), STEP_TIMEOUT_S)
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def bench_cpu(
    tmp: Path, version: str, count: int = CPU_MESSAGES, rounds: int = CPU_ROUNDS
) -> dict[str, Any]:
    """CPU per transaction message exchange: agent process vs. a bare ``ocpp`` client.

    Args:
        tmp: A scratch directory (the agent's data directories and logs go below it).
        version: "1.6" (MeterValues) or "2.0.1" (TransactionEvent Updated).
        count: Meter messages per side (the first `CPU_WARMUP_MESSAGES` are not timed).
        rounds: Agent/bare pairs run back to back (see `CPU_ROUNDS`).

    Returns:
        ``cpu_us_per_message``, ``bare_cpu_us_per_message``, ``cpu_ratio_vs_bare_ocpp``
        of the pair with the median ratio.

    Raises:
        TimeoutError: A side did not deliver every message within `STEP_TIMEOUT_S`.
    """
    action = _METER_ACTION[version]
    listening: list[_CpuClock] = []

    def hook(direction: str, cp_id: str, action: str, payload: dict[str, Any]) -> None:
        for clock in listening:
            clock.hook(direction, cp_id, action, payload)

    emulator: CsmsEmulator
    if version == "2.0.1":
        emulator = CsmsEmulator201(heartbeat_interval_s=300, on_message=hook)
    else:
        emulator = CsmsEmulator(heartbeat_interval_s=300, on_message=hook)
    pairs: list[tuple[float, float]] = []  # (agent, bare) us per message
    async with emulator as csms:
        for n in range(rounds):
            name = f"cpu-{version}-{n}"
            data_dir = tmp / name
            await queue_transaction(data_dir, count)
            agent_clock = _CpuClock(AGENT_ID, action, count)
            listening[:] = [agent_clock]
            config = _write_config(tmp / f"{name}.toml", data_dir, csms.url, version)
            await _agent_run(config, tmp / f"{name}.log", agent_clock)
            # the bare client sends what the agent just sent (so it cannot go first)
            payloads = _write_json(tmp / f"{name}-payloads.json", agent_clock.payloads)
            bare_clock = _CpuClock(BARE_ID, action, count)
            listening[:] = [bare_clock]
            await _bare_run(csms.url, version, payloads, bare_clock)
            pairs.append((agent_clock.us_per_message(), bare_clock.us_per_message()))
    agent_us, bare_us = sorted(pairs, key=lambda pair: pair[0] / pair[1])[len(pairs) // 2]
    return {
        "cpu_us_per_message": round(agent_us, 1),
        "bare_cpu_us_per_message": round(bare_us, 1),
        "cpu_ratio_vs_bare_ocpp": round(agent_us / bare_us, 3),
    }


# ----------------------------------------------------------- the bare client


def _snake_keys(payload: dict[str, Any]) -> dict[str, Any]:
    """Top-level keys as the ``ocpp`` payload classes take them (nested keys stay camelCase:
    the library converts keys recursively, and camelCase converts to itself)."""
    return {_CAMEL_BOUNDARY.sub("_", k).lower(): v for k, v in payload.items()}


async def bare_client(url: str, version: str, payloads: list[dict[str, Any]]) -> None:
    """Send ``payloads`` (camelCase, as recorded) from a bare ``ocpp`` ChargePoint, one CALL
    at a time."""
    import ocpp.messages
    from websockets.asyncio.client import connect

    ocpp.messages.ASYNC_VALIDATION = False  # as the agent does
    if version == "2.0.1":
        from ocpp.v201 import ChargePoint as ChargePoint201
        from ocpp.v201 import call as call201

        def message(payload: dict[str, Any]) -> Any:
            return call201.TransactionEvent(**_snake_keys(payload))

        factory: Any = ChargePoint201
    else:
        from ocpp.v16 import ChargePoint as ChargePoint16
        from ocpp.v16 import call as call16

        def message(payload: dict[str, Any]) -> Any:
            return call16.MeterValues(**_snake_keys(payload))

        factory = ChargePoint16
    async with connect(f"{url}/{BARE_ID}", subprotocols=[_SUBPROTOCOL[version]]) as ws:  # type: ignore[list-item]
        cp = factory(BARE_ID, ws)
        async with receive_loop(cp):
            for payload in payloads:
                await cp.call(message(payload))


def main(argv: list[str] | None = None) -> int:
    """``python -m hil.bench_cpu [--ocpp V]``: print the three keys as JSON."""
    parser = argparse.ArgumentParser(prog="python -m hil.bench_cpu", description=__doc__)
    parser.add_argument("--ocpp", choices=["1.6", "2.0.1"], default="1.6")
    parser.add_argument("--count", type=int, default=CPU_MESSAGES)
    parser.add_argument("--bare", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--payloads", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare:
        payloads = json.loads(args.payloads.read_text())
        asyncio.run(bare_client(args.bare, args.ocpp, payloads))
        return 0
    import tempfile

    with tempfile.TemporaryDirectory(prefix="evse-bench-cpu-") as tmp:
        t0 = time.monotonic()
        results = asyncio.run(bench_cpu(Path(tmp), args.ocpp, args.count))
    print(f"bench: cpu part took {time.monotonic() - t0:.1f} s", file=sys.stderr)
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
