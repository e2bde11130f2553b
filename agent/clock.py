"""Wall clock with an offset the CSMS may correct, and the monotonic clock."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

log = logging.getLogger(__name__)

CorrectionListener = Callable[[timedelta], None]
"""Told the step of a wall-clock correction (new minus old station time)."""


class Clock:
    """Time source for the station.

    ``now()`` is system UTC plus an offset set from the CSMS (OCPP 1.6 4.2:
    BootNotification.conf currentTime); the system clock itself is never changed,
    because the agent may not be allowed to. ``monotonic()`` is for durations.
    Whoever waits for a wall-clock moment subscribes to corrections
    (:meth:`subscribe_corrections`) and re-aims its wait when one comes.
    """

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._listeners: list[CorrectionListener] = []

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
        """Adopt ``current`` (from the CSMS) as the time now, then tell the listeners.

        Listeners run synchronously in the caller's thread (the event loop), in
        subscription order, each with the step (new minus old ``now()``); one
        that raises is logged and does not keep the others from running.
        """
        if current.tzinfo is None:
            current = current.replace(tzinfo=UTC)
        old_offset = self._offset
        self._offset = current - datetime.now(UTC)
        step = self._offset - old_offset
        for listener in list(self._listeners):
            try:
                listener(step)
            except Exception:  # a broken listener must not undo the correction
                log.exception("clock correction listener %r failed", listener)

    def subscribe_corrections(self, listener: CorrectionListener) -> Callable[[], None]:
        """Call ``listener(step)`` after every :meth:`set_utc`; returns an unsubscriber.

        The unsubscriber is idempotent.
        """
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe


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
