"""OCPP 1.6J Central System (CSMS) emulator built on the `ocpp` library.

Test equipment: the agent's OCPP tests, the demo and the benchmark connect a real charger
client to this emulator over a loopback WebSocket and assert on what the CSMS *received*.
Everything observable is recorded in arrival order and can be awaited without polling
(`wait_for`, `wait_connected`, `wait_answer` sit on one `asyncio.Condition`).

Wire conventions used throughout this module:

* Payloads (`ReceivedCall.payload`, `on_message` payloads, `transactions`, `answers`) are the
  camelCase JSON objects exactly as they were on the wire (``{"connectorId": 1, ...}``), not
  the snake_case keyword arguments the `ocpp` library hands to its handlers.
* `call()` returns what `ocpp.v16.ChargePoint.call()` returns: a `ocpp.v16.call_result.*`
  dataclass with snake_case fields whose nested objects are plain (snake_case) dicts.

What ocpp 2.1.0 does with broken frames (measured, matters for `send_raw`):

* A frame that is not JSON, not a JSON array, or lacks elements (`[2, "id"]`) is logged by
  `ChargePoint.route_message` and dropped: *nothing* is sent back, so `send_raw` against a bare
  `ocpp` client raises `TimeoutError`. A charger that answers such frames (OCPP 2.0.1 Part 4
  suggests a CALLERROR with message id ``"-1"`` when the id cannot be read) is matched by the
  first CALLERROR that answers none of the emulator's own calls, whatever its id.
* A well-formed CALL with an unknown action is answered with CALLERROR ``NotSupported``, a
  known action without a handler with ``NotImplemented``, a schema violation with
  ``TypeConstraintViolation`` (wrong type, too long), ``ProtocolError`` (required field missing)
  or ``FormatViolation`` (anything else) - all carrying the CALL's message id.

Run standalone (prints every message)::

    python -m hil.csms --port 9000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from types import ModuleType, TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import unquote, urlsplit

from ocpp.charge_point import ChargePoint as _LibChargePointBase
from ocpp.messages import CallError
from ocpp.routing import on
from ocpp.v16 import ChargePoint as _LibChargePoint
from ocpp.v16 import call_result
from ocpp.v16.enums import Action
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

_LOGGER = logging.getLogger(__name__)

CP_TO_CSMS = "cp->csms"
"""`on_message` direction: a CALL the charger sent to the CSMS."""
CSMS_TO_CP = "csms->cp"
"""`on_message` direction: a CALL the CSMS sent to the charger."""
CSMS_FROM_CP = "csms<-cp"
"""`on_message` direction: the charger's CALLRESULT/CALLERROR to a CSMS CALL."""

OCPP16_SUBPROTOCOL = "ocpp1.6"
ACCEPTED_VENDOR_ID = "evse-agent.test"
"""DataTransfer vendorId the emulator answers with Accepted (others: UnknownVendorId)."""

# The library's own per-call timeout is disabled in practice: `CsmsEmulator.call` bounds each
# call itself and cancels it cleanly, so the library never raises on its own clock.
_LIB_RESPONSE_TIMEOUT_S = 24 * 3600.0
_MSG_CALL = 2
_MSG_CALL_RESULT = 3
_MSG_CALL_ERROR = 4

OnMessage = Callable[[str, str, str, dict[str, Any]], None]
"""Hook ``(direction, charge_point_id, action, camelCase payload) -> None``."""
CallPredicate = Callable[["ReceivedCall"], bool]


@dataclass(frozen=True)
class ReceivedCall:
    """One CALL the CSMS received from a charger, recorded on arrival (before it is answered).

    Attributes:
        charge_point_id: Id of the charger (last path segment of its WebSocket URL).
        action: OCPP action, e.g. ``"StartTransaction"``.
        payload: The CALL payload as on the wire (camelCase keys).
        monotonic_s: `time.monotonic()` when the frame was read from the socket.
        seq: 1-based arrival number across all chargers of this emulator.
        unique_id: The OCPP message id of the CALL.
    """

    charge_point_id: str
    action: str
    payload: dict[str, Any]
    monotonic_s: float
    seq: int
    unique_id: str


@dataclass(frozen=True)
class CallErrorReply:
    """A CALLERROR frame, returned instead of `None` by `CsmsEmulator.call_raw_result`.

    Attributes:
        unique_id: Message id of the CALL it answers.
        error_code: OCPP error code, e.g. ``"NotImplemented"``.
        error_description: Free text from the sender.
        error_details: Details object from the sender (``{}`` when absent).
    """

    unique_id: str
    error_code: str
    error_description: str
    error_details: dict[str, Any]

    def to_payload(self) -> dict[str, Any]:
        """Return the error as a camelCase dict (the form `on_message` receives)."""
        return {
            "errorCode": self.error_code,
            "errorDescription": self.error_description,
            "errorDetails": self.error_details,
        }


Answer = dict[str, Any] | CallErrorReply
"""What the CSMS answered to a charger's CALL: the CALLRESULT payload or a CALLERROR."""


def _utc_now_iso() -> str:
    """Return the current UTC time as ISO 8601 with millisecond precision and a ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _charge_point_id(path: str) -> str:
    """Return the charger id: the last non-empty, URL-decoded segment of the request path."""
    return unquote(urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1])


def _basic_auth_matches(header: str | None, username: str, password: str) -> bool:
    """Check an HTTP ``Authorization: Basic`` header against (username, password).

    Comparison is constant-time; malformed headers simply do not match.
    """
    if not header:
        return False
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    got_user, sep, got_password = decoded.partition(b":")
    user_ok = hmac.compare_digest(got_user, username.encode())
    password_ok = hmac.compare_digest(got_password, password.encode())
    return bool(sep) and user_ok and password_ok


def _parse_frame(text: str) -> list[Any] | None:
    """Return the frame as a JSON array with a string message id, or None if it is not one."""
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    if not isinstance(frame, list) or len(frame) < 2 or not isinstance(frame[1], str):
        return None
    return frame


def _call_error_from_frame(frame: list[Any]) -> CallErrorReply:
    """Build a `CallErrorReply` from a parsed ``[4, id, code, description, details]`` frame."""
    details = frame[4] if len(frame) > 4 and isinstance(frame[4], dict) else {}
    return CallErrorReply(
        unique_id=frame[1],
        error_code=str(frame[2]) if len(frame) > 2 else "",
        error_description=str(frame[3]) if len(frame) > 3 else "",
        error_details=details,
    )


def _answer_from_frame(frame: list[Any]) -> Answer:
    """Return the payload of a CALLRESULT frame or the error of a CALLERROR frame."""
    if frame[0] == _MSG_CALL_ERROR:
        return _call_error_from_frame(frame)
    payload = frame[2] if len(frame) > 2 and isinstance(frame[2], dict) else {}
    return payload


def _answer_payload(answer: Answer) -> dict[str, Any]:
    """Return an answer as the camelCase dict handed to `on_message`."""
    return answer.to_payload() if isinstance(answer, CallErrorReply) else answer


@dataclass(eq=False)
class _RawWaiter:
    """A `send_raw` caller waiting for the charger's answer frame."""

    unique_id: str | None  # None: frame had no readable id; take the next unsolicited CALLERROR
    action: str | None  # action of the raw CALL, for the on_message hook
    answer: asyncio.Future[str]


class _Session:
    """State of one charger WebSocket connection (one `ocpp` ChargePoint object)."""

    def __init__(self, emulator: CsmsEmulator, cp_id: str, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        self.cp_id = cp_id
        self.ws = ws
        self.cp = _CentralSystemChargePoint(cp_id, ws, emulator, self)
        # Resolved when the connection handler has finished its cleanup.
        self.closed: asyncio.Future[None] = loop.create_future()
        # Charger CALLs in arrival order, answered one at a time by the dispatcher task so a
        # held response never blocks reading the charger's answers to CSMS calls.
        self.incoming: asyncio.Queue[tuple[ReceivedCall, str]] = asyncio.Queue()
        self.unanswered: dict[str, ReceivedCall] = {}  # by message id
        self.outgoing: dict[str, str] = {}  # CSMS calls in flight via the library: id -> action
        self.call_errors: dict[str, CallErrorReply] = {}  # CALLERRORs to those calls, by id
        self.raw_waiters: list[_RawWaiter] = []

    def take_raw_waiter(self, unique_id: str, is_error: bool) -> _RawWaiter | None:
        """Pop the `send_raw` waiter an answer frame belongs to, if any."""
        for waiter in self.raw_waiters:
            if waiter.unique_id == unique_id:
                self.raw_waiters.remove(waiter)
                return waiter
        if is_error:
            for waiter in self.raw_waiters:
                if waiter.unique_id is None:
                    self.raw_waiters.remove(waiter)
                    return waiter
        return None


class _CsmsChargePoint(_LibChargePointBase):  # type: ignore[misc]
    """The CSMS side of one charger connection, for any OCPP version.

    Records the CSMS's answers once sent, reports its own CALLs to the `on_message` hook and
    answers the CP->CSMS messages that 1.6 and 2.0.1 share. A version's subclass lists this
    class first and the library's ``ocpp.v16`` / ``ocpp.v201`` ChargePoint second, sets
    `_results` to that version's ``call_result`` module and adds its own handlers.
    """

    _results: ClassVar[ModuleType]

    def __init__(
        self, cp_id: str, ws: ServerConnection, emulator: CsmsEmulator, session: _Session
    ) -> None:
        super().__init__(cp_id, ws, response_timeout=_LIB_RESPONSE_TIMEOUT_S)
        self._emulator = emulator
        self._session = session

    async def _send(self, message: str) -> None:
        """Send a frame, reporting CSMS calls to the hook and recording answers once sent."""
        frame = _parse_frame(message)
        if frame is not None and frame[0] == _MSG_CALL and len(frame) > 3:
            self._emulator._notify_hook(CSMS_TO_CP, self.id, str(frame[2]), frame[3])
        await super()._send(message)
        if frame is not None and frame[0] in (_MSG_CALL_RESULT, _MSG_CALL_ERROR):
            received = self._session.unanswered.pop(frame[1], None)
            if received is not None:
                await self._emulator._record_answer(received, _answer_from_frame(frame))

    def _wire_payload(self, unique_id: str) -> dict[str, Any]:
        received = self._session.unanswered.get(unique_id)
        return dict(received.payload) if received is not None else {}

    # 1.6 4.2 / 2.0.1 B01-B03: the scripted registration status and heartbeat interval.
    @on("BootNotification")  # type: ignore[untyped-decorator]
    def on_boot_notification(self, **_: Any) -> Any:
        return self._results.BootNotification(
            current_time=_utc_now_iso(),
            interval=self._emulator.heartbeat_interval_s,
            status=self._emulator.boot_status,
        )

    @on("Heartbeat")  # type: ignore[untyped-decorator]
    def on_heartbeat(self, **_: Any) -> Any:
        return self._results.Heartbeat(current_time=_utc_now_iso())

    @on("DataTransfer")  # type: ignore[untyped-decorator]
    def on_data_transfer(self, vendor_id: str, **_: Any) -> Any:
        status = "Accepted" if vendor_id == ACCEPTED_VENDOR_ID else "UnknownVendorId"
        return self._results.DataTransfer(status=status)

    @on("SignCertificate")  # type: ignore[untyped-decorator]
    def on_sign_certificate(self, **_: Any) -> Any:
        return self._results.SignCertificate(status="Accepted")

    # Plain acknowledgements: the response has no required field.
    @on("StatusNotification")  # type: ignore[untyped-decorator]
    def on_status_notification(self, **_: Any) -> Any:
        return self._results.StatusNotification()

    @on("MeterValues")  # type: ignore[untyped-decorator]
    def on_meter_values(self, **_: Any) -> Any:
        return self._results.MeterValues()

    @on("FirmwareStatusNotification")  # type: ignore[untyped-decorator]
    def on_firmware_status_notification(self, **_: Any) -> Any:
        return self._results.FirmwareStatusNotification()

    @on("SecurityEventNotification")  # type: ignore[untyped-decorator]
    def on_security_event_notification(self, **_: Any) -> Any:
        return self._results.SecurityEventNotification()

    @on("LogStatusNotification")  # type: ignore[untyped-decorator]
    def on_log_status_notification(self, **_: Any) -> Any:
        return self._results.LogStatusNotification()


class _CentralSystemChargePoint(_CsmsChargePoint, _LibChargePoint):  # type: ignore[misc]
    """The central-system side of one 1.6 charger connection: answers CP->CS 1.6 messages."""

    _results = call_result

    @on(Action.authorize)  # type: ignore[untyped-decorator]
    def on_authorize(self, id_tag: str, **_: Any) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info=self._emulator._id_tag_info(id_tag))

    @on(Action.start_transaction)  # type: ignore[untyped-decorator]
    def on_start_transaction(
        self, id_tag: str, call_unique_id: str, **_: Any
    ) -> call_result.StartTransaction:
        transaction_id = self._emulator._open_transaction(
            self.id, self._wire_payload(call_unique_id)
        )
        return call_result.StartTransaction(
            transaction_id=transaction_id, id_tag_info=self._emulator._id_tag_info(id_tag)
        )

    @on(Action.stop_transaction)  # type: ignore[untyped-decorator]
    def on_stop_transaction(
        self, transaction_id: int, call_unique_id: str, **_: Any
    ) -> call_result.StopTransaction:
        self._emulator._close_transaction(
            self.id, transaction_id, self._wire_payload(call_unique_id)
        )
        return call_result.StopTransaction(id_tag_info={"status": "Accepted"})

    @on(Action.diagnostics_status_notification)  # type: ignore[untyped-decorator]
    def on_diagnostics_status_notification(
        self, **_: Any
    ) -> call_result.DiagnosticsStatusNotification:
        return call_result.DiagnosticsStatusNotification()

    # Security whitepaper (1.6 edition 3): the signed firmware status, acknowledged.
    @on(Action.signed_firmware_status_notification)  # type: ignore[untyped-decorator]
    def on_signed_firmware_status_notification(
        self, **_: Any
    ) -> call_result.SignedFirmwareStatusNotification:
        return call_result.SignedFirmwareStatusNotification()


class CsmsEmulator:
    """An OCPP 1.6J Central System on a real WebSocket server, scripted and observable.

    One `ocpp.v16.ChargePoint` (central-system side) serves each connected charger. The
    charger id is the last segment of the request path (``/ocpp/CP001`` -> ``"CP001"``).
    Charger CALLs are recorded when read from the socket and answered one at a time, in order,
    by a per-connection task; answers to the CSMS's own calls are read concurrently, so holding
    a response never blocks `call()`.

    Attributes:
        boot_status: Registration status for BootNotification: ``"Accepted"``, ``"Pending"`` or
            ``"Rejected"``. Mutable; read at each BootNotification.
        heartbeat_interval_s: ``interval`` (s) returned in BootNotification. Mutable.
        received: Every CALL received from any charger, in arrival order.
        answers: What the CSMS answered, by `ReceivedCall.seq` (filled once the answer is sent).
        transactions: By transaction id: ``{"chargePointId": str, "start": payload | None,
            "stop": payload | None}`` with camelCase StartTransaction/StopTransaction payloads.
        connections: Number of accepted WebSocket connections per charger id since creation.
        rejected_handshakes: ``(charger id, HTTP status)`` of every refused handshake.
        port: TCP port; the ephemeral port actually bound once started.
    """

    _TASK_PREFIX: ClassVar[str] = "csms"
    _UNSERVED_REASON: ClassVar[str] = "only ocpp1.6 is emulated"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat_interval_s: int = 300,
        boot_status: str = "Accepted",
        basic_auth_password: str | None = None,
        subprotocols: Sequence[str] = (OCPP16_SUBPROTOCOL,),
        on_message: OnMessage | None = None,
        first_transaction_id: int = 1,
    ) -> None:
        """Configure the emulator; nothing listens until `start()`.

        Args:
            host: Address to bind; keep the loopback default in tests.
            port: TCP port; 0 picks an ephemeral port (read it back from `port`).
            heartbeat_interval_s: Interval (s) returned in BootNotification.conf.
            boot_status: Registration status returned in BootNotification.conf.
            basic_auth_password: If set, the handshake needs HTTP Basic auth with
                (charger id, this password), otherwise it is refused with HTTP 401.
            subprotocols: WebSocket subprotocols offered, in preference order. Connections
                that negotiate anything but ``ocpp1.6`` are closed with 1002 (only 1.6 is
                emulated so far); clients offering none of them get HTTP 400.
            on_message: Hook called synchronously with ``(direction, charger id, action,
                camelCase payload)`` for every CALL received (`CP_TO_CSMS`), every CALL the
                CSMS sends (`CSMS_TO_CP`) and the charger's answer to it (`CSMS_FROM_CP`; a
                CALLERROR is passed as `CallErrorReply.to_payload()`). Exceptions it raises are
                logged and ignored.
            first_transaction_id: First transaction id handed out by StartTransaction.
        """
        self.boot_status = boot_status
        self.heartbeat_interval_s = heartbeat_interval_s
        self.received: list[ReceivedCall] = []
        self.answers: dict[int, Answer] = {}
        self.transactions: dict[int, dict[str, Any]] = {}
        self.connections: Counter[str] = Counter()
        self.rejected_handshakes: list[tuple[str, int]] = []
        self.port = port
        self._host = host
        self._basic_auth_password = basic_auth_password
        self._subprotocols = [Subprotocol(p) for p in subprotocols]
        self._on_message = on_message
        self._next_transaction_id = first_transaction_id
        self._authorize_status: dict[str, str] = {}
        self._failures: Counter[str] = Counter()
        self._failure_codes: dict[str, str] = {}
        self._gates: dict[str, asyncio.Event] = {}
        self._sessions: dict[str, _Session] = {}
        self._all_sessions: set[_Session] = set()
        self._server: Server | None = None
        self._changed = asyncio.Condition()

    # ----------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """Base URL ``ws://<host>:<port>/ocpp``; a charger appends ``/<its id>``."""
        return f"ws://{self._host}:{self.port}/ocpp"

    async def start(self) -> None:
        """Start listening (no-op if already listening).

        Raises:
            OSError: The address/port cannot be bound.
        """
        await self.go_online()

    async def stop(self) -> None:
        """Stop listening and close every connection (code 1001); idempotent.

        Returns once every connection handler and its tasks have finished, so no task or
        socket outlives the emulator.
        """
        await self.go_offline()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def go_offline(self) -> None:
        """Close the listening socket and drop every connection with code 1001 (going away).

        New connection attempts are refused (TCP RST) until `go_online()`.
        """
        server, self._server = self._server, None
        if server is None:
            return
        server.close(close_connections=True)
        await server.wait_closed()
        # Handlers have returned; wait for their bookkeeping too (it is already done, but
        # this keeps the contract explicit if websockets ever changes the ordering).
        await self._wait_sessions_closed(list(self._all_sessions))

    async def go_online(self) -> None:
        """Listen again on the same port (the ephemeral port chosen by the first start).

        Raises:
            OSError: The port was taken by someone else meanwhile.
        """
        if self._server is not None:
            return
        self._server = await serve(
            self._serve_connection,
            self._host,
            self.port,
            subprotocols=self._subprotocols,
            process_request=self._process_request,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def drop_connections(self) -> None:
        """Close every connection with code 1001 but keep listening, so chargers can reconnect.

        Returns once the connections' handlers have finished (`is_connected` is False).
        """
        sessions = list(self._all_sessions)
        await asyncio.gather(
            *(s.ws.close(code=1001, reason="dropped by CSMS emulator") for s in sessions)
        )
        await self._wait_sessions_closed(sessions)

    # ---------------------------------------------------------------- scripting

    def set_authorize_status(self, id_tag: str, status: str) -> None:
        """Script the idTagInfo status for a tag (unknown tags are ``Accepted``).

        Applies to Authorize.conf and to the idTagInfo of StartTransaction.conf.
        """
        self._authorize_status[id_tag] = status

    def fail_next(self, action: str, times: int = 1, error_code: str = "InternalError") -> None:
        """Answer the next `times` CALLs of `action` with a CALLERROR carrying `error_code`.

        The failing CALLs are still recorded in `received`; they have no side effects
        (a failed StartTransaction does not consume a transaction id).
        """
        self._failures[action] += times
        self._failure_codes[action] = error_code

    def hold_responses(self, action: str) -> None:
        """Make CALLs of `action` wait, unanswered, until `release_responses(action)`.

        A held CALL is recorded (so `wait_for` sees it) but not answered; CALLs behind it on
        the same connection wait too (OCPP-J processes them in order).
        """
        if action not in self._gates:
            self._gates[action] = asyncio.Event()

    def release_responses(self, action: str) -> None:
        """Let held and future CALLs of `action` be answered again."""
        gate = self._gates.pop(action, None)
        if gate is not None:
            gate.set()

    # ------------------------------------------------------------- observation

    def is_connected(self, cp_id: str) -> bool:
        """Return True while the charger has an open connection."""
        return cp_id in self._sessions

    def calls(self, action: str, cp_id: str | None = None) -> list[ReceivedCall]:
        """Return the received CALLs of `action` (optionally of one charger), oldest first."""
        return [
            c for c in self.received if c.action == action and cp_id in (None, c.charge_point_id)
        ]

    async def wait_for(
        self,
        action: str,
        *,
        count: int = 1,
        predicate: CallPredicate | None = None,
        cp_id: str | None = None,
        timeout_s: float = 10.0,
    ) -> ReceivedCall:
        """Wait until `count` matching CALLs have been received and return the count-th.

        Counting starts at the very first CALL the emulator received, not at the moment of
        this call, so ``wait_for("Heartbeat", count=2)`` returns at once if two already came.
        Returns when the CALL is read from the socket, i.e. possibly before it is answered
        (use `wait_answer` for that).

        Raises:
            TimeoutError: Fewer than `count` matching CALLs after `timeout_s` seconds.
        """

        def matches() -> list[ReceivedCall]:
            return [c for c in self.calls(action, cp_id) if predicate is None or predicate(c)]

        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: len(matches()) >= count)
        except TimeoutError:
            seen = [c.action for c in self.received]
            raise TimeoutError(
                f"{len(matches())}/{count} {action} calls from {cp_id or 'any charger'} "
                f"after {timeout_s} s; received so far: {seen}"
            ) from None
        return matches()[count - 1]

    async def wait_answer(self, received: ReceivedCall, *, timeout_s: float = 10.0) -> Answer:
        """Wait until the CSMS has sent its answer to `received` and return it.

        Raises:
            TimeoutError: Not answered within `timeout_s` (e.g. held, or the link dropped).
        """
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: received.seq in self.answers)
        except TimeoutError:
            raise TimeoutError(
                f"{received.action} #{received.seq} not answered after {timeout_s} s"
            ) from None
        return self.answers[received.seq]

    async def wait_connected(self, cp_id: str, *, count: int = 1, timeout_s: float = 10.0) -> None:
        """Wait until the charger has opened its `count`-th connection since creation.

        Raises:
            TimeoutError: Fewer than `count` connections after `timeout_s` seconds.
        """
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: self.connections[cp_id] >= count)
        except TimeoutError:
            raise TimeoutError(
                f"{cp_id}: {self.connections[cp_id]}/{count} connections after {timeout_s} s"
            ) from None

    async def wait_disconnected(self, cp_id: str, *, timeout_s: float = 10.0) -> None:
        """Wait until the charger has no open connection.

        Raises:
            TimeoutError: Still connected after `timeout_s` seconds.
        """
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: not self.is_connected(cp_id))
        except TimeoutError:
            raise TimeoutError(f"{cp_id} still connected after {timeout_s} s") from None

    # ------------------------------------------------------------ CS -> CP calls

    async def call(
        self, cp_id: str, payload: Any, timeout_s: float = 10.0, *, suppress: bool = True
    ) -> Any:
        """Send a CS->CP CALL and return the charger's answer as the `ocpp` library does.

        Args:
            cp_id: Connected charger to call.
            payload: An `ocpp.v16.call.*` object, e.g.
                ``call.RemoteStartTransaction(connector_id=1, id_tag="ABC")``.
            timeout_s: Bound on the whole exchange; on expiry the call is cancelled and a late
                answer is dropped.
            suppress: As in `ocpp`: True returns None on a CALLERROR, False raises the
                matching `ocpp.exceptions.OCPPError` (or `UnknownCallErrorCodeError`).

        Returns:
            The `ocpp.v16.call_result.*` object (snake_case fields), or None on a CALLERROR
            when `suppress` is True.

        Raises:
            ConnectionError: The charger is not connected or disconnected during the call.
            TimeoutError: No answer within `timeout_s`.
            ocpp.exceptions.OCPPError: CALLERROR with `suppress=False`, or the request or the
                answer violates the 1.6 JSON schema.
        """
        result, _ = await self._call(cp_id, payload, timeout_s, suppress=suppress)
        return result

    async def call_raw_result(self, cp_id: str, payload: Any, timeout_s: float = 10.0) -> Any:
        """Like `call`, but return a CALLERROR as a `CallErrorReply` instead of None.

        Raises:
            ConnectionError, TimeoutError, ocpp.exceptions.OCPPError: As `call`.
        """
        result, error = await self._call(cp_id, payload, timeout_s, suppress=True)
        return error if error is not None else result

    async def send_raw(self, cp_id: str, text: str, timeout_s: float = 5.0) -> str:
        """Send an arbitrary text frame and return the charger's frame that answers it.

        Matching: if `text` is a JSON array whose second element is a string message id, the
        answer is the next CALLRESULT/CALLERROR with that id. Otherwise (invalid JSON, no id)
        it is the next CALLERROR that answers none of the emulator's own calls, whatever its
        id (``"-1"`` by the OCPP 2.0.1 Part 4 convention). Note: a bare ocpp 2.1.0
        ChargePoint never answers unparsable frames, so expect `TimeoutError` there.

        Raises:
            ConnectionError: The charger is not connected or disconnected meanwhile.
            TimeoutError: No answering frame within `timeout_s`.
        """
        session = self._session(cp_id)
        frame = _parse_frame(text)
        unique_id = frame[1] if frame is not None else None
        action = None
        if frame is not None and frame[0] == _MSG_CALL and len(frame) > 3:
            action = str(frame[2])
        waiter = _RawWaiter(unique_id, action, asyncio.get_running_loop().create_future())
        session.raw_waiters.append(waiter)
        try:
            if action is not None and frame is not None:
                self._notify_hook(CSMS_TO_CP, cp_id, action, frame[3])
            await session.ws.send(text)
            awaited: set[asyncio.Future[Any]] = {waiter.answer, session.closed}
            done, _ = await asyncio.wait(
                awaited,
                timeout=timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except ConnectionClosed as exc:
            raise ConnectionError(f"{cp_id} disconnected") from exc
        finally:
            with contextlib.suppress(ValueError):
                session.raw_waiters.remove(waiter)
        if waiter.answer in done:
            return waiter.answer.result()
        if session.closed in done:
            raise ConnectionError(f"{cp_id} disconnected before answering the raw frame")
        raise TimeoutError(f"{cp_id} sent no answer to {text!r} within {timeout_s} s")

    async def send_frame(self, cp_id: str, text: str) -> None:
        """Send an arbitrary text frame and expect no answer (e.g. a stray CALLRESULT).

        Raises:
            ConnectionError: The charger is not connected.
        """
        try:
            await self._session(cp_id).ws.send(text)
        except ConnectionClosed as exc:
            raise ConnectionError(f"{cp_id} disconnected") from exc

    # --------------------------------------------------------------- internals

    def _session(self, cp_id: str) -> _Session:
        session = self._sessions.get(cp_id)
        if session is None:
            raise ConnectionError(f"charge point {cp_id!r} is not connected")
        return session

    async def _call(
        self, cp_id: str, payload: Any, timeout_s: float, *, suppress: bool
    ) -> tuple[Any, CallErrorReply | None]:
        session = self._session(cp_id)
        unique_id = str(uuid.uuid4())
        session.outgoing[unique_id] = type(payload).__name__
        task = asyncio.create_task(
            session.cp.call(payload, suppress=suppress, unique_id=unique_id),
            name=f"csms-call-{cp_id}-{type(payload).__name__}",
        )
        try:
            done, _ = await asyncio.wait(
                {task, session.closed}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if task in done:
                return task.result(), session.call_errors.get(unique_id)
            if session.closed in done:
                raise ConnectionError(f"{cp_id} disconnected during {type(payload).__name__}")
            raise TimeoutError(f"{cp_id} did not answer {type(payload).__name__} in {timeout_s} s")
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
            session.outgoing.pop(unique_id, None)
            session.call_errors.pop(unique_id, None)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse handshakes without a charger id (404) or with bad basic auth (401)."""
        cp_id = _charge_point_id(request.path)
        status: HTTPStatus | None = None
        if not cp_id:
            status = HTTPStatus.NOT_FOUND
        elif self._basic_auth_password is not None and not _basic_auth_matches(
            request.headers.get("Authorization"), cp_id, self._basic_auth_password
        ):
            status = HTTPStatus.UNAUTHORIZED
        if status is None:
            return None
        self.rejected_handshakes.append((cp_id, int(status)))
        response = connection.respond(status, f"{status.phrase}\n")
        if status is HTTPStatus.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
        return response

    def _open_session(self, cp_id: str, ws: ServerConnection) -> _Session | None:
        """Return the session for a new connection, or None if its subprotocol is not served.

        The version hook of `_serve_connection`: this 1.6 emulator serves ``ocpp1.6`` only.
        """
        if ws.subprotocol != OCPP16_SUBPROTOCOL:
            return None
        return _Session(self, cp_id, ws)

    async def _serve_connection(self, ws: ServerConnection) -> None:
        """Connection handler: read frames until the socket closes, then clean up."""
        cp_id = _charge_point_id(ws.request.path if ws.request is not None else "")
        session = self._open_session(cp_id, ws)
        if session is None:
            await ws.close(code=1002, reason=self._UNSERVED_REASON)
            return
        async with self._changed:
            self._sessions[cp_id] = session
            self._all_sessions.add(session)
            self.connections[cp_id] += 1
            self._changed.notify_all()
        dispatcher = asyncio.create_task(
            self._dispatch_calls(session), name=f"{self._TASK_PREFIX}-{cp_id}"
        )
        try:
            async for message in ws:
                text = message if isinstance(message, str) else message.decode(errors="replace")
                await self._on_frame(session, text)
        except ConnectionClosed:
            pass
        finally:
            dispatcher.cancel()
            await asyncio.wait({dispatcher})
            async with self._changed:
                if self._sessions.get(cp_id) is session:
                    del self._sessions[cp_id]
                self._all_sessions.discard(session)
                session.closed.set_result(None)
                self._changed.notify_all()

    async def _on_frame(self, session: _Session, text: str) -> None:
        """Record charger CALLs and route answers to whoever is waiting for them."""
        frame = _parse_frame(text)
        if frame is None:
            _LOGGER.warning("%s: ignoring unparsable frame %r", session.cp_id, text)
            return
        kind, unique_id = frame[0], frame[1]
        if kind == _MSG_CALL and len(frame) > 3 and isinstance(frame[2], str):
            payload = frame[3] if isinstance(frame[3], dict) else {}
            async with self._changed:
                received = ReceivedCall(
                    charge_point_id=session.cp_id,
                    action=frame[2],
                    payload=payload,
                    monotonic_s=time.monotonic(),
                    seq=len(self.received) + 1,
                    unique_id=unique_id,
                )
                self.received.append(received)
                self._changed.notify_all()
            session.unanswered[unique_id] = received
            self._notify_hook(CP_TO_CSMS, session.cp_id, received.action, payload)
            session.incoming.put_nowait((received, text))
        elif kind in (_MSG_CALL_RESULT, _MSG_CALL_ERROR):
            await self._route_answer(session, frame, text)
        else:
            _LOGGER.warning("%s: ignoring malformed frame %r", session.cp_id, text)

    async def _route_answer(self, session: _Session, frame: list[Any], text: str) -> None:
        unique_id = frame[1]
        answer = _answer_from_frame(frame)
        action = session.outgoing.get(unique_id)
        if action is not None:
            if isinstance(answer, CallErrorReply):
                session.call_errors[unique_id] = answer
            self._notify_hook(CSMS_FROM_CP, session.cp_id, action, _answer_payload(answer))
            # For CALLRESULT/CALLERROR frames the library only hands them to its pending call().
            await session.cp.route_message(text)
            return
        waiter = session.take_raw_waiter(unique_id, isinstance(answer, CallErrorReply))
        if waiter is None:
            _LOGGER.warning("%s: dropping unsolicited answer %r", session.cp_id, text)
            return
        if waiter.action is not None:
            self._notify_hook(CSMS_FROM_CP, session.cp_id, waiter.action, _answer_payload(answer))
        if not waiter.answer.done():
            waiter.answer.set_result(text)

    async def _dispatch_calls(self, session: _Session) -> None:
        """Answer the charger's CALLs one at a time, in arrival order."""
        while True:
            received, text = await session.incoming.get()
            gate = self._gates.get(received.action)
            if gate is not None:
                await gate.wait()
            try:
                error_code = self._take_failure(received.action)
                if error_code is not None:
                    error = CallError(
                        received.unique_id, error_code, "Injected by CsmsEmulator.fail_next", {}
                    )
                    await session.cp._send(error.to_json())
                else:
                    await session.cp.route_message(text)
            except ConnectionClosed:
                return
            except Exception:
                _LOGGER.exception("%s: failed to answer %s", session.cp_id, received.action)

    def _take_failure(self, action: str) -> str | None:
        if self._failures[action] <= 0:
            return None
        self._failures[action] -= 1
        return self._failure_codes.get(action, "InternalError")

    async def _record_answer(self, received: ReceivedCall, answer: Answer) -> None:
        async with self._changed:
            self.answers[received.seq] = answer
            self._changed.notify_all()

    async def _wait_sessions_closed(self, sessions: list[_Session]) -> None:
        if sessions:
            await asyncio.wait({s.closed for s in sessions})

    def _notify_hook(self, direction: str, cp_id: str, action: str, payload: Any) -> None:
        if self._on_message is None:
            return
        try:
            self._on_message(direction, cp_id, action, payload if isinstance(payload, dict) else {})
        except Exception:
            _LOGGER.exception("on_message hook failed")

    def _id_tag_info(self, id_tag: str) -> dict[str, str]:
        return {"status": self._authorize_status.get(id_tag, "Accepted")}

    def _open_transaction(self, cp_id: str, start_payload: dict[str, Any]) -> int:
        transaction_id = self._next_transaction_id
        self._next_transaction_id += 1
        self.transactions[transaction_id] = {
            "chargePointId": cp_id,
            "start": start_payload,
            "stop": None,
        }
        return transaction_id

    def _close_transaction(
        self, cp_id: str, transaction_id: int, stop_payload: dict[str, Any]
    ) -> None:
        record = self.transactions.setdefault(
            transaction_id, {"chargePointId": cp_id, "start": None, "stop": None}
        )
        record["stop"] = stop_payload


# ----------------------------------------------------------------- standalone


def _print_message(direction: str, cp_id: str, action: str, payload: dict[str, Any]) -> None:
    stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
    print(f"{stamp} {cp_id} {direction} {action} {json.dumps(payload)}", flush=True)


def standalone_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """Return the command line parser both standalone emulators share (a version adds to it)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=9000, help="TCP port (0: ephemeral)")
    parser.add_argument("--heartbeat-interval-s", type=int, default=300)
    parser.add_argument(
        "--boot-status", default="Accepted", choices=["Accepted", "Pending", "Rejected"]
    )
    parser.add_argument(
        "--basic-auth-password", default=None, help="require HTTP Basic auth (id, password)"
    )
    return parser


async def serve_until_signalled(
    emulator_class: Callable[..., CsmsEmulator], args: argparse.Namespace, **options: Any
) -> None:
    """Run an emulator until SIGINT/SIGTERM, printing every message to stdout.

    Args:
        emulator_class: `CsmsEmulator` or a subclass.
        args: Parsed `standalone_parser` options (host, port, heartbeat, boot status, auth).
        **options: More keyword arguments for ``emulator_class``.
    """
    logging.basicConfig(level=logging.WARNING)
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_requested.set)
    emulator = emulator_class(
        host=args.host,
        port=args.port,
        heartbeat_interval_s=args.heartbeat_interval_s,
        boot_status=args.boot_status,
        basic_auth_password=args.basic_auth_password,
        on_message=_print_message,
        **options,
    )
    async with emulator:
        print(f"CSMS emulator listening on {emulator.url}/<charge point id>", flush=True)
        await stop_requested.wait()


async def main(argv: Sequence[str] | None = None) -> None:
    """Run a standalone emulator until SIGINT/SIGTERM, printing every message to stdout."""
    parser = standalone_parser(
        "python -m hil.csms", "OCPP 1.6J CSMS emulator; prints every message."
    )
    await serve_until_signalled(CsmsEmulator, parser.parse_args(argv))


if __name__ == "__main__":
    asyncio.run(main())
