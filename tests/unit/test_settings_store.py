"""Settings: exact JSON round trips, durability, all-or-nothing writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.persistence.settings_store import JSONValue, SettingsStore
from agent.persistence.store import Store

VALUES: dict[str, JSONValue] = {
    "int": 3,
    "big_int": 2**62 + 1,
    "negative": -7,
    "float": 1.0,
    "fraction": -2.5e-7,
    "true": True,
    "false": False,
    "zero": 0,
    "text": "ws://csms.example/ocpp",
    "unicode": "Ladesäule ⚡",
    "empty": "",
    "none": None,
    "list": [1, 2.0, "a", None, [True, False]],
    "dict": {"nested": {"k": [1, {"x": 0.5}]}, "": None},
}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path)
    yield opened
    await opened.close()


def assert_same_types(loaded: JSONValue, original: JSONValue) -> None:
    assert type(loaded) is type(original)
    if isinstance(original, list):
        assert isinstance(loaded, list)
        for got, want in zip(loaded, original, strict=True):
            assert_same_types(got, want)
    elif isinstance(original, dict):
        assert isinstance(loaded, dict)
        for key, want in original.items():
            assert_same_types(loaded[key], want)


async def test_values_round_trip_exactly_across_reopen(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    await SettingsStore(store).set_many(VALUES)
    await store.close()

    store = await Store.open(tmp_path)
    try:
        loaded = await SettingsStore(store).load()
    finally:
        await store.close()
    assert loaded == VALUES
    for key, value in VALUES.items():
        assert_same_types(loaded[key], value)  # 1.0 stays float, True stays bool


async def test_set_replaces_and_delete_removes(store: Store) -> None:
    settings = SettingsStore(store)
    assert await settings.load() == {}
    await settings.set("HeartbeatInterval", 300)
    await settings.set("HeartbeatInterval", 60)
    await settings.set("LocalAuthorizeOffline", True)
    assert await settings.load() == {"HeartbeatInterval": 60, "LocalAuthorizeOffline": True}
    await settings.delete("HeartbeatInterval")
    await settings.delete("HeartbeatInterval")  # missing key: no-op
    assert await settings.load() == {"LocalAuthorizeOffline": True}


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ((1, 2), TypeError),  # would come back as a list
        ({1: "a"}, TypeError),  # key would come back as "1"
        ({"ok": [object()]}, TypeError),
        ({1, 2}, TypeError),
        (float("nan"), ValueError),
        ([float("inf")], ValueError),
    ],
)
async def test_values_that_would_not_round_trip_are_refused_and_nothing_is_written(
    store: Store, value: object, error: type[Exception]
) -> None:
    settings = SettingsStore(store)
    await settings.set("kept", "old")
    with pytest.raises(error):
        await settings.set_many({"kept": "new", "bad": value})  # type: ignore[dict-item]
    assert await settings.load() == {"kept": "old"}


async def test_empty_key_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="key"):
        await SettingsStore(store).set("", 1)


async def test_corrupt_row_is_reported_with_its_key(store: Store) -> None:
    await store.run(lambda c: c.execute("INSERT INTO settings VALUES ('broken', '{not json')"))
    with pytest.raises(ValueError, match="broken"):
        await SettingsStore(store).load()
