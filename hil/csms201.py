"""OCPP 2.0.1 CSMS emulator built on `ocpp.v201`: the 2.0.1 twin of `hil.csms.CsmsEmulator`.

Test equipment, with the same API as the 1.6 emulator (it is a subclass): async context
manager, `wait_for(action, predicate=...)`, `wait_answer`, `call(payload)` with
`ocpp.v201.call.*` payloads, `fail_next`, `hold_responses`, `go_offline`/`go_online`,
`drop_connections`, `set_authorize_status`, the `on_message` hook and the same wire
conventions (recorded payloads are camelCase as on the wire; `call()` returns the library's
snake_case `ocpp.v201.call_result.*`). So a test parametrized over both emulators only
differs in the payloads it sends.

Versions: the emulator answers every CS->CSMS message of OCPP 2.0.1 Part 2 that the
station's blocks send (B, C, E, G, J, K, L, N, P and A04/A02: BootNotification, Heartbeat,
StatusNotification, Authorize, TransactionEvent, MeterValues, NotifyReport, NotifyEvent,
SecurityEventNotification, FirmwareStatusNotification, LogStatusNotification,
DataTransfer, ReportChargingProfiles, NotifyChargingLimit, SignCertificate, ...). It can
also serve OCPP 1.6 connections (with the 1.6 emulator's handlers) when ``ocpp1.6`` is in
its subprotocol list, for the agent's "auto" version choice: the server picks the first
subprotocol of its own list that the client offers (OCPP-J 2.0.1 Part 4 3.1), so
``subprotocols=PREFER_OCPP201`` gives a client offering ``ocpp2.0.1, ocpp1.6`` 2.0.1 and
``PREFER_OCPP16`` gives it 1.6. `negotiated` records what each charger got.

Transactions (2.0.1 E): `transactions` maps each transactionId (a string the station
chooses) to ``{"chargePointId", "start": Started payload | None, "stop": Ended payload |
None, "events": [every TransactionEvent payload in arrival order]}``; 1.6 transactions of
1.6 chargers keep their integer ids and 1.6 shape.

Validation: the `ocpp` library validates in its thread pool (``ocpp.messages.
ASYNC_VALIDATION``); like `hil.csms`, this module leaves that global alone.

Run standalone (prints every message)::

    python -m hil.csms201 --port 9000 [--prefer-ocpp16]
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from ocpp.routing import on
from ocpp.v201 import ChargePoint as _LibChargePoint201
from ocpp.v201 import call_result
from ocpp.v201.enums import Action
from websockets.asyncio.server import ServerConnection
from websockets.typing import Subprotocol

from hil.csms import (
    OCPP16_SUBPROTOCOL,
    CsmsEmulator,
    OnMessage,
    _CsmsChargePoint,
    _Session,
    serve_until_signalled,
    standalone_parser,
)

_LOGGER = logging.getLogger(__name__)

OCPP201_SUBPROTOCOL = "ocpp2.0.1"
PREFER_OCPP201: tuple[str, ...] = (OCPP201_SUBPROTOCOL, OCPP16_SUBPROTOCOL)
"""Serve both versions; a client offering both gets 2.0.1."""
PREFER_OCPP16: tuple[str, ...] = (OCPP16_SUBPROTOCOL, OCPP201_SUBPROTOCOL)
"""Serve both versions; a client offering both gets 1.6."""
_EMULATED = frozenset((OCPP201_SUBPROTOCOL, OCPP16_SUBPROTOCOL))

TransactionEventAnswer = Callable[[str, dict[str, Any]], dict[str, Any] | None]
"""Hook ``(charger id, camelCase TransactionEvent payload) -> camelCase response fields``.

The fields returned (e.g. ``{"totalCost": 1.5, "idTokenInfo": {"status": "Blocked"}}``)
replace the emulator's defaults; None keeps the defaults."""

_CAMEL_BOUNDARY = re.compile(r"(?<!^)(?=[A-Z])")


def _snake(name: str) -> str:
    return _CAMEL_BOUNDARY.sub("_", name).lower()


def _check_subprotocols(subprotocols: Sequence[str]) -> None:
    """Raise ValueError if ``subprotocols`` is empty or names a version not emulated."""
    unknown = set(subprotocols) - _EMULATED
    if not subprotocols or unknown:
        raise ValueError(f"subprotocols must be from {sorted(_EMULATED)}, got {subprotocols}")


class _CsmsChargePoint201(_CsmsChargePoint, _LibChargePoint201):  # type: ignore[misc]
    """The CSMS side of one 2.0.1 charger connection: answers every CS->CSMS message."""

    _results = call_result
    _emulator: CsmsEmulator201

    @on(Action.authorize)  # type: ignore[untyped-decorator]
    def on_authorize(self, call_unique_id: str, **_: Any) -> call_result.Authorize:
        id_token = self._wire_payload(call_unique_id).get("idToken", {})
        return call_result.Authorize(
            id_token_info=self._emulator._id_token_info(str(id_token.get("idToken", "")))
        )

    @on(Action.transaction_event)  # type: ignore[untyped-decorator]
    def on_transaction_event(self, call_unique_id: str, **_: Any) -> call_result.TransactionEvent:
        fields = self._emulator._transaction_event(self.id, self._wire_payload(call_unique_id))
        return call_result.TransactionEvent(**fields)

    # Plain acknowledgements: the response has no required field.
    @on(Action.notify_report)  # type: ignore[untyped-decorator]
    def on_notify_report(self, **_: Any) -> call_result.NotifyReport:
        return call_result.NotifyReport()

    @on(Action.notify_event)  # type: ignore[untyped-decorator]
    def on_notify_event(self, **_: Any) -> call_result.NotifyEvent:
        return call_result.NotifyEvent()

    @on(Action.notify_monitoring_report)  # type: ignore[untyped-decorator]
    def on_notify_monitoring_report(self, **_: Any) -> call_result.NotifyMonitoringReport:
        return call_result.NotifyMonitoringReport()

    @on(Action.report_charging_profiles)  # type: ignore[untyped-decorator]
    def on_report_charging_profiles(self, **_: Any) -> call_result.ReportChargingProfiles:
        return call_result.ReportChargingProfiles()

    @on(Action.notify_charging_limit)  # type: ignore[untyped-decorator]
    def on_notify_charging_limit(self, **_: Any) -> call_result.NotifyChargingLimit:
        return call_result.NotifyChargingLimit()

    @on(Action.cleared_charging_limit)  # type: ignore[untyped-decorator]
    def on_cleared_charging_limit(self, **_: Any) -> call_result.ClearedChargingLimit:
        return call_result.ClearedChargingLimit()

    @on(Action.reservation_status_update)  # type: ignore[untyped-decorator]
    def on_reservation_status_update(self, **_: Any) -> call_result.ReservationStatusUpdate:
        return call_result.ReservationStatusUpdate()

    @on(Action.notify_customer_information)  # type: ignore[untyped-decorator]
    def on_notify_customer_information(self, **_: Any) -> call_result.NotifyCustomerInformation:
        return call_result.NotifyCustomerInformation()


class _Session201(_Session):
    """A 2.0.1 connection: the 1.6 session's bookkeeping with a 2.0.1 ChargePoint."""

    def __init__(self, emulator: CsmsEmulator201, cp_id: str, ws: ServerConnection) -> None:
        super().__init__(emulator, cp_id, ws)
        self.cp = _CsmsChargePoint201(cp_id, ws, emulator, self)


class CsmsEmulator201(CsmsEmulator):
    """An OCPP 2.0.1 CSMS on a real WebSocket server, scripted and observable.

    Everything `CsmsEmulator` documents holds (recording, waiting, scripting, calls); the
    differences are listed in the module docstring. `set_authorize_status(id_token,
    status)` scripts ``idTokenInfo.status`` of AuthorizeResponse and of the
    TransactionEventResponse to an event carrying that idToken (others: Accepted).

    Attributes:
        negotiated: Charger id -> subprotocol of its latest connection.
        transaction_event_answer: Optional `TransactionEventAnswer` hook. Mutable.
    """

    _TASK_PREFIX = "csms201"
    _UNSERVED_REASON = "unsupported subprotocol"

    # Keys: 2.0.1 transactionId strings (and 1.6 integer ids of 1.6 chargers).
    transactions: dict[Any, dict[str, Any]]

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat_interval_s: int = 300,
        boot_status: str = "Accepted",
        basic_auth_password: str | None = None,
        subprotocols: Sequence[str] = (OCPP201_SUBPROTOCOL,),
        on_message: OnMessage | None = None,
        transaction_event_answer: TransactionEventAnswer | None = None,
    ) -> None:
        """Configure the emulator; nothing listens until `start()`.

        Args:
            host: Address to bind; keep the loopback default in tests.
            port: TCP port; 0 picks an ephemeral port (read it back from `port`).
            heartbeat_interval_s: ``interval`` (s) returned in BootNotificationResponse.
            boot_status: Registration status returned in BootNotificationResponse.
            basic_auth_password: If set, the handshake needs HTTP Basic auth with
                (charger id, this password), otherwise it is refused with HTTP 401.
            subprotocols: Subprotocols served, in preference order: ``ocpp2.0.1`` and/or
                ``ocpp1.6`` (`PREFER_OCPP201`, `PREFER_OCPP16`). A client offering none of
                them gets HTTP 400.
            on_message: As `CsmsEmulator`.
            transaction_event_answer: See `TransactionEventAnswer`.

        Raises:
            ValueError: ``subprotocols`` is empty or names a version not emulated.
        """
        _check_subprotocols(subprotocols)
        super().__init__(
            host=host,
            port=port,
            heartbeat_interval_s=heartbeat_interval_s,
            boot_status=boot_status,
            basic_auth_password=basic_auth_password,
            subprotocols=subprotocols,
            on_message=on_message,
        )
        self.negotiated: dict[str, str] = {}
        self.transaction_event_answer = transaction_event_answer

    # ---------------------------------------------------------------- scripting

    def set_subprotocols(self, subprotocols: Sequence[str]) -> None:
        """Change the subprotocols served, in preference order, for the next handshakes.

        Open connections keep what they negotiated; every handshake after this call
        (also on a server that keeps listening, e.g. after `drop_connections()`) selects
        from the new list, so a charger offering both versions can be moved across.

        Raises:
            ValueError: ``subprotocols`` is empty or names a version not emulated.
        """
        _check_subprotocols(subprotocols)
        # in place: the listening server holds this very list
        self._subprotocols[:] = [Subprotocol(p) for p in subprotocols]

    # ------------------------------------------------------------- observation

    def report_data(self, request_id: int, cp_id: str | None = None) -> list[dict[str, Any]]:
        """The ``reportData`` of every NotifyReport of ``request_id`` so far, in seqNo order."""
        pages = [
            c.payload
            for c in self.calls("NotifyReport", cp_id)
            if c.payload.get("requestId") == request_id
        ]
        pages.sort(key=lambda p: int(p.get("seqNo", 0)))
        return [item for page in pages for item in page.get("reportData", [])]

    async def wait_report(
        self, request_id: int, *, cp_id: str | None = None, timeout_s: float = 10.0
    ) -> list[dict[str, Any]]:
        """Wait for a complete report (B07/B08) and return its ``reportData`` items.

        Complete: a NotifyReport of ``request_id`` with ``tbc`` false has arrived, and
        every seqNo from 0 up to its seqNo.

        Raises:
            TimeoutError: Not complete within `timeout_s`.
        """

        def complete() -> bool:
            pages = [
                c.payload
                for c in self.calls("NotifyReport", cp_id)
                if c.payload.get("requestId") == request_id
            ]
            last = [int(p.get("seqNo", 0)) for p in pages if not p.get("tbc", False)]
            seen = {int(p.get("seqNo", 0)) for p in pages}
            return bool(last) and seen >= set(range(last[0] + 1))

        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(complete)
        except TimeoutError:
            raise TimeoutError(
                f"report {request_id} from {cp_id or 'any charger'} incomplete after "
                f"{timeout_s} s ({len(self.report_data(request_id, cp_id))} items so far)"
            ) from None
        return self.report_data(request_id, cp_id)

    # --------------------------------------------------------------- internals

    def _open_session(self, cp_id: str, ws: ServerConnection) -> _Session | None:
        """Pick the version's session for a new connection and record what it negotiated."""
        session: _Session
        if ws.subprotocol == OCPP201_SUBPROTOCOL:
            session = _Session201(self, cp_id, ws)
        elif ws.subprotocol == OCPP16_SUBPROTOCOL:
            session = _Session(self, cp_id, ws)
        else:  # pragma: no cover - the handshake only selects served subprotocols
            return None
        self.negotiated[cp_id] = ws.subprotocol
        return session

    def _id_token_info(self, id_token: str) -> dict[str, str]:
        return {"status": self._authorize_status.get(id_token, "Accepted")}

    def _transaction_event(self, cp_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Record one TransactionEvent; return the response's snake_case fields."""
        info = payload.get("transactionInfo", {})
        tx_id = str(info.get("transactionId", ""))
        record = self.transactions.setdefault(
            tx_id, {"chargePointId": cp_id, "start": None, "stop": None, "events": []}
        )
        record["events"].append(payload)
        if payload.get("eventType") == "Started":
            record["start"] = payload
        elif payload.get("eventType") == "Ended":
            record["stop"] = payload
        answer: dict[str, Any] = {}
        id_token = payload.get("idToken")
        if isinstance(id_token, dict):  # an event that carries an idToken gets its status
            answer["idTokenInfo"] = self._id_token_info(str(id_token.get("idToken", "")))
        if self.transaction_event_answer is not None:
            answer.update(self.transaction_event_answer(cp_id, payload) or {})
        return {_snake(k): v for k, v in answer.items()}


# ----------------------------------------------------------------- standalone


async def main(argv: Sequence[str] | None = None) -> None:
    """Run a standalone emulator until SIGINT/SIGTERM, printing every message to stdout."""
    parser = standalone_parser(
        "python -m hil.csms201", "OCPP 2.0.1 CSMS emulator (serves 1.6 too); prints every message."
    )
    parser.add_argument(
        "--prefer-ocpp16",
        action="store_true",
        help="a client offering ocpp2.0.1 and ocpp1.6 gets 1.6 (default: 2.0.1)",
    )
    args = parser.parse_args(argv)
    subprotocols = PREFER_OCPP16 if args.prefer_ocpp16 else PREFER_OCPP201
    await serve_until_signalled(CsmsEmulator201, args, subprotocols=subprotocols)


if __name__ == "__main__":
    asyncio.run(main())
