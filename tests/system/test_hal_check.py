"""``evse-agent hal check``: every configured device probed against its simulator."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockConnectedPin, MockFactory, MockPin

from agent.app import App, backend_validator
from agent.config import parse_config
from hal.modbus.registers import load_register_map
from hal.registry import default_registry
from hal.sim.chademo_vehicle import SimChademoVehicle
from hal.sim.modbus_server import SimModbusMeterServer
from hal.sim.rapi_controller import SimRapiController

GUARD_S = 30.0
COIL, FEEDBACK = 17, 27


class WeldedContactPin(MockPin):  # type: ignore[misc]
    """A mirror contact stuck closed: high whatever the input's pull resistor says."""

    def _set_pull(self, value: str) -> None:
        super()._set_pull(value)
        self.drive_high()


def config(tmp_path: Path, evse: dict[str, Any], **extra: Any) -> Any:
    data = {
        "station": {"charge_point_id": "CP1", "data_dir": str(tmp_path / "data")},
        "csms": {"url": "ws://127.0.0.1:9/ocpp"},
        "evse": [{"id": 1, **evse}],
        **extra,
    }
    return parse_config(data, backend_validator(default_registry()))


def sim_roles(*roles: str) -> dict[str, Any]:
    return {role: {"backend": "sim"} for role in roles}


def by_role(results: list[Any]) -> dict[str, Any]:
    return {r.role: r for r in results}


async def test_modbus_meter_and_gpio_contactor_pass_with_what_they_show(tmp_path: Path) -> None:
    server = SimModbusMeterServer(load_register_map("sdm72dm2"))
    await server.start()
    factory = MockFactory()
    contacts = factory.pin(FEEDBACK)
    factory.pin(COIL, pin_class=MockConnectedPin, input_pin=contacts)
    try:
        server.update({"energy_import": 4321.0, "power": 0.0})
        meter = {"backend": "modbus-tcp", "host": "127.0.0.1", "port": server.port}
        meter["model"] = "sdm72dm2"
        contactor = {"backend": "gpio", "coil_pin": COIL, "feedback_pin": FEEDBACK}
        cfg = config(tmp_path, {"meter": meter, "contactor": contactor, **sim_roles("pilot")})
        results = await App(cfg, real_pin_factory=factory).check_hardware(timeout_s=2.0)
    finally:
        await server.stop()
        factory.reset()
    checks = by_role(results)
    assert all(r.ok for r in results), results
    assert checks["meter"].detail.startswith("sdm72dm2: 4321.0 Wh")
    assert checks["contactor"].detail == "coil off, mirror contact open"
    assert checks["pilot"].detail == "CP state A"


async def test_a_welded_contactor_and_a_silent_meter_fail(tmp_path: Path) -> None:
    server = SimModbusMeterServer(load_register_map("sdm630"))
    await server.start()
    port = server.port
    await server.stop()  # nobody answers there
    factory = MockFactory()
    factory.pin(COIL)
    factory.pin(FEEDBACK, pin_class=WeldedContactPin)  # contacts closed, coil off
    try:
        meter = {"backend": "modbus-tcp", "host": "127.0.0.1", "port": port, "timeout_s": 0.2}
        contactor = {"backend": "gpio", "coil_pin": COIL, "feedback_pin": FEEDBACK}
        cfg = config(tmp_path, {"meter": meter, "contactor": contactor, **sim_roles("pilot")})
        results = await App(cfg, real_pin_factory=factory).check_hardware(timeout_s=2.0)
    finally:
        factory.reset()
    checks = by_role(results)
    assert not checks["meter"].ok
    assert "cannot connect" in checks["meter"].detail
    assert not checks["contactor"].ok
    assert "PowerSwitchFailure" in checks["contactor"].detail
    assert checks["pilot"].ok


async def test_gpio_without_a_pin_factory_is_a_fail_not_a_crash(tmp_path: Path) -> None:
    contactor = {"backend": "gpio", "coil_pin": COIL}
    cfg = config(tmp_path, {"contactor": contactor, **sim_roles("meter", "pilot")})
    results = await App(cfg).check_hardware(timeout_s=1.0)  # this machine has no GPIO
    contactor_check = by_role(results)["contactor"]
    assert not contactor_check.ok
    assert contactor_check.detail.startswith("cannot build:")
    assert [r.role for r in results] == ["meter", "contactor", "pilot"]


async def test_rapi_controller_reports_its_versions(tmp_path: Path) -> None:
    sim = SimRapiController()
    await sim.start()
    try:
        link = {"backend": "openevse-rapi", "port": sim.port}
        cfg = config(tmp_path, {"pilot": link, "contactor": link, "meter": link})
        results = await App(cfg).check_hardware(timeout_s=2.0)
    finally:
        await sim.stop()
    checks = by_role(results)
    assert all(r.ok for r in results), results
    assert checks["pilot"].detail.startswith("OpenEVSE firmware ")
    assert "RAPI " in checks["pilot"].detail


async def test_chademo_link_shows_can_traffic(tmp_path: Path) -> None:
    channel = f"hal-check-{id(tmp_path)}"
    vehicle = SimChademoVehicle(channel=channel)
    await vehicle.start()
    try:
        vehicle.plug()
        pilot = {"backend": "chademo-can", "interface": "virtual", "channel": channel}
        cfg = config(tmp_path, {"pilot": pilot, **sim_roles("meter", "contactor")})
        results = await App(cfg).check_hardware(timeout_s=1.0)
    finally:
        await vehicle.stop()
    check = by_role(results)["pilot"]
    assert check.ok, check
    assert check.detail.startswith("CAN up, ")


async def test_cli_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        'board = "sim"\n[station]\ncharge_point_id = "CP1"\n'
        f'data_dir = "{tmp_path / "d1"}"\n[csms]\nurl = "ws://127.0.0.1:9/ocpp"\n'
    )
    bad = tmp_path / "bad.toml"
    bad.write_text(
        good.read_text().replace(str(tmp_path / "d1"), str(tmp_path / "d2"))
        + '[[evse]]\nid = 1\nmeter = { backend = "modbus-tcp", host = "127.0.0.1", '
        "port = 1, timeout_s = 0.2 }\n"
    )
    for path, expected in ((good, 0), (bad, 1)):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent",
            "hal",
            "check",
            "--config",
            str(path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), GUARD_S)
        assert proc.returncode == expected, (out, err)
        lines = out.decode().splitlines()
        assert lines[-1] == ("4 PASS, 0 FAIL" if expected == 0 else "3 PASS, 1 FAIL")
        if expected:
            assert any("meter" in line and "FAIL" in line for line in lines)


@pytest.fixture(autouse=True)
def _no_global_pin_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test passes its own factory; an App without one must not find a global."""
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
