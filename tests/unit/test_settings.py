"""Runtime settings: layering, persist-before-apply, validation, junk tolerance."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import agent.settings as settings_module
from agent.persistence.settings_store import SettingsStore
from agent.persistence.store import Store
from agent.settings import (
    DEFINITIONS,
    MEASURAND_CHOICES,
    SUPPORTED_MEASURANDS,
    SettingDef,
    SettingError,
    Settings,
    SettingValue,
    definition,
)

HB = "heartbeat_interval_s"
SAMPLED = "meter_values_sampled_data"


class FakeBackend:
    """Records every ``set`` in ``log``; can fail; can look at Settings during a set."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.log: list[tuple[str, str, Any]] = []
        self.fail: Exception | None = None
        self.peek: Callable[[str], Any] | None = None

    async def set(self, key: str, value: Any) -> None:
        if self.fail is not None:
            raise self.fail
        seen = self.peek(key) if self.peek is not None else None
        self.calls.append((key, value))
        self.log.append(("persist", key, seen))


def make(
    persisted: dict[str, Any] | None = None, config: dict[str, Any] | None = None
) -> tuple[Settings, FakeBackend]:
    backend = FakeBackend()
    return Settings(backend, persisted or {}, config), backend


def test_defaults_when_nothing_is_configured_or_persisted() -> None:
    settings, backend = make()
    for d in DEFINITIONS:
        assert settings.get(d.name) == d.default
    assert backend.calls == []


@pytest.mark.parametrize(
    ("config", "persisted", "expected"),
    [
        pytest.param({}, {}, 300, id="default"),
        pytest.param({HB: 60}, {}, 60, id="config-over-default"),
        pytest.param({}, {HB: 90}, 90, id="persisted-over-default"),
        pytest.param({HB: 60}, {HB: 90}, 90, id="persisted-over-config"),
        pytest.param({HB: 60}, {"other.key": 1}, 60, id="unrelated-persisted-key"),
    ],
)
def test_layering(config: dict[str, Any], persisted: dict[str, Any], expected: int) -> None:
    settings, backend = make(persisted, config)
    assert settings.get_int(HB) == expected
    assert backend.calls == []  # building never writes


def test_persisted_list_comes_back_as_tuple() -> None:
    settings, _ = make({SAMPLED: ["Voltage", "Current.Import"]})
    assert settings.get_list(SAMPLED) == ("Voltage", "Current.Import")


def test_unknown_persisted_names_are_ignored() -> None:
    # The settings table also holds other keys (availability, newer versions' settings).
    settings, _ = make({"availability.1": False, "no_such_setting": 5})
    with pytest.raises(KeyError):
        settings.get("no_such_setting")


JUNK = [
    pytest.param(HB, "abc", id="str-for-int"),
    pytest.param(HB, 0, id="below-min"),
    pytest.param(HB, True, id="bool-for-int"),
    pytest.param(HB, 1.5, id="float-for-int"),
    pytest.param(HB, None, id="null"),
    pytest.param(SAMPLED, ["Temperature"], id="unsupported-measurand"),
    pytest.param(SAMPLED, "Voltage", id="str-for-list"),
    pytest.param("local_pre_authorize", "false", id="str-for-bool"),
    pytest.param("local_pre_authorize", 0, id="int-for-bool"),
    pytest.param("authorization_key", 5, id="int-for-str"),
    pytest.param("connector_phase_rotation", {"a": 1}, id="dict-for-str"),
]


@pytest.mark.parametrize(("name", "junk"), JUNK)
def test_persisted_junk_falls_back_to_default(name: str, junk: Any) -> None:
    settings, _ = make({name: junk})
    assert settings.get(name) == definition(name).default


@pytest.mark.parametrize(("name", "junk"), JUNK)
def test_persisted_junk_falls_back_to_config_value(name: str, junk: Any) -> None:
    config_value: dict[str, Any] = {
        HB: 120,
        SAMPLED: ["Voltage"],
        "local_pre_authorize": True,
        "authorization_key": "configured-key",
        "connector_phase_rotation": "0.RST,1.RTS",
    }
    settings, _ = make({name: junk}, {name: config_value[name]})
    expected = config_value[name]
    assert settings.get(name) == (tuple(expected) if isinstance(expected, list) else expected)


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        pytest.param({"HeartbeatInterval": 60}, "unknown setting", id="unknown"),
        pytest.param({HB: 0}, ">= 1", id="below-min"),
        pytest.param({HB: "60"}, "integer", id="wrong-type"),
        pytest.param(
            {SAMPLED: ["Energy.Active.Import.Register", "Temperature"]},
            "Temperature",
            id="bad-member",
        ),
    ],
)
def test_bad_config_values_raise(config: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SettingError, match=fragment):
        make({}, config)


async def test_set_persists_before_applying_and_then_notifies() -> None:
    settings, backend = make()
    backend.peek = settings.get  # the in-memory value at the moment of persisting
    heard: list[tuple[str, SettingValue]] = []

    def listener(name: str, value: SettingValue) -> None:
        heard.append((name, value))
        backend.log.append(("notify", name, value))

    settings.subscribe(listener)
    await settings.set(HB, 60)

    assert backend.calls == [(HB, 60)]
    assert backend.log == [("persist", HB, 300), ("notify", HB, 60)]  # old value while persisting
    assert settings.get_int(HB) == 60
    assert heard == [(HB, 60)]


async def test_set_stores_lists_as_json_lists_and_keeps_tuples_in_memory() -> None:
    settings, backend = make()
    heard: list[SettingValue] = []
    settings.subscribe(lambda _name, value: heard.append(value))
    await settings.set(SAMPLED, [" Voltage ", "", "Current.Import"])
    assert backend.calls == [(SAMPLED, ["Voltage", "Current.Import"])]
    assert settings.get_list(SAMPLED) == ("Voltage", "Current.Import")
    assert heard == [("Voltage", "Current.Import")]


async def test_every_listener_is_notified() -> None:
    settings, _ = make()
    first: list[str] = []
    second: list[str] = []
    settings.subscribe(lambda name, _value: first.append(name))
    settings.subscribe(lambda name, _value: second.append(name))
    await settings.set("local_pre_authorize", True)
    assert first == second == ["local_pre_authorize"]


async def test_failed_persist_changes_nothing() -> None:
    settings, backend = make()
    heard: list[str] = []
    settings.subscribe(lambda name, _value: heard.append(name))
    backend.fail = OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        await settings.set(HB, 60)
    assert settings.get_int(HB) == 300
    assert heard == []


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        pytest.param("no_such_setting", 1, KeyError, id="unknown"),
        pytest.param(HB, 0, SettingError, id="below-min"),
        pytest.param(HB, "60", SettingError, id="str-for-int"),
        pytest.param(HB, True, SettingError, id="bool-for-int"),
        pytest.param("local_pre_authorize", 1, SettingError, id="int-for-bool"),
        pytest.param(SAMPLED, "Voltage", SettingError, id="str-for-list"),
        pytest.param(SAMPLED, ["Temperature"], SettingError, id="unsupported-measurand"),
        pytest.param("authorization_key", 123, SettingError, id="int-for-str"),
    ],
)
async def test_bad_set_raises_and_changes_nothing(
    name: str, value: object, error: type[Exception]
) -> None:
    settings, backend = make()
    heard: list[str] = []
    settings.subscribe(lambda n, _v: heard.append(n))
    before = {d.name: settings.get(d.name) for d in DEFINITIONS}
    with pytest.raises(error):
        await settings.set(name, value)
    assert backend.calls == []
    assert heard == []
    assert {d.name: settings.get(d.name) for d in DEFINITIONS} == before


async def test_read_only_setting_refuses_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # No built-in setting is read-only yet; add one the way a new definition would.
    readonly = SettingDef("station_serial", "SN-1", mutable=False)
    monkeypatch.setattr(settings_module, "DEFINITIONS", (*DEFINITIONS, readonly))
    monkeypatch.setattr(settings_module, "_BY_NAME", {d.name: d for d in (*DEFINITIONS, readonly)})
    settings, backend = make()
    with pytest.raises(SettingError, match="read-only"):
        await settings.set("station_serial", "SN-2")
    assert backend.calls == []
    assert settings.get("station_serial") == "SN-1"


@pytest.mark.parametrize(
    ("name", "raw", "canonical"),
    [
        pytest.param(SAMPLED, ("Voltage",), ("Voltage",), id="tuple"),
        pytest.param(SAMPLED, [" Voltage", "Frequency "], ("Voltage", "Frequency"), id="strip"),
        pytest.param(SAMPLED, ["", "  "], (), id="blank-entries-dropped"),
        pytest.param("stop_txn_sampled_data", [], (), id="empty"),
        pytest.param(HB, 1, 1, id="int-min"),
        pytest.param("meter_value_sample_interval_s", 0, 0, id="zero-allowed"),
        pytest.param("local_pre_authorize", False, False, id="bool"),
        pytest.param("connector_phase_rotation", "1.RST", "1.RST", id="str"),
    ],
)
def test_coerce_canonical_forms(name: str, raw: object, canonical: SettingValue) -> None:
    assert definition(name).coerce(raw) == canonical


def test_every_list_setting_allows_only_supported_members() -> None:
    for d in DEFINITIONS:
        if isinstance(d.default, tuple):
            assert d.allowed is not None, d.name
            assert set(d.default) <= set(d.allowed), d.name
            if d.allowed == MEASURAND_CHOICES:  # measurand lists default to plain measurands
                assert set(d.default) <= set(SUPPORTED_MEASURANDS), d.name
        assert d.coerce(d.default) == d.default, d.name  # every default is valid


def test_secrets_are_marked() -> None:
    assert definition("authorization_key").secret
    assert [d.name for d in DEFINITIONS if d.secret] == ["authorization_key"]


INT_SETTINGS = [d for d in DEFINITIONS if type(d.default) is int and d.mutable]


@given(d=st.sampled_from(INT_SETTINGS), value=st.integers(min_value=-(2**40), max_value=2**40))
async def test_int_settings_accept_exactly_values_at_or_above_min(
    d: SettingDef, value: int
) -> None:
    settings, backend = make()
    min_value = d.min_value if d.min_value is not None else -(2**63)
    if value >= min_value:
        await settings.set(d.name, value)
        assert settings.get_int(d.name) == value
        assert backend.calls == [(d.name, value)]
    else:
        with pytest.raises(SettingError):
            await settings.set(d.name, value)
        assert backend.calls == []


async def test_values_set_survive_a_restart_with_the_real_store(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    try:
        settings = Settings(SettingsStore(store), await SettingsStore(store).load(), {HB: 60})
        await settings.set(HB, 90)
        await settings.set(SAMPLED, ["Voltage"])
    finally:
        await store.close()

    store = await Store.open(tmp_path)
    try:
        reloaded = Settings(SettingsStore(store), await SettingsStore(store).load(), {HB: 60})
    finally:
        await store.close()
    assert reloaded.get_int(HB) == 90  # the CSMS value beats the config file
    assert reloaded.get_list(SAMPLED) == ("Voltage",)
