"""The one way a thread outside the event loop hands work to the loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any


def call_in_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Schedule ``fn(*args)`` on ``loop`` from any thread.

    gpiozero callbacks and reader threads call this. When the loop is already
    closed (the agent is shutting down) the call is dropped silently: the
    outputs are already off by then and there is nobody left to tell.
    """
    if loop.is_closed():
        return
    with contextlib.suppress(RuntimeError):  # closed between the check and the call
        loop.call_soon_threadsafe(fn, *args)
