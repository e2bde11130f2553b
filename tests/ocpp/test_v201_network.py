"""OCPP 2.0.1 SetNetworkProfile (B09) and the switch of the CSMS connection (B10):
the pure checks as tables, then the whole agent moving from one CsmsEmulator201 to
another after NetworkConfigurationPriority + Reset, and falling back to the last
working profile when the new one cannot be reached."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ocpp.v201 import call

from agent.network_profiles import Endpoint, endpoints_in_priority
from agent.ocpp.v201 import network as net201
from agent.settings import NETWORK_PROFILE_SLOTS
from hil.csms201 import CsmsEmulator201
from tests.conftest import GUARD_S, RunningApp, StartApp
from tests.ocpp.v201_helpers import CP, V201, registered201, start_registered

# ------------------------------------------------------------ pure checks


def _data(**changes: Any) -> dict[str, Any]:
    data = {
        "ocpp_version": "OCPP20",
        "ocpp_transport": "JSON",
        "ocpp_csms_url": "wss://csms.example/ocpp",
        "message_timeout": 30,
        "security_profile": 2,
        "ocpp_interface": "Wired0",
    }
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("slot", "data", "active", "active_profile", "reason"),
    [
        (2, _data(), "1", 1, None),
        (2, _data(ocpp_version="OCPP16"), "1", 1, None),
        (9, _data(), "1", 1, "no configuration slot 9"),
        (1, _data(), "1", 1, "slot 1 is in use"),
        (2, _data(ocpp_transport="SOAP"), "1", 1, "only OCPP-J (JSON) is supported"),
        (2, _data(ocpp_version="OCPP15"), "1", 1, "OCPP version OCPP15 not supported"),
        (2, _data(security_profile=1), "1", 2, "security profile lower than the current one"),
        (2, _data(security_profile=0), "1", 0, "security profile 0 not supported"),
        (2, _data(ocpp_csms_url="ws://csms/"), "1", 1, "security profile 2 needs a wss:// URL"),
        (2, _data(security_profile=1), "1", 1, "security profile 1 needs a ws:// URL"),
        (2, _data(message_timeout=0), "1", 1, "messageTimeout must be positive"),
    ],
)
def test_set_network_profile_checks(
    slot: int, data: dict[str, Any], active: str, active_profile: int, reason: str | None
) -> None:
    endpoint, why = net201.endpoint_of(
        slot,
        data,
        slots=NETWORK_PROFILE_SLOTS,
        active_slot=active,
        active_security_profile=active_profile,
    )
    assert why == reason
    if reason is None:
        assert endpoint is not None and endpoint.slot == str(slot)
        assert endpoint.url == data["ocpp_csms_url"]
        expected = "1.6" if data["ocpp_version"] == "OCPP16" else "2.0.1"
        assert endpoint.ocpp_version == expected
    else:
        assert endpoint is None
        answer = net201.answer(why)
        assert answer["status"] == "Rejected"
        assert len(answer["status_info"]["reason_code"]) <= 20


A = Endpoint("1", "ws://a", 0, "2.0.1")
B = Endpoint("2", "ws://b", 1, "2.0.1")
C = Endpoint("3", "ws://c", 1, "1.6")


@pytest.mark.parametrize(
    ("profiles", "priority", "last", "order"),
    [
        ({"1": A, "2": B}, ("2", "1"), "1", [B, A]),
        ({"1": A, "2": B}, ("2",), "1", [B, A]),  # the last working one comes last
        ({"1": A, "2": B}, ("2",), None, [B]),
        ({"1": A}, ("3", "1"), None, [A]),  # a slot without a profile is skipped
        ({"1": A, "3": C}, ("4",), None, [A]),  # nothing usable: the config's slot
        ({"1": A, "2": B, "3": C}, ("3", "2"), "2", [C, B]),
    ],
)
def test_endpoints_in_priority(
    profiles: dict[str, Endpoint],
    priority: tuple[str, ...],
    last: str | None,
    order: list[Endpoint],
) -> None:
    assert endpoints_in_priority(profiles, priority, last) == order


# ------------------------------------------------------------ over the wire


@pytest.fixture
async def csms201(make_csms: object) -> AsyncIterator[CsmsEmulator201]:
    del make_csms  # torn down after the Apps, before the leak check
    async with CsmsEmulator201() as csms:
        yield csms


@pytest.fixture
async def other_csms(make_csms: object) -> AsyncIterator[CsmsEmulator201]:
    del make_csms
    async with CsmsEmulator201() as csms:
        yield csms


def _closed_port_url() -> str:
    """A loopback URL nobody listens on (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"ws://127.0.0.1:{port}"


PROFILE_MESSAGE_TIMEOUT_S = 17  # not the configured call_timeout_s


def _profile(url: str, slot: int = 2) -> Any:
    return call.SetNetworkProfile(
        configuration_slot=slot,
        connection_data={
            "ocpp_version": "OCPP20",
            "ocpp_transport": "JSON",
            "ocpp_csms_url": url,
            "message_timeout": PROFILE_MESSAGE_TIMEOUT_S,
            "security_profile": 1,
            "ocpp_interface": "Wired0",
        },
    )


async def _set(csms: CsmsEmulator201, name: str, value: str) -> str:
    result = await csms.call(
        CP,
        call.SetVariables(
            set_variable_data=[
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": name},
                    "attribute_value": value,
                }
            ]
        ),
    )
    return str(result.set_variable_result[0]["attribute_status"])


async def _reset(csms: CsmsEmulator201, running: RunningApp) -> None:
    assert (await csms.call(CP, call.Reset(type="Immediate"))).status == "Accepted"
    assert await running.exited() == "reset"


async def test_new_profile_is_used_after_the_priority_change_and_a_reset(
    csms201: CsmsEmulator201, other_csms: CsmsEmulator201, start_app: StartApp
) -> None:
    first = await start_registered(csms201, start_app)
    assert (await csms201.call(CP, _profile(other_csms.url))).status == "Accepted"
    assert await _set(csms201, "NetworkConfigurationPriority", "2,1") == "RebootRequired"
    await _reset(csms201, first)

    second = await start_app(csms201, csms_options=V201, data_dir=first.data_dir)
    boot = await registered201(other_csms)  # the stored profile survived the restart
    assert boot.payload["reason"] == "RemoteReset"
    assert len(csms201.calls("BootNotification", CP)) == 1
    # the session over profile 2 waits for answers as long as its messageTimeout says
    adapter = second.app.adapter201
    assert adapter is not None
    assert first.app.adapter201 is not None
    assert first.app.adapter201.call_timeout_s != PROFILE_MESSAGE_TIMEOUT_S  # slot 1: config
    assert adapter.call_timeout_s == PROFILE_MESSAGE_TIMEOUT_S


async def test_unreachable_profile_falls_back_to_the_last_working_one(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    first = await start_registered(csms201, start_app)
    assert (await csms201.call(CP, _profile(_closed_port_url()))).status == "Accepted"
    assert await _set(csms201, "NetworkProfileConnectionAttempts", "2") == "Accepted"
    assert await _set(csms201, "NetworkConfigurationPriority", "2") == "RebootRequired"
    await _reset(csms201, first)

    second = await start_app(csms201, csms_options=V201, data_dir=first.data_dir)
    boot = await csms201.wait_for("BootNotification", count=2, timeout_s=GUARD_S)
    assert boot.payload["reason"] == "RemoteReset"
    supervisor = second.app.supervisor
    assert supervisor is not None
    assert supervisor.failures == 2  # NetworkProfileConnectionAttempts on slot 2, then slot 1


async def test_profile_for_the_slot_in_use_or_weaker_security_is_rejected(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    await start_registered(csms201, start_app)
    in_use = await csms201.call(CP, _profile("ws://127.0.0.1:1", slot=1))
    assert in_use.status == "Rejected"
    assert "in use" in in_use.status_info["additional_info"]
    soap = _profile("ws://127.0.0.1:1")
    soap.connection_data["ocpp_transport"] = "SOAP"
    assert (await csms201.call(CP, soap)).status == "Rejected"


async def test_profile_of_a_version_the_station_does_not_run_is_rejected(
    csms201: CsmsEmulator201, start_app: StartApp
) -> None:
    await start_registered(csms201, start_app)  # ocpp_version = "2.0.1": no 1.6 adapter
    v16 = _profile("ws://127.0.0.1:1")
    v16.connection_data["ocpp_version"] = "OCPP16"
    result = await csms201.call(CP, v16)
    assert result.status == "Rejected"
    assert "OCPP 1.6" in result.status_info["additional_info"]
