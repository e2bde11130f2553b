"""Version-neutral machinery of one OCPP-J connection, shared by the 1.6 and 2.0.1
adapters (no ``ocpp`` library import here: the versions plug their payloads in).

* ``OcppSession``: the base of a version's per-connection session: the task group
  (receive loop + the version's main task, ``spawn`` for work that follows an
  answer), BootNotification retry, the heartbeat, the CALL wrapper that declares
  the link dead on a timeout, the registration state seen in the receive path, and
  the liveness ("online") rule.
* ``LatestByKey`` / ``Backlog``: what the core hands the adapter while a session
  may or may not run (latest status per EVSE; a bounded FIFO of samples or
  events), each drained by one sender loop of the session.
* ``OcppAdapterBase``: the adapter side of "at most one session at a time"
  (``online``, ``authorize_online``).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, NoReturn, Protocol, TypeVar

from websockets.exceptions import ConnectionClosed

from agent.authorization.authorizer import IdTagInfo
from agent.clock import Clock, parse_iso
from agent.settings import Settings
from agent.transactions.journal import QueuedTxMessage

log = logging.getLogger(__name__)

T = TypeVar("T")

DATA_TRANSFER_VENDOR = "org.evse-agent"
"""Our vendorId in DataTransfer (no vendor message is implemented yet)."""

Trace = Callable[[str, str], None]
"""(direction "send" | "recv", raw OCPP-J frame) -> None."""


class LinkDead(Exception):
    """The CSMS did not answer a CALL in time; the connection must be dropped."""


@dataclass(frozen=True, slots=True)
class BootInfo:
    """What BootNotification reports (1.6: chargePoint*, 2.0.1: ``chargingStation``)."""

    vendor: str
    model: str
    serial_number: str
    firmware_version: str


def message_id(raw: str) -> str:
    """The message id of a raw OCPP-J frame, for a CALLERROR answering it.

    Returns:
        The id (at most 36 characters), or "-1" when none can be read (OCPP-J 4.2.3).
    """
    try:
        parsed = json.loads(raw)
    except (ValueError, TypeError):
        return "-1"
    if isinstance(parsed, list) and len(parsed) > 1 and isinstance(parsed[1], str):
        return parsed[1][:36]
    return "-1"


def raise_if_cancelling() -> None:
    """Restore a cancellation that ``asyncio.wait_for`` lost.

    Python 3.11: when the awaited result and the cancel arrive in the same loop
    iteration, wait_for returns the result and the task never sees CancelledError.
    The ocpp library waits for every answer with wait_for, so a session could not
    be stopped.

    Raises:
        asyncio.CancelledError: the current task is being cancelled.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class LatestByKey(Generic[T]):
    """The latest item per key (e.g. EVSE status), sent lowest key first.

    An item replaced while its predecessor is on the wire is sent again afterwards;
    an item that was sent is dropped unless it was replaced meanwhile.
    """

    def __init__(self) -> None:
        self.items: dict[int, T] = {}
        self._wake = asyncio.Event()

    def put(self, key: int, item: T) -> None:
        """Queue ``item`` for ``key``, replacing an unsent one."""
        self.items[key] = item
        self._wake.set()

    async def drain(self, send: Callable[[int, T], Awaitable[None]]) -> NoReturn:
        """Send every queued item with ``send(key, item)``, forever.

        ``send`` handles refusals itself; whatever it raises ends the loop (the item
        stays queued for the next session).
        """
        pending = self.items
        while True:
            await self._wake.wait()
            self._wake.clear()
            while pending:
                key = min(pending)
                item = pending[key]
                await send(key, item)
                if pending.get(key) is item:
                    del pending[key]


class Backlog(Generic[T]):
    """A bounded FIFO of items that are not transaction-related (kept in memory
    only; when full, the oldest is dropped)."""

    def __init__(self, maxlen: int) -> None:
        self.items: deque[T] = deque(maxlen=maxlen)
        self._wake = asyncio.Event()

    def put(self, item: T) -> None:
        """Queue ``item`` (dropping the oldest when ``maxlen`` are waiting)."""
        self.items.append(item)
        self._wake.set()

    async def drain(self, send: Callable[[T], Awaitable[None]]) -> NoReturn:
        """Send every queued item in order with ``send(item)``, forever.

        ``send`` handles refusals itself; whatever it raises ends the loop (the item
        stays queued for the next session).
        """
        pending = self.items
        while True:
            await self._wake.wait()
            self._wake.clear()
            while pending:
                item = pending[0]
                await send(item)
                if pending and pending[0] is item:
                    pending.popleft()


class SessionOwner(Protocol):
    """What a session reads from its adapter (read at use, so changes apply)."""

    settings: Settings
    clock: Clock
    call_timeout_s: float
    boot_retry_s: float


class RpcEndpoint(Protocol):
    """The ocpp-library ChargePoint as the session uses it."""

    async def start(self) -> None:
        """Receive and route frames until the connection closes."""

    async def call(self, payload: Any, suppress: bool = ..., unique_id: str | None = ...) -> Any:
        """Send one CALL and wait for its answer (raises TimeoutError)."""


class OcppSession(abc.ABC):
    """One OCPP-J connection: receive loop, boot, then the version's senders.

    Subclasses set ``cp`` (their ChargePoint) in ``__init__`` and implement
    ``_main`` (boot, then the sender loops), ``_heartbeat_request`` and
    ``authorize``. Class attributes: ``refusal`` is the exception a CALLERROR
    answer raises; ``task_prefix`` / ``label`` name tasks and log lines.

    Args:
        adapter: Settings, clock and timeouts (read at use).
        ws: The open WebSocket (closed here when the link is declared dead).
    """

    refusal: ClassVar[type[Exception]]
    task_prefix: ClassVar[str]
    label: ClassVar[str]
    cp: RpcEndpoint

    def __init__(self, adapter: SessionOwner, ws: Any) -> None:
        self.adapter = adapter
        self.ws = ws
        self.accepted = False
        self.pending = False
        self.rejected = False
        self._accepted = asyncio.Event()
        self._boot_uid: str | None = None
        self._last_round_trip_s: float | None = None
        self._heartbeat_changed = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        # transaction message id -> the queued message, while in flight
        self._tx_calls: dict[str, QueuedTxMessage] = {}
        # acknowledgements begun in the receive path, by message id
        self._acks: dict[str, asyncio.Task[None]] = {}
        self._unsubscribe = adapter.settings.subscribe(self._on_setting)

    def _on_setting(self, name: str, value: object) -> None:
        if name == "heartbeat_interval_s":
            self._heartbeat_changed.set()

    @property
    def online(self) -> bool:
        """Registered (Accepted) and a CALL answered within two heartbeat intervals
        plus the call timeout."""
        if not self.accepted or self._last_round_trip_s is None:
            return False
        window_s = 2 * self.adapter.settings.get_int("heartbeat_interval_s") + (
            self.adapter.call_timeout_s
        )
        return self.adapter.clock.monotonic() - self._last_round_trip_s < window_s

    # -------------------------------------------------------------- run

    async def run(self) -> None:
        """Receive and send until the connection closes or the link is declared dead.

        A TaskGroup: whichever task fails first (the socket closed under the
        receiver, a CALL timed out) cancels the other, and both are finished
        before this returns, even if the caller is cancelled meanwhile.
        """
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self.cp.start(), name=f"{self.task_prefix}-recv")
                group.create_task(self._main(), name=f"{self.task_prefix}-main")
        except* (ConnectionClosed, LinkDead) as ended:
            log.info("%s session ended: %s", self.label, ended.exceptions[0])
        finally:
            self._unsubscribe()
            await self._teardown()

    async def _teardown(self) -> None:
        """After the tasks ended: journal the answers the receive path saw."""
        await self._settle_acks()

    async def _settle_acks(self, *late: Awaitable[None]) -> None:
        """Finish the acknowledgements begun in the receive path and ``late`` ones,
        shielded from a cancel of the caller."""
        if self._acks or late:
            await asyncio.shield(
                asyncio.gather(*self._acks.values(), *late, return_exceptions=True)
            )

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as part of this session (finished or cancelled with it)."""
        if self._group is None:
            coro.close()
            return
        try:
            self._group.create_task(coro)
        except RuntimeError:  # the session is already shutting down
            coro.close()

    @abc.abstractmethod
    async def _main(self) -> None:
        """Boot, then run the senders until the session ends."""

    @abc.abstractmethod
    def on_result(self, unique_id: str, payload: dict[str, Any]) -> None:
        """See a CALLRESULT in the receive path, before the caller resumes."""

    @abc.abstractmethod
    async def authorize(self, id_tag: str) -> IdTagInfo | None:
        """Ask the CSMS about ``id_tag``; None when it gave no usable answer."""

    # -------------------------------------------------------------- calls

    async def _call(self, payload: Any, unique_id: str | None = None) -> Any:
        """Send one CALL; raise LinkDead on timeout, ``refusal`` on CALLERROR."""
        try:
            result = await self.cp.call(payload, suppress=False, unique_id=unique_id)
            raise_if_cancelling()
        except TimeoutError:
            log.warning(
                "no answer to %s within %.0f s: link dead",
                type(payload).__name__,
                self.adapter.call_timeout_s,
            )
            await self.ws.close()
            raise LinkDead(type(payload).__name__) from None
        self._last_round_trip_s = self.adapter.clock.monotonic()
        return result

    async def _call_or_warn(self, payload: Any, what: str) -> Any | None:
        """``_call``, with a CALLERROR logged as "<what> refused" and None returned
        (for messages a retry would not help)."""
        try:
            return await self._call(payload)
        except self.refusal as e:
            log.warning("%s refused: %s", what, e)
            return None

    # ------------------------------------------------------------- boot

    def _note_boot_answer(self, unique_id: str, payload: dict[str, Any]) -> None:
        """Registration state from the BootNotification answer, in the receive path
        (the CSMS may send its next CALL right behind it; Rejected answers nothing)."""
        if unique_id != self._boot_uid:
            return
        status = payload.get("status")
        self.accepted = status == "Accepted"
        self.pending = status == "Pending"
        self.rejected = status == "Rejected"
        if self.accepted:
            self._accepted.set()

    async def _boot(self, send_boot: Callable[[], Awaitable[Any]], *, wake_on_accept: bool) -> None:
        """Send BootNotification until Accepted, waiting the CSMS's interval (or
        ``boot_retry_s`` when it gives 0) between tries.

        Args:
            send_boot: One BootNotification (``_call_boot``); returns the answer.
            wake_on_accept: Stop waiting as soon as any boot answer (a triggered one
                while Pending) is Accepted.
        """
        while True:
            result = await send_boot()
            if result.status == "Accepted":
                return
            interval_s = int(result.interval)
            retry_s = interval_s if interval_s > 0 else self.adapter.boot_retry_s
            log.warning("BootNotification %s; retrying in %.0f s", result.status, retry_s)
            if not wake_on_accept:
                await asyncio.sleep(retry_s)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._accepted.wait(), retry_s)
                raise_if_cancelling()
                return

    async def _call_boot(self, payload: Any) -> Any:
        """One BootNotification; an Accepted answer sets the clock and heartbeat."""
        self._boot_uid = str(uuid.uuid4())
        result = await self._call(payload, unique_id=self._boot_uid)
        # accepted / pending / rejected were set by on_result in the receive path
        if result.status == "Accepted":
            self._set_clock(result.current_time)
            interval_s = int(result.interval)
            if interval_s > 0:
                await self.adapter.settings.set("heartbeat_interval_s", interval_s)
            log.info("BootNotification accepted; heartbeat every %d s", interval_s)
        return result

    def _set_clock(self, current_time: str) -> None:
        with contextlib.suppress(ValueError):
            self.adapter.clock.set_utc(parse_iso(current_time))

    # -------------------------------------------------------- heartbeat

    @abc.abstractmethod
    def _heartbeat_request(self) -> Any:
        """The version's Heartbeat request payload."""

    async def _heartbeat_loop(self) -> NoReturn:
        """A Heartbeat every ``heartbeat_interval_s``; a changed interval restarts
        the wait with the new value."""
        while True:
            interval_s = self.adapter.settings.get_int("heartbeat_interval_s")
            self._heartbeat_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._heartbeat_changed.wait(), interval_s)
                raise_if_cancelling()
                continue  # interval changed: start a new wait with the new value
            await self._send_heartbeat()

    async def _send_heartbeat(self) -> None:
        result = await self._call(self._heartbeat_request())
        self._set_clock(result.current_time)


SessionT = TypeVar("SessionT", bound=OcppSession)


class OcppAdapterBase(Generic[SessionT]):
    """The adapter side of the one session that may run (``run_session``)."""

    def __init__(self) -> None:
        self._session: SessionT | None = None

    @property
    def online(self) -> bool:
        """A session runs, is registered and had a recent round trip."""
        session = self._session
        return session is not None and session.online

    async def authorize_online(self, id_tag: str) -> IdTagInfo | None:
        """Ask the CSMS (OnlineAuthorizer); None while not online."""
        session = self._session
        if session is None or not session.online:
            return None
        return await session.authorize(id_tag)

    async def _run(self, session: SessionT) -> None:
        """Run ``session`` as the current one until it ends."""
        self._session = session
        try:
            await session.run()
        finally:
            self._session = None
