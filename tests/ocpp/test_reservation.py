"""Reservation profile (OCPP 1.6 5.13 ReserveNow, 5.3 CancelReservation) over loopback."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from ocpp.v16 import call

from agent.clock import parse_iso, to_iso
from agent.evse import charger
from agent.persistence.store import Store
from agent.transactions.journal import TransactionJournal
from hil.csms import CsmsEmulator, ReceivedCall
from tests.conftest import GUARD_S, RunningApp, StartApp, registered

CP = "CP1"


def expiry_in(agent: RunningApp, seconds: float) -> datetime:
    return agent.app.clock.now() + timedelta(seconds=seconds)


async def reserve(
    csms: CsmsEmulator,
    reservation_id: int,
    connector_id: int,
    id_tag: str,
    expiry: datetime,
    parent_id_tag: str | None = None,
) -> str:
    answer = await csms.call(
        CP,
        call.ReserveNow(
            connector_id=connector_id,
            expiry_date=to_iso(expiry),
            id_tag=id_tag,
            reservation_id=reservation_id,
            parent_id_tag=parent_id_tag,
        ),
    )
    return str(answer.status)


async def cancel(csms: CsmsEmulator, reservation_id: int) -> str:
    answer = await csms.call(CP, call.CancelReservation(reservation_id=reservation_id))
    return str(answer.status)


async def remote_start(csms: CsmsEmulator, id_tag: str, connector_id: int | None = 1) -> str:
    answer = await csms.call(
        CP, call.RemoteStartTransaction(id_tag=id_tag, connector_id=connector_id)
    )
    return str(answer.status)


async def status(
    csms: CsmsEmulator, connector_id: int, value: str, after: ReceivedCall | int = 0
) -> ReceivedCall:
    """The first StatusNotification ``value`` of ``connector_id`` after ``after``."""
    seq = after if isinstance(after, int) else after.seq
    return await csms.wait_for(
        "StatusNotification",
        predicate=lambda c: (
            c.seq > seq
            and c.payload["connectorId"] == connector_id
            and c.payload["status"] == value
        ),
        timeout_s=GUARD_S,
    )


def statuses(csms: CsmsEmulator, connector_id: int, after: int, before: int) -> list[str]:
    return [
        c.payload["status"]
        for c in csms.calls("StatusNotification")
        if after < c.seq < before and c.payload["connectorId"] == connector_id
    ]


def authorization_resolved(agent: RunningApp, evse_id: int = 1) -> asyncio.Event:
    """Set once the EVSE got the answer to the next token check (the refusal of a tag
    on a reserved connector shows nowhere on the wire)."""
    ctl = agent.app.station.controllers[evse_id]  # type: ignore[union-attr]
    resolved = asyncio.Event()
    post = ctl.post

    def spy(event: Any) -> None:
        post(event)
        if isinstance(event, charger.AuthorizationResolved):
            resolved.set()

    ctl.post = spy  # type: ignore[method-assign]
    return resolved


async def test_reserved_connector_takes_only_its_tag_and_the_start_carries_the_id(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    assert await reserve(csms, 11, 1, "TAG", expiry_in(agent, 3600)) == "Accepted"
    reserved = await status(csms, 1, "Reserved")

    agent.sim("plug")
    resolved = authorization_resolved(agent)
    agent.sim("swipe", "OTHER")
    await asyncio.wait_for(resolved.wait(), GUARD_S)
    assert await remote_start(csms, "STRANGER") == "Rejected"

    agent.sim("swipe", "TAG")
    start = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    assert start.payload["idTag"] == "TAG"
    assert start.payload["reservationId"] == 11
    assert len(csms.calls("StartTransaction")) == 1
    tag_check = next(c for c in csms.calls("Authorize") if c.payload["idTag"] == "TAG")
    assert statuses(csms, 1, reserved.seq, tag_check.seq) == [], "stays Reserved for OTHER"
    await status(csms, 1, "Charging", after=reserved)
    # the transaction used the reservation up
    assert await cancel(csms, 11) == "Rejected"


async def test_reserve_now_answers(csms: CsmsEmulator, start_app: StartApp) -> None:
    agent = await start_app(csms)
    await registered(csms)
    later = expiry_in(agent, 3600)
    assert await reserve(csms, 1, 2, "TAG", later) == "Rejected"  # no connector 2
    assert await reserve(csms, 1, 1, "TAG", expiry_in(agent, -1)) == "Rejected"  # past
    assert await reserve(csms, 1, 1, "TAG", later) == "Accepted"
    assert await reserve(csms, 2, 1, "TAG", later) == "Occupied"  # reserved (same tag)
    assert await reserve(csms, 2, 1, "OTHER", later) == "Occupied"  # reserved for another
    assert await reserve(csms, 1, 1, "NEW", later) == "Accepted"  # same id replaces
    assert await remote_start(csms, "TAG") == "Rejected"  # replaced: TAG no longer holds it
    assert await cancel(csms, 1) == "Accepted"
    available = await status(csms, 1, "Available", after=await status(csms, 1, "Reserved"))

    agent.sim("plug")
    await status(csms, 1, "Preparing", after=available)
    assert await reserve(csms, 3, 1, "TAG", later) == "Occupied"  # EV plugged in
    agent.sim("fault", "cp-error")
    await status(csms, 1, "Faulted", after=available)
    assert await reserve(csms, 3, 1, "TAG", later) == "Faulted"
    agent.sim("clear")
    agent.sim("unplug")
    free = await status(csms, 1, "Available", after=available)

    inoperative = await csms.call(CP, call.ChangeAvailability(connector_id=1, type="Inoperative"))
    assert inoperative.status == "Accepted"
    await status(csms, 1, "Unavailable", after=free)
    assert await reserve(csms, 3, 1, "TAG", later) == "Unavailable"


async def test_reservation_expires_at_its_expiry_date(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    expiry = expiry_in(agent, 0.5)
    assert await reserve(csms, 5, 1, "TAG", expiry) == "Accepted"
    reserved = await status(csms, 1, "Reserved")
    available = await status(csms, 1, "Available", after=reserved)
    # timestamps are whole milliseconds: compare at that resolution
    assert parse_iso(available.payload["timestamp"]) >= parse_iso(to_iso(expiry))
    assert await cancel(csms, 5) == "Rejected"  # gone


async def test_cancel_frees_the_connector(csms: CsmsEmulator, start_app: StartApp) -> None:
    agent = await start_app(csms)
    await registered(csms)
    assert await reserve(csms, 8, 1, "TAG", expiry_in(agent, 3600)) == "Accepted"
    reserved = await status(csms, 1, "Reserved")
    assert await cancel(csms, 9) == "Rejected"  # unknown id
    assert await cancel(csms, 8) == "Accepted"
    await status(csms, 1, "Available", after=reserved)
    assert await cancel(csms, 8) == "Rejected"
    agent.sim("plug")
    agent.sim("swipe", "ANYONE")
    start = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    assert "reservationId" not in start.payload


async def test_parent_id_tag_from_the_local_list_opens_the_reservation(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    # LocalPreAuthorize: the list decides online too, parentIdTag included
    agent = await start_app(csms, ocpp={"local_pre_authorize": True})
    await registered(csms)
    entries: list[dict[str, Any]] = [
        {"id_tag": "MEMBER", "id_tag_info": {"status": "Accepted", "parent_id_tag": "FLEET"}},
        {"id_tag": "OUTSIDER", "id_tag_info": {"status": "Accepted", "parent_id_tag": "OTHERS"}},
    ]
    answer = await csms.call(
        CP,
        call.SendLocalList(list_version=1, update_type="Full", local_authorization_list=entries),
    )
    assert answer.status == "Accepted"
    later = expiry_in(agent, 3600)
    assert await reserve(csms, 31, 1, "BOSS", later, parent_id_tag="FLEET") == "Accepted"
    await status(csms, 1, "Reserved")

    agent.sim("plug")
    resolved = authorization_resolved(agent)
    agent.sim("swipe", "OUTSIDER")
    await asyncio.wait_for(resolved.wait(), GUARD_S)
    # remote start of a group member: the parent is looked up (list), then it starts
    assert await remote_start(csms, "MEMBER") == "Accepted"
    start = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    assert start.payload["idTag"] == "MEMBER"
    assert start.payload["reservationId"] == 31
    assert len(csms.calls("StartTransaction")) == 1


async def test_connector_zero_keeps_one_connector_for_the_tag(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms, evse_count=2)
    await registered(csms)
    await status(csms, 2, "Available")
    keys = await csms.call(CP, call.GetConfiguration(key=["ReserveConnectorZeroSupported"]))
    assert keys.configuration_key == [
        {"key": "ReserveConnectorZeroSupported", "readonly": True, "value": "true"}
    ]
    assert await reserve(csms, 21, 0, "TAG", expiry_in(agent, 3600)) == "Accepted"

    # two idle connectors for one reservation: another tag may take one
    agent.sim("plug", evse_id=2)
    agent.sim("swipe", "OTHER", evse_id=2)
    first = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    assert first.payload["connectorId"] == 2 and "reservationId" not in first.payload
    # now connector 1 is the last idle one: held for TAG
    await status(csms, 1, "Reserved")
    assert await remote_start(csms, "STRANGER", 1) == "Rejected"
    assert await remote_start(csms, "TAG", None) == "Accepted"  # picks connector 1
    agent.sim("plug", evse_id=1)
    second = await csms.wait_for("StartTransaction", count=2, timeout_s=GUARD_S)
    assert second.payload["connectorId"] == 1
    assert second.payload["reservationId"] == 21
    assert await cancel(csms, 21) == "Rejected"  # used up


async def test_connector_zero_rejected_when_not_supported(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms, ocpp={"reserve_connector_zero_supported": False})
    await registered(csms)
    assert await reserve(csms, 1, 0, "TAG", expiry_in(agent, 3600)) == "Rejected"
    changed = await csms.call(
        CP, call.ChangeConfiguration(key="ReserveConnectorZeroSupported", value="true")
    )
    assert changed.status == "Rejected"  # read-only


async def test_reservation_survives_a_restart(csms: CsmsEmulator, start_app: StartApp) -> None:
    first = await start_app(csms)
    boot = await registered(csms)
    assert await reserve(csms, 41, 1, "TAG", expiry_in(first, 3600)) == "Accepted"
    await status(csms, 1, "Reserved", after=boot)
    await first.stop()

    second = await start_app(csms, data_dir=first.data_dir)
    reboot = await registered(csms, after_seq=boot.seq)
    await status(csms, 1, "Reserved", after=reboot)
    assert await remote_start(csms, "OTHER") == "Rejected"
    assert await remote_start(csms, "TAG") == "Accepted"
    second.sim("plug")
    start = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    assert start.payload["reservationId"] == 41


async def test_a_fault_ends_the_reservation(csms: CsmsEmulator, start_app: StartApp) -> None:
    agent = await start_app(csms)
    await registered(csms)
    assert await reserve(csms, 51, 1, "TAG", expiry_in(agent, 3600)) == "Accepted"
    reserved = await status(csms, 1, "Reserved")
    agent.sim("plug")
    agent.sim("fault", "cp-error")
    await status(csms, 1, "Faulted", after=reserved)
    agent.sim("clear")
    # 1.6 5.13: a Faulted connector ends its reservation; back to Preparing, not Reserved
    await status(csms, 1, "Preparing", after=reserved)
    assert await cancel(csms, 51) == "Rejected"


async def test_a_reservation_used_by_an_interrupted_transaction_is_gone_after_the_cut(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    first = await start_app(csms)
    boot = await registered(csms)
    assert await reserve(csms, 61, 1, "TAG", expiry_in(first, 3600)) == "Accepted"
    await status(csms, 1, "Reserved", after=boot)
    await first.stop()
    # The power cut came after the transaction start was journalled and before the
    # write that ends the reservation: the journal has the start, the book still holds it.
    store = await Store.open(first.data_dir)
    try:
        await TransactionJournal(store).begin(
            evse_id=1,
            connector_id=1,
            id_tag="TAG",
            meter_start_wh=0,
            timestamp=to_iso(first.app.clock.now()),
            remote_start_id=None,
            reservation_id=61,
        )
    finally:
        await store.close()

    await start_app(csms, data_dir=first.data_dir)
    reboot = await registered(csms, after_seq=boot.seq)
    stop = await csms.wait_for("StopTransaction", timeout_s=GUARD_S)
    assert stop.payload["reason"] == "PowerLoss"
    await status(csms, 1, "Available", after=reboot)
    assert "Reserved" not in statuses(csms, 1, reboot.seq, 1 << 30)
    assert await cancel(csms, 61) == "Rejected"  # used up
    assert await remote_start(csms, "OTHER") == "Accepted"
