"""Board profiles: a charger's hardware described once, reused by every config.

A profile is a TOML file with ``[[evse]]`` tables holding the HAL role tables
of one board design (which backend drives each role and with which pins, ports,
buses). A config names it with the top-level key ``board`` (a shipped profile
name, see ``available_boards``, or the path of a vendor's own file) and may
override any key of it::

    board = "pi-gpio-ac"
    [[evse]]
    id = 1
    meter = { backend = "modbus-rtu", port = "/dev/ttyAMA0", model = "sdm72dm2" }

Merging is per EVSE by position: plain keys of the config win; a role table of
the config is merged key by key into the profile's when both name the same
backend, and replaces it when the backend differs (the options belong to the
backend). Config EVSEs beyond the profile's are added as they are.

``check_pins`` refuses a GPIO pin used twice anywhere in the station; pin options
are recognised by name (``*_pin`` and ``*_pins``), the convention every GPIO
backend follows.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

BOARDS_PACKAGE = "hal.boards"
BOARD_KEYS = frozenset({"description", "evse"})


class BoardError(ValueError):
    """A profile that cannot be used; the message names the profile."""


def available_boards() -> list[str]:
    """Names of the profiles shipped in ``hal/boards`` (file name without .toml)."""
    files = resources.files(BOARDS_PACKAGE).iterdir()
    return sorted(f.name.removesuffix(".toml") for f in files if f.name.endswith(".toml"))


def load_board(name: str) -> dict[str, Any]:
    """Read a shipped profile by name, or a vendor's profile file by path.

    Raises:
        BoardError: Unknown name, unreadable file, TOML syntax error, a key other
            than ``description`` and ``evse``, or no ``[[evse]]`` table.
    """
    if name.endswith(".toml") or "/" in name:
        label, path = f"board {name!r}", Path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BoardError(f"{label}: cannot read ({exc})") from None
    else:
        label = f"board {name!r}"
        if name not in available_boards():
            known = ", ".join(available_boards())
            raise BoardError(f"{label}: unknown board profile (known: {known})")
        text = resources.files(BOARDS_PACKAGE).joinpath(f"{name}.toml").read_text("utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BoardError(f"{label}: TOML syntax error: {exc}") from None
    unknown = sorted(set(data) - BOARD_KEYS)
    if unknown:
        raise BoardError(f"{label}: {unknown[0]}: unknown key (a profile has description, evse)")
    evses = data.get("evse")
    if not isinstance(evses, list) or not evses or not all(isinstance(e, dict) for e in evses):
        raise BoardError(f"{label}: needs at least one [[evse]] table")
    return data


def merge_board(board: Mapping[str, Any], config_evses: Sequence[Any]) -> list[Any]:
    """The ``[[evse]]`` list of a config on top of a profile (see module docstring).

    Pure: neither argument is modified. Non-table entries are passed through for
    the config parser to refuse with its own message.
    """
    merged: list[Any] = [copy.deepcopy(e) for e in board["evse"]]
    for index, override in enumerate(config_evses):
        if index >= len(merged) or not isinstance(override, dict):
            merged.append(copy.deepcopy(override))
            continue
        base = merged[index]
        for key, value in override.items():
            current = base.get(key)
            same_backend = (
                isinstance(value, dict)
                and isinstance(current, dict)
                and value.get("backend", current.get("backend")) == current.get("backend")
            )
            if same_backend:
                base[key] = {**current, **copy.deepcopy(value)}
            else:
                base[key] = copy.deepcopy(value)
    return merged


_NUMBERED = re.compile(r"(?:GPIO|BCM)?(\d+)", re.IGNORECASE)


def pin_key(value: object) -> str:
    """A comparable name of a gpiozero pin spec: 17, "17", "GPIO17", "BCM17" -> "GPIO17".

    Other specs (e.g. "BOARD11", "J8:11") are compared as written, upper-cased.
    """
    text = str(value).strip()
    match = _NUMBERED.fullmatch(text)
    return f"GPIO{int(match.group(1))}" if match else text.upper()


def _pins(path: str, options: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for key, value in options.items():
        if value is None or isinstance(value, bool):
            continue
        if key.endswith("_pin"):
            yield pin_key(value), f"{path}.{key}"
        elif key.endswith("_pins") and isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if item is not None:
                    yield pin_key(item), f"{path}.{key}[{i}]"


SHARED_BUS_PINS = frozenset({"spi_clock_pin", "spi_mosi_pin", "spi_miso_pin"})
"""Option names of bus lines that several devices share by design (one SPI bus,
one chip-select pin per device): the same pin under the same name is fine."""


def check_pins(role_options: Iterator[tuple[str, Mapping[str, Any]]]) -> None:
    """Refuse a pin used twice (shared bus lines excepted, see ``SHARED_BUS_PINS``).

    Args:
        role_options: (key path like "evse[0].contactor", backend options with
            defaults filled in) pairs.

    Raises:
        ValueError: "<path>: pin GPIO17 is already used by <other path>".
    """
    seen: dict[str, str] = {}
    for path, options in role_options:
        for pin, where in _pins(path, options):
            other = seen.get(pin)
            if other is not None and not _shared_bus_line(where, other):
                raise ValueError(f"{where}: pin {pin} is already used by {other}")
            seen.setdefault(pin, where)


def _shared_bus_line(where: str, other: str) -> bool:
    name, other_name = where.rsplit(".", 1)[1], other.rsplit(".", 1)[1]
    return name == other_name and name in SHARED_BUS_PINS
