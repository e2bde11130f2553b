"""Value checks for option dataclasses (the config file's tables and backend options).

A dataclass field declares its check as metadata, ``field(default=1.0,
metadata=check(positive))``; ``agent.config.parse_dataclass`` runs it and reports
the problem with the key (``evse[0].meter.poll_interval_s: must be > 0``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[Any], str | None]
"""value -> the problem in a few words, or None when the value is fine."""


def check(fn: Check) -> dict[str, Any]:
    """Field metadata that attaches ``fn`` to an option."""
    return {"check": fn}


def positive(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be >= 0"


def serial_port(value: Any) -> str | None:
    return None if value else "must name a serial port (e.g. /dev/ttyUSB0)"
