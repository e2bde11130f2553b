"""Command line: ``evse-agent run | demo | sim | hal check | meter read``.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import (
    SIM_BACKEND,
    AgentConfig,
    ConfigError,
    load_config,
    parse_config,
    read_toml,
    sim_defaults,
)
from agent.console.sim_control import send_command, socket_path
from hal.registry import BackendError, Registry, installed_registry

if TYPE_CHECKING:
    from agent.app import ExitReason

# The composition root (agent.app: OCPP, firmware, every service) is imported by the
# commands that build it, so "sim" and "meter read" start without loading it.

DEFAULT_CSMS_URL = "ws://127.0.0.1:9000/ocpp"
DEFAULT_ID = "EVSE-AGENT-SIM"
SIM_COMMANDS = ("plug", "unplug", "swipe", "pause", "resume", "fault", "clear", "status")


def default_sim_data_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "evse-agent"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evse-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the agent")
    run.add_argument("--config", type=Path, help="TOML config file")
    run.add_argument("--sim", action="store_true", help="simulated hardware for every EVSE")
    run.add_argument("--csms", help="CSMS base URL (the identity is appended)")
    run.add_argument("--id", dest="charge_point_id", help="charge point identity")
    run.add_argument(
        "--ocpp",
        choices=["1.6", "2.0.1", "auto"],
        help="OCPP version (auto: offer 2.0.1 and 1.6, use what the CSMS selects)",
    )
    run.add_argument("--data-dir", type=Path, help="data directory")
    run.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR")

    demo = sub.add_parser("demo", help="scripted session against a local CSMS emulator")
    demo.add_argument("--quiet", action="store_true", help="print only the summary")
    demo.add_argument(
        "--firmware", action="store_true", help="a signed firmware update instead of a session"
    )
    demo.add_argument(
        "--ocpp", choices=["1.6", "2.0.1"], default="1.6", help="OCPP version of the session demo"
    )

    sim = sub.add_parser("sim", help="drive the simulated EV of a running --sim agent")
    sim.add_argument("action", choices=SIM_COMMANDS)
    sim.add_argument("arg", nargs="?", help="TOKEN for swipe, NAME for fault")
    sim.add_argument("--evse", type=int, default=1)
    sim.add_argument("--data-dir", type=Path)
    sim.add_argument("--config", type=Path)

    hal = sub.add_parser("hal", help="technician: probe the configured hardware")
    hal_sub = hal.add_subparsers(dest="hal_command", required=True)
    check = hal_sub.add_parser("check", help="probe every device; PASS/FAIL; exit 1 on a FAIL")
    check.add_argument("--config", type=Path, required=True, help="TOML config file")
    check.add_argument("--timeout", type=float, default=3.0, help="longest look per device, s")

    meter = sub.add_parser("meter", help="technician: talk to an energy meter")
    meter_sub = meter.add_subparsers(dest="meter_command", required=True)
    read = meter_sub.add_parser("read", help="read one Modbus meter once and print it")
    read.add_argument("--model", required=True, help="sdm630, sdm72dm2, ... or a map file")
    where = read.add_mutually_exclusive_group(required=True)
    where.add_argument("--host", help="Modbus TCP host")
    where.add_argument("--serial", help="RS-485 serial device (Modbus RTU)")
    read.add_argument("--port", type=int, default=502, help="Modbus TCP port")
    read.add_argument("--baud", type=int, default=9600)
    read.add_argument("--parity", choices=["N", "E", "O"], default="N")
    read.add_argument("--stopbits", type=int, choices=[1, 2], default=1)
    read.add_argument("--device-id", type=int, default=1)
    read.add_argument("--timeout", type=float, default=1.0, help="answer timeout, s")
    read.add_argument("--json", action="store_true", help="one JSON object")
    return parser


def backend_registry() -> Registry:
    """The built-in backends and the installed plug-ins, for every command.

    Raises:
        ConfigError: An installed plug-in is broken (named in the message).
    """
    try:
        return installed_registry()
    except BackendError as e:
        raise ConfigError(f"backend plug-in: {e}") from None


def resolve_run_config(args: argparse.Namespace, registry: Registry | None = None) -> AgentConfig:
    """The config for ``run``: file or built-in sim defaults, then overrides,
    checked against ``registry`` (default: ``backend_registry()``).

    Raises:
        ConfigError: invalid file, or no file without ``--sim``.
    """
    from agent.app import backend_validator

    validate = backend_validator(registry or backend_registry())
    data: dict[str, Any]
    if args.config is not None:
        data = read_toml(args.config)
    elif args.sim:
        data = sim_defaults(
            args.data_dir or default_sim_data_dir(),
            args.csms or DEFAULT_CSMS_URL,
            args.charge_point_id or DEFAULT_ID,
        )
    else:
        raise ConfigError("--config: required (or use --sim for built-in simulated hardware)")
    station = data.setdefault("station", {})
    csms = data.setdefault("csms", {})
    if args.csms:
        csms["url"] = args.csms
    if args.charge_point_id:
        station["charge_point_id"] = args.charge_point_id
    if args.data_dir:
        station["data_dir"] = str(args.data_dir)
    if args.ocpp:
        csms["ocpp_version"] = args.ocpp
    if args.log_level:
        data["log_level"] = args.log_level.upper()
    if args.sim:
        for evse in data.get("evse", []):
            for role in ("meter", "contactor", "pilot", "token_reader"):
                evse[role] = {"backend": SIM_BACKEND}
    return parse_config(data, validate)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The ocpp library logs every frame at INFO; the agent logs what matters.
    logging.getLogger("ocpp").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    logging.getLogger("pymodbus").setLevel(logging.WARNING)


async def _run_app(config: AgentConfig, registry: Registry) -> ExitReason:
    from agent.app import App

    app = App(config, registry=registry)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, app.stop)
    return await app.run()


def cmd_run(args: argparse.Namespace) -> int:
    from agent.app import ExitReason
    from firmware_update.diagnostics import ensure_file_log

    try:
        registry = backend_registry()
        config = resolve_run_config(args, registry)
    except ConfigError as e:
        print(f"evse-agent: config error: {e}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    # diagnostics bundles (GetDiagnostics / GetLog) upload this rotating file log
    ensure_file_log(config.station.data_dir)
    reason = asyncio.run(_run_app(config, registry))
    if reason == ExitReason.RESET:
        # OCPP Reset: restart the whole process (a new boot, BootNotification again).
        logging.getLogger(__name__).warning("restarting after Reset")
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", "agent", *sys.argv[1:]])
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    data_dir = args.data_dir
    if data_dir is None and args.config is not None:
        try:
            data_dir = load_config(args.config).station.data_dir
        except ConfigError as e:
            print(f"evse-agent: config error: {e}", file=sys.stderr)
            return 2
    path = socket_path(data_dir or default_sim_data_dir())
    if args.action in ("swipe", "fault") and not args.arg:
        print(f"evse-agent sim {args.action}: needs an argument", file=sys.stderr)
        return 2
    try:
        answer = asyncio.run(send_command(path, args.evse, args.action, args.arg))
    except OSError as e:
        print(f"evse-agent sim: no running --sim agent at {path} ({e.strerror})", file=sys.stderr)
        return 1
    print(answer.get("message", json.dumps(answer)))
    return 0 if answer.get("ok") else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from hil.demo import run_demo, run_firmware_demo

    demo = run_firmware_demo if args.firmware else run_demo
    if args.ocpp == "2.0.1" and not args.firmware:
        from hil.demo201 import run_demo201

        demo = run_demo201
    code: int = asyncio.run(demo(quiet=args.quiet))
    return code


def cmd_hal(args: argparse.Namespace) -> int:
    from agent.app import App, backend_validator

    try:
        registry = backend_registry()
        config = load_config(args.config, backend_validator(registry))
    except ConfigError as e:
        print(f"evse-agent: config error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    results = asyncio.run(App(config, registry=registry).check_hardware(timeout_s=args.timeout))
    for result in results:
        print(result.line())
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} PASS, {failed} FAIL")
    return 1 if failed else 0


def cmd_meter(args: argparse.Namespace) -> int:
    from agent.console.meter_read import MeterTarget, dumps, format_reading, read_meter
    from hal.faults import MeterError

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # The one-line reason below says what pymodbus would log over several lines.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    target = MeterTarget(
        model=args.model,
        host=args.host,
        port=args.port,
        serial_port=args.serial,
        baudrate=args.baud,
        parity=args.parity,
        stopbits=args.stopbits,
        device_id=args.device_id,
        timeout_s=args.timeout,
    )
    try:
        reading = asyncio.run(read_meter(backend_registry(), target))
    except ConfigError as e:
        print(f"evse-agent meter read: {e}", file=sys.stderr)
        return 2
    except MeterError as e:
        print(f"evse-agent meter read: no reading: {e}", file=sys.stderr)
        return 1
    print(dumps(reading) if args.json else format_reading(reading))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "run": cmd_run,
        "demo": cmd_demo,
        "sim": cmd_sim,
        "meter": cmd_meter,
        "hal": cmd_hal,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
