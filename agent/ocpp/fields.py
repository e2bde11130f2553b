"""Typed readers of OCPP payload fields, for both versions' adapters.

The ``ocpp`` library hands request payloads over as plain JSON values (dicts, lists,
numbers; floats of some messages as ``Decimal`` for the schemas' one-decimal checks).
These check one field's type and return it; ``name`` is the field's path for the
error message.

Raises (every reader):
    TypeError: the value has another type.
    ValueError: a date-time string that does not parse.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from agent.clock import parse_iso


def field_dict(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{name}: expected an object, got {value!r}")
    return value


def field_str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, got {value!r}")
    return value


def field_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    return value


def field_opt_int(value: Any, name: str) -> int | None:
    return None if value is None else field_int(value, name)


def field_number(value: Any, name: str) -> float:
    """An int, float or Decimal (SetChargingProfile limits arrive as Decimal) as float."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    return float(value)


def field_opt_time(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a date-time string, got {value!r}")
    try:
        return parse_iso(value)
    except ValueError:
        raise ValueError(f"{name}: not a date-time: {value!r}") from None


def field_iso_time(value: Any, name: str) -> datetime:
    """The text of any value (``str(value)``) as an aware date-time; naive = UTC.

    Raises:
        ValueError: The text is not an ISO 8601 time (the message names the field).
    """
    try:
        return parse_iso(str(value))
    except ValueError:
        raise ValueError(f"{name}: not an ISO 8601 time: {value!r}") from None
