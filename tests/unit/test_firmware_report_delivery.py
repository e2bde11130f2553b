"""The version-neutral delivery loop of queued firmware reports
(agent.ocpp.firmware_reports.deliver_queued_reports)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from agent.ocpp.firmware_reports import deliver_queued_reports
from firmware_update.journal import MessageKind, OutboxMessage
from firmware_update.manager import FirmwareManager


class Refused(Exception):
    """Stands in for the version's CALLERROR exception."""


class FakeManager:
    """The journal side of FirmwareManager: a queue, a wake-up event, acknowledgements."""

    def __init__(self, messages: list[OutboxMessage]) -> None:
        self.queue = list(messages)
        self.acknowledged: list[int] = []
        self.idle = asyncio.Event()
        self.journal = self

    async def pending(self) -> list[OutboxMessage]:
        return list(self.queue)

    async def wait_reports(self) -> None:
        self.idle.set()
        await asyncio.Event().wait()  # nothing more is queued in these tests

    async def acknowledge(self, seq: int) -> None:
        self.acknowledged.append(seq)
        self.queue = [m for m in self.queue if m.seq != seq]


def _msg(seq: int) -> OutboxMessage:
    return OutboxMessage(seq, MessageKind.FIRMWARE_STATUS, {"n": seq})


async def _deliver(manager: FakeManager, send: Any, to_call: Any) -> None:
    task = asyncio.create_task(
        deliver_queued_reports(cast(FirmwareManager, manager), send, to_call, Refused)
    )
    try:
        await asyncio.wait_for(manager.idle.wait(), timeout=10)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_sends_in_order_and_drops_refused_and_unsendable_reports() -> None:
    manager = FakeManager([_msg(1), _msg(2), _msg(3), _msg(4)])
    sent: list[int] = []

    async def send(payload: int) -> None:
        sent.append(payload)
        if payload == 2:
            raise Refused("NotImplemented")

    await _deliver(manager, send, lambda m: None if m.seq == 3 else m.seq)
    assert sent == [1, 2, 4]  # 3 has no CALL in this version: not sent
    assert manager.acknowledged == [1, 2, 3, 4]  # a refused report is dropped too


async def test_a_dead_link_ends_delivery_and_keeps_the_report_queued() -> None:
    manager = FakeManager([_msg(1), _msg(2)])

    async def send(payload: int) -> None:
        raise ConnectionError("link down")

    with pytest.raises(ConnectionError):
        await deliver_queued_reports(cast(FirmwareManager, manager), send, lambda m: m.seq, Refused)
    assert manager.acknowledged == []
    assert [m.seq for m in manager.queue] == [1, 2]
