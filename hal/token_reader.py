"""IdTokenReader role: an RFID/NFC reader or a keypad that yields id tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class IdTokenReader(Protocol):
    """A reader of id tokens.

    Contract:
        * ``on_token`` is called in the event loop thread with the token as an
          upper-case string of at most 20 characters (OCPP 1.6 IdToken).
        * A reader that fails reports nothing; the controller treats silence as
          "nobody swiped".
    """

    async def start(self, on_token: Callable[[str], None]) -> None: ...

    async def stop(self) -> None: ...
