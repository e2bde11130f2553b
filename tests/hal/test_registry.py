"""The backend registry: built-ins, lookups, entry-point plug-ins."""

from __future__ import annotations

import dataclasses
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from agent import cli
from agent.app import backend_validator
from agent.config import ConfigError, parse_config, sim_defaults
from hal.gpio.contactor import GpioContactor
from hal.modbus.tcp_meter import ModbusTcpPowerMeter
from hal.registry import (
    BackendContext,
    BackendError,
    BackendSpec,
    GpioContactorOptions,
    ModbusTcpMeterOptions,
    Registry,
    UnknownBackendError,
    default_registry,
    installed_registry,
)


@dataclass(frozen=True)
class _LockOptions:
    pin: int


def _build_lock(options: _LockOptions, ctx: BackendContext) -> object:
    return ("lock", options.pin)


PLUGIN_SPEC = BackendSpec("lock", "vendor-lock", _build_lock, _LockOptions)


def plugin_specs() -> list[BackendSpec]:
    return [BackendSpec("meter", "vendor-meter", _build_lock, _LockOptions)]


NOT_A_SPEC = 42


def test_default_registry_has_the_builtins_and_is_new_each_time() -> None:
    a = default_registry()
    assert a.names("meter") == ["modbus-rtu", "modbus-tcp", "openevse-rapi"]
    assert a.names("contactor") == ["gpio", "openevse-rapi"]
    assert a.get("meter", "modbus-tcp").options is ModbusTcpMeterOptions
    a.register(PLUGIN_SPEC)
    assert "vendor-lock" not in default_registry().names("lock")  # no shared module state


def test_builtin_option_defaults_match_the_config_contract() -> None:
    meter_defaults = {
        f.name: f.default for f in dataclasses.fields(ModbusTcpMeterOptions) if f.name != "host"
    }
    assert meter_defaults == {
        "port": 502,
        "device_id": 1,
        "model": "sdm630",
        "poll_interval_s": 1.0,
        "timeout_s": 1.0,
        "fault_after_s": 5.0,
        "frozen_after_s": 5.0,
        "frozen_min_energy_wh": 10.0,
    }
    contactor = GpioContactorOptions(coil_pin=17)
    assert contactor.feedback_pin is None
    assert contactor.feedback_settle_s == 0.1


def test_unknown_backend_names_role_name_and_known_names() -> None:
    with pytest.raises(UnknownBackendError) as info:
        default_registry().get("meter", "modbus-udp")
    message = str(info.value)
    assert "meter" in message and "'modbus-udp'" in message and "modbus-tcp" in message


def test_duplicate_registration_is_refused_unless_replacing() -> None:
    registry = Registry()
    registry.register(PLUGIN_SPEC)
    with pytest.raises(BackendError, match="already registered"):
        registry.register(PLUGIN_SPEC)
    registry.register(PLUGIN_SPEC, replace=True)
    assert registry.roles() == ["lock"]


async def test_builtin_factories_build_the_real_drivers() -> None:
    registry = default_registry()
    factory = MockFactory()
    ctx = BackendContext(pin_factory=factory)
    meter_spec = registry.get("meter", "modbus-tcp")
    meter = meter_spec.factory(meter_spec.options(host="127.0.0.1", port=1502), ctx)
    assert isinstance(meter, ModbusTcpPowerMeter)
    await meter.stop()

    contactor_spec = registry.get("contactor", "gpio")
    contactor = contactor_spec.factory(contactor_spec.options(coil_pin=17, feedback_pin=27), ctx)
    assert isinstance(contactor, GpioContactor)
    await contactor.stop()

    with pytest.raises(BackendError, match="pin factory"):
        contactor_spec.factory(GpioContactorOptions(coil_pin=17), BackendContext())


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, *values: str) -> None:
    group = "evse_agent.backends"
    eps = importlib.metadata.EntryPoints(
        importlib.metadata.EntryPoint(name=f"ep{i}", value=v, group=group)
        for i, v in enumerate(values)
    )

    def entry_points(*, group: str) -> importlib.metadata.EntryPoints:
        return eps.select(group=group)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_entry_points_register_specs_lists_and_factories(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(monkeypatch, f"{__name__}:PLUGIN_SPEC", f"{__name__}:plugin_specs")
    registry = default_registry()
    assert registry.load_entry_points() == 2
    assert registry.names("lock") == ["gpio", "vendor-lock"]
    assert registry.names("meter") == ["modbus-rtu", "modbus-tcp", "openevse-rapi", "vendor-meter"]
    spec = registry.get("lock", "vendor-lock")
    assert spec.factory(spec.options(pin=5), BackendContext()) == ("lock", 5)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (f"{__name__}:NOT_A_SPEC", "expected BackendSpec"),
        (f"{__name__}:missing_attribute", "failed to load"),
    ],
)
def test_bad_entry_point_names_itself(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    _fake_entry_points(monkeypatch, value)
    with pytest.raises(BackendError) as info:
        Registry().load_entry_points()
    assert "ep0" in str(info.value) and problem in str(info.value)


def test_the_commands_know_installed_plugins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A vendor's backend package, once installed, can be named in a config.
    _fake_entry_points(monkeypatch, f"{__name__}:PLUGIN_SPEC")
    assert "vendor-lock" in installed_registry().names("lock")
    data = sim_defaults(tmp_path, "ws://127.0.0.1:1/ocpp", "CP1")
    data["evse"][0]["lock"] = {"backend": "vendor-lock", "pin": 5}
    config = parse_config(data, backend_validator(cli.backend_registry()))
    lock = config.evses[0].lock
    assert lock is not None and lock.backend == "vendor-lock"
    with pytest.raises(ConfigError, match="vendor-lock"):
        parse_config(data, backend_validator(default_registry()))  # the built-ins only


def test_a_broken_plugin_is_a_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_entry_points(monkeypatch, f"{__name__}:missing_attribute")
    config = tmp_path / "agent.toml"
    config.write_text("")
    assert cli.main(["hal", "check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "backend plug-in" in err and "ep0" in err and "failed to load" in err
