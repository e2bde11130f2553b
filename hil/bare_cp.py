"""A bare `ocpp` library ChargePoint as a client of the emulators: its receive loop.

Test equipment for tests and benchmarks that talk to `hil.csms.CsmsEmulator` /
`hil.csms201.CsmsEmulator201` with a charger built only from the ``ocpp`` library
(``ocpp.v16.ChargePoint`` or ``ocpp.v201.ChargePoint``), not from the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any


@contextlib.asynccontextmanager
async def receive_loop(cp: Any) -> AsyncIterator[None]:
    """Run ``cp.start()`` (the library's receive loop) for the duration of the block.

    Needed for `cp.call()` to get its answers and for CSMS calls to reach the handlers.
    On exit the loop is cancelled and awaited; the `ConnectionClosed` it ends with after
    a server-side close is retrieved and dropped, so no task or exception outlives the
    block.

    Args:
        cp: An ``ocpp`` ChargePoint (any version) on an open client connection.
    """
    loop_task = asyncio.create_task(cp.start())
    try:
        yield
    finally:
        loop_task.cancel()
        await asyncio.wait({loop_task})
        if not loop_task.cancelled():
            loop_task.exception()  # ConnectionClosed after a server-side close
