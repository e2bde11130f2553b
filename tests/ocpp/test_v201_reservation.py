"""OCPP 2.0.1 reservation (H01-H04) over loopback: ReserveNow answers, Reserved status,
use by the reserved token (or its group) with reservationId in TransactionEvent Started,
CancelReservation, and ReservationStatusUpdate when the station ends a reservation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from ocpp.v201 import call

from agent.clock import to_iso
from agent.ocpp.v201 import reservation as res201
from agent.reservations.book import Reservation, ReserveStatus
from agent.reservations.service import ReservationEnd
from hil.csms import ReceivedCall
from hil.csms201 import CsmsEmulator201
from tests.conftest import GUARD_S, RunningApp, StartApp
from tests.ocpp.v201_helpers import CP, start_registered

# ------------------------------------------------------------ pure projections

EXPIRY = "2030-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("evse_id", "group", "connector", "parent"),
    [
        (1, None, 1, None),
        (None, None, 0, None),  # no evseId: any EVSE (the neutral connector 0)
        (2, {"id_token": "FLEET", "type": "Central"}, 2, "FLEET"),
    ],
)
def test_reservation_request(
    evse_id: int | None, group: dict[str, str] | None, connector: int, parent: str | None
) -> None:
    got = res201.reservation_request(
        reservation_id=7,
        expiry_date_time=EXPIRY,
        id_token={"id_token": "TAG", "type": "ISO14443"},
        evse_id=evse_id,
        group_id_token=group,
    )
    assert got.reservation_id == 7
    assert got.connector_id == connector
    assert got.id_tag == "TAG"
    assert got.parent_id_tag == parent
    assert to_iso(got.expiry).startswith("2030-01-01T00:00:00")


@pytest.mark.parametrize(
    ("expiry", "token"),
    [("tomorrow", {"id_token": "TAG", "type": "ISO14443"}), (EXPIRY, {"type": "ISO14443"})],
)
def test_reservation_request_unreadable(expiry: str, token: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        res201.reservation_request(reservation_id=1, expiry_date_time=expiry, id_token=token)


@pytest.mark.parametrize(
    ("connector_type", "evse_id", "types", "fits"),
    [
        (None, 1, {1: "sType2"}, True),
        ("sType2", 1, {1: "sType2"}, True),
        ("cCCS2", 1, {1: "sType2"}, False),
        ("cCCS2", 9, {1: "sType2"}, True),  # unknown EVSE: the book rejects it
        ("sType2", None, {1: "sType2", 2: "sType2"}, True),
        ("sType2", None, {1: "sType2", 2: "cCCS2"}, False),  # "any EVSE of a type": no
        ("sType2", None, {}, False),
    ],
)
def test_connector_type_fits(
    connector_type: str | None, evse_id: int | None, types: dict[int, str], fits: bool
) -> None:
    assert res201.connector_type_fits(connector_type, evse_id, types) is fits


@pytest.mark.parametrize(
    ("accepted", "service", "fits", "answer"),
    [
        (True, True, True, None),
        (False, True, True, ReserveStatus.REJECTED),  # B02: not registered
        (True, False, True, ReserveStatus.REJECTED),
        (True, True, False, ReserveStatus.REJECTED),
    ],
)
def test_reserve_refusal(
    accepted: bool, service: bool, fits: bool, answer: ReserveStatus | None
) -> None:
    got = res201.reserve_refusal(accepted_boot=accepted, service_present=service, type_fits=fits)
    assert got is answer


async def test_updates_queue_in_order_and_keep_unsent() -> None:
    updates = res201.ReservationUpdates(kept=2)
    expiry = datetime.fromisoformat("2030-01-01T00:00:00+00:00")
    for rid in (1, 2, 3):  # the oldest is dropped beyond ``kept``
        updates.push(Reservation(rid, 1, "T", expiry), ReservationEnd.EXPIRED)
    sent: list[tuple[int, str]] = []

    async def send(rid: int, status: str) -> None:
        if rid == 3:
            raise ConnectionError("link dropped")
        sent.append((rid, status))

    with pytest.raises(ConnectionError):
        await updates.run(send)
    assert sent == [(2, "Expired")]
    assert updates.pending == [(3, "Expired")]  # not lost: sent by the next session


# ------------------------------------------------------------------- over OCPP


@pytest.fixture
async def csms201(make_csms: object) -> AsyncIterator[CsmsEmulator201]:
    del make_csms  # torn down after the Apps, before the leak check
    async with CsmsEmulator201() as csms:
        yield csms


@pytest.fixture
async def agent(csms201: CsmsEmulator201, start_app: StartApp) -> RunningApp:
    return await start_registered(csms201, start_app)


def expiry_in(agent: RunningApp, seconds: float) -> datetime:
    return agent.app.clock.now() + timedelta(seconds=seconds)


async def reserve(
    csms: CsmsEmulator201,
    reservation_id: int,
    expiry: datetime,
    token: str = "TAG1",
    **extra: Any,
) -> str:
    answer = await csms.call(
        CP,
        call.ReserveNow(
            id=reservation_id,
            expiry_date_time=to_iso(expiry),
            id_token={"id_token": token, "type": "ISO14443"},
            **extra,
        ),
    )
    return str(answer.status)


async def status(csms: CsmsEmulator201, value: str, after: int = 0) -> ReceivedCall:
    """The first StatusNotification ``value`` of EVSE 1 received after seq ``after``."""
    return await csms.wait_for(
        "StatusNotification",
        predicate=lambda c: (
            c.seq > after and c.payload["evseId"] == 1 and c.payload["connectorStatus"] == value
        ),
        timeout_s=GUARD_S,
    )


async def update(csms: CsmsEmulator201, reservation_id: int) -> ReceivedCall:
    return await csms.wait_for(
        "ReservationStatusUpdate",
        predicate=lambda c: c.payload["reservationId"] == reservation_id,
        timeout_s=GUARD_S,
    )


async def test_reserved_evse_used_by_its_token(csms201: CsmsEmulator201, agent: RunningApp) -> None:
    assert await reserve(csms201, 11, expiry_in(agent, 600), evse_id=1) == "Accepted"
    reserved = await status(csms201, "Reserved")
    agent.sim("plug")
    agent.sim("swipe", "TAG1")
    started = await csms201.wait_for("TransactionEvent", timeout_s=GUARD_S)
    assert started.payload["eventType"] == "Started"
    assert started.payload["reservationId"] == 11
    assert started.payload["idToken"]["idToken"] == "TAG1"
    await status(csms201, "Occupied", after=reserved.seq)
    # used up: no longer cancellable, and no ReservationStatusUpdate for a use
    answer = await csms201.call(CP, call.CancelReservation(reservation_id=11))
    assert answer.status == "Rejected"
    assert csms201.calls("ReservationStatusUpdate") == []


async def test_group_token_uses_reservation(csms201: CsmsEmulator201, start_app: StartApp) -> None:
    """H01 groupIdToken: a token of the same group may use it (the group comes from the
    local list entry, which decides at once with LocalPreAuthorize)."""
    agent = await start_registered(csms201, start_app, ocpp={"local_pre_authorize": True})
    listed = {
        "id_token": {"id_token": "MEMBER", "type": "ISO14443"},
        "id_token_info": {
            "status": "Accepted",
            "group_id_token": {"id_token": "FLEET", "type": "Central"},
        },
    }
    sent = await csms201.call(
        CP,
        call.SendLocalList(version_number=1, update_type="Full", local_authorization_list=[listed]),
    )
    assert sent.status == "Accepted"
    group = {"id_token": "FLEET", "type": "Central"}
    assert (
        await reserve(csms201, 12, expiry_in(agent, 600), "OWNER", evse_id=1, group_id_token=group)
        == "Accepted"
    )
    await status(csms201, "Reserved")
    agent.sim("plug")
    agent.sim("swipe", "MEMBER")
    started = await csms201.wait_for("TransactionEvent", timeout_s=GUARD_S)
    assert started.payload["reservationId"] == 12
    assert started.payload["idToken"]["idToken"] == "MEMBER"


async def test_expiry_sends_status_update(csms201: CsmsEmulator201, agent: RunningApp) -> None:
    assert await reserve(csms201, 13, expiry_in(agent, 0.3), evse_id=1) == "Accepted"
    reserved = await status(csms201, "Reserved")
    got = await update(csms201, 13)
    assert got.payload["reservationUpdateStatus"] == "Expired"
    await status(csms201, "Available", after=reserved.seq)


async def test_removed_when_evse_unavailable(csms201: CsmsEmulator201, agent: RunningApp) -> None:
    assert await reserve(csms201, 14, expiry_in(agent, 600), evse_id=1) == "Accepted"
    await status(csms201, "Reserved")
    answer = await csms201.call(
        CP, call.ChangeAvailability(operational_status="Inoperative", evse={"id": 1})
    )
    assert answer.status == "Accepted"
    got = await update(csms201, 14)
    assert got.payload["reservationUpdateStatus"] == "Removed"
    # and an Unavailable EVSE takes no new reservation
    assert await reserve(csms201, 15, expiry_in(agent, 600), evse_id=1) == "Unavailable"


async def test_cancel(csms201: CsmsEmulator201, agent: RunningApp) -> None:
    assert await reserve(csms201, 16, expiry_in(agent, 600)) == "Accepted"  # any EVSE
    reserved = await status(csms201, "Reserved")
    answer = await csms201.call(CP, call.CancelReservation(reservation_id=16))
    assert answer.status == "Accepted"
    await status(csms201, "Available", after=reserved.seq)
    answer = await csms201.call(CP, call.CancelReservation(reservation_id=16))
    assert answer.status == "Rejected"
    assert csms201.calls("ReservationStatusUpdate") == []  # cancelled by the CSMS


@pytest.mark.parametrize(
    ("extra", "answer"),
    [
        ({"evse_id": 5}, "Rejected"),  # no such EVSE
        ({"evse_id": 1, "connector_type": "cCCS2"}, "Rejected"),  # the EVSE is Type 2
        ({"connector_type": "cCCS2"}, "Rejected"),
        ({"evse_id": 1, "connector_type": "sType2"}, "Accepted"),
    ],
)
async def test_reserve_now_answers(
    csms201: CsmsEmulator201, agent: RunningApp, extra: dict[str, Any], answer: str
) -> None:
    assert await reserve(csms201, 17, expiry_in(agent, 600), **extra) == answer


async def test_occupied_and_past_expiry(csms201: CsmsEmulator201, agent: RunningApp) -> None:
    assert await reserve(csms201, 18, expiry_in(agent, -5), evse_id=1) == "Rejected"
    agent.sim("plug")
    await agent.app.wait_status(1, "Preparing")
    assert await reserve(csms201, 19, expiry_in(agent, 600), evse_id=1) == "Occupied"


async def test_any_evse_needs_non_evse_specific(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    agent = await start_registered(
        csms201, start_app, ocpp={"reserve_connector_zero_supported": False}
    )
    answer = await csms201.call(
        CP,
        call.GetVariables(
            get_variable_data=[
                {"component": {"name": "ReservationCtrlr"}, "variable": {"name": "NonEvseSpecific"}}
            ]
        ),
    )
    assert answer.get_variable_result[0]["attribute_value"] == "false"
    assert await reserve(csms201, 20, expiry_in(agent, 600)) == "Rejected"
    assert await reserve(csms201, 21, expiry_in(agent, 600), evse_id=1) == "Accepted"
