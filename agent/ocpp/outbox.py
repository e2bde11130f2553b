"""Delivery of the persisted transaction messages, version-neutral.

The journal holds the queue; this loop takes the oldest message, lets the
version adapter send it, and applies the retry rules (OCPP 1.6 3.7 / 4.2.1,
2.0.1 E: the same shape): a CALLERROR answer is a failed attempt; the message is
retried after ``retry_interval_s * attempts_so_far`` and dropped after
``transaction_message_attempts`` attempts. A dead link is not an attempt: the
exception ends the session, the message stays at the head of the queue, and the
next session starts with it. Messages are never reordered.

Throughput: messages are read from the journal in batches, and the
acknowledgement of a delivered MeterValues/StopTransaction (started by the sender
the moment the answer is read) commits on the DB thread while the next message
is already on the wire. So after a power cut at
most the one message whose acknowledgement was still committing is sent again
(at-least-once, like any message whose answer was lost with the link). A start
is acknowledged before anything else is sent: later messages need its CSMS id.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from agent.settings import Settings
from agent.transactions.journal import QueuedTxMessage, TransactionJournal

log = logging.getLogger(__name__)


PREFETCH = 64  # messages read from the journal per DB round trip


class Outcome(StrEnum):
    DONE = "done"  # delivered; ``acknowledged`` is the journal commit under way
    STARTED = "started"  # a start delivered and already acknowledged by the sender
    REFUSED = "refused"  # CALLERROR: counts as a failed attempt
    UNADDRESSABLE = "unaddressable"  # can never be sent (its transaction has no CSMS id)


@dataclass(frozen=True, slots=True)
class SendOutcome:
    outcome: Outcome
    detail: str = ""
    acknowledged: asyncio.Task[None] | None = None

    @staticmethod
    def done(acknowledged: asyncio.Task[None]) -> SendOutcome:
        """Delivered; ``acknowledged`` removes it from the journal (started by the
        sender as soon as the answer was read, so a dropped link cannot undo it)."""
        return SendOutcome(Outcome.DONE, acknowledged=acknowledged)

    @staticmethod
    def started() -> SendOutcome:
        return SendOutcome(Outcome.STARTED)

    @staticmethod
    def refused(detail: str) -> SendOutcome:
        return SendOutcome(Outcome.REFUSED, detail)

    @staticmethod
    def unaddressable(detail: str) -> SendOutcome:
        return SendOutcome(Outcome.UNADDRESSABLE, detail)


Sender = Callable[[QueuedTxMessage], Awaitable[SendOutcome]]


class OutboxDelivery:
    """Delivers queued transaction messages in order through a version sender."""

    def __init__(self, journal: TransactionJournal, settings: Settings) -> None:
        self._journal = journal
        self._settings = settings
        self._wake = asyncio.Event()
        self.idle = asyncio.Event()  # set while the queue is empty and acknowledged
        self.delivered = 0
        self.dropped = 0

    def wake(self) -> None:
        """A message was queued: look again (cheap, callable from any loop callback)."""
        self.idle.clear()
        self._wake.set()

    async def run(self, send: Sender) -> None:
        """Deliver until cancelled or until ``send`` raises (link gone)."""
        batch: deque[QueuedTxMessage] = deque()
        ack: asyncio.Task[None] | None = None
        try:
            while True:
                if not batch:
                    if ack is not None:
                        await ack  # acknowledged rows must not be read again
                        ack = None
                    self._wake.clear()
                    batch.extend(await self._journal.next_messages(PREFETCH))
                    if not batch:
                        if not self._wake.is_set():
                            self.idle.set()
                        await self._wake.wait()
                        continue
                msg = batch.popleft()
                result = await send(msg)
                if result.outcome == Outcome.DONE:
                    if ack is not None:
                        await ack  # at most one acknowledgement in flight
                    ack = result.acknowledged
                    self.delivered += 1
                    continue
                # Every other outcome changes rows that the batch holds copies of.
                batch.clear()
                if ack is not None:
                    await ack
                    ack = None
                if result.outcome == Outcome.STARTED:
                    self.delivered += 1
                elif result.outcome == Outcome.UNADDRESSABLE:
                    log.error("dropping %s of %s: %s", msg.kind, msg.tx_id, result.detail)
                    await self._journal.drop(msg.seq)
                    self.dropped += 1
                else:
                    await self._failed_attempt(msg, result.detail)
        finally:
            if ack is not None:
                # The message was delivered: its acknowledgement must still land.
                await asyncio.shield(ack)

    async def _failed_attempt(self, msg: QueuedTxMessage, detail: str) -> None:
        attempts = await self._journal.record_attempt(msg.seq)
        max_attempts = self._settings.get_int("transaction_message_attempts")
        if attempts >= max_attempts:
            log.error(
                "%s of %s refused %d times (%s): dropped", msg.kind, msg.tx_id, attempts, detail
            )
            if msg.kind == "start":
                # later messages of this transaction cannot be addressed either
                self.dropped += await self._journal.drop_transaction_messages(msg.tx_id)
            else:
                await self._journal.drop(msg.seq)
                self.dropped += 1
            return
        delay_s = self._settings.get_int("transaction_message_retry_interval_s") * attempts
        log.warning(
            "%s of %s refused (%s): attempt %d of %d, retry in %d s",
            msg.kind,
            msg.tx_id,
            detail,
            attempts,
            max_attempts,
            delay_s,
        )
        await asyncio.sleep(delay_s)
