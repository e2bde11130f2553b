"""The reservation book (OCPP 1.6 5.13): answers, holds, admission, expiry, as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.events import ConnectorStatus, TxPoint
from agent.evse import charger as ch
from agent.evse.charger import ChargerConfig, ChargerState, Pilot
from agent.evse.iec61851 import PilotEvent
from agent.reservations.book import (
    Admission,
    Occupancy,
    Reservation,
    ReservationBook,
    ReserveStatus,
    from_json,
    to_json,
)

NOW = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)

AV = Occupancy.AVAILABLE
AU = Occupancy.AUTHORIZING
OC = Occupancy.OCCUPIED
FA = Occupancy.FAULTED
UN = Occupancy.UNAVAILABLE


def res(
    rid: int, connector: int, tag: str = "TAG", parent: str | None = None, expiry: datetime = LATER
) -> Reservation:
    return Reservation(rid, connector, tag, expiry, parent)


def book(*reservations: Reservation) -> ReservationBook:
    return ReservationBook(tuple(reservations))


def reserve(
    b: ReservationBook,
    r: Reservation,
    occupancy: dict[int, Occupancy],
    *,
    operative: bool = True,
    zero: bool = True,
) -> tuple[ReservationBook, ReserveStatus]:
    return b.reserve(
        r, occupancy, now=NOW, station_operative=operative, connector_zero_supported=zero
    )


@pytest.mark.parametrize(
    ("existing", "request_", "occupancy", "operative", "zero", "expected"),
    [
        pytest.param((), res(1, 1), {1: AV}, True, True, "Accepted", id="free"),
        pytest.param((), res(1, 1), {1: FA}, True, True, "Faulted", id="faulted"),
        pytest.param((), res(1, 1), {1: UN}, True, True, "Unavailable", id="inoperative"),
        pytest.param((), res(1, 1), {1: OC}, True, True, "Occupied", id="in-use"),
        pytest.param((), res(1, 1), {1: AU}, True, True, "Occupied", id="token-being-checked"),
        pytest.param((res(9, 1, "X"),), res(1, 1), {1: AV}, True, True, "Occupied", id="held"),
        pytest.param((res(9, 1),), res(1, 1), {1: AV}, True, True, "Occupied", id="same-tag-held"),
        pytest.param((), res(1, 2), {1: AV}, True, True, "Rejected", id="unknown-connector"),
        pytest.param((), res(1, -1), {1: AV}, True, True, "Rejected", id="negative-connector"),
        pytest.param((), res(1, 1, expiry=NOW), {1: AV}, True, True, "Rejected", id="expired"),
        # connector 0: any connector
        pytest.param((), res(1, 0), {1: AV, 2: OC}, True, True, "Accepted", id="zero"),
        pytest.param((), res(1, 0), {1: AV}, True, False, "Rejected", id="zero-unsupported"),
        pytest.param((), res(1, 0), {1: AV}, False, True, "Unavailable", id="zero-station-off"),
        pytest.param((), res(1, 0), {1: FA, 2: FA}, True, True, "Faulted", id="zero-all-faulted"),
        pytest.param((), res(1, 0), {1: FA, 2: UN}, True, True, "Unavailable", id="zero-all-down"),
        pytest.param((), res(1, 0), {1: OC, 2: FA}, True, True, "Occupied", id="zero-none-free"),
        pytest.param(
            (res(9, 0, "X"),), res(1, 0), {1: AV}, True, True, "Occupied", id="zero-last-kept"
        ),
        pytest.param(
            (res(9, 0, "X"),), res(1, 0), {1: AV, 2: AV}, True, True, "Accepted", id="zero-two"
        ),
        pytest.param(
            (res(9, 1, "X"),), res(1, 0), {1: AV, 2: OC}, True, True, "Occupied", id="zero-held"
        ),
        # a specific reservation may not take the connector kept for a connector-0 one
        pytest.param(
            (res(9, 0, "X"),), res(1, 1), {1: AV, 2: OC}, True, True, "Occupied", id="kept-for-0"
        ),
        pytest.param(
            (res(9, 0, "X"),), res(1, 1), {1: AV, 2: AV}, True, True, "Accepted", id="spare-for-0"
        ),
    ],
)
def test_reserve_answers(
    existing: tuple[Reservation, ...],
    request_: Reservation,
    occupancy: dict[int, Occupancy],
    operative: bool,
    zero: bool,
    expected: str,
) -> None:
    before = book(*existing)
    after, status = reserve(before, request_, occupancy, operative=operative, zero=zero)
    assert status == expected
    if status is ReserveStatus.ACCEPTED:
        assert after.get(request_.reservation_id) == request_
    else:
        assert after == before  # a refused request changes nothing


def test_same_reservation_id_replaces_even_on_another_connector() -> None:
    b, status = reserve(book(), res(7, 1, "OLD"), {1: AV, 2: AV})
    assert status is ReserveStatus.ACCEPTED
    # the same id on the same connector is not "reserved for another"
    b, status = reserve(b, res(7, 1, "NEW"), {1: AV, 2: AV})
    assert status is ReserveStatus.ACCEPTED
    assert [r.id_tag for r in b.reservations] == ["NEW"]
    b, status = reserve(b, res(7, 2, "NEW"), {1: AV, 2: AV})
    assert status is ReserveStatus.ACCEPTED
    assert b.on_connector(1) is None
    assert b.on_connector(2) == res(7, 2, "NEW")


@pytest.mark.parametrize(
    ("reservation", "tag", "parent", "parent_known", "expected"),
    [
        pytest.param(res(1, 1, "TAG"), "TAG", None, True, Admission(True, 1), id="tag"),
        pytest.param(res(1, 1, "TAG"), "tag", None, True, Admission(True, 1), id="any-case"),
        pytest.param(res(1, 1, "TAG"), "OTHER", None, True, Admission(False), id="other"),
        pytest.param(
            res(1, 1, "TAG", "FLEET"), "OTHER", "fleet", True, Admission(True, 1), id="parent"
        ),
        pytest.param(
            res(1, 1, "TAG", "FLEET"), "OTHER", "ELSE", True, Admission(False), id="other-parent"
        ),
        pytest.param(
            res(1, 1, "TAG"), "OTHER", "TAG", True, Admission(False), id="parent-is-not-the-tag"
        ),
        pytest.param(
            res(1, 1, "TAG", "FLEET"),
            "OTHER",
            None,
            False,
            Admission(False, needs_parent=True),
            id="parent-unknown",
        ),
        pytest.param(
            res(1, 1, "TAG"), "OTHER", None, False, Admission(False), id="no-parent-to-learn"
        ),
        pytest.param(res(1, 2, "TAG"), "OTHER", None, True, Admission(True), id="other-connector"),
    ],
)
def test_admission_on_a_reserved_connector(
    reservation: Reservation,
    tag: str,
    parent: str | None,
    parent_known: bool,
    expected: Admission,
) -> None:
    b = book(reservation)
    assert b.admit(1, tag, parent, {1: AV, 2: AV}, parent_known=parent_known) == expected


def test_connector_zero_keeps_one_connector_for_the_tag() -> None:
    b = book(res(5, 0, "TAG", "FLEET"))
    both_free = {1: AV, 2: AV}
    # two idle connectors, one reservation: none held, anyone may take one
    assert b.held(both_free) == frozenset()
    assert b.admit(1, "OTHER", None, both_free) == Admission(True)
    # one left: it is held; only the tag or its group may use it
    one_free = {1: AV, 2: OC}
    assert b.held(one_free) == frozenset({1})
    assert b.admit(1, "OTHER", None, one_free) == Admission(False)
    assert b.admit(1, "OTHER", None, one_free, parent_known=False).needs_parent
    assert b.admit(1, "TAG", None, one_free) == Admission(True, 5)
    assert b.admit(1, "MEMBER", "FLEET", one_free) == Admission(True, 5)
    # the tag uses the reservation on any connector, even when others are free
    assert b.admit(2, "TAG", None, both_free) == Admission(True, 5)
    # a token being checked on the last idle connector keeps it held (no flicker)
    assert b.held({1: AU, 2: OC}) == frozenset({1})
    # two tokens checked at once on the two idle connectors: neither may take the
    # other's connector for granted (the connector-0 reservation needs one)
    assert b.held({1: AU, 2: AU}) == frozenset()
    assert b.admit(1, "OTHER", None, {1: AU, 2: AU}) == Admission(False)
    assert b.admit(1, "OTHER", None, {1: AU, 2: AV}) == Admission(True)


def test_specific_hold_wins_over_connector_zero_match() -> None:
    b = book(res(1, 1, "A"), res(2, 0, "B"))
    assert b.held({1: AV, 2: AV}) == frozenset({1, 2})
    assert b.admit(1, "B", None, {1: AV, 2: AV}) == Admission(False)
    assert b.admit(2, "B", None, {1: AV, 2: AV}) == Admission(True, 2)


def test_expiry_and_removal() -> None:
    early = res(1, 1, expiry=NOW + timedelta(seconds=5))
    late = res(2, 2, expiry=NOW + timedelta(seconds=9))
    b = book(early, late)
    assert b.next_expiry() == early.expiry
    same, gone = b.expire(early.expiry - timedelta(microseconds=1))
    assert gone == () and same == b
    b, gone = b.expire(early.expiry)  # at expiryDate exactly
    assert gone == (early,)
    assert b.next_expiry() == late.expiry
    b, removed = b.remove(2)
    assert removed == late and b.next_expiry() is None
    assert b.remove(2) == (b, None)


def test_unusable_connectors_end_their_reservations() -> None:
    b = book(res(1, 1), res(2, 2), res(3, 3), res(4, 0))
    occupancy = {1: FA, 2: UN, 3: OC}
    left, gone = b.terminate_unusable(occupancy, station_operative=True)
    assert {r.reservation_id for r in gone} == {1, 2}
    assert {r.reservation_id for r in left.reservations} == {3, 4}
    _, gone = left.terminate_unusable(occupancy, station_operative=False)
    assert {r.reservation_id for r in gone} == {4}
    # a connector that no longer exists (config changed across a reboot)
    _, gone = book(res(1, 7)).terminate_unusable({1: AV}, station_operative=True)
    assert [r.reservation_id for r in gone] == [1]


def test_json_round_trip_and_refusals() -> None:
    b = book(res(1, 1, "A", "P"), res(2, 0, "B"))
    assert from_json(to_json(b)) == b
    with pytest.raises(ValueError):
        from_json({"not": "a list"})
    with pytest.raises(ValueError):
        from_json([{"reservation_id": 1}])
    with pytest.raises(ValueError):
        from_json([{**to_json(b)[0], "expiry": "2026-11-24T19:00:00"}])  # naive


# ------------------------------------------------------------ the charger machine
# Who may use a held connector is the book's decision; the machine shows Reserved
# while idle and starts on a held connector only through a reservation.


def machine() -> ChargerState:
    s, _ = ch.initial_state(config=ChargerConfig(), operative=True, limit_a=32.0)
    return s


def run(s: ChargerState, *events: ch.Event) -> tuple[ChargerState, list[ch.Effect]]:
    out: list[ch.Effect] = []
    for event in events:
        s, effects = ch.step(s, event)
        out.extend(effects)
    return s, out


def status_of(s: ChargerState) -> ConnectorStatus:
    assert s.status is not None
    return s.status.status


def test_machine_shows_reserved_while_idle_and_available_after() -> None:
    s, effects = run(machine(), ch.ReservationChanged(True))
    assert status_of(s) is ConnectorStatus.RESERVED
    assert effects == [ch.PublishStatus(ConnectorStatus.RESERVED, None, None)]
    s, _ = run(s, Pilot(PilotEvent.PLUGGED))  # someone else's car: still reserved
    assert status_of(s) is ConnectorStatus.RESERVED
    s, _ = run(s, Pilot(PilotEvent.UNPLUGGED), ch.ReservationChanged(False))
    assert status_of(s) is ConnectorStatus.AVAILABLE


def test_machine_refused_tag_leaves_it_reserved_and_the_reserved_tag_starts() -> None:
    s, _ = run(machine(), ch.ReservationChanged(True), Pilot(PilotEvent.PLUGGED))
    s, effects = run(s, ch.TokenPresented("OTHER"))
    assert effects == [ch.RequestAuthorization("OTHER")]  # no Preparing flicker
    s, effects = run(s, ch.AuthorizationResolved("OTHER", False))
    assert status_of(s) is ConnectorStatus.RESERVED and not s.tx_active
    # accepted but without a reservation (the hold arrived after the book answered)
    s, _ = run(s, ch.TokenPresented("LATE"), ch.AuthorizationResolved("LATE", True))
    assert status_of(s) is ConnectorStatus.RESERVED and not s.tx_active
    s, effects = run(s, ch.TokenPresented("TAG"), ch.AuthorizationResolved("TAG", True, 42))
    assert ch.BeginTransaction("TAG", None, 42) in effects
    assert s.tx_active and s.reservation_id is None


def test_machine_reserved_tag_before_plug_in_shows_preparing() -> None:
    s, _ = run(machine(), ch.ReservationChanged(True), ch.TokenPresented("TAG"))
    s, _ = run(s, ch.AuthorizationResolved("TAG", True, 7))
    assert status_of(s) is ConnectorStatus.PREPARING  # 1.6 4.9: Reserved -> Preparing
    s, effects = run(s, Pilot(PilotEvent.PLUGGED))
    begin = ch.BeginTransaction("TAG", None, 7, started_by=TxPoint.EV_CONNECTED)
    assert begin in effects  # the plug-in came last


def test_machine_remote_start_on_a_held_connector_needs_the_reservation() -> None:
    held, _ = run(machine(), ch.ReservationChanged(True), Pilot(PilotEvent.PLUGGED))
    s, effects = run(held, ch.RemoteStartRequested("X", authorize=False))
    assert not s.tx_active and status_of(s) is ConnectorStatus.RESERVED
    s, effects = run(held, ch.RemoteStartRequested("TAG", False, 3, reservation_id=9))
    assert ch.BeginTransaction("TAG", 3, 9) in effects
