"""Running a blocking call (slot backend, file system) off the event loop.

The event loop also carries the control-pilot -> contactor interlock of GPIO boards, so
the firmware path never runs a call that may block (an fsync, ``rauc`` via
``subprocess.run`` for up to its timeout, ``shutil.rmtree``) on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")


async def run_blocking(func: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run ``func(*args, **kwargs)`` in a worker thread and return its result.

    A cancellation of the caller waits for the call to finish (a thread cannot be
    interrupted, and a half-done slot switch must not overlap the next call into the
    same backend), then re-raises ``CancelledError``; how long that takes is bounded
    by ``func``'s own timeout.

    Raises:
        Whatever ``func`` raises; ``asyncio.CancelledError`` when cancelled.
    """
    worker = asyncio.ensure_future(asyncio.to_thread(func, *args, **kwargs))
    try:
        return await asyncio.shield(worker)
    except asyncio.CancelledError:
        await asyncio.wait({worker})
        if not worker.cancelled():
            worker.exception()  # retrieved: the caller was cancelled, the result is moot
        raise
