"""The reservation book: who may use which connector until when. Pure: no I/O, no clock.

OCPP 1.6 5.13 (ReserveNow), 5.3 (CancelReservation); the same model as 2.0.1 block H.

* A reservation holds one connector (``connector_id`` > 0) or, with connector 0,
  "any connector": the station then keeps at least one idle connector for the
  reserved tag at all times. While the idle connectors not held by a specific
  reservation are no more than the connector-0 reservations, all of them are held.
* A held connector refuses every tag except the reserved ``id_tag`` or a tag whose
  ``parentIdTag`` equals the reservation's ``parent_id_tag`` (case-insensitive,
  1.6 IdToken is a CiString20).
* A reservation ends when a transaction uses it, when it expires, when it is
  cancelled, or when its connector (or, for connector 0, the station) becomes
  Faulted or Unavailable (1.6 5.13).

Everything the book needs to know about the connectors comes in as an
``Occupancy`` per connector id, computed by the caller from the EVSE state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from agent.persistence.settings_store import JSONValue

__all__ = [
    "Admission",
    "Occupancy",
    "Reservation",
    "ReservationBook",
    "ReserveStatus",
    "from_json",
    "to_json",
]


class ReserveStatus(StrEnum):
    """Answer to a reservation request (OCPP 1.6 ReservationStatus spelling)."""

    ACCEPTED = "Accepted"
    FAULTED = "Faulted"
    OCCUPIED = "Occupied"
    REJECTED = "Rejected"
    UNAVAILABLE = "Unavailable"


class Occupancy(StrEnum):
    """What a connector is doing, as far as reservations care."""

    AVAILABLE = "Available"
    """Idle: no EV, no transaction, no token being checked."""
    AUTHORIZING = "Authorizing"
    """Idle but a token is being checked: not reservable now, still idle for holds."""
    OCCUPIED = "Occupied"
    """EV plugged, transaction running or finishing, or a tag authorized."""
    FAULTED = "Faulted"
    UNAVAILABLE = "Unavailable"


_IDLE = frozenset({Occupancy.AVAILABLE, Occupancy.AUTHORIZING})


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.upper() == b.upper()


@dataclass(frozen=True, slots=True)
class Reservation:
    """One reservation.

    Attributes:
        reservation_id: Chosen by the CSMS; a new request with the same id replaces it.
        connector_id: The held connector, or 0 for any connector.
        id_tag: The tag the reservation is for.
        expiry: When it ends by itself (timezone-aware).
        parent_id_tag: Tags with this parent may use it too (None: only ``id_tag``).
    """

    reservation_id: int
    connector_id: int
    id_tag: str
    expiry: datetime
    parent_id_tag: str | None = None

    def matches(self, id_tag: str, parent_id_tag: str | None) -> bool:
        """Whether a tag (with its parent, if known) may use this reservation."""
        return _same(self.id_tag, id_tag) or _same(self.parent_id_tag, parent_id_tag)


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether a tag may start on a connector, and which reservation it uses.

    Attributes:
        allowed: The tag may start here.
        reservation_id: The reservation the start uses up (None: none).
        needs_parent: Refused only because the tag's parentIdTag is not known
            yet; ask again once it is (after an Authorize).
    """

    allowed: bool
    reservation_id: int | None = None
    needs_parent: bool = False


ALLOWED = Admission(True)
REFUSED = Admission(False)


@dataclass(frozen=True, slots=True)
class ReservationBook:
    """The reservations in force, by id. Immutable: every change returns a new book."""

    reservations: tuple[Reservation, ...] = ()

    # ------------------------------------------------------------ queries

    def get(self, reservation_id: int) -> Reservation | None:
        return next((r for r in self.reservations if r.reservation_id == reservation_id), None)

    def on_connector(self, connector_id: int) -> Reservation | None:
        """The specific (connector > 0) reservation of ``connector_id``, if any."""
        return next((r for r in self.reservations if r.connector_id == connector_id), None)

    def next_expiry(self) -> datetime | None:
        """The earliest expiry, None when the book is empty."""
        return min((r.expiry for r in self.reservations), default=None)

    def held(self, occupancy: Mapping[int, Occupancy]) -> frozenset[int]:
        """Connectors that refuse other tags now (they show Reserved while idle)."""
        specific = {r.connector_id for r in self.reservations if r.connector_id > 0}
        pool = self._pool(occupancy, specific)
        zero = self._zero()
        if zero and len(pool) <= len(zero):
            return frozenset(specific | set(pool))
        return frozenset(specific)

    def admit(
        self,
        connector_id: int,
        id_tag: str,
        parent_id_tag: str | None,
        occupancy: Mapping[int, Occupancy],
        *,
        parent_known: bool = True,
    ) -> Admission:
        """May ``id_tag`` start on ``connector_id`` now?

        Args:
            connector_id: Where the tag wants to start.
            id_tag: The tag.
            parent_id_tag: Its parentIdTag (from Authorize, the cache or the list).
            occupancy: Every connector's occupancy.
            parent_known: False when the parent could not be looked up yet: a
                refusal that a parent could lift is then ``needs_parent``.
        """
        own = self.on_connector(connector_id)
        if own is not None:
            if own.matches(id_tag, parent_id_tag):
                return Admission(True, own.reservation_id)
            return _refuse([own], parent_known)
        zero = self._zero()
        for r in zero:
            if r.matches(id_tag, parent_id_tag):
                return Admission(True, r.reservation_id)
        if not zero:
            return ALLOWED
        specific = {r.connector_id for r in self.reservations if r.connector_id > 0}
        # Connectors still checking a token do not count: two tags checked at once
        # must not both take the last connectors kept for connector-0 reservations.
        others = [
            c
            for c, o in occupancy.items()
            if o is Occupancy.AVAILABLE and c != connector_id and c not in specific
        ]
        if len(others) >= len(zero):
            return ALLOWED  # enough idle connectors stay for the connector-0 reservations
        return _refuse(zero, parent_known)

    # ------------------------------------------------------------ changes

    def reserve(
        self,
        request: Reservation,
        occupancy: Mapping[int, Occupancy],
        *,
        now: datetime,
        station_operative: bool,
        connector_zero_supported: bool,
    ) -> tuple[ReservationBook, ReserveStatus]:
        """Place (or, same id, replace) a reservation; 1.6 5.13 answers.

        Rejected: expiry not in the future, unknown connector, or connector 0
        without ``connector_zero_supported``. Faulted / Unavailable: the
        connector (for 0: every connector) is. Occupied: the connector is in
        use or held by another reservation (for 0: no idle connector is left
        beyond those already kept for connector-0 reservations).

        Returns:
            The new book (unchanged unless Accepted) and the answer.
        """
        others = ReservationBook(
            tuple(r for r in self.reservations if r.reservation_id != request.reservation_id)
        )
        status = others._check(request, occupancy, station_operative, connector_zero_supported)
        if request.expiry <= now:
            status = ReserveStatus.REJECTED
        if status is not ReserveStatus.ACCEPTED:
            return self, status
        return ReservationBook((*others.reservations, request)), status

    def remove(self, reservation_id: int) -> tuple[ReservationBook, Reservation | None]:
        """Cancel or use up a reservation; returns the removed one (None: unknown id)."""
        gone = self.get(reservation_id)
        if gone is None:
            return self, None
        return self._without({reservation_id}), gone

    def expire(self, now: datetime) -> tuple[ReservationBook, tuple[Reservation, ...]]:
        """Drop every reservation whose expiry is at or before ``now``."""
        gone = tuple(r for r in self.reservations if r.expiry <= now)
        return self._without({r.reservation_id for r in gone}), gone

    def terminate_unusable(
        self, occupancy: Mapping[int, Occupancy], *, station_operative: bool
    ) -> tuple[ReservationBook, tuple[Reservation, ...]]:
        """Drop reservations whose connector became Faulted or Unavailable (or no
        longer exists); connector-0 ones when the station became Unavailable (1.6 5.13)."""
        unusable = {Occupancy.FAULTED, Occupancy.UNAVAILABLE}
        gone = tuple(
            r
            for r in self.reservations
            if (r.connector_id == 0 and not station_operative)
            or (
                r.connector_id > 0
                and occupancy.get(r.connector_id, Occupancy.UNAVAILABLE) in unusable
            )
        )
        return self._without({r.reservation_id for r in gone}), gone

    # ------------------------------------------------------------ helpers

    def _zero(self) -> list[Reservation]:
        return sorted(
            (r for r in self.reservations if r.connector_id == 0), key=lambda r: r.reservation_id
        )

    @staticmethod
    def _pool(occupancy: Mapping[int, Occupancy], specific: set[int]) -> list[int]:
        """Idle connectors not held by a specific reservation."""
        return sorted(c for c, o in occupancy.items() if o in _IDLE and c not in specific)

    def _without(self, ids: set[int]) -> ReservationBook:
        if not ids:
            return self
        return replace(
            self, reservations=tuple(r for r in self.reservations if r.reservation_id not in ids)
        )

    def _check(
        self,
        request: Reservation,
        occupancy: Mapping[int, Occupancy],
        station_operative: bool,
        connector_zero_supported: bool,
    ) -> ReserveStatus:
        connector = request.connector_id
        specific = {r.connector_id for r in self.reservations if r.connector_id > 0}
        # idle and not even checking a token: what a new reservation may take
        free = [c for c, o in occupancy.items() if o is Occupancy.AVAILABLE and c not in specific]
        zero_count = len(self._zero())
        if connector == 0:
            if not connector_zero_supported:
                return ReserveStatus.REJECTED
            states = set(occupancy.values())
            if not station_operative:
                return ReserveStatus.UNAVAILABLE
            if states == {Occupancy.FAULTED}:
                return ReserveStatus.FAULTED
            if states <= {Occupancy.FAULTED, Occupancy.UNAVAILABLE}:
                return ReserveStatus.UNAVAILABLE
            return ReserveStatus.ACCEPTED if len(free) > zero_count else ReserveStatus.OCCUPIED
        state = occupancy.get(connector)
        if connector < 0 or state is None:
            return ReserveStatus.REJECTED
        if state is Occupancy.FAULTED:
            return ReserveStatus.FAULTED
        if state is Occupancy.UNAVAILABLE:
            return ReserveStatus.UNAVAILABLE
        if state is not Occupancy.AVAILABLE or connector in specific:
            return ReserveStatus.OCCUPIED
        if len(free) - 1 < zero_count:
            return ReserveStatus.OCCUPIED  # kept idle for a connector-0 reservation
        return ReserveStatus.ACCEPTED


def _refuse(candidates: list[Reservation], parent_known: bool) -> Admission:
    if not parent_known and any(r.parent_id_tag is not None for r in candidates):
        return Admission(False, needs_parent=True)
    return REFUSED


# ------------------------------------------------------------ persistence form


def to_json(book: ReservationBook) -> list[JSONValue]:
    """The book as JSON-ready data (expiry as ISO 8601 with offset)."""
    return [
        {
            "reservation_id": r.reservation_id,
            "connector_id": r.connector_id,
            "id_tag": r.id_tag,
            "expiry": r.expiry.isoformat(),
            "parent_id_tag": r.parent_id_tag,
        }
        for r in book.reservations
    ]


def from_json(data: object) -> ReservationBook:
    """Inverse of :func:`to_json`.

    Raises:
        ValueError: ``data`` is not what :func:`to_json` produces.
    """
    if not isinstance(data, list):
        raise ValueError("reservations: expected a list")
    out = []
    for item in data:
        if not isinstance(item, dict):
            raise ValueError("reservations: expected objects")
        try:
            expiry = datetime.fromisoformat(str(item["expiry"]))
            parent = item.get("parent_id_tag")
            out.append(
                Reservation(
                    reservation_id=int(item["reservation_id"]),
                    connector_id=int(item["connector_id"]),
                    id_tag=str(item["id_tag"]),
                    expiry=expiry,
                    parent_id_tag=None if parent is None else str(parent),
                )
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"reservations: bad entry {item!r}: {e}") from e
        if expiry.tzinfo is None:
            raise ValueError(f"reservations: naive expiry in {item!r}")
    return ReservationBook(tuple(out))
