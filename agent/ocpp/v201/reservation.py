"""OCPP 2.0.1 reservation (block H) over the neutral reservation book.

* ReserveNow (H01-H03): ``id``, ``expiryDateTime``, ``idToken``, optional
  ``groupIdToken`` (tokens of that group may use it too: the 1.6 parentIdTag),
  optional ``evseId`` (none = any EVSE: the neutral connector 0, allowed when
  ReservationCtrlr.NonEvseSpecific), optional ``connectorType``. One connector per
  EVSE here, so an EVSE id is the neutral connector id. The answer is the
  neutral ``ReserveStatus`` (same five values as ReserveNowStatusEnumType).
* A ``connectorType`` the reserved EVSE does not have (for an EVSE-less
  reservation: that not every EVSE has, since the neutral book cannot hold "any
  EVSE of this type") is Rejected.
* CancelReservation (H02): Accepted when the reservation existed.
* ReservationStatusUpdate (H01.FR.??): the station tells the CSMS when a
  reservation expired or was removed by the station (its EVSE became Faulted or
  Unavailable); ``ReservationUpdates`` queues those (bounded, in order) until a
  session sends them. A reservation used by a transaction is reported through
  that transaction's Started event (``reservationId``) instead.

Payloads use the ``ocpp`` library's snake_case keys.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

from agent.clock import parse_iso
from agent.ocpp.v201.authorization import id_token_value
from agent.ocpp.v201.device_model import Component, DeviceModel, GetStatus
from agent.reservations.book import Reservation, ReserveStatus
from agent.reservations.service import ReservationEnd
from agent.station import Station

log = logging.getLogger(__name__)

__all__ = [
    "UPDATES_KEPT",
    "ReservationUpdates",
    "connector_type_fits",
    "connector_types",
    "reservation_request",
    "reserve_now",
    "reserve_refusal",
]

UPDATES_KEPT: Final = 64
"""ReservationStatusUpdates kept while offline (oldest dropped first)."""

ANY_EVSE: Final = 0
"""The neutral connector id of a reservation for any EVSE."""


def reservation_request(
    *,
    reservation_id: int,
    expiry_date_time: str,
    id_token: Mapping[str, Any],
    evse_id: int | None = None,
    group_id_token: Mapping[str, Any] | None = None,
) -> Reservation:
    """ReserveNowRequest fields -> the neutral reservation.

    Raises:
        ValueError: ``expiryDateTime`` is not an ISO 8601 timestamp, or the idToken
            has no value.
    """
    token = id_token_value(id_token)
    if token is None:
        raise ValueError("ReserveNow without an idToken value")
    return Reservation(
        reservation_id=reservation_id,
        connector_id=ANY_EVSE if evse_id is None else evse_id,
        id_tag=token,
        expiry=parse_iso(expiry_date_time),
        parent_id_tag=id_token_value(group_id_token),
    )


def connector_type_fits(
    connector_type: str | None, evse_id: int | None, types_by_evse: Mapping[int, str]
) -> bool:
    """Whether a ``connectorType`` request can be met (None: any type).

    Args:
        connector_type: ConnectorEnumType of the request, or None.
        evse_id: The requested EVSE, or None for any EVSE.
        types_by_evse: Each EVSE's connector type (one connector per EVSE).

    Returns:
        For one EVSE: its connector has that type (an unknown EVSE: True, the book
        rejects it). For any EVSE: every EVSE has that type.
    """
    if connector_type is None:
        return True
    if evse_id is not None:
        have = types_by_evse.get(evse_id)
        return have is None or have == connector_type
    return bool(types_by_evse) and all(t == connector_type for t in types_by_evse.values())


def reserve_refusal(
    *, accepted_boot: bool, service_present: bool, type_fits: bool
) -> ReserveStatus | None:
    """The answer given before the book is asked, or None to ask it.

    Rejected while not registered (B02), without a reservation service, or for a
    connector type that cannot be met.
    """
    if not accepted_boot or not service_present or not type_fits:
        return ReserveStatus.REJECTED
    return None


def connector_types(model: DeviceModel, evse_ids: Iterable[int]) -> dict[int, str]:
    """Each EVSE's ``Connector.ConnectorType`` (connector 1) from the device model;
    EVSEs without one are left out."""
    out = {}
    for evse_id in evse_ids:
        got = model.get(Component("Connector", evse_id=evse_id, connector_id=1), "ConnectorType")
        if got.status == GetStatus.ACCEPTED and got.value is not None:
            out[evse_id] = got.value
    return out


async def reserve_now(
    station: Station,
    model: DeviceModel,
    *,
    accepted_boot: bool,
    reservation_id: int,
    expiry_date_time: str,
    id_token: Mapping[str, Any],
    evse_id: int | None = None,
    group_id_token: Mapping[str, Any] | None = None,
    connector_type: str | None = None,
) -> ReserveStatus:
    """H01: place (or, same id, replace) a reservation; the answer's status.

    Accepted only once the reservation is durable. Rejected while not registered,
    without a reservation service, for an unreadable request or a connector type
    that cannot be met; otherwise the book's answer (Faulted, Occupied,
    Unavailable, Rejected for an unknown EVSE or an expiry not in the future).

    Raises:
        Exception: the store failed (nothing was reserved).
    """
    types = connector_types(model, station.controllers)
    refusal = reserve_refusal(
        accepted_boot=accepted_boot,
        service_present=station.reservations is not None,
        type_fits=connector_type_fits(connector_type, evse_id, types),
    )
    if refusal is not None:
        log.info("ReserveNow %d: %s before the book", reservation_id, refusal)
        return refusal
    try:
        request = reservation_request(
            reservation_id=reservation_id,
            expiry_date_time=expiry_date_time,
            id_token=id_token,
            evse_id=evse_id,
            group_id_token=group_id_token,
        )
    except ValueError as e:
        log.warning("ReserveNow %d rejected: %s", reservation_id, e)
        return ReserveStatus.REJECTED
    return await station.reserve_now(request)


class ReservationUpdates:
    """ReservationStatusUpdates waiting to be sent, in order.

    ``push`` is a ``ReservationService.subscribe_ended`` listener; ``run`` sends
    them through a session. Loop thread only.
    """

    def __init__(self, kept: int = UPDATES_KEPT) -> None:
        self._pending: deque[tuple[int, str]] = deque(maxlen=kept)
        self._wake = asyncio.Event()

    @property
    def pending(self) -> list[tuple[int, str]]:
        """``(reservationId, reservationUpdateStatus)`` not yet sent, oldest first."""
        return list(self._pending)

    def push(self, reservation: Reservation, why: ReservationEnd) -> None:
        """Queue the update of one reservation the station ended."""
        self._pending.append((reservation.reservation_id, why.value))
        self._wake.set()

    async def run(self, send: Callable[[int, str], Awaitable[None]]) -> None:
        """Send every queued update with ``send(reservation_id, status)``, forever.

        An update leaves the queue once ``send`` returned; when ``send`` raises the
        update stays queued and the exception ends ``run`` (the session is over).
        """
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                item = self._pending[0]
                await send(*item)
                if self._pending and self._pending[0] is item:
                    self._pending.popleft()
