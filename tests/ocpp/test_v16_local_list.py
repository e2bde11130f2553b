"""LocalAuthListManagement (OCPP 1.6 5.10, 5.15) over loopback."""

from __future__ import annotations

from typing import Any

from ocpp.v16 import call

from hil.csms import CsmsEmulator
from tests.conftest import GUARD_S, StartApp, registered

CP = "CP1"


def entry(tag: str, status: str | None = "Accepted") -> dict[str, Any]:
    return {"id_tag": tag} if status is None else {"id_tag": tag, "id_tag_info": {"status": status}}


async def send(csms: CsmsEmulator, version: int, kind: str, entries: list[dict[str, Any]]) -> str:
    answer = await csms.call(
        CP,
        call.SendLocalList(
            list_version=version, update_type=kind, local_authorization_list=entries
        ),
    )
    return str(answer.status)


async def version(csms: CsmsEmulator) -> int:
    return int((await csms.call(CP, call.GetLocalListVersion())).list_version)


async def test_full_then_differential_updates_and_versions(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    await start_app(csms)
    await registered(csms)
    assert await version(csms) == 0
    assert await send(csms, 3, "Full", [entry("A"), entry("B", "Blocked")]) == "Accepted"
    assert await version(csms) == 3
    assert await send(csms, 3, "Differential", [entry("C")]) == "VersionMismatch"
    assert await send(csms, 4, "Differential", [entry("C"), entry("A", None)]) == "Accepted"
    assert await version(csms) == 4


async def test_listed_tag_charges_offline_without_authorize(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)  # LocalAuthorizeOffline / unknown ids: defaults
    await registered(csms)
    assert await send(csms, 1, "Full", [entry("LISTED"), entry("BANNED", "Blocked")]) == (
        "Accepted"
    )
    await csms.go_offline()
    agent.sim("plug")
    agent.sim("swipe", "LISTED")  # (a Blocked listed tag: tests/unit/test_authorizer.py)
    await agent.app.wait_status(1, "Charging")
    await csms.go_online()
    start = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    assert start.payload["idTag"] == "LISTED"
    assert not csms.calls("Authorize"), "a listed tag is decided by the list"


async def test_disabled_list_is_not_supported_and_version_minus_one(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    await start_app(csms)
    await registered(csms)
    answer = await csms.call(
        CP, call.ChangeConfiguration(key="LocalAuthListEnabled", value="false")
    )
    assert answer.status == "Accepted"
    assert await version(csms) == -1
    assert await send(csms, 1, "Full", [entry("A")]) == "NotSupported"


async def test_list_keys_are_reported(csms: CsmsEmulator, start_app: StartApp) -> None:
    await start_app(csms)
    await registered(csms)
    answer = await csms.call(
        CP,
        call.GetConfiguration(
            key=["LocalAuthListEnabled", "LocalAuthListMaxLength", "SendLocalListMaxLength"]
        ),
    )
    values = {k["key"]: (k.get("value"), k["readonly"]) for k in answer.configuration_key}
    assert values == {
        "LocalAuthListEnabled": ("true", False),
        "LocalAuthListMaxLength": ("42", True),
        "SendLocalListMaxLength": ("42", True),
    }


async def test_list_survives_a_restart(csms: CsmsEmulator, start_app: StartApp) -> None:
    agent = await start_app(csms)
    await registered(csms)
    assert await send(csms, 7, "Full", [entry("KEEP")]) == "Accepted"
    await agent.stop()
    seen = csms.received[-1].seq
    await start_app(csms, data_dir=agent.data_dir)
    await registered(csms, after_seq=seen)
    assert await version(csms) == 7
