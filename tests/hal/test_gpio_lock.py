"""GpioConnectorLock (the real driver) on mock pins: motor pins move a simulated actuator;
the position switch is supervised between moves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hal.gpio.lock import GpioConnectorLock
from hal.sim.cp_adc import SimBoardFactory, SimLockActuator
from hal.types import FaultCode, FaultReport

LOCK, UNLOCK, SWITCH = 5, 6, 13
GUARD_S = 5.0


@pytest.fixture
async def rig() -> AsyncIterator[tuple[GpioConnectorLock, SimLockActuator, SimBoardFactory]]:
    factory = SimBoardFactory()
    actuator = factory.wire_lock(LOCK, UNLOCK, SWITCH)
    lock = GpioConnectorLock(
        lock_pin=LOCK,
        unlock_pin=UNLOCK,
        feedback_pin=SWITCH,
        pin_factory=factory,
        pulse_s=0.01,
        timeout_s=0.1,
    )
    try:
        yield lock, actuator, factory
    finally:
        await lock.stop()
        factory.reset()


async def test_lock_and_unlock_confirmed_by_the_switch(rig) -> None:  # type: ignore[no-untyped-def]
    lock, actuator, factory = rig
    assert not lock.is_locked
    assert await lock.lock()
    assert lock.is_locked and actuator.switch.state
    motor = factory.pin(LOCK)
    assert [s.state for s in motor.states] == [False, True, False]  # one pulse, then off
    assert await lock.lock()  # idempotent: no second pulse
    assert len(motor.states) == 3
    assert await lock.unlock()
    assert not lock.is_locked
    assert not factory.pin(UNLOCK).state


async def test_jammed_actuator_times_out_false_and_motor_is_off(rig) -> None:  # type: ignore[no-untyped-def]
    lock, actuator, factory = rig
    actuator.jammed = True
    assert not await lock.lock()
    assert not lock.is_locked
    assert not factory.pin(LOCK).state


async def test_switch_arriving_after_the_pulse_within_the_timeout_counts(rig) -> None:  # type: ignore[no-untyped-def]
    lock, actuator, factory = rig
    actuator.jammed = True  # the motor pulse itself moves nothing...
    loop = asyncio.get_running_loop()
    motor = factory.pin(LOCK)
    # ...the end stop is reached 20 ms after the pulse started: after the 10 ms pulse,
    # before the 100 ms timeout (loop timers fire in deadline order)
    motor.on_drive = lambda: loop.call_later(0.02, actuator.switch.drive_high)
    assert await lock.lock()
    assert not motor.state


async def test_cancel_leaves_the_motor_off(rig) -> None:  # type: ignore[no-untyped-def]
    lock, actuator, factory = rig
    actuator.jammed = True
    task = asyncio.ensure_future(lock.lock())
    await asyncio.sleep(0)
    assert factory.pin(LOCK).state  # pulse running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not factory.pin(LOCK).state


async def test_without_a_switch_the_pulse_is_trusted() -> None:
    factory = SimBoardFactory()
    lock = GpioConnectorLock(
        lock_pin=LOCK, unlock_pin=UNLOCK, feedback_pin=None, pin_factory=factory, pulse_s=0.01
    )
    try:
        assert await lock.lock()
        assert lock.is_locked
        assert await lock.unlock()
        assert not lock.is_locked
    finally:
        await lock.stop()


def test_bad_timing_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        GpioConnectorLock(
            lock_pin=LOCK,
            unlock_pin=UNLOCK,
            feedback_pin=None,
            pin_factory=SimBoardFactory(),
            pulse_s=0.5,
            timeout_s=0.1,
        )


# ------------------------------------------------ supervision (ConnectorLock.start)


async def _supervised(
    lock: GpioConnectorLock,
) -> asyncio.Queue[FaultReport]:
    reports: asyncio.Queue[FaultReport] = asyncio.Queue()
    await lock.start(reports.put_nowait)
    return reports


async def _next(reports: asyncio.Queue[FaultReport]) -> FaultReport:
    return await asyncio.wait_for(reports.get(), GUARD_S)


async def test_forced_open_while_locked_is_a_lock_failure_until_it_is_back(rig) -> None:  # type: ignore[no-untyped-def]
    lock, actuator, _factory = rig
    reports = await _supervised(lock)
    assert await lock.lock()  # the move's own edge is not reported...
    actuator.switch.drive_low()  # ...a pull on the handle is
    raised = await _next(reports)
    assert (raised.code, raised.active) == (FaultCode.CONNECTOR_LOCK_FAILURE, True)
    assert not lock.is_locked
    actuator.switch.drive_high()  # the bolt snaps back
    cleared = await _next(reports)
    assert (cleared.code, cleared.active) == (FaultCode.CONNECTOR_LOCK_FAILURE, False)
    assert reports.empty()


async def test_unlocking_after_a_forced_open_clears_the_failure(rig) -> None:  # type: ignore[no-untyped-def]
    lock, actuator, _factory = rig
    reports = await _supervised(lock)
    assert await lock.lock()
    actuator.switch.drive_low()
    assert (await _next(reports)).active
    assert await lock.unlock()  # end of session: the commanded position is "unlocked"
    assert not (await _next(reports)).active


async def test_moves_report_nothing_and_a_failed_move_is_left_to_the_caller(rig) -> None:  # type: ignore[no-untyped-def]
    lock, actuator, _factory = rig
    reports = await _supervised(lock)
    assert await lock.lock()
    assert await lock.unlock()
    actuator.jammed = True
    assert not await lock.lock()  # commanded locked, switch open: the caller reports
    # an edge outside any move is the first thing the supervision reports
    actuator.switch.drive_high()
    actuator.switch.drive_low()
    first = await _next(reports)
    assert first.active and "left the locked position" in first.detail


async def test_without_a_switch_there_is_nothing_to_supervise() -> None:
    factory = SimBoardFactory()
    lock = GpioConnectorLock(
        lock_pin=LOCK, unlock_pin=UNLOCK, feedback_pin=None, pin_factory=factory, pulse_s=0.01
    )
    try:
        reports = await _supervised(lock)
        assert await lock.lock()
        assert await lock.unlock()
        assert reports.empty()
    finally:
        await lock.stop()
