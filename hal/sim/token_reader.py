"""SimIdTokenReader: an RFID reader whose cards are swiped by tests or the sim console."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hal._threading import call_in_loop

MAX_TOKEN_LEN = 20  # OCPP 1.6 IdToken is CiString20Type


class SimIdTokenReader:
    """A simulated id token reader (implements ``hal.token_reader.IdTokenReader``).

    ``swipe`` may be called from any thread; the token reaches ``on_token`` in the
    loop thread (next iteration), upper-cased.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_token: Callable[[str], None] | None = None

    @property
    def started(self) -> bool:
        """True between ``start`` and ``stop``."""
        return self._on_token is not None

    async def start(self, on_token: Callable[[str], None]) -> None:
        """Begin delivering swipes to ``on_token``."""
        if self._on_token is not None:
            raise RuntimeError("SimIdTokenReader already started")
        self._loop = asyncio.get_running_loop()
        self._on_token = on_token

    async def stop(self) -> None:
        """Stop delivering swipes. Idempotent."""
        self._on_token = None
        self._loop = None

    def swipe(self, token: str) -> bool:
        """Present a card.

        Args:
            token: 1..20 printable characters without spaces; upper-cased.

        Returns:
            True when the swipe was handed to the reader's owner, False when the
            reader is not started (like a reader nobody listens to).

        Raises:
            ValueError: An empty, too long or non-printable token.
        """
        normalized = token.strip().upper()
        if not normalized or len(normalized) > MAX_TOKEN_LEN:
            raise ValueError(f"token must be 1..{MAX_TOKEN_LEN} characters, got {token!r}")
        if not normalized.isprintable() or any(c.isspace() for c in normalized):
            raise ValueError(f"token must be printable without spaces, got {token!r}")
        loop, on_token = self._loop, self._on_token
        if loop is None or on_token is None:
            return False
        call_in_loop(loop, self._deliver, normalized)
        return True

    def _deliver(self, token: str) -> None:
        on_token = self._on_token
        if on_token is not None:
            on_token(token)
