"""Delivery of the persisted transaction messages, version-neutral.

The journal holds the queue; this loop takes the oldest message, lets the
version adapter send it, and applies the retry rules (OCPP 1.6 3.7 / 4.2.1,
2.0.1 E: the same shape): a CALLERROR answer is a failed attempt; the message is
retried after ``retry_interval_s * attempts_so_far`` and dropped after
``transaction_message_attempts`` attempts. A dead link is not an attempt: the
exception ends the session, the message stays at the head of the queue, and the
next session starts with it. Messages are never reordered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from agent.settings import Settings
from agent.transactions.journal import QueuedTxMessage, TransactionJournal

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    DONE = "done"  # delivered and acknowledged in the journal by the sender
    REFUSED = "refused"  # CALLERROR: counts as a failed attempt
    UNADDRESSABLE = "unaddressable"  # can never be sent (its transaction has no CSMS id)


@dataclass(frozen=True, slots=True)
class SendOutcome:
    outcome: Outcome
    detail: str = ""

    @staticmethod
    def done() -> SendOutcome:
        return SendOutcome(Outcome.DONE)

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
        self.delivered = 0
        self.dropped = 0

    def wake(self) -> None:
        """A message was queued: look again (cheap, callable from any loop callback)."""
        self._wake.set()

    async def run(self, send: Sender) -> None:
        """Deliver until cancelled or until ``send`` raises (link gone)."""
        while True:
            self._wake.clear()
            msg = await self._journal.next_message()
            if msg is None:
                await self._wake.wait()
                continue
            result = await send(msg)
            if result.outcome == Outcome.DONE:
                self.delivered += 1
                continue
            if result.outcome == Outcome.UNADDRESSABLE:
                log.error("dropping %s of %s: %s", msg.kind, msg.tx_id, result.detail)
                await self._journal.drop(msg.seq)
                self.dropped += 1
                continue
            await self._failed_attempt(msg, result.detail)

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
