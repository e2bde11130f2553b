"""Config loading: every refusal is one line naming the key; shipped configs parse.

The tables mutate one known-good "real board" document (modbus-tcp meter, gpio
contactor, sim pilot) so each row changes exactly one thing.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from agent.app import backend_validator
from agent.cli import build_parser, resolve_run_config
from agent.config import (
    SIM_BACKEND,
    AgentConfig,
    ConfigError,
    CsmsConfig,
    EvseConfig,
    FirmwareConfig,
    SimConfig,
    StationConfig,
    load_config,
    parse_config,
    sim_defaults,
)
from agent.settings import Settings, SettingValue
from hal.registry import (
    ChademoCanPilotOptions,
    GpioConnectorLockOptions,
    GpioContactorOptions,
    GpioControlPilotOptions,
    GpioStatusIndicatorOptions,
    ModbusRtuMeterOptions,
    ModbusTcpMeterOptions,
    RapiMeterOptions,
    default_registry,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "agent.toml.example"

Doc = dict[str, Any]
Mutation = Callable[[Doc], None]


def board() -> Doc:
    """A valid config for a real board; a fresh copy per call."""
    return {
        "station": {"charge_point_id": "CP-1", "data_dir": "/var/lib/evse-agent"},
        "csms": {
            "url": "wss://csms.example.com/ocpp",
            "security_profile": 2,
            "basic_auth_password": "0123456789abcdef",
        },
        "evse": [
            {
                "id": 1,
                "meter": {"backend": "modbus-tcp", "host": "192.0.2.10"},
                "contactor": {"backend": "gpio", "coil_pin": 17, "feedback_pin": 27},
                "pilot": {"backend": "sim"},
            }
        ],
    }


def parse(doc: Doc) -> AgentConfig:
    return parse_config(doc, backend_validator(default_registry()))


_DELETE = object()


def put(*path: str | int, value: Any = _DELETE) -> Mutation:
    """A mutation that sets (or, without ``value``, deletes) one nested key."""

    def mutate(doc: Doc) -> None:
        target: Any = doc
        for part in path[:-1]:
            target = target[part]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return mutate


def second_evse(evse_id: int) -> Mutation:
    def mutate(doc: Doc) -> None:
        doc["evse"].append({**doc["evse"][0], "id": evse_id})

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(doc: Doc) -> None:
        for m in mutations:
            m(doc)

    return mutate


def assert_refused(doc: Doc, key: str, fragment: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(doc)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{key}: "), message
    assert fragment in message, message
    return message


def test_board_document_is_valid() -> None:
    cfg = parse(board())
    (evse,) = cfg.evses
    assert evse.meter.backend == "modbus-tcp"
    assert evse.meter.options == {"host": "192.0.2.10"}
    assert evse.contactor.options == {"coil_pin": 17, "feedback_pin": 27}
    assert evse.token_reader is None
    assert cfg.station.data_dir == Path("/var/lib/evse-agent")
    assert cfg.uses_sim  # the pilot is simulated


# (mutation, key the message starts with, fragment of the problem)
REFUSALS = [
    # unknown section / unknown key in each table
    pytest.param(put("stations", value={}), "stations", "unknown section", id="unknown-section"),
    pytest.param(
        put("station", "colour", value="red"), "station.colour", "unknown key", id="station-key"
    ),
    pytest.param(put("csms", "uri", value="wss://x"), "csms.uri", "unknown key", id="csms-key"),
    pytest.param(put("sim", value={"speed": 1}), "sim.speed", "unknown key", id="sim-key"),
    pytest.param(
        put("evse", 0, "rating_a", value=16), "evse[0].rating_a", "unknown key", id="evse-key"
    ),
    pytest.param(
        put("evse", 0, "meter", "unit_id", value=1),
        "evse[0].meter.unit_id",
        "unknown key",
        id="modbus-tcp-option",
    ),
    pytest.param(
        put("evse", 0, "contactor", "pin", value=17),
        "evse[0].contactor.pin",
        "unknown key",
        id="gpio-option",
    ),
    pytest.param(
        put("evse", 0, "pilot", "port", value="/dev/ttyS0"),
        "evse[0].pilot.port",
        "sim takes no options",
        id="sim-option",
    ),
    # missing required keys and sections
    pytest.param(
        put("station", "charge_point_id"), "station.charge_point_id", "missing", id="no-cp-id"
    ),
    pytest.param(put("station", "data_dir"), "station.data_dir", "missing", id="data_dir"),
    pytest.param(put("csms", "url"), "csms.url", "missing", id="url"),
    pytest.param(put("station"), "station", "missing section", id="no-station"),
    pytest.param(put("csms"), "csms", "missing section", id="no-csms"),
    pytest.param(put("evse", 0, "meter"), "evse[0].meter", "missing", id="no-meter"),
    pytest.param(put("evse", 0, "contactor"), "evse[0].contactor", "missing", id="no-contactor"),
    pytest.param(put("evse", 0, "pilot"), "evse[0].pilot", "missing", id="no-pilot"),
    pytest.param(put("evse", 0, "id"), "evse[0].id", "missing", id="no-evse-id"),
    pytest.param(
        put("evse", 0, "meter", "backend"), "evse[0].meter.backend", "missing", id="no-backend"
    ),
    pytest.param(
        put("evse", 0, "meter", "host"), "evse[0].meter.host", "missing", id="no-meter-host"
    ),
    pytest.param(put("evse"), "evse", "at least one [[evse]]", id="no-evse"),
    pytest.param(put("evse", value=[]), "evse", "at least one [[evse]]", id="empty-evse"),
    pytest.param(put("evse", value={"id": 1}), "evse", "at least one [[evse]]", id="evse-table"),
    # wrong types
    pytest.param(
        put("station", "max_current_a", value="32"),
        "station.max_current_a",
        "expected a number",
        id="str-for-float",
    ),
    pytest.param(
        put("evse", 0, "phases", value=3.0), "evse[0].phases", "expected an integer", id="float-int"
    ),
    pytest.param(
        put("csms", "security_profile", value=True),
        "csms.security_profile",
        "expected an integer",
        id="bool-for-int",
    ),
    pytest.param(
        put("station", "max_current_a", value=True),
        "station.max_current_a",
        "expected a number",
        id="bool-for-float",
    ),
    pytest.param(
        put("station", "ventilation_available", value=1),
        "station.ventilation_available",
        "expected true or false",
        id="int-for-bool",
    ),
    pytest.param(put("csms", "url", value=5), "csms.url", "expected a string", id="int-for-str"),
    pytest.param(
        put("evse", 0, "id", value="1"), "evse[0].id", "expected an integer", id="str-evse-id"
    ),
    pytest.param(put("station", "data_dir", value=""), "station.data_dir", "path", id="empty-dir"),
    pytest.param(put("station", value="CP-1"), "station", "expected a table", id="station-str"),
    pytest.param(put("evse", 0, value=1), "evse[0]", "expected a table", id="evse-not-table"),
    pytest.param(
        put("evse", 0, "meter", value="sim"), "evse[0].meter", "'backend' key", id="role-str"
    ),
    pytest.param(
        put("evse", 0, "meter", "port", value="502"),
        "evse[0].meter.port",
        "expected an integer",
        id="modbus-port-str",
    ),
    pytest.param(
        put("evse", 0, "meter", "poll_interval_s", value="1s"),
        "evse[0].meter.poll_interval_s",
        "expected a number",
        id="modbus-poll-str",
    ),
    pytest.param(
        put("evse", 0, "contactor", "coil_active_high", value="yes"),
        "evse[0].contactor.coil_active_high",
        "expected true or false",
        id="gpio-bool-str",
    ),
    pytest.param(put("ocpp", value=5), "ocpp", "expected a table", id="ocpp-not-table"),
    # bad values
    pytest.param(
        put("station", "max_current_a", value=-16),
        "station.max_current_a",
        "must be > 0",
        id="negative-current",
    ),
    pytest.param(
        put("evse", 0, "max_current_a", value=0), "evse[0].max_current_a", "> 0", id="zero-current"
    ),
    pytest.param(put("evse", 0, "phases", value=2), "evse[0].phases", "1 or 3", id="phases-2"),
    pytest.param(put("sim", value={"ev_phases": 2}), "sim.ev_phases", "1 or 3", id="sim-phases"),
    pytest.param(put("sim", value={"soc_pct": -1}), "sim.soc_pct", ">= 0", id="soc"),
    pytest.param(
        put("csms", "call_timeout_s", value=0), "csms.call_timeout_s", "> 0", id="timeout-0"
    ),
    pytest.param(
        put("csms", "ocpp_version", value="2.1"),
        "csms.ocpp_version",
        "not supported",
        id="ocpp-2.1",
    ),
    pytest.param(
        put("csms", "url", value="https://csms.example.com"), "csms.url", "ws", id="https-url"
    ),
    pytest.param(put("csms", "url", value="wss://"), "csms.url", "ws", id="url-no-host"),
    pytest.param(
        put("csms", "url", value="ws://csms.example.com/ocpp"),
        "csms.url",
        "wss://",
        id="profile-2-over-ws",
    ),
    pytest.param(
        both(
            put("csms", "url", value="ws://csms.example.com/ocpp"),
            put("csms", "security_profile", value=1),
            put("csms", "basic_auth_password"),
        ),
        "csms.basic_auth_password",
        "required",
        id="profile-1-no-password",
    ),
    pytest.param(
        put("csms", "security_profile", value=3),
        "csms.client_cert_file",
        "profile 3",
        id="profile-3-no-cert",
    ),
    pytest.param(
        put("csms", "security_profile", value=4),
        "csms.security_profile",
        "0, 1, 2 or 3",
        id="profile-4",
    ),
    pytest.param(
        both(put("csms", "reconnect_min_s", value=10), put("csms", "reconnect_max_s", value=5)),
        "csms.reconnect_max_s",
        ">= reconnect_min_s",
        id="reconnect-max-below-min",
    ),
    pytest.param(
        put("station", "charge_point_id", value="a/b"),
        "station.charge_point_id",
        "'/'",
        id="id-with-slash",
    ),
    pytest.param(
        put("station", "charge_point_id", value=""),
        "station.charge_point_id",
        "empty",
        id="empty-id",
    ),
    pytest.param(put("log_level", value="TRACE"), "log_level", "DEBUG, INFO", id="log-level"),
    # EVSE ids: 1..N, each once
    pytest.param(second_evse(1), "evse.id", "1..N", id="duplicate-id"),
    pytest.param(second_evse(3), "evse.id", "1..N", id="gap-in-ids"),
    pytest.param(put("evse", 0, "id", value=0), "evse.id", "1..N", id="id-0"),
    # backends named in the registry
    pytest.param(
        put("evse", 0, "meter", "backend", value="modbus-udp"),
        "evse[0].meter.backend",
        "known meter backends: modbus-rtu, modbus-tcp",
        id="unknown-meter-backend",
    ),
    pytest.param(
        put("evse", 0, "pilot", value={"backend": "pwm-hat"}),
        "evse[0].pilot.backend",
        "unknown pilot backend 'pwm-hat'",
        id="unknown-pilot-backend",
    ),
    # [ocpp] start-up values
    pytest.param(
        put("ocpp", value={"HeartbeatInterval": 60}),
        "ocpp.HeartbeatInterval",
        "unknown key",
        id="ocpp-unknown",
    ),
    pytest.param(
        put("ocpp", value={"heartbeat_interval_s": 0}),
        "ocpp.heartbeat_interval_s",
        ">= 1",
        id="ocpp-below-min",
    ),
    pytest.param(
        put("ocpp", value={"heartbeat_interval_s": "60"}),
        "ocpp.heartbeat_interval_s",
        "integer",
        id="ocpp-str-for-int",
    ),
    pytest.param(
        put("ocpp", value={"local_pre_authorize": "true"}),
        "ocpp.local_pre_authorize",
        "true/false",
        id="ocpp-str-for-bool",
    ),
    pytest.param(
        put("ocpp", value={"meter_values_sampled_data": ["Temperature"]}),
        "ocpp.meter_values_sampled_data",
        "Temperature",
        id="ocpp-unsupported-measurand",
    ),
    pytest.param(
        put("ocpp", value={"meter_values_sampled_data": "Voltage"}),
        "ocpp.meter_values_sampled_data",
        "list",
        id="ocpp-str-for-list",
    ),
]


@pytest.mark.parametrize(("mutation", "key", "fragment"), REFUSALS)
def test_refusal_is_one_line_naming_the_key(mutation: Mutation, key: str, fragment: str) -> None:
    doc = board()
    mutation(doc)
    assert_refused(doc, key, fragment)


@pytest.mark.parametrize(
    "mutation",
    [
        pytest.param(put("evse", 0, "contactor", "coil_pin", value="GPIO17"), id="bcm-name"),
        pytest.param(put("evse", 0, "contactor", "feedback_pin", value="BOARD13"), id="board-name"),
    ],
)
def test_gpio_pin_names_are_accepted(mutation: Mutation) -> None:
    doc = board()
    mutation(doc)
    parse(doc)


@pytest.mark.parametrize(
    "mutation",
    [
        pytest.param(put("evse", 0, "meter", "poll_interval_s", value=0), id="poll-0"),
        pytest.param(put("evse", 0, "meter", "timeout_s", value=-1.0), id="timeout-negative"),
        pytest.param(put("evse", 0, "meter", "model", value="sdm999"), id="unknown-model"),
        pytest.param(put("evse", 0, "meter", "port", value=70000), id="port-out-of-range"),
    ],
)
def test_bad_backend_option_values_are_refused_at_config_time(mutation: Mutation) -> None:
    doc = board()
    mutation(doc)
    with pytest.raises(ConfigError):
        parse(doc)


@pytest.mark.parametrize(
    "mutation",
    [
        pytest.param(put("station", "max_current_a", value=float("inf")), id="inf-current"),
        pytest.param(put("csms", "reconnect_max_s", value=float("inf")), id="inf-backoff"),
    ],
)
def test_non_finite_numbers_are_refused(mutation: Mutation) -> None:
    doc = board()
    mutation(doc)
    with pytest.raises(ConfigError):
        parse(doc)


_TABLE_FIELDS = {
    "station": {f.name for f in dataclasses.fields(StationConfig)},
    "csms": {f.name for f in dataclasses.fields(CsmsConfig)},
    "sim": {f.name for f in dataclasses.fields(SimConfig)},
}


@given(
    table=st.sampled_from(sorted(_TABLE_FIELDS)),
    key=st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=20),
)
def test_any_unknown_key_is_named(table: str, key: str) -> None:
    assume(key not in _TABLE_FIELDS[table])
    doc = board()
    doc.setdefault(table, {})
    doc[table][key] = 1
    assert_refused(doc, f"{table}.{key}", "unknown key")


def test_unknown_key_with_a_newline_still_gives_one_line() -> None:
    doc = board()
    doc["station"]["bad\nkey"] = 1  # TOML allows "\n" in a quoted key
    with pytest.raises(ConfigError) as info:
        parse(doc)
    assert "\n" not in str(info.value)


def test_without_validator_backend_options_are_not_checked() -> None:
    doc = board()
    doc["evse"][0]["meter"] = {"backend": "vendor-meter", "anything": [1, 2]}
    cfg = parse_config(doc)
    assert cfg.evses[0].meter.options == {"anything": [1, 2]}


def test_defaults_fill_optional_keys() -> None:
    cfg = parse(board())
    assert cfg.csms.ocpp_version == "1.6"
    assert cfg.csms.reconnect_min_s == 1.0
    assert cfg.csms.reconnect_max_s == 60.0
    assert cfg.evses[0].phases == 3
    assert cfg.ocpp == {}
    assert cfg.log_level == "INFO"
    assert cfg.sim == SimConfig()


def test_integers_are_accepted_for_float_keys() -> None:
    doc = board()
    doc["station"]["max_current_a"] = 16
    value = parse(doc).station.max_current_a
    assert value == 16.0
    assert type(value) is float


def test_ocpp_table_values_are_kept_for_settings() -> None:
    doc = board()
    doc["ocpp"] = {"heartbeat_interval_s": 120, "meter_values_sampled_data": ["Voltage"]}
    cfg = parse(doc)
    assert cfg.ocpp == {"heartbeat_interval_s": 120, "meter_values_sampled_data": ["Voltage"]}


@pytest.mark.parametrize("evse_count", [1, 3])
def test_sim_defaults_parse(tmp_path: Path, evse_count: int) -> None:
    doc = sim_defaults(tmp_path, "ws://127.0.0.1:9000/ocpp", "SIM-1", evse_count)
    cfg = parse(doc)
    assert [e.id for e in cfg.evses] == list(range(1, evse_count + 1))
    assert cfg.uses_sim
    for evse in cfg.evses:
        for backend in (evse.meter, evse.contactor, evse.pilot, evse.token_reader):
            assert backend is not None
            assert backend.backend == SIM_BACKEND
    assert cfg.station.data_dir == tmp_path
    assert cfg.csms.url == "ws://127.0.0.1:9000/ocpp"


class _NullBackend:
    async def set(self, key: str, value: Any) -> None:
        del key, value


def test_shipped_example_parses_with_the_registry() -> None:
    cfg = load_config(EXAMPLE, backend_validator(default_registry()))
    (evse,) = cfg.evses
    assert evse.meter.backend == "modbus-tcp"
    assert evse.contactor.backend == "gpio"
    assert cfg.csms.url.startswith("wss://")
    assert cfg.csms.security_profile == 2
    assert cfg.ocpp, "the example should show a few [ocpp] start-up values"
    # the [ocpp] values must also be acceptable to the runtime settings
    settings = Settings(_NullBackend(), {}, cfg.ocpp)
    for name, value in cfg.ocpp.items():
        got: SettingValue = settings.get(name)
        assert got == (tuple(value) if isinstance(value, list) else value)


def _documented_keys() -> list[str]:
    tables: list[type[Any]] = [
        StationConfig,
        CsmsConfig,
        SimConfig,
        EvseConfig,
        ModbusTcpMeterOptions,
        GpioContactorOptions,
        GpioControlPilotOptions,
        GpioConnectorLockOptions,
        GpioStatusIndicatorOptions,
        ModbusRtuMeterOptions,
        RapiMeterOptions,
        ChademoCanPilotOptions,
        FirmwareConfig,
    ]
    return sorted({f.name for t in tables for f in dataclasses.fields(t)} | {"log_level", "board"})


@pytest.mark.parametrize("name", _documented_keys())
def test_shipped_example_shows_every_key(name: str) -> None:
    # Every key appears, set or commented out with its default, so the file documents it.
    text = EXAMPLE.read_text(encoding="utf-8")
    if name in ("meter", "contactor", "pilot", "token_reader", "lock", "indicator"):
        assert f"[evse.{name}]" in text
    else:
        assert re.search(rf"^#? ?{name} = ", text, re.MULTILINE), name


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_load_config_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)


def test_load_config_toml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[station]\ncharge_point_id = "CP-1\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="TOML syntax error") as info:
        load_config(path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_load_config_reads_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        '[station]\ncharge_point_id = "CP-9"\ndata_dir = "/tmp/x"\n'
        '[csms]\nurl = "ws://127.0.0.1:9000/ocpp"\n'
        '[[evse]]\nid = 1\nmeter = { backend = "sim" }\ncontactor = { backend = "sim" }\n'
        'pilot = { backend = "sim" }\n',
        encoding="utf-8",
    )
    assert load_config(path).station.charge_point_id == "CP-9"


def test_load_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(b'[station]\ncharge_point_id = "\xff"\n')
    with pytest.raises(ConfigError):
        load_config(path)


# ------------------------------------------------------------ cli.resolve_run_config


def run_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["run", *argv])


def test_cli_without_config_or_sim_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^--config: required"):
        resolve_run_config(run_args())


def test_cli_sim_defaults_with_overrides(tmp_path: Path) -> None:
    cfg = resolve_run_config(
        run_args(
            "--sim",
            "--csms",
            "ws://127.0.0.1:9999/ocpp",
            "--id",
            "CP-7",
            "--data-dir",
            str(tmp_path),
            "--log-level",
            "debug",
        )
    )
    assert cfg.csms.url == "ws://127.0.0.1:9999/ocpp"
    assert cfg.station.charge_point_id == "CP-7"
    assert cfg.station.data_dir == tmp_path
    assert cfg.log_level == "DEBUG"


def test_cli_sim_flag_replaces_every_backend_of_a_file(tmp_path: Path) -> None:
    cfg = resolve_run_config(
        run_args("--config", str(EXAMPLE), "--sim", "--data-dir", str(tmp_path))
    )
    for evse in cfg.evses:
        for backend in (evse.meter, evse.contactor, evse.pilot, evse.token_reader):
            assert backend is not None
            assert backend.backend == SIM_BACKEND
            assert backend.options == {}
    assert cfg.station.data_dir == tmp_path


def test_cli_plain_ws_override_keeps_the_files_security_profile() -> None:
    # The example uses profile 2; pointing it at a ws:// URL must be refused, not downgraded.
    with pytest.raises(ConfigError, match=r"^csms\.url: "):
        resolve_run_config(run_args("--config", str(EXAMPLE), "--csms", "ws://127.0.0.1:1/x"))


def test_cli_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_run_config(run_args("--config", str(tmp_path / "missing.toml")))
