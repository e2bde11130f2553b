"""OCPP-J RPC frames on top of the ocpp library's ChargePoint.

OCPP-J (the CALL / CALLRESULT / CALLERROR framing over WebSocket) is the same in
1.6 and 2.0.1 (2.0.1 Part 4 carries the 1.6 framing over), so the 2.0.1 adapter
uses this module too; what differs per version is a class attribute: the CALLERROR
code spelling and the version's Action enum. Kept here:

* every frame in and out goes to the optional trace hook;
* a frame that cannot be parsed is answered with a CALLERROR (message id "-1"
  when none can be read, OCPP-J 4.2.3) - the library drops it silently;
* an unknown action is NotImplemented, a known one without a handler NotSupported
  (the library swaps them);
* while the boot is Rejected nothing is answered at all (1.6 4.2, 2.0.1 B03);
* a CALLRESULT is shown to the session in the receive path, before the caller
  resumes (the CSMS may send its next CALL right behind it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Protocol, TypeVar, cast

import ocpp.messages
from ocpp import routing
from ocpp.charge_point import ChargePoint
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import NotSupportedError, OCPPError
from ocpp.messages import Call, CallError, CallResult, unpack

from agent.ocpp.session import Trace, message_id

# Validate payloads inline: the library's default runs every validation in a thread
# pool, which costs a thread hop per message and leaves threads behind. Set here, in
# the framing module both versions' sessions import (a 2.0.1-only agent does not
# import the 1.6 adapter).
ocpp.messages.ASYNC_VALIDATION = False

_F = TypeVar("_F", bound=Callable[..., Any])


def on(action: Enum) -> Callable[[_F], _F]:
    """``ocpp.routing.on`` with a type (the library ships none)."""
    return cast(Callable[[_F], _F], routing.on(action))


def after(action: Enum) -> Callable[[_F], _F]:
    """``ocpp.routing.after`` with a type."""
    return cast(Callable[[_F], _F], routing.after(action))


class FrameListener(Protocol):
    """What the receive path tells the session."""

    @property
    def rejected(self) -> bool:
        """The last BootNotification was Rejected: answer nothing."""

    def on_result(self, unique_id: str, payload: dict[str, Any]) -> None:
        """A CALLRESULT arrived (before its caller resumes)."""


def unknown_action_error(action: str, actions: type[Enum]) -> OCPPError:
    """The CALLERROR for a CALL without a handler: NotImplemented when ``action`` is
    not in the version's ``actions``, NotSupported when it is (OCPP-J 1.6 4.2.3,
    2.0.1 4.3)."""
    try:
        actions(action)
    except ValueError:
        return OcppNotImplemented(details={"cause": f"unknown action {action}"})
    return NotSupportedError(details={"cause": f"{action} is not supported"})


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the OCPP-J of two versions.

    Attributes:
        actions: The version's Action enum (known vs. unknown actions).
        error_code: The version's spelling of the library's CALLERROR code.
    """

    actions: type[Enum]
    error_code: Callable[[str], str]


class FramedChargePoint(ChargePoint):  # type: ignore[misc]  # ocpp ships no type hints
    """The library's ChargePoint with the frame rules above.

    Subclasses (listed before the version's ``ocpp.v16.ChargePoint`` /
    ``ocpp.v201.ChargePoint``) set ``dialect`` and add the ``@on`` / ``@after``
    handlers.

    Args:
        session: The connection's session (registration state, CALLRESULT hook);
            subclasses narrow the type of ``self.session`` to their session class.
        charge_point_id: Our identity.
        ws: The open WebSocket.
        timeout_s: Longest wait for an answer to one of our CALLs, s (TimeoutError).
        trace: Optional raw-frame hook, called for every frame in and out.
    """

    dialect: ClassVar[Dialect]

    def __init__(
        self,
        session: FrameListener,
        charge_point_id: str,
        ws: Any,
        timeout_s: float,
        trace: Trace | None,
    ) -> None:
        super().__init__(charge_point_id, ws, response_timeout=timeout_s)
        self.session = session
        self._trace = trace

    async def _send(self, message: str) -> None:
        if self._trace is not None:
            self._trace("send", message)
        await super()._send(message)

    async def route_message(self, raw_msg: str) -> None:
        if self._trace is not None:
            self._trace("recv", raw_msg)
        listener = self.session
        try:
            msg = unpack(raw_msg)
        except OCPPError as e:
            # OCPP-J 4.2.3: answer what cannot be parsed; with no readable id, "-1".
            # While Rejected the charger answers nothing at all.
            if not listener.rejected:
                await self._send_error(message_id(raw_msg), e)
            return
        if isinstance(msg, Call):
            if listener.rejected:
                return  # 1.6 4.2 / 2.0.1 B03: while Rejected the CP does not answer
            if msg.action not in self.route_map:
                await self._send_error(
                    msg.unique_id, unknown_action_error(msg.action, self.dialect.actions)
                )
                return
            try:
                await self._handle_call(msg)
            except OCPPError as e:
                await self._send_error(msg.unique_id, e)
        else:
            if isinstance(msg, CallResult) and isinstance(msg.payload, dict):
                listener.on_result(msg.unique_id, msg.payload)
            self._response_queue.put_nowait(msg)

    async def _send_error(self, unique_id: str, error: OCPPError) -> None:
        description = error.description or error.__class__.__name__
        details = {"cause": str(error.details.get("cause", ""))[:200]} if error.details else {}
        frame = CallError(unique_id, self.dialect.error_code(error.code), description, details)
        await self._send(frame.to_json())
