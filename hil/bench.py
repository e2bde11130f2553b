"""``python -m hil.bench``: latency, footprint and throughput of the agent.

Prints one JSON object on stdout (progress goes to stderr). Timings are
percentiles or ratios from one run, so a shared machine skews them less than
absolute numbers; nothing here is asserted in the test suite.

Keys:
    safety_open_ms_p50 / _p99: the EV leaves C (to B, or to A every 10th trial)
        until the contactor coil pin is off; 200 trials.
    safety_open_ms_p50_gpio / _p99_gpio: the same on the GPIO drivers
        (``hal.sim.cp_adc.SimGpioBoard``): the EV leaves C, i.e. the voltage at the
        mock MCP3008 changes, until the coil pin reads low; the pilot polls the ADC
        every ``GPIO_POLL_INTERVAL_S`` with 2-sample debounce. Target <= 10 ms.
    safety_open_ms_p50_rapi / _p99_rapi: the same over OpenEVSE RAPI on a pty
        (``hal.sim.rapi_controller``): the simulated EV leaves C until the simulated
        controller has received the ``$FS`` that opens its relay. Target <= 25 ms.
    remote_start_to_contactor_ms_p50: RemoteStartTransaction sent by the CSMS with
        the EV waiting in B until the coil is on.
    boot_to_boot_notification_ms: ``python -m agent run --sim`` spawned until the
        CSMS received BootNotification, with the agent's bytecode compiled first (as
        on an installed charger: pip compiles on install; without it, as under
        ``PYTHONDONTWRITEBYTECODE``, every start recompiles the agent, +200-300 ms).
    rss_mb: that agent process after 60 s with a session running, 1 s sampling.
    cpu_pct_idle / cpu_pct_charging: its CPU use (percent of one core) while
        connected and idle, and while charging.
    outbox_replay_msgs_per_s: 10,000 queued MeterValues replayed after reconnect.
    roundtrip_floor_msgs_per_s: a bare ``ocpp`` ChargePoint sending the same
        messages to the same emulator in the same run.
    replay_ratio: replay / floor.
    profile_to_duty_ms_p50: SetChargingProfile sent by the CSMS while charging until
        the PWM duty changed.
    composite_schedule_us_p50: the composite schedule of 42 stacked profiles over the
        three purposes (24 h, 8 periods each).
    meter_read_ms_p50_tcp / _rtu: see ``hil.bench_meter``.
    firmware_download_ratio / _mb_per_s / _peak_rss_mb, firmware_idle_rss_mb: a 200 MB
        firmware download vs. plain urllib, and its memory; see ``hil.bench_firmware``.
    cpu_us_per_message, bare_cpu_us_per_message, cpu_ratio_vs_bare_ocpp: agent process
        CPU per transaction message vs. a bare ``ocpp`` client; see ``hil.bench_cpu``.

``--ocpp 2.0.1``: the latency, process and cpu parts (the default then) run a 2.0.1
agent against ``hil.csms201`` (remote start: RequestStartTransaction; the profile
trials and profile_to_duty_ms_p50 are 1.6 only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ocpp.v16 import ChargePoint, call
from websockets.asyncio.client import connect

from agent.app import App
from agent.config import parse_config, sim_defaults
from agent.console.sim_control import send_command, socket_path
from hil.bench_cpu import meter_sample as _sample
from hil.bench_cpu import queue_transaction
from hil.csms import CP_TO_CSMS, CsmsEmulator
from hil.csms201 import CsmsEmulator201

SAFETY_TRIALS = 200
REMOTE_START_TRIALS = 30
PROFILE_TRIALS = 30
COMPOSITE_TRIALS = 200
REPLAY_MESSAGES = 10_000
WARMUP_MESSAGES = 2_000
RSS_WINDOW_S = 60.0
IDLE_WINDOW_S = 10.0
STEP_TIMEOUT_S = 20.0


def progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


async def until(predicate: Callable[[], bool], timeout_s: float = STEP_TIMEOUT_S) -> float:
    """Spin the loop until ``predicate()``; returns perf_counter() when it held.

    Yields to the event loop on every check, so the agent runs in between and the
    resolution is one loop iteration (microseconds), not a sleep period.
    """
    deadline = time.perf_counter() + timeout_s
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0)
    return time.perf_counter()


async def in_process_agent(
    csms: CsmsEmulator,
    tmp: Path,
    body: Callable[[App], Awaitable[dict[str, Any]]],
    version: str = "1.6",
) -> dict[str, Any]:
    data = sim_defaults(tmp, csms.url, "BENCH-CP")
    data["csms"]["ocpp_version"] = version
    data["ocpp"] = {"meter_value_sample_interval_s": 0}
    app = App(parse_config(data))
    runner = asyncio.create_task(app.run())
    try:
        await asyncio.wait_for(app.started.wait(), STEP_TIMEOUT_S)
        await csms.wait_for("BootNotification", timeout_s=STEP_TIMEOUT_S)
        return await body(app)
    finally:
        app.stop()
        await runner


async def bench_safety_and_remote_start(
    csms: CsmsEmulator, tmp: Path, version: str = "1.6"
) -> dict[str, Any]:
    async def body(app: App) -> dict[str, Any]:
        rig = app.rigs[1]
        ctl = app.station.controllers[1] if app.station else None
        assert ctl is not None
        rig.apply("plug")
        rig.apply("swipe", "BENCH")
        await until(rig.coil_is_on)
        opens_ms: list[float] = []
        for trial in range(SAFETY_TRIALS):
            to_a = trial % 10 == 9
            t0 = time.perf_counter()
            rig.apply("unplug" if to_a else "pause")
            opens_ms.append((await until(lambda: not rig.coil_is_on()) - t0) * 1000)
            if to_a:
                await until(lambda: ctl.transaction is None)
                rig.apply("plug")
                rig.apply("swipe", "BENCH")
            else:
                rig.apply("resume")
            await until(rig.coil_is_on)
        progress(f"safety: {SAFETY_TRIALS} trials")

        # remote start: EV waiting in B with no transaction
        start_ms: list[float] = []
        for _ in range(REMOTE_START_TRIALS):
            tx = ctl.transaction
            assert tx is not None
            rig.apply("swipe", tx.id_tag)  # local stop: the EV stays plugged and goes to B
            # wait until the EV is in B and the controller knows it: a start sent while
            # the stop is still being journalled finds the EV in C, not waiting in B
            await until(
                lambda: (
                    ctl.transaction is None
                    and not rig.coil_is_on()
                    and ctl.state.plugged
                    and not ctl.state.power_requested
                )
            )
            t0 = time.perf_counter()
            await csms.call("BENCH-CP", _remote_start(version, remote_start_id=len(start_ms)))
            start_ms.append((await until(rig.coil_is_on) - t0) * 1000)
        progress(f"remote start: {REMOTE_START_TRIALS} trials")
        figures = {
            "safety_open_ms_p50": round(percentile(opens_ms, 50), 3),
            "safety_open_ms_p99": round(percentile(opens_ms, 99), 3),
            "remote_start_to_contactor_ms_p50": round(percentile(start_ms, 50), 3),
        }
        if version != "1.6":  # the profile trials send 1.6 SetChargingProfile
            return figures

        # SetChargingProfile (a TxDefaultProfile stepping down by 0.5 A from 31 A) sent
        # by the CSMS while charging, until the PWM duty the EV sees has changed. Only
        # decreases: a higher duty is held until 5 s after the last change (REFERENCE 1.4)
        duty_ms: list[float] = []
        for trial in range(PROFILE_TRIALS):
            limit_a = 31.0 - trial * 0.5
            before = rig.pilot.output.duty_pct
            t0 = time.perf_counter()
            await csms.call("BENCH-CP", _tx_default_profile(limit_a))

            def duty_changed(before_pct: float = before) -> bool:
                return rig.pilot.output.duty_pct != before_pct

            duty_ms.append((await until(duty_changed) - t0) * 1000)
        progress(f"profile to duty: {PROFILE_TRIALS} trials")
        return {**figures, "profile_to_duty_ms_p50": round(percentile(duty_ms, 50), 3)}

    return await in_process_agent(csms, tmp, body, version)


def _sent_since(sim: Any, command: str, mark: int) -> bool:
    """Whether the RAPI simulator received ``command`` after its ``mark``-th frame."""
    return any(c.command == command for c in list(sim.received)[mark:])


def _remote_start(version: str, remote_start_id: int) -> Any:
    """The CSMS's remote start of EVSE 1 in ``version`` (1.6 or 2.0.1)."""
    if version == "1.6":
        return call.RemoteStartTransaction(id_tag="REMOTE", connector_id=1)
    from ocpp.v201 import call as call201

    return call201.RequestStartTransaction(
        id_token={"id_token": "REMOTE", "type": "Central"},
        remote_start_id=remote_start_id,
        evse_id=1,
    )


GPIO_POLL_INTERVAL_S = 0.002
"""The GPIO pilot's ADC period in the GPIO safety bench (the shipped default is 5 ms)."""


async def bench_safety_gpio(csms: CsmsEmulator, tmp: Path) -> dict[str, Any]:
    """``safety_open_ms_*_gpio``: the real GPIO pilot and contactor drivers on mock pins."""
    from agent.app import backend_validator
    from hal.registry import default_registry
    from hal.sim.cp_adc import SimGpioBoard

    board = SimGpioBoard(poll_interval_s=GPIO_POLL_INTERVAL_S)
    await board.start()
    coil = board.pin(SimGpioBoard.COIL_PIN)
    data = sim_defaults(tmp, csms.url, "BENCH-GPIO")
    data["ocpp"] = {"meter_value_sample_interval_s": 0}
    data["evse"] = [{"id": 1, **board.evse_tables()}]
    app = App(
        parse_config(data, backend_validator(default_registry())),
        real_pin_factory=board.factory,
    )
    runner = asyncio.create_task(app.run())

    async def settle(predicate: Callable[[], bool]) -> None:
        # the observer may lag; the coil pin's own timestamp is what is measured
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not reached")
            await asyncio.sleep(0.001)

    async def remote_start() -> None:
        await csms.call("BENCH-GPIO", call.RemoteStartTransaction(id_tag="BENCH", connector_id=1))
        await settle(board.coil_is_on)

    try:
        await asyncio.wait_for(app.started.wait(), STEP_TIMEOUT_S)
        await csms.wait_for("BootNotification", cp_id="BENCH-GPIO", timeout_s=STEP_TIMEOUT_S)
        ctl = app.station.controllers[1] if app.station else None
        assert ctl is not None
        board.ev.plug()
        await remote_start()
        opens_ms: list[float] = []
        for trial in range(SAFETY_TRIALS):
            to_a = trial % 10 == 9
            t0 = time.monotonic()
            if to_a:
                board.ev.unplug()
            else:
                board.ev.pause()
            await settle(lambda: not board.coil_is_on())
            opens_ms.append((coil._last_change - t0) * 1000)  # when the pin went low
            if to_a:
                await settle(lambda: ctl.transaction is None)
                board.ev.plug()
                await remote_start()
            else:
                board.ev.resume()
                await settle(board.coil_is_on)
        progress(f"safety gpio: {SAFETY_TRIALS} trials")
    finally:
        try:
            app.stop()
            await runner
        finally:
            await board.stop()
    return {
        "safety_open_ms_p50_gpio": round(percentile(opens_ms, 50), 3),
        "safety_open_ms_p99_gpio": round(percentile(opens_ms, 99), 3),
    }


async def bench_safety_rapi(csms: CsmsEmulator, tmp: Path) -> dict[str, Any]:
    """``safety_open_ms_*_rapi``: pilot, contactor and meter as "openevse-rapi" on a pty
    to ``SimRapiController``: from the simulated EV leaving C (its CP change, stamped on
    the simulator side) until the simulator has received the ``$FS`` that opens the
    relay (``$AT`` out, the agent's interlock, ``$FS`` back)."""
    from agent.app import backend_validator
    from hal.registry import default_registry
    from hal.sim.rapi_controller import SimRapiController
    from hal.types import CpState

    sim = SimRapiController(ev_phases=1)
    await sim.start()
    link = {"backend": "openevse-rapi", "port": sim.port}
    data = sim_defaults(tmp, csms.url, "BENCH-RAPI")
    data["ocpp"] = {"meter_value_sample_interval_s": 0}
    data["evse"] = [{"id": 1, "pilot": dict(link), "contactor": dict(link), "meter": dict(link)}]
    app = App(parse_config(data, backend_validator(default_registry())))
    runner = asyncio.create_task(app.run())

    async def relay(closed: bool) -> None:
        await asyncio.wait_for(sim.wait_until(lambda: sim.relay_closed is closed), STEP_TIMEOUT_S)

    try:
        await asyncio.wait_for(app.started.wait(), STEP_TIMEOUT_S)
        await csms.wait_for("BootNotification", cp_id="BENCH-RAPI", timeout_s=STEP_TIMEOUT_S)
        sim.ev.plug()
        await csms.call("BENCH-RAPI", call.RemoteStartTransaction(id_tag="BENCH", connector_id=1))
        await relay(True)
        opens_ms: list[float] = []
        for _ in range(SAFETY_TRIALS):
            mark = len(sim.received)
            sim.ev.pause()
            left_c_s = sim.pilot.state_history[-1]
            assert left_c_s.state is CpState.B
            await asyncio.wait_for(
                sim.wait_until(functools.partial(_sent_since, sim, "FS", mark)),
                STEP_TIMEOUT_S,
            )
            fs = next(c for c in list(sim.received)[mark:] if c.command == "FS")
            opens_ms.append((fs.monotonic_s - left_c_s.monotonic_s) * 1000)
            sim.ev.resume()
            await relay(True)
        progress(f"safety rapi: {SAFETY_TRIALS} trials")
    finally:
        app.stop()
        await runner
        await sim.stop()
    return {
        "safety_open_ms_p50_rapi": round(percentile(opens_ms, 50), 3),
        "safety_open_ms_p99_rapi": round(percentile(opens_ms, 99), 3),
    }


def _tx_default_profile(limit_a: float) -> Any:
    return call.SetChargingProfile(
        connector_id=1,
        cs_charging_profiles={
            "charging_profile_id": 1,
            "stack_level": 0,
            "charging_profile_purpose": "TxDefaultProfile",
            "charging_profile_kind": "Relative",
            "charging_schedule": {
                "charging_rate_unit": "A",
                "charging_schedule_period": [{"start_period": 0, "limit": limit_a}],
            },
        },
    )


def bench_composite() -> dict[str, Any]:
    """The composite schedule of 42 stacked profiles over the three purposes (pure)."""
    from datetime import UTC, datetime

    from agent.smart_charging import (
        ChargingProfile,
        ChargingSchedule,
        Kind,
        Purpose,
        RateUnit,
        SchedulePeriod,
        composite_schedule,
    )

    start = datetime(2026, 1, 1, tzinfo=UTC)
    profiles = []
    purposes = (Purpose.CHARGE_POINT_MAX, Purpose.TX_DEFAULT, Purpose.TX)
    for i in range(42):
        purpose = purposes[i % 3]
        periods = tuple(
            SchedulePeriod(start_period_s=p * 900, limit=32.0 - ((i + p) % 20)) for p in range(8)
        )
        profiles.append(
            ChargingProfile(
                profile_id=i + 1,
                stack_level=i // 3,
                purpose=purpose,
                kind=Kind.ABSOLUTE,
                evse_id=0 if purpose is Purpose.CHARGE_POINT_MAX else 1,
                schedule=ChargingSchedule(
                    rate_unit=RateUnit.A, periods=periods, start_schedule=start
                ),
            )
        )
    timings_us = []
    for _ in range(COMPOSITE_TRIALS):
        t0 = time.perf_counter()
        composite_schedule(
            profiles,
            evse_id=1,
            start=start,
            duration_s=86_400,
            rate_unit=RateUnit.A,
            tx_start=start,
            nominal_voltage_v=230.0,
            phases=3,
        )
        timings_us.append((time.perf_counter() - t0) * 1e6)
    return {"composite_schedule_us_p50": round(percentile(timings_us, 50), 1)}


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def _cpu_pct(pid: int, window_s: float) -> float:
    cpu0, t0 = _proc_cpu_s(pid), time.monotonic()
    await asyncio.sleep(window_s)
    return (_proc_cpu_s(pid) - cpu0) / (time.monotonic() - t0) * 100


def _write_config(
    path: Path, cp_id: str, data_dir: Path, url: str, sample_interval_s: int, version: str = "1.6"
) -> Path:
    path.write_text(
        f'[station]\ncharge_point_id = "{cp_id}"\ndata_dir = "{data_dir}"\n'
        f'[csms]\nurl = "{url}"\nocpp_version = "{version}"\n'
        f"[ocpp]\nmeter_value_sample_interval_s = {sample_interval_s}\n"
        '[[evse]]\nid = 1\nmeter = { backend = "sim" }\ncontactor = { backend = "sim" }\n'
        'pilot = { backend = "sim" }\ntoken_reader = { backend = "sim" }\n'
    )
    return path


async def _compile_agent(env: dict[str, str]) -> None:
    """Compile the product packages to bytecode (``__pycache__`` beside the sources,
    as pip does on install) and let the child use it (no PYTHONDONTWRITEBYTECODE)."""
    import agent
    import firmware_update
    import hal

    env.pop("PYTHONDONTWRITEBYTECODE", None)
    packages = [str(Path(m.__file__).parent) for m in (agent, hal, firmware_update) if m.__file__]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "compileall", "-q", *packages, env=env
    )
    if await proc.wait() != 0:
        raise RuntimeError("compileall failed")


class _agent_process:
    """``python -m agent run --config F`` as a child process, terminated on exit."""

    def __init__(self, config: Path, log_path: Path, *, compiled: bool = False) -> None:
        self._config = config
        self._log_path = log_path
        self._compiled = compiled
        self.started_s = 0.0

    async def __aenter__(self) -> asyncio.subprocess.Process:
        env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
        if self._compiled:
            await _compile_agent(env)
        self._log = self._log_path.open("w")
        self.started_s = time.monotonic()
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent",
            "run",
            "--config",
            str(self._config),
            "--log-level",
            "WARNING",
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        return self._proc

    async def __aexit__(self, *exc: object) -> None:
        if self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        self._log.close()


async def bench_process(csms: CsmsEmulator, tmp: Path, version: str = "1.6") -> dict[str, Any]:
    """Boot time, CPU and RSS of a real agent process."""
    config = _write_config(tmp / "agent.toml", "BENCH-PROC", tmp / "data", csms.url, 1, version)
    started, sampled_action = (
        ("StartTransaction", "MeterValues") if version == "1.6" else ("TransactionEvent",) * 2
    )
    child = _agent_process(config, tmp / "agent.log", compiled=True)
    async with child as proc:
        boot = await csms.wait_for("BootNotification", cp_id="BENCH-PROC", timeout_s=30)
        boot_ms = (boot.monotonic_s - child.started_s) * 1000
        await csms.wait_for(  # connector 1 (1.6) / EVSE 1 connector 1 (2.0.1) reported
            "StatusNotification",
            cp_id="BENCH-PROC",
            predicate=lambda c: c.payload.get("connectorId") == 1,
            timeout_s=30,
        )
        idle = await _cpu_pct(proc.pid, IDLE_WINDOW_S)
        sock = socket_path(tmp / "data")
        await send_command(sock, 1, "plug", None)
        await send_command(sock, 1, "swipe", "BENCH")
        await csms.wait_for(started, cp_id="BENCH-PROC", timeout_s=30)
        charging = await _cpu_pct(proc.pid, RSS_WINDOW_S)
        rss = _proc_rss_mb(proc.pid)
        sampled = len(csms.calls(sampled_action, cp_id="BENCH-PROC"))
        progress(f"process: {sampled} {sampled_action} in the charging window")
    return {
        "boot_to_boot_notification_ms": round(boot_ms, 1),
        "rss_mb": round(rss, 1),
        "cpu_pct_idle": round(idle, 2),
        "cpu_pct_charging": round(charging, 2),
    }


class _Counter:
    """Counts MeterValues from one charger through the emulator's message hook
    (O(1) per message, unlike scanning ``received``) and when each arrived."""

    def __init__(self, cp_id: str, target: int) -> None:
        self.cp_id = cp_id
        self.target = target
        self.count = 0
        self.times_s: list[float] = []
        self.done = asyncio.Event()

    def hook(self, direction: str, cp_id: str, action: str, payload: dict[str, Any]) -> None:
        del payload
        if direction != CP_TO_CSMS or cp_id != self.cp_id or action != "MeterValues":
            return
        self.count += 1
        self.times_s.append(time.monotonic())
        if self.count == self.target:
            self.done.set()

    def reset(self) -> None:
        self.count = 0
        self.times_s = []
        self.done = asyncio.Event()

    def rate_per_s(self, skip: int = 0) -> float:
        times = self.times_s[skip:]
        return (len(times) - 1) / (times[-1] - times[0])


async def bench_replay(tmp: Path) -> dict[str, Any]:
    """Replay of queued MeterValues by an agent process vs. a bare ``ocpp`` client process.

    Both run as separate processes against the same emulator in this process,
    and both rates are measured the same way: first to last MeterValues received.
    """
    data_dir = tmp / "replay"
    await queue_transaction(data_dir, REPLAY_MESSAGES, id_tag="REPLAY", csms_tx_id=42)
    progress(f"replay: {REPLAY_MESSAGES} MeterValues queued")
    replay_counter = _Counter("REPLAY-CP", REPLAY_MESSAGES)
    floor_counter = _Counter("FLOOR-CP", REPLAY_MESSAGES + WARMUP_MESSAGES)

    def hook(direction: str, cp_id: str, action: str, payload: dict[str, Any]) -> None:
        replay_counter.hook(direction, cp_id, action, payload)
        floor_counter.hook(direction, cp_id, action, payload)

    async with CsmsEmulator(heartbeat_interval_s=300, on_message=hook) as csms:

        async def floor_run() -> float:
            floor_counter.reset()
            worker = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hil.bench",
                "--floor-worker",
                csms.url,
                "--count",
                str(REPLAY_MESSAGES + WARMUP_MESSAGES),
            )
            await asyncio.wait_for(floor_counter.done.wait(), 600)
            await worker.wait()
            # the floor's first WARMUP_MESSAGES only warm its caches: time the rest
            return floor_counter.rate_per_s(skip=WARMUP_MESSAGES)

        # The floor runs before and after the agent and is averaged, so that a
        # shared machine's drift during the run shifts both sides alike.
        floor_before = await floor_run()
        config = _write_config(tmp / "replay.toml", "REPLAY-CP", data_dir, csms.url, 0)
        async with _agent_process(config, tmp / "replay.log"):
            await asyncio.wait_for(replay_counter.done.wait(), 600)
        floor_after = await floor_run()
    replay = replay_counter.rate_per_s()
    floor = (floor_before + floor_after) / 2
    return {
        "outbox_replay_msgs_per_s": round(replay, 1),
        "roundtrip_floor_msgs_per_s": round(floor, 1),
        "replay_ratio": round(replay / floor, 3),
    }


async def _bare_floor(url: str, count: int) -> float:
    """The same MeterValues from a bare ``ocpp`` ChargePoint, one call at a time."""
    async with connect(f"{url}/FLOOR-CP", subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        cp = ChargePoint("FLOOR-CP", ws)
        receiver = asyncio.create_task(cp.start())
        try:
            t0 = time.monotonic()
            for i in range(count):
                sample = _sample(i)
                await cp.call(
                    call.MeterValues(
                        connector_id=1,
                        transaction_id=42,
                        meter_value=[
                            {
                                "timestamp": sample.timestamp,
                                "sampled_value": [
                                    {
                                        "value": str(int(sample.values[0].value)),
                                        "context": "Sample.Periodic",
                                        "measurand": "Energy.Active.Import.Register",
                                        "location": "Outlet",
                                        "unit": "Wh",
                                    }
                                ],
                            }
                        ],
                    )
                )
            return count / (time.monotonic() - t0)
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver


async def run_bench(parts: set[str], version: str = "1.6") -> dict[str, Any]:
    logging.basicConfig(level=logging.ERROR)
    import ocpp.messages

    ocpp.messages.ASYNC_VALIDATION = False  # the agent validates inline too: same footing
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="evse-bench-") as tmp_name:
        tmp = Path(tmp_name)
        emulator = (
            CsmsEmulator(heartbeat_interval_s=300)
            if version == "1.6"
            else CsmsEmulator201(heartbeat_interval_s=300)
        )
        async with emulator as csms:
            if "latency" in parts:
                results.update(await bench_safety_and_remote_start(csms, tmp / "latency", version))
            if "gpio" in parts:
                results.update(await bench_safety_gpio(csms, tmp / "gpio"))
            if "rapi" in parts:
                results.update(await bench_safety_rapi(csms, tmp / "rapi"))
            if "process" in parts:
                results.update(await bench_process(csms, tmp, version))
        if "replay" in parts:
            results.update(await bench_replay(tmp))
        if "cpu" in parts:
            from hil.bench_cpu import bench_cpu

            results.update(await bench_cpu(tmp / "cpu", version))
        if "composite" in parts:
            results.update(bench_composite())
        if "meter" in parts:
            from hil.bench_meter import bench_meter_read

            results.update(await bench_meter_read())
        if "firmware" in parts:
            from hil.bench_firmware import bench_firmware_download

            results.update(await bench_firmware_download())
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.bench", description=__doc__)
    parser.add_argument("--floor-worker", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=REPLAY_MESSAGES, help=argparse.SUPPRESS)
    parser.add_argument(
        "--only",
        action="append",
        choices=[
            "latency",
            "gpio",
            "rapi",
            "process",
            "replay",
            "composite",
            "meter",
            "firmware",
            "cpu",
        ],
        help="run only these parts (default: all; with --ocpp 2.0.1: latency, process, cpu)",
    )
    parser.add_argument(
        "--ocpp",
        choices=["1.6", "2.0.1"],
        default="1.6",
        help="OCPP version of the agent in the latency, process and cpu parts",
    )
    args = parser.parse_args(argv)
    if args.floor_worker:  # child process of bench_replay: the bare ocpp client
        import ocpp.messages

        ocpp.messages.ASYNC_VALIDATION = False  # as the agent does
        asyncio.run(_bare_floor(args.floor_worker, args.count))
        return 0
    default = ["latency", "gpio", "rapi", "process", "replay", "composite", "meter", "firmware"]
    if args.ocpp != "1.6":  # the other parts are 1.6-specific or do not depend on the version
        default = ["latency", "process"]
    parts = set(args.only or [*default, "cpu"])
    results = asyncio.run(run_bench(parts, args.ocpp))
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
