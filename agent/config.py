"""The agent's TOML configuration: typed, validated at start.

A wrong key, type or value refuses to start with one line that names the key and
the problem (``ConfigError``), e.g. ``evse[1].max_current_a: must be > 0``.
Every duration, current and power key carries its unit in its name.

Layout (see ``deploy/agent.toml.example`` for an annotated file)::

    [station]   identity, data directory, electrical limits
    [csms]      URL, OCPP version, security, connection timing
    [ocpp]      start-up values of the OCPP-visible settings (agent.settings names)
    [sim]       the simulated EV used by ``sim`` backends
    board       optional board profile supplying the [[evse]] role tables
                (``agent.boards``; the config's own tables override it)
    [[evse]]    one table per EVSE, with [evse.meter], [evse.contactor],
                [evse.pilot] and optional [evse.token_reader], [evse.lock] and
                [evse.indicator] backend tables
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import urlsplit

from agent.boards import BoardError, check_pins, load_board, merge_board
from agent.settings import SettingError, definition
from hal.options import check, non_negative, positive

ROLES = ("meter", "contactor", "pilot", "token_reader", "lock", "indicator")
OPTIONAL_ROLES = ("token_reader", "lock", "indicator")
NO_SIM_ROLES = ("lock", "indicator")  # the simulated rig has neither
SIM_BACKEND = "sim"
SELF_CLOSING_CONTACTORS = frozenset({"openevse-rapi"})
"""Contactor backends whose relay a safety MCU closes by itself (in state C, with PWM
on): the agent cannot hold it open until a connector lock is confirmed."""
OCPP_VERSIONS = ("1.6", "2.0.1", "auto")
"""Accepted ``csms.ocpp_version`` values; "auto" offers 2.0.1 and 1.6 and uses the CSMS's pick."""


class ConfigError(ValueError):
    """Invalid configuration; the message is one line naming the key."""


@dataclass(frozen=True)
class StationConfig:
    """Identity and limits of the whole station."""

    charge_point_id: str
    data_dir: Path
    vendor: str = "evse-agent"
    model: str = "evse-agent-ac"
    serial_number: str = ""
    nominal_voltage_v: float = field(default=230.0, metadata=check(positive))
    max_current_a: float = field(default=32.0, metadata=check(positive))
    ventilation_available: bool = False


@dataclass(frozen=True)
class CsmsConfig:
    """How to reach the CSMS.

    ``url`` is the base URL; the agent appends ``/<charge_point_id>`` (OCPP-J).
    ``security_profile``: 0 none, 1 basic auth over ws, 2 TLS + basic auth,
    3 TLS with client certificate (OCPP 1.6 security whitepaper 2.1).
    """

    url: str
    ocpp_version: str = "1.6"
    security_profile: int = 0
    basic_auth_password: str = ""
    ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    call_timeout_s: float = field(default=30.0, metadata=check(positive))
    connect_timeout_s: float = field(default=10.0, metadata=check(positive))
    reconnect_min_s: float = field(default=1.0, metadata=check(positive))
    reconnect_max_s: float = field(default=60.0, metadata=check(positive))
    boot_retry_s: float = field(default=30.0, metadata=check(positive))


@dataclass(frozen=True)
class SimConfig:
    """The simulated EV behind ``sim`` backends."""

    ev_max_current_a: float = field(default=32.0, metadata=check(positive))
    ev_phases: int = 3
    battery_wh: float = field(default=60000.0, metadata=check(positive))
    soc_pct: float = field(default=40.0, metadata=check(non_negative))
    tick_interval_s: float = field(default=0.1, metadata=check(positive))
    meter_fault_after_s: float = field(default=5.0, metadata=check(positive))


@dataclass(frozen=True)
class BackendConfig:
    """One HAL role: a backend name and its options (validated by the backend).

    ``resolved`` is every option with defaults filled in, as the validator parsed
    them (empty without a validator, and for ``sim``); the pin check reads it.
    """

    backend: str
    options: Mapping[str, Any]
    resolved: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class EvseConfig:
    """One EVSE (one connector) and its hardware."""

    id: int
    meter: BackendConfig
    contactor: BackendConfig
    pilot: BackendConfig
    token_reader: BackendConfig | None = None
    lock: BackendConfig | None = None
    indicator: BackendConfig | None = None
    max_current_a: float = field(default=32.0, metadata=check(positive))
    phases: int = 3


@dataclass(frozen=True)
class FirmwareConfig:
    """Firmware updates (``[firmware]``): where the new release goes and how to reboot.

    ``slots_dir`` None means ``<data_dir>/slots``; ``reboot_command`` "" means: the
    dir backend re-executes the agent process (the rauc backend needs a command).
    """

    slot_backend: Literal["dir", "rauc"] = "dir"
    slots_dir: Path | None = None
    rauc_command: str = "rauc"
    reboot_command: str = ""
    max_download_bytes: int = field(default=512 * 1024 * 1024, metadata=check(positive))
    download_timeout_s: float = field(default=30.0, metadata=check(positive))
    health_timeout_s: float = field(default=300.0, metadata=check(positive))
    trial_boot_attempts: int = field(default=2, metadata=check(positive))
    accept_unsigned_updates: bool = False


@dataclass(frozen=True)
class AgentConfig:
    """The whole configuration."""

    station: StationConfig
    csms: CsmsConfig
    evses: tuple[EvseConfig, ...]
    ocpp: Mapping[str, Any]
    sim: SimConfig
    log_level: str = "INFO"
    firmware: FirmwareConfig = field(default_factory=FirmwareConfig)

    @property
    def uses_sim(self) -> bool:
        """True when any EVSE role runs on simulated hardware."""
        return any(
            getattr(e, role) is not None and getattr(e, role).backend == SIM_BACKEND
            for e in self.evses
            for role in ROLES
        )


# ------------------------------------------------------------------ parsing

T = TypeVar("T")

BackendValidator = Callable[[str, str, Mapping[str, Any], str], Mapping[str, Any] | None]
"""(role, backend name, options, key path) -> the options with defaults filled in (or
None); raises ConfigError."""


def _type_name(tp: Any) -> str:
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is bool:
        return "true or false"
    if tp is str or tp is Path:
        return "a string"
    return str(tp)


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        problems = []
        for arg in args:  # e.g. int | str pins: 17 or "GPIO17"
            try:
                return _convert(arg, value, path)
            except ConfigError as e:
                problems.append(e)
        if len(problems) == 1:
            raise problems[0]
        names = " or ".join(_type_name(a) for a in args)
        raise ConfigError(f"{path}: expected {names}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{path}: must be one of {', '.join(map(str, get_args(tp)))}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{path}: must be a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: expected a path string, got {value!r}")
        return Path(value)
    raise ConfigError(f"{path}: unsupported type {tp!r}")  # pragma: no cover


def parse_dataclass(cls: type[T], table: Any, path: str) -> T:
    """Build dataclass ``cls`` from a TOML table, strictly.

    Unknown keys, missing required keys, wrong types and values refused by a
    field's ``check`` metadata raise ConfigError naming ``path.key``.
    """
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: expected a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"{_join(path, unknown[0])}: unknown key")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = _join(path, name)
        if name not in table:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{key}: missing")
            continue
        value = _convert(hints[name], table[name], key)
        check = f.metadata.get("check")
        if check is not None:
            problem = check(value)
            if problem:
                raise ConfigError(f"{key}: {problem}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ValueError as e:  # a check across keys (``__post_init__``)
        raise ConfigError(f"{path}: {e}") from None


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # TOML bare keys; others are shown quoted


def _join(path: str, key: str) -> str:
    shown = key if _BARE_KEY.fullmatch(key) else repr(key)
    return f"{path}.{shown}" if path else shown


def _backend(table: Any, role: str, path: str, validate: BackendValidator | None) -> BackendConfig:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: expected a table with a 'backend' key")
    options = dict(table)
    name = options.pop("backend", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{path}.backend: missing")
    resolved: Mapping[str, Any] = {}
    if name == SIM_BACKEND and options:
        raise ConfigError(f"{path}.{sorted(options)[0]}: unknown key (sim takes no options)")
    if name != SIM_BACKEND and validate is not None:
        resolved = validate(role, name, options, path) or {}
    return BackendConfig(backend=name, options=options, resolved=resolved)


def _evse(table: Any, index: int, validate: BackendValidator | None) -> EvseConfig:
    path = f"evse[{index}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: expected a table")
    plain = {k: v for k, v in table.items() if k not in ROLES}
    roles: dict[str, BackendConfig | None] = {}
    for role in ROLES:
        if role in table:
            roles[role] = _backend(table[role], role, f"{path}.{role}", validate)
            backend = roles[role]
            if role in NO_SIM_ROLES and backend is not None and backend.backend == SIM_BACKEND:
                raise ConfigError(f"{path}.{role}.backend: there is no simulated {role}")
        elif role not in OPTIONAL_ROLES:
            raise ConfigError(f"{path}.{role}: missing")
    scalars = parse_dataclass(_EvseScalars, plain, path)
    if scalars.phases not in (1, 3):
        raise ConfigError(f"{path}.phases: must be 1 or 3")
    meter, contactor, pilot = roles["meter"], roles["contactor"], roles["pilot"]
    assert meter is not None and contactor is not None and pilot is not None
    if roles.get("lock") is not None and contactor.backend in SELF_CLOSING_CONTACTORS:
        raise ConfigError(
            f"{path}.lock: the {contactor.backend} contactor closes by itself in state C, "
            "before a lock could be confirmed; use a board that locks on its own"
        )
    return EvseConfig(
        id=scalars.id,
        meter=meter,
        contactor=contactor,
        pilot=pilot,
        token_reader=roles.get("token_reader"),
        lock=roles.get("lock"),
        indicator=roles.get("indicator"),
        max_current_a=scalars.max_current_a,
        phases=scalars.phases,
    )


@dataclass(frozen=True)
class _EvseScalars:
    """The plain keys of an [[evse]] table (the role tables are parsed apart)."""

    id: int
    max_current_a: float = field(default=32.0, metadata=check(positive))
    phases: int = 3


def parse_config(data: Mapping[str, Any], validate: BackendValidator | None = None) -> AgentConfig:
    """Validate a parsed TOML document.

    Args:
        data: The document (``tomllib.loads`` output).
        validate: Checks each non-sim backend's options (the HAL registry does it).

    Raises:
        ConfigError: one line naming the key and the problem.
    """
    known = {"station", "csms", "ocpp", "sim", "evse", "log_level", "board", "firmware"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown section")
    for required in ("station", "csms"):
        if required not in data:
            raise ConfigError(f"{required}: missing section")
    station = parse_dataclass(StationConfig, data["station"], "station")
    if not station.charge_point_id or "/" in station.charge_point_id:
        raise ConfigError("station.charge_point_id: must be non-empty and contain no '/'")
    csms = parse_dataclass(CsmsConfig, data["csms"], "csms")
    _check_csms(csms)
    sim = parse_dataclass(SimConfig, data.get("sim", {}), "sim")
    if sim.ev_phases not in (1, 3):
        raise ConfigError("sim.ev_phases: must be 1 or 3")
    raw_evses = data.get("evse", [])
    board = data.get("board")
    if board is not None:
        raw_evses = _with_board(board, raw_evses)
    if not isinstance(raw_evses, list) or not raw_evses:
        raise ConfigError("evse: at least one [[evse]] table is required")
    try:
        evses = tuple(_evse(t, i, validate) for i, t in enumerate(raw_evses))
        ids = [e.id for e in evses]
        if sorted(ids) != list(range(1, len(ids) + 1)):
            raise ConfigError("evse.id: EVSE ids must be 1..N, each once")
        check_pins(
            (f"evse[{i}].{role}", backend.resolved or backend.options)
            for i, evse in enumerate(evses)
            for role in ROLES
            if (backend := getattr(evse, role, None)) is not None
        )
    except (ConfigError, ValueError) as e:
        raise ConfigError(f"{e} (board profile {board!r})" if board else str(e)) from None
    ocpp = data.get("ocpp", {})
    if not isinstance(ocpp, dict):
        raise ConfigError("ocpp: expected a table")
    for name, value in ocpp.items():
        try:
            definition(name).coerce(value)
        except KeyError:
            raise ConfigError(f"ocpp.{name}: unknown key") from None
        except SettingError as e:
            raise ConfigError(f"ocpp.{e}") from None
    log_level = data.get("log_level", "INFO")
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("log_level: must be DEBUG, INFO, WARNING or ERROR")
    firmware = parse_dataclass(FirmwareConfig, data.get("firmware", {}), "firmware")
    if firmware.slot_backend == "rauc" and not firmware.reboot_command:
        raise ConfigError("firmware.reboot_command: required by slot_backend rauc")
    return AgentConfig(station, csms, evses, dict(ocpp), sim, log_level, firmware)


def _with_board(board: Any, raw_evses: Any) -> list[Any]:
    if not isinstance(board, str) or not board:
        raise ConfigError("board: expected a board profile name or file path")
    if not isinstance(raw_evses, list):
        raise ConfigError("evse: expected [[evse]] tables")
    try:
        return merge_board(load_board(board), raw_evses)
    except BoardError as e:
        raise ConfigError(str(e)) from None


def _check_csms(csms: CsmsConfig) -> None:
    if csms.ocpp_version not in OCPP_VERSIONS:
        raise ConfigError(
            f"csms.ocpp_version: {csms.ocpp_version!r} is not supported "
            f"(supported: {', '.join(OCPP_VERSIONS)})"
        )
    parts = urlsplit(csms.url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigError(f"csms.url: expected a ws:// or wss:// URL, got {csms.url!r}")
    if csms.security_profile not in (0, 1, 2, 3):
        raise ConfigError("csms.security_profile: must be 0, 1, 2 or 3")
    if csms.security_profile >= 2 and parts.scheme != "wss":
        raise ConfigError("csms.url: security profile 2 and 3 need a wss:// URL")
    if csms.security_profile in (1, 2) and not csms.basic_auth_password:
        raise ConfigError("csms.basic_auth_password: required by security profile 1 and 2")
    if csms.security_profile == 3 and not (csms.client_cert_file and csms.client_key_file):
        raise ConfigError("csms.client_cert_file: profile 3 needs client_cert_file and key")
    if csms.reconnect_max_s < csms.reconnect_min_s:
        raise ConfigError("csms.reconnect_max_s: must be >= reconnect_min_s")


def load_config(path: Path, validate: BackendValidator | None = None) -> AgentConfig:
    """Read and validate a TOML config file.

    Raises:
        ConfigError: unreadable file, TOML syntax error or invalid content.
    """
    return parse_config(read_toml(path), validate)


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file.

    Raises:
        ConfigError: unreadable, not UTF-8, or a TOML syntax error (one line).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: TOML syntax error: {e}") from None


def sim_defaults(
    data_dir: Path, csms_url: str, charge_point_id: str, evse_count: int = 1
) -> dict[str, Any]:
    """The built-in config of ``evse-agent run --sim`` when no file is given."""
    evse = {
        "meter": {"backend": SIM_BACKEND},
        "contactor": {"backend": SIM_BACKEND},
        "pilot": {"backend": SIM_BACKEND},
        "token_reader": {"backend": SIM_BACKEND},
    }
    return {
        "station": {
            "charge_point_id": charge_point_id,
            "data_dir": str(data_dir),
            "model": "evse-agent-sim",
            "serial_number": f"SIM-{charge_point_id}",
        },
        "csms": {"url": csms_url, "ocpp_version": "1.6"},
        "evse": [{"id": i + 1, **evse} for i in range(evse_count)],
    }
