"""Durable key/value settings (configuration the CSMS or a technician changed).

Values are JSON-encoded in the ``settings`` table. Only values that survive a
JSON round trip unchanged are accepted (None, bool, int, finite float, str,
lists and str-keyed dicts of those), so what :meth:`SettingsStore.load` returns
equals what was set, type included (``1.0`` stays a float, ``True`` a bool).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping
from typing import TypeAlias

from agent.persistence.store import Store

__all__ = ["JSONValue", "SettingsStore"]

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None


class SettingsStore:
    """Settings kept in the agent database.

    Each call is one store transaction: durable when it returns. Methods raise
    what :meth:`Store.run` raises (``StoreError`` when closed, ``sqlite3.Error``).
    """

    def __init__(self, store: Store) -> None:
        """Use ``store`` (already open and migrated)."""
        self._store = store

    async def load(self) -> dict[str, JSONValue]:
        """All stored settings.

        Raises:
            ValueError: A stored value is not valid JSON (a corrupt row); the
                message names the key.
        """

        def read(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            return [(str(k), str(v)) for k, v in conn.execute("SELECT key, value FROM settings")]

        rows = await self._store.run(read)
        settings: dict[str, JSONValue] = {}
        for key, text in rows:
            try:
                settings[key] = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"setting {key!r} holds corrupt JSON: {exc}") from exc
        return settings

    async def set(self, key: str, value: JSONValue) -> None:
        """Store one setting, replacing any previous value.

        Raises:
            TypeError: ``value`` would not round-trip through JSON unchanged
                (tuple, set, non-str dict key, other object).
            ValueError: ``key`` is empty or ``value`` holds NaN/infinity.
        """
        await self.set_many({key: value})

    async def set_many(self, settings: Mapping[str, JSONValue]) -> None:
        """Store several settings in one transaction (all or none).

        Raises:
            TypeError: A value would not round-trip through JSON unchanged.
            ValueError: A key is empty or a value holds NaN/infinity.
        """
        rows = [(_check_key(key), _encode(key, value)) for key, value in settings.items()]

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                rows,
            )

        await self._store.run(write)

    async def delete(self, key: str) -> None:
        """Remove a setting; removing a missing key is a no-op."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM settings WHERE key = ?", (key,))

        await self._store.run(write)


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"setting key must be a non-empty string, got {key!r}")
    return key


def _encode(key: str, value: JSONValue) -> str:
    _check_round_trip(key, value)
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def _check_round_trip(key: str, value: object) -> None:
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"setting {key!r}: {value} has no JSON form")
        return
    if isinstance(value, list):
        for item in value:
            _check_round_trip(key, item)
        return
    if isinstance(value, dict):
        for item_key, item in value.items():
            if not isinstance(item_key, str):
                raise TypeError(f"setting {key!r}: dict key {item_key!r} is not a string")
            _check_round_trip(key, item)
        return
    raise TypeError(f"setting {key!r}: {type(value).__name__} does not round-trip through JSON")
