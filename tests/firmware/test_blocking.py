"""run_blocking: off the loop, results and errors pass through, a cancellation waits for
the thread (a half-done slot switch never overlaps the next call)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from firmware_update.blocking import run_blocking

GUARD_S = 10.0


async def test_result_and_error_pass_through_from_a_worker_thread() -> None:
    loop_thread = threading.get_ident()

    def add(a: int, *, b: int) -> tuple[int, int]:
        return a + b, threading.get_ident()

    value, thread = await run_blocking(add, 1, b=2)
    assert value == 3 and thread != loop_thread

    def fail() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await run_blocking(fail)


async def test_cancellation_waits_for_the_call_to_finish() -> None:
    loop = asyncio.get_running_loop()
    started = asyncio.Event()
    release = threading.Event()
    finished: list[bool] = []

    def slow() -> None:
        loop.call_soon_threadsafe(started.set)
        finished.append(release.wait(GUARD_S))

    task = asyncio.create_task(run_blocking(slow))
    await asyncio.wait_for(started.wait(), GUARD_S)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.05)
    assert not done, "the cancelled caller returned while the thread still ran"
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, GUARD_S)
    assert finished == [True]
