"""Local-list strictness (OCPP 1.6 3.5, 3.5.4, 9.1) end to end: the list entry decides
offline, never the cache; online without LocalPreAuthorize the CSMS decides."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from ocpp.v16 import call

from agent.clock import to_iso
from agent.evse import charger
from hil.csms import CsmsEmulator
from tests.conftest import GUARD_S, RunningApp, StartApp, registered

CP = "CP1"


def resolutions(agent: RunningApp) -> asyncio.Queue[charger.AuthorizationResolved]:
    """Every answer to a token check, as the EVSE gets it (a refusal sends nothing)."""
    ctl = agent.app.station.controllers[1]  # type: ignore[union-attr]
    queue: asyncio.Queue[charger.AuthorizationResolved] = asyncio.Queue()
    post = ctl.post

    def spy(event: Any) -> None:
        post(event)
        if isinstance(event, charger.AuthorizationResolved):
            queue.put_nowait(event)

    ctl.post = spy  # type: ignore[method-assign]
    return queue


async def install(csms: CsmsEmulator, entries: list[dict[str, Any]]) -> None:
    answer = await csms.call(
        CP,
        call.SendLocalList(list_version=1, update_type="Full", local_authorization_list=entries),
    )
    assert answer.status == "Accepted"


async def test_listed_blocked_or_expired_tags_never_start_offline(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms, ocpp={"allow_offline_tx_for_unknown_id": True})
    await registered(csms)
    past = to_iso(agent.app.clock.now() - timedelta(minutes=1))
    await install(
        csms,
        [
            {"id_tag": "BANNED", "id_tag_info": {"status": "Blocked"}},
            {"id_tag": "OLD", "id_tag_info": {"status": "Accepted", "expiry_date": past}},
        ],
    )
    answers = resolutions(agent)
    await csms.go_offline()
    agent.sim("plug")
    for tag in ("BANNED", "OLD"):
        agent.sim("swipe", tag)
        answer = await asyncio.wait_for(answers.get(), GUARD_S)
        assert (answer.id_tag, answer.accepted) == (tag, False)
    agent.sim("swipe", "STRANGER")  # unknown: AllowOfflineTxForUnknownId lets it charge
    await asyncio.wait_for(agent.app.wait_status(1, "Charging"), GUARD_S)
    await csms.go_online()
    start = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    assert start.payload["idTag"] == "STRANGER"
    assert len(csms.calls("StartTransaction")) == 1


async def test_online_the_csms_decides_a_listed_tag_unless_local_pre_authorize(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    await install(csms, [{"id_tag": "LISTED", "id_tag_info": {"status": "Accepted"}}])
    csms.set_authorize_status("LISTED", "Blocked")  # the CSMS knows better now
    answers = resolutions(agent)
    agent.sim("plug")
    agent.sim("swipe", "LISTED")
    answer = await asyncio.wait_for(answers.get(), GUARD_S)
    assert not answer.accepted
    assert [c.payload["idTag"] for c in csms.calls("Authorize")] == ["LISTED"]

    changed = await csms.call(CP, call.ChangeConfiguration(key="LocalPreAuthorize", value="true"))
    assert changed.status == "Accepted"
    agent.sim("swipe", "LISTED")
    start = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    assert start.payload["idTag"] == "LISTED"
    assert len(csms.calls("Authorize")) == 1, "with LocalPreAuthorize the list decides"
