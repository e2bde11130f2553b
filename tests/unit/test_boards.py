"""Board profiles: shipped ones validate, configs override them, bad ones are named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.app import backend_validator
from agent.boards import available_boards, load_board, merge_board, pin_key
from agent.config import ConfigError, parse_config
from hal.registry import default_registry


def config(**extra: Any) -> dict[str, Any]:
    return {
        "station": {"charge_point_id": "CP1", "data_dir": "/tmp/x"},
        "csms": {"url": "ws://127.0.0.1:9000/ocpp"},
        **extra,
    }


def parse(data: dict[str, Any]) -> Any:
    return parse_config(data, backend_validator(default_registry()))


@pytest.mark.parametrize("name", available_boards())
def test_every_shipped_profile_is_a_valid_station(name: str) -> None:
    parsed = parse(config(board=name))
    assert parsed.evses, name
    assert [e.id for e in parsed.evses] == list(range(1, len(parsed.evses) + 1))


def test_the_four_required_profiles_ship() -> None:
    assert {"pi-gpio-ac", "openevse-rapi", "chademo-can", "sim"} <= set(available_boards())


def test_config_keys_override_the_profile_and_same_backend_tables_merge() -> None:
    board = {
        "evse": [
            {
                "id": 1,
                "max_current_a": 32.0,
                "meter": {"backend": "modbus-rtu", "port": "/dev/ttyUSB0", "model": "sdm630"},
                "contactor": {"backend": "gpio", "coil_pin": 17},
            }
        ]
    }
    override = [
        {
            "max_current_a": 16.0,
            "meter": {"model": "sdm72dm2"},
            "contactor": {"backend": "sim"},
        },
        {"id": 2},
    ]
    merged = merge_board(board, override)
    assert merged[0]["max_current_a"] == 16.0
    assert merged[0]["meter"] == {
        "backend": "modbus-rtu",
        "port": "/dev/ttyUSB0",
        "model": "sdm72dm2",
    }
    assert merged[0]["contactor"] == {"backend": "sim"}  # another backend: replaced whole
    assert merged[1] == {"id": 2}
    assert board["evse"][0]["max_current_a"] == 32.0  # the profile itself is untouched


def test_sim_profile_gives_a_simulated_station() -> None:
    parsed = parse(config(board="sim"))
    assert parsed.uses_sim
    assert parsed.evses[0].pilot.backend == "sim"


def test_unknown_profile_is_refused_with_its_name() -> None:
    with pytest.raises(ConfigError, match="board 'no-such-board': unknown board profile"):
        parse(config(board="no-such-board"))


def test_a_pin_used_twice_names_both_uses_and_the_profile(tmp_path: Path) -> None:
    profile = tmp_path / "twice.toml"
    profile.write_text(
        "[[evse]]\nid = 1\n"
        'meter = { backend = "sim" }\n'
        'pilot = { backend = "sim" }\n'
        'contactor = { backend = "gpio", coil_pin = 17, feedback_pin = "GPIO17" }\n'
    )
    with pytest.raises(ConfigError) as err:
        parse(config(board=str(profile)))
    message = str(err.value)
    assert "evse[0].contactor.feedback_pin: pin GPIO17 is already used by" in message
    assert "evse[0].contactor.coil_pin" in message
    assert str(profile) in message


def test_a_pin_shared_between_two_evses_is_refused() -> None:
    evse = {
        "meter": {"backend": "sim"},
        "pilot": {"backend": "sim"},
    }
    data = config(
        evse=[
            {"id": 1, **evse, "contactor": {"backend": "gpio", "coil_pin": 5}},
            {"id": 2, **evse, "contactor": {"backend": "gpio", "coil_pin": "BCM5"}},
        ]
    )
    with pytest.raises(ConfigError, match=r"evse\[1\]\.contactor\.coil_pin: pin GPIO5"):
        parse(data)


def test_unknown_backend_in_a_profile_is_named(tmp_path: Path) -> None:
    profile = tmp_path / "odd.toml"
    profile.write_text(
        "[[evse]]\nid = 1\n"
        'meter = { backend = "warp-drive" }\n'
        'pilot = { backend = "sim" }\n'
        'contactor = { backend = "sim" }\n'
    )
    with pytest.raises(ConfigError, match=r"unknown meter backend 'warp-drive'.*odd\.toml"):
        parse(config(board=str(profile)))


def test_missing_port_in_a_profile_is_named(tmp_path: Path) -> None:
    profile = tmp_path / "noport.toml"
    profile.write_text(
        "[[evse]]\nid = 1\n"
        'meter = { backend = "modbus-rtu", model = "sdm630" }\n'
        'pilot = { backend = "sim" }\n'
        'contactor = { backend = "sim" }\n'
    )
    with pytest.raises(ConfigError, match=r"evse\[0\]\.meter\.port: missing.*noport.toml"):
        parse(config(board=str(profile)))


def test_profile_files_with_stray_keys_or_no_evse_are_refused(tmp_path: Path) -> None:
    stray = tmp_path / "stray.toml"
    stray.write_text('colour = "red"\n[[evse]]\nid = 1\n')
    with pytest.raises(ConfigError, match="colour: unknown key"):
        load_board_config(stray)
    empty = tmp_path / "empty.toml"
    empty.write_text('description = "nothing"\n')
    with pytest.raises(ConfigError, match=r"needs at least one \[\[evse\]\]"):
        load_board_config(empty)
    broken = tmp_path / "broken.toml"
    broken.write_text("[[evse]\n")
    with pytest.raises(ConfigError, match="TOML syntax error"):
        load_board_config(broken)


def load_board_config(path: Path) -> Any:
    return parse(config(board=str(path)))


def test_pin_names_compare_by_gpio_number() -> None:
    assert pin_key(17) == pin_key("17") == pin_key("GPIO17") == pin_key("bcm17") == "GPIO17"
    assert pin_key("BOARD11") == "BOARD11"
    assert load_board("sim")["evse"][0]["id"] == 1


def test_a_lock_with_a_self_closing_rapi_relay_is_refused(tmp_path: Path) -> None:
    link = {"backend": "openevse-rapi", "port": "/dev/ttyAMA0"}
    evse = {
        "id": 1,
        "pilot": link,
        "contactor": link,
        "meter": link,
        "lock": {"backend": "gpio", "lock_pin": 5, "unlock_pin": 6, "feedback_pin": 13},
    }
    with pytest.raises(ConfigError, match=r"evse\[0\]\.lock: the openevse-rapi contactor"):
        parse(config(evse=[evse]))
