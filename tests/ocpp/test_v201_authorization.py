"""OCPP 2.0.1 authorization and local list (C, D): idTokenInfo projections as tables,
SendLocalList / GetLocalListVersion against the emulator over loopback, and the list
deciding a swipe through the neutral authorizer (shared with 1.6)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from ocpp.v201 import call

from agent.authorization.authorizer import IdTagInfo
from agent.authorization.local_list import ListEntry
from agent.authorization.master_pass import is_master_pass
from agent.events import AuthorizationStatus
from agent.ocpp.v201 import authorization as auth201
from hil.csms201 import CsmsEmulator201
from tests.conftest import GUARD_S, RunningApp, StartApp
from tests.ocpp.v201_helpers import CP, start_registered

# ------------------------------------------------------------ pure projections


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"status": "Accepted"}, IdTagInfo(AuthorizationStatus.ACCEPTED)),
        ({"status": "Blocked"}, IdTagInfo(AuthorizationStatus.BLOCKED)),
        ({"status": "Expired"}, IdTagInfo(AuthorizationStatus.EXPIRED)),
        ({"status": "ConcurrentTx"}, IdTagInfo(AuthorizationStatus.CONCURRENT_TX)),
        # 2.0.1-only statuses have no neutral counterpart: refused as Invalid
        ({"status": "NoCredit"}, IdTagInfo(AuthorizationStatus.INVALID)),
        ({"status": "NotAtThisTime"}, IdTagInfo(AuthorizationStatus.INVALID)),
        ({"status": "Unknown"}, IdTagInfo(AuthorizationStatus.INVALID)),
        (
            {
                "status": "Accepted",
                "cache_expiry_date_time": "2030-01-02T03:04:05Z",
                "group_id_token": {"id_token": "FLEET", "type": "Central"},
            },
            IdTagInfo(
                AuthorizationStatus.ACCEPTED,
                expiry=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
                parent_id_tag="FLEET",
            ),
        ),
    ],
)
def test_id_token_info(raw: dict[str, Any], expected: IdTagInfo) -> None:
    assert auth201.id_token_info(raw) == expected


def test_id_token_info_bad_expiry() -> None:
    raw = {"status": "Accepted", "cache_expiry_date_time": "soon"}
    with pytest.raises(ValueError):
        auth201.id_token_info(raw)
    # an Authorize answer keeps its verdict, without the unreadable expiry
    assert auth201.authorize_answer(raw) == IdTagInfo(AuthorizationStatus.ACCEPTED)


def test_list_entries() -> None:
    raw = [
        {"id_token": {"id_token": "A", "type": "ISO14443"}, "id_token_info": {"status": "Blocked"}},
        {"id_token": {"id_token": "B", "type": "ISO14443"}},  # removal (Differential)
    ]
    assert auth201.list_entries(raw) == [
        ListEntry("A", IdTagInfo(AuthorizationStatus.BLOCKED)),
        ListEntry("B", None),
    ]
    with pytest.raises(ValueError):
        auth201.list_entries([{"id_token": {"id_token": "", "type": "ISO14443"}}])


@pytest.mark.parametrize(
    ("parent", "group", "expected"),
    [
        ("MASTER", "MASTER", True),
        ("master", "MASTER", True),  # IdTokens compare case-insensitively
        ("FLEET", "MASTER", False),
        (None, "MASTER", False),
        ("MASTER", "", False),  # no MasterPass group configured
    ],
)
def test_is_master_pass(parent: str | None, group: str, expected: bool) -> None:
    assert is_master_pass(parent, group) is expected


# ------------------------------------------------------------------- over OCPP


@pytest.fixture
async def csms201(make_csms: object) -> AsyncIterator[CsmsEmulator201]:
    del make_csms  # torn down after the Apps, before the leak check
    async with CsmsEmulator201() as csms:
        yield csms


@pytest.fixture
async def agent(csms201: CsmsEmulator201, start_app: StartApp) -> RunningApp:
    return await start_registered(csms201, start_app)


def entry(token: str, status: str | None = "Accepted", group: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"id_token": {"id_token": token, "type": "ISO14443"}}
    if status is not None:
        info: dict[str, Any] = {"status": status}
        if group is not None:
            info["group_id_token"] = {"id_token": group, "type": "Central"}
        item["id_token_info"] = info
    return item


async def send_list(
    csms: CsmsEmulator201, version: int, update_type: str, items: list[dict[str, Any]] | None
) -> Any:
    return await csms.call(
        CP,
        call.SendLocalList(
            version_number=version, update_type=update_type, local_authorization_list=items
        ),
    )


async def list_version(csms: CsmsEmulator201) -> int:
    return int((await csms.call(CP, call.GetLocalListVersion())).version_number)


async def entries_variable(csms: CsmsEmulator201) -> str:
    answer = await csms.call(
        CP,
        call.GetVariables(
            get_variable_data=[
                {"component": {"name": "LocalAuthListCtrlr"}, "variable": {"name": "Entries"}}
            ]
        ),
    )
    return str(answer.get_variable_result[0]["attribute_value"])


async def test_send_local_list_versions(csms201: CsmsEmulator201, agent: RunningApp) -> None:
    assert await list_version(csms201) == 0  # D02: no list yet
    answer = await send_list(csms201, 3, "Full", [entry("A"), entry("B", "Blocked")])
    assert answer.status == "Accepted"
    assert await list_version(csms201) == 3
    assert await entries_variable(csms201) == "2"
    # D01: a Differential update that is not newer changes nothing
    answer = await send_list(csms201, 3, "Differential", [entry("C")])
    assert answer.status == "VersionMismatch"
    assert await list_version(csms201) == 3
    # a Differential entry without idTokenInfo removes the token
    assert (await send_list(csms201, 4, "Differential", [entry("A", None)])).status == "Accepted"
    assert await list_version(csms201) == 4
    assert await entries_variable(csms201) == "1"
    # an empty Full update clears the list
    assert (await send_list(csms201, 5, "Full", None)).status == "Accepted"
    assert await entries_variable(csms201) == "0"


@pytest.mark.parametrize(
    ("update_type", "items"),
    [
        ("Full", [entry("A", None)]),  # a Full entry must carry idTokenInfo
        ("Full", [entry("A"), entry("a")]),  # one token twice (case-insensitive)
        (
            "Full",
            [
                {
                    "id_token": {"id_token": "X", "type": "ISO14443"},
                    "id_token_info": {"status": "Accepted", "cache_expiry_date_time": "not a time"},
                }
            ],
        ),
    ],
)
async def test_send_local_list_failed(
    csms201: CsmsEmulator201, agent: RunningApp, update_type: str, items: list[dict[str, Any]]
) -> None:
    assert (await send_list(csms201, 1, "Full", [entry("KEEP")])).status == "Accepted"
    answer = await send_list(csms201, 2, update_type, items)
    assert answer.status == "Failed"
    assert answer.status_info is not None
    assert await list_version(csms201) == 1  # nothing changed
    assert await entries_variable(csms201) == "1"


async def test_disabled_list(csms201: CsmsEmulator201, agent: RunningApp) -> None:
    assert (await send_list(csms201, 1, "Full", [entry("A")])).status == "Accepted"
    answer = await csms201.call(
        CP,
        call.SetVariables(
            set_variable_data=[
                {
                    "component": {"name": "LocalAuthListCtrlr"},
                    "variable": {"name": "Enabled"},
                    "attribute_value": "false",
                }
            ]
        ),
    )
    assert answer.set_variable_result[0]["attribute_status"] == "Accepted"
    assert await list_version(csms201) == 0
    answer = await send_list(csms201, 2, "Full", [entry("B")])
    assert answer.status == "Failed"
    assert answer.status_info == {"reason_code": "NotEnabled"}


async def test_listed_token_pre_authorized(csms201: CsmsEmulator201, start_app: StartApp) -> None:
    """C13/C14: with LocalPreAuthorize a listed Accepted token starts at once, without
    an Authorize (a listed Blocked one: tests/unit/test_authorizer.py, the same
    neutral authorizer as 1.6); the list's group reaches the CSMS nowhere."""
    agent = await start_registered(csms201, start_app, ocpp={"local_pre_authorize": True})
    items = [entry("GOOD", group="FLEET"), entry("BAD", "Blocked")]
    assert (await send_list(csms201, 1, "Full", items)).status == "Accepted"
    agent.sim("plug")
    agent.sim("swipe", "GOOD")
    started = await csms201.wait_for("TransactionEvent", timeout_s=GUARD_S)
    assert started.payload["eventType"] == "Started"
    assert started.payload["idToken"] == {"idToken": "GOOD", "type": "ISO14443"}
    assert csms201.calls("Authorize") == []


# ------------------------------------------------------------------ MasterPass (C16)

MASTER_PASS = {"master_pass_group_id": "MASTER", "local_pre_authorize": True}


async def master_pass_agent(
    csms: CsmsEmulator201, start_app: StartApp, evse_count: int = 1
) -> RunningApp:
    """An agent with MasterPass group MASTER whose list holds USER and BOSS (of MASTER)."""
    agent = await start_registered(csms, start_app, ocpp=MASTER_PASS, evse_count=evse_count)
    items = [entry("USER"), entry("BOSS", group="MASTER")]
    assert (await send_list(csms, 1, "Full", items)).status == "Accepted"
    return agent


async def ended(csms: CsmsEmulator201) -> dict[str, Any]:
    got = await csms.wait_for(
        "TransactionEvent", predicate=lambda c: c.payload["eventType"] == "Ended", timeout_s=GUARD_S
    )
    return got.payload


async def test_master_pass_stops_the_transaction_it_is_shown_to(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    agent = await master_pass_agent(csms201, start_app)
    agent.sim("plug")
    agent.sim("swipe", "USER")
    await csms201.wait_for("TransactionEvent", timeout_s=GUARD_S)
    agent.sim("swipe", "BOSS")
    payload = await ended(csms201)
    assert payload["transactionInfo"]["stoppedReason"] == "MasterPass"
    assert payload["triggerReason"] == "StopAuthorized"


async def test_master_pass_stops_all_and_starts_none(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    agent = await master_pass_agent(csms201, start_app, evse_count=2)
    agent.sim("plug")
    agent.sim("swipe", "USER")
    started = await csms201.wait_for("TransactionEvent", timeout_s=GUARD_S)
    agent.sim("plug", evse_id=2)
    agent.sim("swipe", "BOSS", evse_id=2)  # on the idle EVSE: stops EVSE 1's transaction
    payload = await ended(csms201)
    tx_id = started.payload["transactionInfo"]["transactionId"]
    assert payload["transactionInfo"]["transactionId"] == tx_id
    assert payload["transactionInfo"]["stoppedReason"] == "MasterPass"
    # the refusal on EVSE 2 was posted before the stop on EVSE 1 could happen
    evse2 = agent.app.station.controllers[2]  # type: ignore[union-attr]
    await evse2.drain()
    assert not evse2.state.tx_active
    assert evse2.state.authorized_id is None
    tokens = [
        c.payload["idToken"]["idToken"]
        for c in csms201.calls("TransactionEvent")
        if "idToken" in c.payload
    ]
    assert "BOSS" not in tokens


async def test_master_pass_off_by_default(csms201: CsmsEmulator201, agent: RunningApp) -> None:
    answer = await csms201.call(
        CP,
        call.GetVariables(
            get_variable_data=[
                {"component": {"name": "AuthCtrlr"}, "variable": {"name": "MasterPassGroupId"}}
            ]
        ),
    )
    assert answer.get_variable_result[0]["attribute_value"] == ""
