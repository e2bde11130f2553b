"""Power-loss test equipment: the agent as a real process, its journal, and the CSMS log.

* :class:`AgentProcess` runs ``python -m agent run --config F --sim`` as a subprocess
  (stdout/stderr appended to one log file across restarts), drives its simulated EV
  through the control socket and ends it with SIGKILL (the power cut) or SIGTERM.
* :func:`read_journal` reads ``<data-dir>/agent.db`` read-only (WAL lets a second
  process read while the agent writes) into a :class:`JournalSnapshot`;
  :func:`wait_journal` waits for a condition on it.
* :func:`check_exactly_once` checks what the CSMS emulator received against the final
  journal: nothing transaction-related lost, nothing delivered twice except the one
  resend OCPP 1.6 forces after a lost answer.

Waiting on another process's disk state or control socket has no event to await, so
:func:`wait_journal` and :meth:`AgentProcess.wait_control_socket` poll, bounded by a
timeout. Everything else waits on the emulator's conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.console.sim_control import send_command, socket_path
from hil.csms import Answer, CallErrorReply, CsmsEmulator, ReceivedCall

TX_ACTIONS = frozenset({"StartTransaction", "MeterValues", "StopTransaction"})
"""OCPP 1.6 transaction-related messages (1.6 3.7): the ones the journal must deliver."""

ENERGY_MEASURAND = "Energy.Active.Import.Register"
OcppSetting = int | bool | str | Sequence[str]
"""A value of the ``[ocpp]`` table (lists: arrays of strings)."""
POLL_INTERVAL_S = 0.02
"""Period of the bounded polls of the journal and the control socket, s."""

REPO_ROOT = Path(__file__).resolve().parents[2]

KILL_SEED = int(os.environ.get("EVSE_POWERLOSS_SEED", "1616"))
"""Seed of the random kill tests (soak: ``EVSE_POWERLOSS_SEED=7``)."""
CYCLE_STEPS = 5
"""Kill points of a charging cycle: plug, swipe+start, 1st and 2nd meter value, unplug+end."""


# ------------------------------------------------------------------ config


def write_config(
    path: Path,
    *,
    csms_url: str,
    charge_point_id: str,
    data_dir: Path,
    ocpp: Mapping[str, OcppSetting] | None = None,
    ocpp_version: str = "1.6",
) -> Path:
    """Write the agent's TOML config for a power-loss test and return ``path``.

    Fast timing for tests: a meter sample every 1 s, transaction messages retried
    after 1 s, reconnects within 0.1-0.5 s; unknown tokens may start offline so a
    transaction can begin while the CSMS is unreachable.

    Args:
        path: Where to write the file.
        csms_url: The CSMS base URL (the agent appends its id).
        charge_point_id: The charge point identity.
        data_dir: The agent's data directory (the journal lives there).
        ocpp: Extra or overriding ``[ocpp]`` settings.
        ocpp_version: ``csms.ocpp_version`` ("1.6" or "2.0.1").
    """
    settings: dict[str, OcppSetting] = {
        "meter_value_sample_interval_s": 1,
        "transaction_message_retry_interval_s": 1,
        "allow_offline_tx_for_unknown_id": True,
        **(ocpp or {}),
    }

    def value(v: OcppSetting) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v) if isinstance(v, int) else json.dumps(v if isinstance(v, str) else list(v))

    lines = [
        'log_level = "INFO"',
        "",
        "[station]",
        f"charge_point_id = {json.dumps(charge_point_id)}",
        f"data_dir = {json.dumps(str(data_dir))}",
        'model = "evse-agent-sim"',
        f'serial_number = "SIM-{charge_point_id}"',
        "",
        "[csms]",
        f"url = {json.dumps(csms_url)}",
        f"ocpp_version = {json.dumps(ocpp_version)}",
        "reconnect_min_s = 0.1",
        "reconnect_max_s = 0.5",
        "connect_timeout_s = 5.0",
        "",
        "[ocpp]",
        *(f"{name} = {value(v)}" for name, v in settings.items()),
        "",
        "[sim]",
        "tick_interval_s = 0.1",
        "",
        "[[evse]]",
        "id = 1",
        'meter = { backend = "sim" }',
        'contactor = { backend = "sim" }',
        'pilot = { backend = "sim" }',
        'token_reader = { backend = "sim" }',
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# ----------------------------------------------------------------- process


class AgentError(AssertionError):
    """The agent process did not behave (died, refused a command, did not come up)."""


@dataclass
class AgentProcess:
    """One agent installation (config + data directory) run as a process, restartable.

    Attributes:
        config_path: The TOML config.
        data_dir: The data directory shared by every run (the "flash").
        log_path: stdout+stderr of every run, appended, with a header per run.
        charge_point_id: Its OCPP identity.
        runs: Processes started so far.
    """

    config_path: Path
    data_dir: Path
    log_path: Path
    charge_point_id: str
    runs: int = 0
    _proc: asyncio.subprocess.Process | None = field(default=None, repr=False)

    @classmethod
    def create(
        cls,
        base_dir: Path,
        *,
        csms_url: str,
        charge_point_id: str,
        ocpp: Mapping[str, OcppSetting] | None = None,
        ocpp_version: str = "1.6",
    ) -> AgentProcess:
        """Lay out config, data directory and log under ``base_dir`` (nothing runs yet)."""
        data_dir = base_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        config_path = write_config(
            base_dir / "agent.toml",
            csms_url=csms_url,
            charge_point_id=charge_point_id,
            data_dir=data_dir,
            ocpp=ocpp,
            ocpp_version=ocpp_version,
        )
        return cls(config_path, data_dir, base_dir / "agent.log", charge_point_id)

    @property
    def running(self) -> bool:
        """True while the current process has not been reaped."""
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        """Spawn ``python -m agent run --config F --sim`` (returns once it is spawned).

        Raises:
            AgentError: A previous run is still alive.
        """
        if self.running:
            raise AgentError("the agent is already running")
        self.runs += 1
        env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        with self.log_path.open("ab") as log:
            log.write(f"\n===== run {self.runs} =====\n".encode())
            log.flush()
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "agent",
                "run",
                "--config",
                str(self.config_path),
                "--sim",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=env,
            )

    async def kill(self) -> None:
        """SIGKILL the agent (a power cut: no finally, no flush) and reap it."""
        proc = self._require_proc()
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()

    async def terminate(self, timeout_s: float = 15.0) -> int:
        """SIGTERM (orderly shutdown); SIGKILL after ``timeout_s``. Returns the exit code."""
        proc = self._require_proc()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout_s)
            except TimeoutError:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                raise AgentError(f"no orderly exit within {timeout_s} s of SIGTERM") from None
        assert proc.returncode is not None
        return proc.returncode

    async def close(self) -> None:
        """Kill a still-running agent (test teardown); idempotent."""
        if self._proc is not None and self._proc.returncode is None:
            await self.kill()

    async def sim(self, command: str, arg: str | None = None, *, evse: int = 1) -> str:
        """Run a sim command (plug, unplug, swipe TOKEN, ...) and return the answer.

        Raises:
            AgentError: The agent refused it, or ignored a swipe.
            OSError: No agent listens on the control socket.
        """
        answer = await send_command(socket_path(self.data_dir), evse, command, arg)
        message = str(answer.get("message", ""))
        if not answer.get("ok") or "ignored" in message:
            raise AgentError(f"sim {command} {arg or ''}: {message}")
        return message

    async def wait_control_socket(self, timeout_s: float = 20.0) -> None:
        """Wait until the sim control socket answers (process start-up only).

        A socket file left by a killed run refuses connections until the new run
        replaces it, so this polls a ``status`` command.

        Raises:
            AgentError: The process ended, or no answer within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        path = socket_path(self.data_dir)
        while True:
            proc = self._require_proc()
            if proc.returncode is not None:
                raise AgentError(f"agent exited with {proc.returncode} during start-up")
            with contextlib.suppress(OSError):
                await send_command(path, 1, "status", None)
                return
            if time.monotonic() > deadline:
                raise AgentError(f"no control socket at {path} after {timeout_s} s")
            await asyncio.sleep(POLL_INTERVAL_S)

    def log_text(self) -> str:
        """Everything every run printed (for failure reports)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"

    def _require_proc(self) -> asyncio.subprocess.Process:
        if self._proc is None:
            raise AgentError("the agent was never started")
        return self._proc


# ----------------------------------------------------------------- journal


@dataclass(frozen=True)
class TxRow:
    """One row of the ``transactions`` table (times ISO 8601, energies Wh)."""

    tx_id: str
    connector_id: int
    id_tag: str
    start_time: str
    meter_start_wh: int
    csms_tx_id: int | None
    last_meter_wh: int | None
    last_meter_time: str | None
    stop_time: str | None
    meter_stop_wh: int | None
    stop_reason: str | None

    @property
    def running(self) -> bool:
        return self.stop_time is None


@dataclass(frozen=True)
class QueueRow:
    """One undelivered message of ``tx_queue``; ``sample_times`` are its samples' timestamps."""

    seq: int
    tx_id: str
    kind: str
    sample_times: tuple[str, ...]
    attempts: int


@dataclass(frozen=True)
class JournalSnapshot:
    """The journal tables at one moment."""

    transactions: tuple[TxRow, ...] = ()
    queue: tuple[QueueRow, ...] = ()

    def tx(self, tx_id: str) -> TxRow | None:
        return next((t for t in self.transactions if t.tx_id == tx_id), None)

    @property
    def running(self) -> tuple[TxRow, ...]:
        return tuple(t for t in self.transactions if t.running)

    def queued(self, kind: str) -> tuple[QueueRow, ...]:
        return tuple(q for q in self.queue if q.kind == kind)


def read_journal(data_dir: Path) -> JournalSnapshot:
    """Read the journal of ``<data_dir>/agent.db`` read-only.

    Safe while the agent runs (WAL: readers never block the writer) and after a
    SIGKILL (committed transactions are in the WAL). An empty snapshot means the
    database or its schema does not exist yet (killed during the first start-up).
    """
    db = data_dir / "agent.db"
    if not db.exists():
        return JournalSnapshot()
    uri = f"{db.as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as conn:
        try:
            tx_rows = conn.execute(
                "SELECT tx_id, connector_id, id_tag, start_time, meter_start_wh, csms_tx_id, "
                "last_meter_wh, last_meter_time, stop_time, meter_stop_wh, stop_reason "
                "FROM transactions ORDER BY start_time, rowid"
            ).fetchall()
            queue_rows = conn.execute(
                "SELECT seq, tx_id, kind, payload, attempts FROM tx_queue ORDER BY seq"
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return JournalSnapshot()
            raise
    return JournalSnapshot(
        transactions=tuple(TxRow(*row) for row in tx_rows),
        queue=tuple(
            QueueRow(
                seq=seq,
                tx_id=tx_id,
                kind=kind,
                sample_times=tuple(s["timestamp"] for s in json.loads(payload)["samples"]),
                attempts=attempts,
            )
            for seq, tx_id, kind, payload, attempts in queue_rows
        ),
    )


async def wait_journal(
    data_dir: Path,
    predicate: Callable[[JournalSnapshot], bool],
    *,
    what: str,
    timeout_s: float = 15.0,
) -> JournalSnapshot:
    """Poll the journal until ``predicate`` holds and return that snapshot.

    Raises:
        TimeoutError: Not within ``timeout_s``; the message shows the last snapshot.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        snapshot = read_journal(data_dir)
        if predicate(snapshot):
            return snapshot
        if time.monotonic() > deadline:
            raise TimeoutError(f"journal never showed {what} within {timeout_s} s: {snapshot}")
        await asyncio.sleep(POLL_INTERVAL_S)


# ------------------------------------------------------- kills and analysis


class CsmsLog(Protocol):
    """What the analysis reads of a CSMS (``CsmsEmulator`` has it)."""

    @property
    def received(self) -> Sequence[ReceivedCall]: ...

    @property
    def answers(self) -> Mapping[int, Answer]: ...


def kill_schedule(rng: random.Random, kills: int) -> list[int]:
    """Kill points: shuffled rounds over every point (0: start-up, n: after cycle step n)."""
    points: list[int] = []
    while len(points) < kills:
        round_ = list(range(CYCLE_STEPS + 1))
        rng.shuffle(round_)
        points.extend(round_)
    return points[:kills]


@dataclass(frozen=True)
class ConnectionLoss:
    """The charger's connection ended (SIGKILL or the CSMS going offline).

    Attributes:
        received_count: ``len(csms.received)`` once the emulator had read every
            frame of the lost connection. The last transaction message before it
            may have been in flight (received, its answer not yet journalled) and
            is then legitimately sent again as the first one after it.
        journal: The journal as the loss left it (for a kill: what survived).
        reason: ``"kill"`` or ``"offline"``.
    """

    received_count: int
    journal: JournalSnapshot
    reason: str = "kill"


async def kill_agent(agent: AgentProcess, csms: CsmsEmulator) -> ConnectionLoss:
    """SIGKILL the agent, let the CSMS read what it had sent, snapshot the journal."""
    await agent.kill()
    await csms.wait_disconnected(agent.charge_point_id)
    return ConnectionLoss(len(csms.received), read_journal(agent.data_dir), "kill")


async def take_offline(csms: CsmsEmulator, agent: AgentProcess) -> ConnectionLoss:
    """Make the CSMS unreachable and record the loss of the connection."""
    await csms.go_offline()
    return ConnectionLoss(len(csms.received), read_journal(agent.data_dir), "offline")


def tx_calls(csms: CsmsLog, cp_id: str) -> list[ReceivedCall]:
    """The transaction-related CALLs of one charger, in arrival order."""
    return [c for c in csms.received if c.charge_point_id == cp_id and c.action in TX_ACTIONS]


def energy_wh(meter_values: Iterable[Mapping[str, Any]]) -> list[float]:
    """The energy register readings (Wh) in OCPP 1.6 ``meterValue`` objects."""
    out = []
    for mv in meter_values:
        for sv in mv.get("sampledValue", []):
            if sv.get("measurand", ENERGY_MEASURAND) == ENERGY_MEASURAND:
                scale = 1000.0 if sv.get("unit") == "kWh" else 1.0
                out.append(float(sv["value"]) * scale)
    return out


def answered_tx_id(csms: CsmsLog, start: ReceivedCall) -> int | None:
    """The transactionId the CSMS answered a StartTransaction with (None: not answered)."""
    answer = csms.answers.get(start.seq)
    if answer is None or isinstance(answer, CallErrorReply):
        return None
    return int(answer["transactionId"])


def resends_after_losses(
    calls: Sequence[ReceivedCall], losses: Sequence[ConnectionLoss]
) -> set[int]:
    """Seqs of the CALLs that are legitimate resends.

    After each connection loss, the first transaction CALL is a legitimate resend
    when it is identical to the last one before the loss (the charger never
    journalled that answer, so it still heads the queue). OCPP 1.6 has no
    idempotency key: this is "exactly once from the charger's point of view".
    """
    resends = set()
    for loss in losses:
        before = [c for c in calls if c.seq <= loss.received_count]
        after = [c for c in calls if c.seq > loss.received_count]
        if before and after:
            last, first = before[-1], after[0]
            if (last.action, last.payload) == (first.action, first.payload):
                resends.add(first.seq)
    return resends


def _start_key(payload: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        payload.get("connectorId"),
        payload.get("idTag"),
        payload.get("meterStart"),
        payload.get("timestamp"),
    )


def check_exactly_once(
    csms: CsmsLog,
    cp_id: str,
    losses: Sequence[ConnectionLoss],
    final: JournalSnapshot,
) -> list[str]:
    """Check what the CSMS received against the drained journal; return the violations.

    Invariants (OCPP 1.6 3.7; the requirement "nothing lost, nothing twice"):

    * the queue is empty, every journal transaction ended and got a CSMS id;
    * per journal transaction exactly one StartTransaction whose answer the charger
      acknowledged (its id is the journal's), and exactly one StopTransaction with
      the journal's meterStop, timestamp and reason;
    * MeterValues unique per (transactionId, timestamp), each before its stop,
      energy between meterStart and meterStop;
    * every CALL that is not the first of its kind is a resend after a loss
      (:func:`resends_after_losses`); a CSMS transaction id the charger never acknowledged
      comes only from such a superseded start and is never used afterwards;
    * every message queued in the journal when a loss happened was delivered.
    """
    check = _Check(csms, tx_calls(csms, cp_id), losses, final)
    check.journal_drained()
    check.starts()
    check.stops_and_meter_values()
    check.queued_at_losses()
    return check.problems


class _Check:
    """One run of :func:`check_exactly_once`; collects problems instead of raising."""

    def __init__(
        self,
        csms: CsmsLog,
        calls: list[ReceivedCall],
        losses: Sequence[ConnectionLoss],
        final: JournalSnapshot,
    ) -> None:
        self.csms = csms
        self.calls = calls
        self.losses = losses
        self.final = final
        self.resends = resends_after_losses(calls, losses)
        self.problems: list[str] = []
        self.by_csms_id: dict[int, TxRow] = {}
        self.meter_of: dict[tuple[int, str], list[ReceivedCall]] = {}

    def once(self, group: Sequence[ReceivedCall], what: str) -> None:
        """Every copy after the first must be a resend after a loss."""
        for extra in group[1:]:
            if extra.seq not in self.resends:
                self.problems.append(
                    f"{what} received {len(group)} times (#{extra.seq} not a resend)"
                )

    def journal_drained(self) -> None:
        if self.final.queue:
            self.problems.append(f"tx_queue not empty: {self.final.queue}")
        for tx in self.final.transactions:
            if tx.running:
                self.problems.append(f"transaction {tx.tx_id} never ended")
            if tx.csms_tx_id is None:
                self.problems.append(f"transaction {tx.tx_id} never got a CSMS transaction id")
            elif tx.csms_tx_id in self.by_csms_id:
                self.problems.append(f"CSMS id {tx.csms_tx_id} acknowledged for two transactions")
            else:
                self.by_csms_id[tx.csms_tx_id] = tx

    def starts(self) -> None:
        by_content = {
            (tx.connector_id, tx.id_tag, tx.meter_start_wh, tx.start_time): tx
            for tx in self.final.transactions
        }
        copies_of: dict[str, list[ReceivedCall]] = {}
        for start in self.calls:
            if start.action != "StartTransaction":
                continue
            matched = by_content.get(_start_key(start.payload))
            if matched is None:
                self.problems.append(f"StartTransaction #{start.seq} matches no journal entry")
            else:
                copies_of.setdefault(matched.tx_id, []).append(start)
        for tx in self.final.transactions:
            copies = copies_of.get(tx.tx_id, [])
            if not copies:
                self.problems.append(f"StartTransaction of {tx.tx_id} never received")
                continue
            self.once(copies, f"StartTransaction of {tx.tx_id}")
            acked = [c for c in copies if answered_tx_id(self.csms, c) == tx.csms_tx_id]
            if len(acked) != 1 or acked[0] is not copies[-1]:
                self.problems.append(
                    f"StartTransaction of {tx.tx_id}: the acknowledged answer (id "
                    f"{tx.csms_tx_id}) is not the last of {[c.seq for c in copies]}"
                )

    def stops_and_meter_values(self) -> None:
        superseded = {
            tid
            for c in self.calls
            if c.action == "StartTransaction"
            and (tid := answered_tx_id(self.csms, c)) is not None
            and tid not in self.by_csms_id
        }
        stops_of: dict[int, list[ReceivedCall]] = {}
        energy_of: dict[int, list[float]] = {}
        for call in self.calls:
            if call.action == "StartTransaction":
                continue
            tid = int(call.payload["transactionId"])
            if tid not in self.by_csms_id:
                kind = "superseded" if tid in superseded else "unknown"
                self.problems.append(f"{call.action} #{call.seq} uses {kind} transaction id {tid}")
            elif call.action == "StopTransaction":
                stops_of.setdefault(tid, []).append(call)
            else:
                for mv in call.payload["meterValue"]:
                    self.meter_of.setdefault((tid, mv["timestamp"]), []).append(call)
                energy_of.setdefault(tid, []).extend(energy_wh(call.payload["meterValue"]))
                if tid in stops_of:
                    self.problems.append(f"MeterValues #{call.seq} of id {tid} after its stop")
        for (tid, stamp), group in self.meter_of.items():
            self.once(group, f"MeterValues ({tid}, {stamp})")
        for tid, tx in self.by_csms_id.items():
            stops = stops_of.get(tid, [])
            if not stops:
                self.problems.append(f"StopTransaction of id {tid} ({tx.tx_id}) never received")
                continue
            self.once(stops, f"StopTransaction of id {tid}")
            self.stop_matches(tx, stops[0].payload, energy_of.get(tid, []))

    def stop_matches(self, tx: TxRow, got: Mapping[str, Any], readings: list[float]) -> None:
        expected = {
            "meterStop": tx.meter_stop_wh,
            "timestamp": tx.stop_time,
            "reason": tx.stop_reason,
        }
        actual = {k: got.get(k) for k in expected}
        if actual != expected:
            self.problems.append(
                f"StopTransaction of id {tx.csms_tx_id}: {actual} != journal {expected}"
            )
        stop_wh = int(got.get("meterStop", -1))  # as the CSMS got it
        if stop_wh < tx.meter_start_wh or (readings and max(readings) > stop_wh):
            self.problems.append(
                f"id {tx.csms_tx_id}: meterStop {stop_wh} below meterStart {tx.meter_start_wh} "
                f"or a MeterValues reading (max {max(readings, default=None)})"
            )

    def queued_at_losses(self) -> None:
        """Starts and stops are covered per transaction; here the queued samples."""
        for n, loss in enumerate(self.losses, 1):
            for row in loss.journal.queue:
                queued_tx = self.final.tx(row.tx_id)
                if queued_tx is None or queued_tx.csms_tx_id is None:
                    self.problems.append(
                        f"loss {n}: queued {row.kind} of {row.tx_id} has no transaction"
                    )
                    continue
                for stamp in row.sample_times if row.kind == "meter" else ():
                    if (queued_tx.csms_tx_id, stamp) not in self.meter_of:
                        self.problems.append(
                            f"loss {n}: queued MeterValues {stamp} never delivered"
                        )
