"""``evse-agent demo``: the whole station on simulated hardware against a local CSMS.

Starts the CSMS emulator (a real WebSocket server on 127.0.0.1) and the agent
with simulated hardware (a Modbus TCP meter server, gpiozero mock pins, a
simulated EV), then plays one session: boot, plug in, swipe a token, charge with
energy rising, a remote stop from the CSMS, unplug. Prints a timeline of hardware
and OCPP events and a summary; exits 0 when the CSMS saw the whole story.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from ocpp.v16 import call

from agent.app import App
from agent.config import parse_config, sim_defaults
from agent.events import ConnectorStatus, EvseStatusChanged
from hil.csms import CP_TO_CSMS, CSMS_TO_CP, CsmsEmulator, ReceivedCall

CHARGE_POINT_ID = "DEMO-CP-1"
TOKEN = "DEMO-TOKEN-1"
METER_VALUES_TO_WATCH = 4
STEP_TIMEOUT_S = 20.0
ENERGY_REGISTER = "Energy.Active.Import.Register"

CsmsT = TypeVar("CsmsT", bound=CsmsEmulator)
Describe = Callable[[str, dict[str, Any]], str | None]
"""``(action, camelCase payload) -> timeline line`` for a CALL the CSMS received."""


class Timeline:
    """Prints events with the time since the demo started."""

    def __init__(self, quiet: bool) -> None:
        self._t0 = time.monotonic()
        self._quiet = quiet

    def say(self, source: str, text: str) -> None:
        if not self._quiet:
            print(f"+{time.monotonic() - self._t0:6.2f}s  {source:<8} {text}", flush=True)


def _describe(action: str, payload: dict[str, Any]) -> str | None:
    """One line per OCPP message the CSMS received (None: not worth a line)."""
    match action:
        case "BootNotification":
            return (
                f"BootNotification {payload.get('chargePointVendor')} "
                f"{payload.get('chargePointModel')} fw {payload.get('firmwareVersion')}"
            )
        case "StatusNotification":
            error = payload.get("errorCode")
            extra = f" ({error})" if error != "NoError" else ""
            return (
                f"StatusNotification connector {payload['connectorId']}: {payload['status']}{extra}"
            )
        case "Authorize":
            return f"Authorize {payload['idTag']}"
        case "StartTransaction":
            return f"StartTransaction {payload['idTag']} meterStart={payload['meterStart']} Wh"
        case "MeterValues":
            values: dict[str, list[str]] = {}
            for mv in payload["meterValue"]:
                for v in mv["sampledValue"]:
                    name = str(v.get("measurand", "")).split(".")[0]
                    values.setdefault(name, []).append(str(v["value"]))
            units = {"Energy": "Wh", "Power": "W", "Current": "A", "Voltage": "V"}
            return f"MeterValues tx {payload.get('transactionId')}: " + ", ".join(
                f"{k}={'/'.join(v)} {units.get(k, '')}".strip() for k, v in values.items()
            )
        case "StopTransaction":
            return (
                f"StopTransaction tx {payload['transactionId']} meterStop={payload['meterStop']} "
                f"Wh reason={payload.get('reason', 'Local')}"
            )
        case "Heartbeat":
            return "Heartbeat"
    return action


def _sampled_ocpp_settings() -> dict[str, Any]:
    """The demo's ``[ocpp]`` settings: 1 s samples of energy, power and current."""
    return {
        "meter_value_sample_interval_s": 1,
        "meter_values_sampled_data": [
            ENERGY_REGISTER,
            "Power.Active.Import",
            "Current.Import",
        ],
        "stop_txn_sampled_data": [ENERGY_REGISTER],
    }


async def run_scripted_session(
    make_csms: Callable[..., CsmsT],
    describe: Describe,
    script: Callable[[App, CsmsT, Timeline], Awaitable[int]],
    *,
    ocpp_version: str,
    quiet: bool,
) -> int:
    """Run a demo session of either OCPP version; returns the script's exit code.

    Starts the CSMS emulator on loopback (timeline lines for every message: the
    charger's CALLs through ``describe``, the rest as they are), the agent on simulated
    hardware in a temporary data directory with `_sampled_ocpp_settings`, runs
    ``script`` and stops the agent whatever happens.

    Args:
        make_csms: The emulator class (`CsmsEmulator` or `CsmsEmulator201`).
        describe: One timeline line per CALL the CSMS received (None: no line).
        script: The session, given the running ``App``, the emulator and the timeline.
        ocpp_version: ``csms.ocpp_version`` of the agent (``"1.6"`` or ``"2.0.1"``).
        quiet: Print no timeline (the summary is printed anyway).
    """
    logging.basicConfig(level=logging.ERROR)
    timeline = Timeline(quiet)

    def on_message(direction: str, cp_id: str, action: str, payload: dict[str, Any]) -> None:
        del cp_id
        if direction == CP_TO_CSMS:
            line = describe(action, payload)
            if line:
                timeline.say("charger>", line)
        else:
            timeline.say("csms>", f"{action} {payload}")

    prefix = f"evse-agent-demo{ocpp_version.replace('.', '')}-"
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        async with make_csms(heartbeat_interval_s=300, on_message=on_message) as csms:
            data = sim_defaults(Path(tmp), csms.url, CHARGE_POINT_ID)
            data["csms"]["ocpp_version"] = ocpp_version
            data["ocpp"] = _sampled_ocpp_settings()
            app = App(parse_config(data))
            runner = asyncio.create_task(app.run())
            try:
                return await script(app, csms, timeline)
            finally:
                app.stop()
                await runner


async def run_demo(*, quiet: bool = False) -> int:
    """Run the scripted session; returns the process exit code."""
    return await run_scripted_session(
        CsmsEmulator, _describe, _script, ocpp_version="1.6", quiet=quiet
    )


async def _script(app: App, csms: CsmsEmulator, timeline: Timeline) -> int:
    started_s = time.monotonic()
    await asyncio.wait_for(app.started.wait(), STEP_TIMEOUT_S)
    assert app.station is not None
    rig = app.rigs[1]

    def on_status(event: EvseStatusChanged) -> None:
        if event.evse_id == 0:
            return
        coil = "on" if rig.coil_is_on() else "off"
        pilot = rig.pilot.output
        duty = f"PWM {pilot.duty_pct:.1f} %" if pilot.mode == "pwm" else pilot.mode.value
        timeline.say("evse", f"EVSE 1 {event.status}: contactor {coil}, pilot {duty}")

    app.station.subscribe_status(on_status)
    await csms.wait_for("BootNotification", timeout_s=STEP_TIMEOUT_S)
    await _until_status(csms, ConnectorStatus.AVAILABLE)

    timeline.say("ev", "the EV is plugged in (CP A -> B)")
    app.apply_sim(1, "plug", None)
    await _until_status(csms, ConnectorStatus.PREPARING)

    timeline.say("driver", f"swipes card {TOKEN}")
    app.apply_sim(1, "swipe", TOKEN)
    start = await csms.wait_for("StartTransaction", timeout_s=STEP_TIMEOUT_S)
    await _until_status(csms, ConnectorStatus.CHARGING)
    await csms.wait_for("MeterValues", count=METER_VALUES_TO_WATCH, timeout_s=STEP_TIMEOUT_S)

    tx_id = next(iter(csms.transactions))
    timeline.say("csms", f"sends RemoteStopTransaction({tx_id})")
    answer = await csms.call(CHARGE_POINT_ID, call.RemoteStopTransaction(transaction_id=tx_id))
    timeline.say("csms", f"RemoteStopTransaction answered {answer.status}")
    stop = await csms.wait_for("StopTransaction", timeout_s=STEP_TIMEOUT_S)
    await _until_status(csms, ConnectorStatus.FINISHING)

    timeline.say("ev", "the EV is unplugged (CP -> A)")
    app.apply_sim(1, "unplug", None)
    await _until_status(csms, ConnectorStatus.AVAILABLE, count=2)
    part_one_s = time.monotonic() - started_s

    smart_ok = await _smart_charging_part(app, csms, timeline)
    code = _summary(csms, start, stop, part_one_s)
    print(f"  smart charging   : {'OK' if smart_ok else 'FAILED'}")
    return code if smart_ok else 1


def _profile(
    profile_id: int, purpose: str, stack_level: int, periods: list[tuple[int, float]], **kw: Any
) -> dict[str, Any]:
    """A 1.6 csChargingProfiles object (snake_case, as the ocpp library takes it)."""
    schedule: dict[str, Any] = {
        "charging_rate_unit": "A",
        "charging_schedule_period": [{"start_period": s, "limit": a} for s, a in periods],
    }
    if "start_schedule" in kw:
        schedule["start_schedule"] = kw.pop("start_schedule")
    return {
        "charging_profile_id": profile_id,
        "stack_level": stack_level,
        "charging_profile_purpose": purpose,
        "charging_profile_kind": kw.pop("kind", "Absolute"),
        "charging_schedule": schedule,
        **kw,
    }


@contextlib.asynccontextmanager
async def pilot_shown(app: App, timeline: Timeline) -> AsyncIterator[None]:
    """Show every change of EVSE 1's limit and PWM duty while the block runs."""
    watcher = asyncio.create_task(_watch_pilot(app, timeline))
    try:
        yield
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def _watch_pilot(app: App, timeline: Timeline) -> None:
    """Print every change of the limit and PWM duty (a display loop, 20 Hz)."""
    assert app.station is not None
    rig, controller = app.rigs[1], app.station.controllers[1]
    last = None
    while True:
        output = rig.pilot.output
        shown = (output.mode, output.duty_pct, controller.effective_limit_a())
        if shown != last:
            last = shown
            duty = f"PWM {output.duty_pct:.1f} %" if output.mode == "pwm" else output.mode.value
            timeline.say("evse", f"limit {shown[2]:.1f} A -> pilot {duty}")
        await asyncio.sleep(0.05)


async def _smart_charging_part(app: App, csms: CsmsEmulator, timeline: Timeline) -> bool:
    """A TxDefaultProfile, then a TxProfile stepping down at period boundaries."""
    print()
    timeline.say("demo", "part 2: smart charging")
    async with pilot_shown(app, timeline):
        long_ago = "2026-01-01T00:00:00Z"  # Absolute: in force before the session starts
        default = _profile(1, "TxDefaultProfile", 0, [(0, 16.0)], start_schedule=long_ago)
        answer = await csms.call(
            CHARGE_POINT_ID,
            call.SetChargingProfile(connector_id=0, cs_charging_profiles=default),
        )
        timeline.say("csms", f"TxDefaultProfile 16 A for every connector: {answer.status}")
        app.apply_sim(1, "plug", None)
        app.apply_sim(1, "swipe", TOKEN)
        start = await csms.wait_for("StartTransaction", count=2, timeout_s=STEP_TIMEOUT_S)
        start_answer = await csms.wait_answer(start, timeout_s=STEP_TIMEOUT_S)
        assert isinstance(start_answer, dict), start_answer
        tx_id = start_answer["transactionId"]
        await _until_status(csms, ConnectorStatus.CHARGING, count=2)

        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        steps = [(0, 10.0), (3, 6.0), (6, 4.0)]
        tx_profile = _profile(2, "TxProfile", 1, steps, start_schedule=now, transaction_id=tx_id)
        answer = await csms.call(
            CHARGE_POINT_ID,
            call.SetChargingProfile(connector_id=1, cs_charging_profiles=tx_profile),
        )
        timeline.say(
            "csms",
            f"TxProfile 10 A, after 3 s 6 A, after 6 s 4 A (below 6 A: suspend): {answer.status}",
        )
        composite = await csms.call(
            CHARGE_POINT_ID,
            call.GetCompositeSchedule(connector_id=1, duration=10, charging_rate_unit="A"),
        )
        periods = composite.charging_schedule["charging_schedule_period"]
        timeline.say(
            "csms",
            "GetCompositeSchedule(1, 10 s): "
            + ", ".join(f"+{p['start_period']} s {p['limit']} A" for p in periods),
        )
        await _until_status(csms, ConnectorStatus.SUSPENDED_EVSE)
        answer = await csms.call(CHARGE_POINT_ID, call.ClearChargingProfile(id=2))
        timeline.say("csms", f"ClearChargingProfile(2): {answer.status}; back to the default")
        await _until_status(csms, ConnectorStatus.CHARGING, count=3)
        await csms.call(CHARGE_POINT_ID, call.RemoteStopTransaction(transaction_id=tx_id))
        await csms.wait_for("StopTransaction", count=2, timeout_s=STEP_TIMEOUT_S)
        app.apply_sim(1, "unplug", None)
        await _until_status(csms, ConnectorStatus.AVAILABLE, count=3)
        return composite.status == "Accepted" and len(periods) == 3


async def _until_status(csms: CsmsEmulator, status: ConnectorStatus, count: int = 1) -> None:
    await csms.wait_for(
        "StatusNotification",
        count=count,
        predicate=lambda c: c.payload["connectorId"] == 1 and c.payload["status"] == status,
        timeout_s=STEP_TIMEOUT_S,
    )


def _summary(csms: CsmsEmulator, start: ReceivedCall, stop: ReceivedCall, wall_s: float) -> int:
    energy_wh = int(stop.payload["meterStop"]) - int(start.payload["meterStart"])
    session_s = stop.monotonic_s - start.monotonic_s
    counts = Counter(c.action for c in csms.received)
    ok = energy_wh > 0 and stop.payload.get("reason") == "Remote" and counts["MeterValues"] > 0
    print()
    print("Summary")
    print(f"  energy delivered : {energy_wh} Wh")
    print(f"  session duration : {session_s:.1f} s (demo wall time {wall_s:.1f} s)")
    print(f"  stop reason      : {stop.payload.get('reason')}")
    print("  messages to CSMS : " + ", ".join(f"{a} x{n}" for a, n in sorted(counts.items())))
    print(f"  result           : {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


# ------------------------------------------------------------ firmware update demo

FIRMWARE_VERSION = "demo-2.0.0"
FIRMWARE_REQUEST_ID = 1


async def run_firmware_demo(*, quiet: bool = False) -> int:
    """``evse-agent demo --firmware``: a signed update end to end.

    A manufacturer PKI and a signed ``dir``-slot release are made in a temporary
    directory and served over loopback HTTP; the CSMS emulator sends
    SignedUpdateFirmware; the agent downloads, verifies, installs into the inactive
    slot, restarts (a new ``App`` on the same data directory, as ``evse-agent run``
    re-executes itself), confirms the new slot and reports Installed. Exits 0 when the
    CSMS saw the whole sequence with one requestId and the new firmwareVersion.
    """
    from hil.fw_pki import FileServer, make_release_tarball
    from hil.fw_release import signed_firmware, station_pki

    logging.basicConfig(level=logging.ERROR)
    timeline = Timeline(quiet)

    def on_message(direction: str, cp_id: str, action: str, payload: dict[str, Any]) -> None:
        if direction == CSMS_TO_CP:
            timeline.say("csms>", action)
        elif direction != CP_TO_CSMS:
            return
        elif action in ("SignedFirmwareStatusNotification", "SecurityEventNotification"):
            timeline.say("charger>", f"{action} {payload.get('status') or payload.get('type')}")
        else:
            line = _describe(action, payload)
            if line and action != "StatusNotification":
                timeline.say("charger>", line)

    with tempfile.TemporaryDirectory(prefix="evse-agent-fw-demo-") as tmp:
        root = Path(tmp)
        data_dir = root / "agent"
        pki = station_pki(root, data_dir)
        image = make_release_tarball(root / "www" / "release.tar.gz", FIRMWARE_VERSION, 0)
        async with CsmsEmulator(heartbeat_interval_s=300, on_message=on_message) as csms:
            data = sim_defaults(data_dir, csms.url, CHARGE_POINT_ID)
            with FileServer(image.parent) as server:
                first = App(parse_config(data))
                runner = asyncio.create_task(first.run())
                try:
                    await csms.wait_for("StatusNotification", timeout_s=STEP_TIMEOUT_S)
                    timeline.say("demo", f"serving {image.name} at {server.url(image.name)}")
                    firmware = signed_firmware(
                        server.url(image.name), pki.signing_cert_pem, pki.sign(image)
                    )
                    answer = await csms.call(
                        CHARGE_POINT_ID,
                        call.SignedUpdateFirmware(
                            request_id=FIRMWARE_REQUEST_ID, firmware=firmware
                        ),
                    )
                    timeline.say("charger>", f"SignedUpdateFirmware: {answer.status}")
                    reason = await asyncio.wait_for(asyncio.shield(runner), STEP_TIMEOUT_S)
                    timeline.say("demo", f"agent exited ({reason}): restarting it")
                finally:
                    first.stop()
                    await runner
            second = App(parse_config(data))
            runner = asyncio.create_task(second.run())
            try:
                await csms.wait_for(
                    "SignedFirmwareStatusNotification",
                    predicate=lambda c: c.payload["status"] in ("Installed", "InstallationFailed"),
                    timeout_s=STEP_TIMEOUT_S,
                )
            finally:
                second.stop()
                await runner
        return _firmware_summary(csms)


def _firmware_summary(csms: CsmsEmulator) -> int:
    statuses = [c.payload for c in csms.calls("SignedFirmwareStatusNotification")]
    versions = [c.payload.get("firmwareVersion") for c in csms.calls("BootNotification")]
    events = [c.payload["type"] for c in csms.calls("SecurityEventNotification")]
    ok = (
        [s["status"] for s in statuses][-1:] == ["Installed"]
        and {s["requestId"] for s in statuses} == {FIRMWARE_REQUEST_ID}
        and versions[-1:] == [FIRMWARE_VERSION]
        and "FirmwareUpdated" in events
    )
    print()
    print("Summary")
    print(f"  firmware versions : {' -> '.join(str(v) for v in versions)}")
    print(f"  status sequence   : {', '.join(s['status'] for s in statuses)}")
    print(f"  security events   : {', '.join(events)}")
    print(f"  result            : {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1
