"""Version choice: ``csms.ocpp_version = "auto"`` offers ocpp2.0.1 and ocpp1.6 and runs
the adapter of the subprotocol the CSMS selects (OCPP-J 2.0.1 Part 4 3.1)."""

from __future__ import annotations

import pytest

from hil.csms201 import PREFER_OCPP16, PREFER_OCPP201, CsmsEmulator201
from tests.conftest import GUARD_S, StartApp
from tests.ocpp.v201_helpers import CP


@pytest.mark.parametrize(
    ("served", "expected"),
    [(PREFER_OCPP201, "ocpp2.0.1"), (PREFER_OCPP16, "ocpp1.6")],
    ids=["csms-prefers-2.0.1", "csms-prefers-1.6"],
)
async def test_auto_uses_the_version_the_csms_selects(
    make_csms: object, start_app: StartApp, served: tuple[str, ...], expected: str
) -> None:
    del make_csms
    async with CsmsEmulator201(subprotocols=served) as csms:
        agent = await start_app(csms, csms_options={"ocpp_version": "auto"})
        boot = await csms.wait_for("BootNotification", timeout_s=GUARD_S)
        status = await csms.wait_for("StatusNotification", timeout_s=GUARD_S)
        assert csms.negotiated[CP] == expected
        if expected == "ocpp2.0.1":
            assert boot.payload["reason"] == "PowerUp"
            assert "chargingStation" in boot.payload
            assert status.payload["evseId"] == 1
        else:
            assert "chargePointVendor" in boot.payload
            assert status.payload["connectorId"] in (0, 1)
        await agent.stop()


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_forced_version_is_the_only_one_offered(
    make_csms: object, start_app: StartApp, version: str
) -> None:
    del make_csms
    async with CsmsEmulator201(subprotocols=PREFER_OCPP201) as csms:
        agent = await start_app(csms, csms_options={"ocpp_version": version})
        await csms.wait_for("BootNotification", timeout_s=GUARD_S)
        assert csms.negotiated[CP] == f"ocpp{version}"
        await agent.stop()


async def test_auto_authorizes_through_the_connected_version(
    make_csms: object, start_app: StartApp
) -> None:
    del make_csms
    async with CsmsEmulator201(subprotocols=PREFER_OCPP201) as csms:
        agent = await start_app(csms, csms_options={"ocpp_version": "auto"})
        await csms.wait_for("StatusNotification", timeout_s=GUARD_S)
        agent.sim("plug")
        agent.sim("swipe", "TAG9")
        authorize = await csms.wait_for("Authorize", timeout_s=GUARD_S)
        assert authorize.payload["idToken"]["idToken"] == "TAG9"
        await agent.app.wait_status(1, "Charging")
        await agent.stop()
