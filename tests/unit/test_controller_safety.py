"""The EVSE controller's safety rules where the pure machine cannot see the world:
facts that arrive while the controller awaits (the lock motor, the journal) must still
keep the contactor open, and the station's maintenance hold must see a start that was
already queued. Hardware fakes call back synchronously (like gpiozero mock pins), so
every step is ordered without sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from agent.authorization.authorizer import IdTagInfo
from agent.clock import Clock
from agent.events import (
    AuthorizationStatus,
    ConnectorStatus,
    CpState,
    EvseStatusChanged,
    StopReason,
)
from agent.evse import charger
from agent.evse.controller import EvseController, EvseHardware
from agent.settings import Settings
from agent.station import Station
from agent.transactions.journal import TxRecord
from hal.pilot import PilotOutput
from hal.types import FaultCode, FaultReport

GUARD_S = 10.0


class MemoryBackend:
    async def set(self, key: str, value: Any) -> None:
        del key, value


class FakeMeter:
    latest = None

    async def start(self, on_reading: Any, on_fault: Any) -> None:
        del on_reading, on_fault

    async def stop(self) -> None:
        pass


class FakePilot:
    """A CP line whose sensed state reaches the controller synchronously."""

    def __init__(self) -> None:
        self.state = CpState.A
        self.output = PilotOutput.steady()
        self._on_state: Callable[[CpState], None] | None = None

    def set_output(self, output: PilotOutput) -> None:
        self.output = output

    async def start(self, on_state: Callable[[CpState], None], on_fault: Any) -> None:
        del on_fault
        self._on_state = on_state

    async def stop(self) -> None:
        pass

    def sense(self, state: CpState) -> None:
        self.state = state
        assert self._on_state is not None
        self._on_state(state)


class FakeContactor:
    """Records every coil command; ``report`` is the HAL's fault path."""

    def __init__(self) -> None:
        self.is_on = False
        self.history: list[bool] = []
        self.report: Callable[[FaultReport], None] | None = None

    def switch(self, on: bool) -> None:
        self.is_on = on
        self.history.append(on)

    async def start(self, on_fault: Callable[[FaultReport], None]) -> None:
        self.report = on_fault

    async def stop(self) -> None:
        pass


class GatedLock:
    """A lock whose motor move ends when the test opens ``gate``; ``confirms`` says
    whether the position switch then shows "locked"."""

    def __init__(self, *, confirms: bool = True) -> None:
        self.is_locked = False
        self.confirms = confirms
        self.moving = asyncio.Event()
        self.gate = asyncio.Event()

    async def start(self, on_fault: Callable[[FaultReport], None]) -> None:
        del on_fault

    async def lock(self) -> bool:
        self.moving.set()
        await self.gate.wait()
        self.is_locked = self.confirms
        return True  # a driver bug or a switch that drops right after: the guard looks

    async def unlock(self) -> bool:
        self.is_locked = False
        return True

    async def stop(self) -> None:
        pass


@dataclass
class FakeJournal:
    """Records begin/end in ``order``; ``begin`` waits for ``gate`` (the disk write)."""

    order: list[str] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    in_begin: asyncio.Event = field(default_factory=asyncio.Event)
    fail_begin: bool = False

    async def begin(self, **fields: Any) -> TxRecord:
        self.order.append("begin")
        self.in_begin.set()
        await self.gate.wait()
        if self.fail_begin:
            raise OSError("disk full")
        return TxRecord(
            tx_id="tx1",
            evse_id=fields["evse_id"],
            connector_id=fields["connector_id"],
            id_tag=fields["id_tag"],
            start_time=fields["timestamp"],
            meter_start_wh=fields["meter_start_wh"],
            remote_start_id=None,
            reservation_id=None,
            csms_tx_id=None,
            id_tag_status=None,
            last_meter_wh=None,
            last_meter_time=None,
            stop_time=None,
            meter_stop_wh=None,
            stop_reason=None,
        )

    async def end(self, tx_id: str, **fields: Any) -> None:
        del tx_id, fields
        self.order.append("end")

    async def update_last_meter(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def record_meter(self, *args: Any, **kwargs: Any) -> None:
        pass


class AcceptAll:
    async def authorize_info(self, id_tag: str) -> IdTagInfo:
        del id_tag
        return IdTagInfo(AuthorizationStatus.ACCEPTED)


@dataclass
class Rig:
    ctl: EvseController
    pilot: FakePilot
    contactor: FakeContactor
    journal: FakeJournal
    statuses: list[EvseStatusChanged]
    task: asyncio.Task[None]

    def fault(self, code: FaultCode, active: bool) -> None:
        assert self.contactor.report is not None
        self.contactor.report(FaultReport(code, active, "test"))

    @property
    def status(self) -> EvseStatusChanged:
        return self.statuses[-1]


@pytest.fixture
async def make_rig() -> AsyncIterator[Callable[..., Any]]:
    """Build and run controllers on fakes; at the end each is stopped and must be safe."""
    rigs: list[Rig] = []

    async def make(lock: GatedLock | None = None, *, open_journal: bool = True) -> Rig:
        pilot, contactor, journal = FakePilot(), FakeContactor(), FakeJournal()
        if open_journal:
            journal.gate.set()
        statuses: list[EvseStatusChanged] = []
        ctl = EvseController(
            evse_id=1,
            hardware=EvseHardware(
                meter=cast(Any, FakeMeter()),
                contactor=cast(Any, contactor),
                pilot=cast(Any, pilot),
                lock=cast(Any, lock),
            ),
            journal=cast(Any, journal),
            settings=Settings(MemoryBackend(), {}, {}),
            authorizer=AcceptAll(),
            clock=Clock(),
            on_status=statuses.append,
            on_tx_message=lambda: None,
        )
        task = asyncio.create_task(ctl.run())
        await asyncio.wait_for(ctl.wait_started(), GUARD_S)
        rigs.append(Rig(ctl, pilot, contactor, journal, statuses, task))
        return rigs[-1]

    try:
        yield make
    finally:
        for rig in rigs:
            rig.task.cancel()
            await asyncio.gather(rig.task, return_exceptions=True)
            assert not rig.contactor.is_on  # left safe however it ended


async def _settled(rig: Rig) -> None:
    await asyncio.wait_for(rig.ctl.drain(), GUARD_S)


# ------------------------------------------------ 1: facts that arrive while awaiting


async def test_a_fault_reported_while_the_lock_moves_keeps_the_contactor_open(
    make_rig: Callable[..., Any],
) -> None:
    lock = GatedLock()
    rig: Rig = await make_rig(lock)
    rig.pilot.sense(CpState.B)
    rig.ctl.post(charger.RemoteStartRequested("T", authorize=False))
    rig.pilot.sense(CpState.C)
    await asyncio.wait_for(lock.moving.wait(), GUARD_S)

    rig.fault(FaultCode.GROUND_FAILURE, True)  # RCD trips while the lock motor runs
    lock.gate.set()
    await _settled(rig)
    assert True not in rig.contactor.history
    faulted = rig.status
    assert (faulted.status, faulted.error_code) == (
        ConnectorStatus.FAULTED,
        FaultCode.GROUND_FAILURE,
    )

    rig.fault(FaultCode.GROUND_FAILURE, False)  # the refused close needs no retry logic
    await _settled(rig)
    assert rig.contactor.is_on
    assert rig.status.status is ConnectorStatus.CHARGING


async def test_a_lock_that_is_not_confirmed_after_its_move_keeps_the_contactor_open(
    make_rig: Callable[..., Any],
) -> None:
    lock = GatedLock(confirms=False)
    lock.gate.set()
    rig: Rig = await make_rig(lock)
    rig.pilot.sense(CpState.B)
    rig.ctl.post(charger.RemoteStartRequested("T", authorize=False))
    rig.pilot.sense(CpState.C)
    await _settled(rig)
    assert lock.moving.is_set()
    assert True not in rig.contactor.history


async def test_the_ev_leaving_c_while_the_lock_moves_keeps_the_contactor_open(
    make_rig: Callable[..., Any],
) -> None:
    lock = GatedLock()
    rig: Rig = await make_rig(lock)
    rig.pilot.sense(CpState.B)
    rig.ctl.post(charger.RemoteStartRequested("T", authorize=False))
    rig.pilot.sense(CpState.C)
    await asyncio.wait_for(lock.moving.wait(), GUARD_S)
    rig.pilot.sense(CpState.B)
    lock.gate.set()
    await _settled(rig)
    assert True not in rig.contactor.history
    assert rig.status.status is ConnectorStatus.SUSPENDED_EV


async def test_a_fault_reported_while_the_start_is_journalled_keeps_the_contactor_open(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig(open_journal=False)  # no lock: the journal is the await
    rig.pilot.sense(CpState.B)
    rig.pilot.sense(CpState.C)  # the EV asks for power before it is authorized
    rig.ctl.post(charger.RemoteStartRequested("T", authorize=False))
    await asyncio.wait_for(rig.journal.in_begin.wait(), GUARD_S)

    rig.fault(FaultCode.OVER_CURRENT_FAILURE, True)
    rig.journal.gate.set()
    await _settled(rig)
    assert True not in rig.contactor.history
    assert rig.status.status is ConnectorStatus.FAULTED


# ------------------------------------------------ 2: the maintenance hold and queued starts


async def test_the_maintenance_hold_waits_for_a_start_that_was_already_queued(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig(open_journal=False)
    station = Station(
        controllers={1: rig.ctl},
        journal=cast(Any, rig.journal),
        settings_store=cast(Any, None),
        authorizer=cast(Any, None),
        clock=Clock(),
        request_restart=lambda kind: None,
    )
    rig.pilot.sense(CpState.B)
    # the CSMS's remote start is queued just before the firmware manager holds
    rig.ctl.post(charger.RemoteStartRequested("T", authorize=False))

    async def install() -> None:  # firmware_update.manager's HOLD_AND_WAIT_IDLE
        await station.hold_for_maintenance()
        await station.wait_no_transaction()
        rig.journal.order.append("install")

    installer = asyncio.create_task(install())
    await asyncio.wait_for(rig.journal.in_begin.wait(), GUARD_S)  # the start's disk write
    rig.journal.gate.set()
    # the session runs until it is stopped; only then may the install go on
    rig.ctl.post(charger.StopRequested(StopReason.REMOTE))
    await asyncio.wait_for(installer, GUARD_S)
    assert rig.journal.order == ["begin", "end", "install"]
    assert rig.status.status is ConnectorStatus.UNAVAILABLE  # the hold applies after it


async def test_a_failed_journal_write_leaves_no_transaction_to_wait_for(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig(open_journal=False)
    rig.journal.fail_begin = True
    rig.pilot.sense(CpState.B)
    rig.ctl.post(charger.RemoteStartRequested("T", authorize=False))
    await asyncio.wait_for(rig.journal.in_begin.wait(), GUARD_S)
    rig.journal.gate.set()
    with pytest.raises(OSError, match="disk full"):
        await asyncio.wait_for(rig.task, GUARD_S)  # the controller fails safe...
    await asyncio.wait_for(rig.ctl.wait_no_transaction(), GUARD_S)  # ...and nobody hangs
    await asyncio.wait_for(rig.ctl.drain(), GUARD_S)
    assert not rig.contactor.is_on
