"""Wall clock with an offset the CSMS may correct, and the monotonic clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class Clock:
    """Time source for the station.

    ``now()`` is system UTC plus an offset set from the CSMS (OCPP 1.6 4.2:
    BootNotification.conf currentTime); the system clock itself is never changed,
    because the agent may not be allowed to. ``monotonic()`` is for durations.
    """

    def __init__(self) -> None:
        self._offset = timedelta(0)

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never jumps."""
        return time.monotonic()

    def now(self) -> datetime:
        """The station's UTC time (timezone-aware)."""
        return datetime.now(UTC) + self._offset

    def iso_now(self) -> str:
        """``now()`` as OCPP wants it: ISO 8601 UTC with milliseconds and ``Z``."""
        return to_iso(self.now())

    def set_utc(self, current: datetime) -> None:
        """Adopt ``current`` (from the CSMS) as the time now."""
        if current.tzinfo is None:
            current = current.replace(tzinfo=UTC)
        self._offset = current - datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z`` suffix."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def parse_iso(text: str) -> datetime:
    """Parse an OCPP timestamp (``Z`` or an offset) into an aware datetime.

    Raises:
        ValueError: not an ISO 8601 timestamp.
    """
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
