"""The CSMS emulator (hil/csms.py) against bare `ocpp.v16.ChargePoint` clients on loopback."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from ocpp.exceptions import InternalError
from ocpp.exceptions import NotImplementedError as OcppNotImplementedError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from hil.bare_cp import receive_loop
from hil.csms import CP_TO_CSMS, CSMS_FROM_CP, CSMS_TO_CP, CallErrorReply, CsmsEmulator

OCPP16 = [Subprotocol("ocpp1.6")]
GUARD_S = 10.0  # only a guard against hangs; every wait below is event based


class BareChargePoint(ChargePoint):  # type: ignore[misc]
    """A charger built only from the `ocpp` library, with one CS->CP handler."""

    def __init__(self, cp_id: str, ws: ClientConnection) -> None:
        super().__init__(cp_id, ws)
        self.remote_starts: list[tuple[int | None, str]] = []

    @on(Action.remote_start_transaction)  # type: ignore[untyped-decorator]
    def on_remote_start(
        self, id_tag: str, connector_id: int | None = None, **_: Any
    ) -> call_result.RemoteStartTransaction:
        self.remote_starts.append((connector_id, id_tag))
        return call_result.RemoteStartTransaction(status="Accepted")


class MinusOneChargePoint(BareChargePoint):
    """Answers unparsable frames with CALLERROR id "-1" (OCPP 2.0.1 Part 4 convention).

    ocpp 2.1.0 itself logs and drops such frames; this is what a stricter charger does.
    """

    async def route_message(self, raw_msg: str) -> None:
        try:
            json.loads(raw_msg)
        except ValueError:
            await self._send(json.dumps([4, "-1", "FormatViolation", "Invalid JSON", {}]))
            return
        await super().route_message(raw_msg)


@pytest.fixture
async def emulator() -> AsyncIterator[CsmsEmulator]:
    async with CsmsEmulator(heartbeat_interval_s=42) as csms:
        yield csms


@contextlib.asynccontextmanager
async def charger(
    csms: CsmsEmulator,
    cp_id: str = "CP1",
    cls: type[BareChargePoint] = BareChargePoint,
    **connect_kwargs: Any,
) -> AsyncIterator[BareChargePoint]:
    """Connect a charger and run its receive loop for the duration of the block."""
    async with connect(f"{csms.url}/{cp_id}", subprotocols=OCPP16, **connect_kwargs) as ws:
        cp = cls(cp_id, ws)
        async with receive_loop(cp):
            yield cp


def boot_request() -> call.BootNotification:
    return call.BootNotification(charge_point_model="M1", charge_point_vendor="evse-agent")


def start_request(id_tag: str = "TAG1", connector_id: int = 1) -> call.StartTransaction:
    return call.StartTransaction(
        connector_id=connector_id, id_tag=id_tag, meter_start=1000, timestamp="2024-01-01T00:00:00Z"
    )


@pytest.mark.parametrize("status", ["Accepted", "Pending", "Rejected"])
async def test_boot_notification_answers_scripted_status_interval_and_utc_time(
    emulator: CsmsEmulator, status: str
) -> None:
    emulator.boot_status = status
    async with charger(emulator) as cp:
        response = await cp.call(boot_request())

    assert response.status == status
    assert response.interval == 42
    assert response.current_time.endswith("Z")
    datetime.fromisoformat(response.current_time.replace("Z", "+00:00"))
    (boot,) = emulator.calls("BootNotification", "CP1")
    assert boot.payload == {"chargePointModel": "M1", "chargePointVendor": "evse-agent"}
    assert boot.charge_point_id == "CP1"
    assert emulator.connections["CP1"] == 1


async def test_charger_id_is_last_path_segment(emulator: CsmsEmulator) -> None:
    async with connect(f"{emulator.url}/site-7/CP%2042", subprotocols=OCPP16) as ws:
        await emulator.wait_connected("CP 42", timeout_s=GUARD_S)
        assert emulator.is_connected("CP 42")
        await ws.close()
    await emulator.wait_disconnected("CP 42", timeout_s=GUARD_S)


async def test_start_transaction_assigns_increasing_ids_and_records_payloads(
    emulator: CsmsEmulator,
) -> None:
    emulator.set_authorize_status("STOLEN", "Blocked")
    async with charger(emulator) as cp:
        first = await cp.call(start_request("TAG1", connector_id=1))
        second = await cp.call(start_request("STOLEN", connector_id=2))
        authorize = await cp.call(call.Authorize(id_tag="STOLEN"))
        stop = await cp.call(
            call.StopTransaction(
                meter_stop=1500,
                timestamp="2024-01-01T01:00:00Z",
                transaction_id=first.transaction_id,
            )
        )

    assert (first.transaction_id, second.transaction_id) == (1, 2)
    assert first.id_tag_info["status"] == "Accepted"
    assert second.id_tag_info["status"] == "Blocked"
    assert authorize.id_tag_info["status"] == "Blocked"
    assert stop.id_tag_info["status"] == "Accepted"
    assert emulator.transactions[1]["start"]["idTag"] == "TAG1"
    assert emulator.transactions[1]["stop"]["meterStop"] == 1500
    assert emulator.transactions[2]["start"]["connectorId"] == 2
    assert emulator.transactions[2]["stop"] is None


async def test_first_transaction_id_is_configurable() -> None:
    async with CsmsEmulator(first_transaction_id=500) as csms, charger(csms) as cp:
        response = await cp.call(start_request())
    assert response.transaction_id == 500


async def test_fail_next_answers_callerror_then_recovers(emulator: CsmsEmulator) -> None:
    emulator.fail_next("StartTransaction", times=2, error_code="InternalError")
    async with charger(emulator) as cp:
        for _ in range(2):
            with pytest.raises(InternalError):
                await cp.call(start_request(), suppress=False)
        response = await cp.call(start_request())

    assert response.transaction_id == 1  # failed attempts consume no id
    starts = emulator.calls("StartTransaction")
    assert len(starts) == 3
    failed = await emulator.wait_answer(starts[0], timeout_s=GUARD_S)
    assert isinstance(failed, CallErrorReply)
    assert failed.error_code == "InternalError"
    assert failed.unique_id == starts[0].unique_id
    assert emulator.answers[starts[2].seq] == {
        "transactionId": 1,
        "idTagInfo": {"status": "Accepted"},
    }


async def test_wait_for_counts_from_the_first_received_call(emulator: CsmsEmulator) -> None:
    async with charger(emulator) as cp:
        for _ in range(3):
            await cp.call(call.Heartbeat())
        second = await emulator.wait_for("Heartbeat", count=2, timeout_s=GUARD_S)
        fourth_waiter = asyncio.create_task(emulator.wait_for("Heartbeat", count=4))
        await cp.call(call.StatusNotification(1, "NoError", "Available"))
        await cp.call(call.Heartbeat())
        fourth = await asyncio.wait_for(fourth_waiter, GUARD_S)
        status = await emulator.wait_for(
            "StatusNotification",
            predicate=lambda c: c.payload["status"] == "Available",
            cp_id="CP1",
            timeout_s=GUARD_S,
        )

    heartbeats = emulator.calls("Heartbeat")
    assert second is heartbeats[1]
    assert fourth is heartbeats[3]
    assert status.seq == 4
    assert [c.seq for c in emulator.received] == [1, 2, 3, 4, 5]
    with pytest.raises(TimeoutError, match="4/5 Heartbeat"):
        await emulator.wait_for("Heartbeat", count=5, timeout_s=0.05)


async def test_go_offline_refuses_connections_and_go_online_accepts_on_same_port(
    emulator: CsmsEmulator,
) -> None:
    port = emulator.port
    async with connect(f"{emulator.url}/CP1", subprotocols=OCPP16) as ws:
        await emulator.wait_connected("CP1", timeout_s=GUARD_S)
        await emulator.go_offline()
        await asyncio.wait_for(ws.wait_closed(), GUARD_S)
        assert ws.close_code == 1001
    assert not emulator.is_connected("CP1")

    with pytest.raises(OSError):
        async with connect(f"{emulator.url}/CP1", subprotocols=OCPP16):
            pass

    await emulator.go_online()
    assert emulator.port == port
    async with charger(emulator) as cp:
        await emulator.wait_connected("CP1", count=2, timeout_s=GUARD_S)
        response = await cp.call(call.Heartbeat())
    assert response.current_time.endswith("Z")
    assert emulator.connections["CP1"] == 2


async def test_drop_connections_keeps_listening(emulator: CsmsEmulator) -> None:
    async with connect(f"{emulator.url}/CP1", subprotocols=OCPP16) as ws:
        await emulator.wait_connected("CP1", timeout_s=GUARD_S)
        await emulator.drop_connections()
        assert not emulator.is_connected("CP1")
        await asyncio.wait_for(ws.wait_closed(), GUARD_S)
        assert ws.close_code == 1001
    async with charger(emulator):
        await emulator.wait_connected("CP1", count=2, timeout_s=GUARD_S)


async def test_csms_call_reaches_client_handler_and_returns_its_answer() -> None:
    seen: list[tuple[str, str, str, dict[str, Any]]] = []
    async with (
        CsmsEmulator(on_message=lambda *event: seen.append(event)) as csms,
        charger(csms) as cp,
    ):
        await csms.wait_connected("CP1", timeout_s=GUARD_S)
        await cp.call(call.Heartbeat())
        result = await csms.call(
            "CP1", call.RemoteStartTransaction(connector_id=1, id_tag="ABC"), timeout_s=GUARD_S
        )

    assert result == call_result.RemoteStartTransaction(status="Accepted")
    assert cp.remote_starts == [(1, "ABC")]
    assert seen == [
        (CP_TO_CSMS, "CP1", "Heartbeat", {}),
        (CSMS_TO_CP, "CP1", "RemoteStartTransaction", {"connectorId": 1, "idTag": "ABC"}),
        (CSMS_FROM_CP, "CP1", "RemoteStartTransaction", {"status": "Accepted"}),
    ]


async def test_call_error_is_none_or_object_or_raised(emulator: CsmsEmulator) -> None:
    reset = call.Reset(type="Soft")  # the bare charger has no Reset handler
    async with charger(emulator):
        await emulator.wait_connected("CP1", timeout_s=GUARD_S)
        assert await emulator.call("CP1", reset, timeout_s=GUARD_S) is None
        error = await emulator.call_raw_result("CP1", reset, timeout_s=GUARD_S)
        with pytest.raises(OcppNotImplementedError):
            await emulator.call("CP1", reset, timeout_s=GUARD_S, suppress=False)
    assert isinstance(error, CallErrorReply)
    assert error.error_code == "NotImplemented"


async def test_call_to_unknown_or_vanishing_charger_raises_connection_error(
    emulator: CsmsEmulator,
) -> None:
    with pytest.raises(ConnectionError):
        await emulator.call("NOPE", call.ClearCache())

    entered = asyncio.Event()
    never = asyncio.Event()

    class SilentChargePoint(BareChargePoint):
        @on(Action.clear_cache)  # type: ignore[untyped-decorator]
        async def on_clear_cache(self, **_: Any) -> call_result.ClearCache:
            entered.set()
            await never.wait()  # the CSMS call stays outstanding
            return call_result.ClearCache(status="Accepted")

    async with charger(emulator, cls=SilentChargePoint):
        await emulator.wait_connected("CP1", timeout_s=GUARD_S)
        pending = asyncio.create_task(emulator.call("CP1", call.ClearCache(), timeout_s=GUARD_S))
        await asyncio.wait_for(entered.wait(), GUARD_S)
        await emulator.drop_connections()
        with pytest.raises(ConnectionError):
            await pending


async def test_held_response_waits_for_release_without_blocking_csms_calls(
    emulator: CsmsEmulator,
) -> None:
    emulator.hold_responses("BootNotification")
    async with charger(emulator) as cp:
        boot = asyncio.create_task(cp.call(boot_request()))
        received = await emulator.wait_for("BootNotification", timeout_s=GUARD_S)
        # While the charger is frozen mid-call, CS->CP traffic still flows.
        result = await emulator.call(
            "CP1", call.RemoteStartTransaction(id_tag="X"), timeout_s=GUARD_S
        )
        assert result.status == "Accepted"
        assert received.seq not in emulator.answers
        assert not boot.done()
        emulator.release_responses("BootNotification")
        response = await asyncio.wait_for(boot, GUARD_S)
    assert response.status == "Accepted"
    assert emulator.answers[received.seq] == {
        "currentTime": response.current_time,
        "interval": 42,
        "status": "Accepted",
    }


async def test_data_transfer_accepts_only_the_test_vendor(emulator: CsmsEmulator) -> None:
    async with charger(emulator) as cp:
        ours = await cp.call(call.DataTransfer(vendor_id="evse-agent.test", data="x"))
        theirs = await cp.call(call.DataTransfer(vendor_id="acme"))
    assert ours.status == "Accepted"
    assert theirs.status == "UnknownVendorId"


async def test_send_raw_invalid_json_returns_the_chargers_callerror(
    emulator: CsmsEmulator,
) -> None:
    async with charger(emulator, cls=MinusOneChargePoint):
        await emulator.wait_connected("CP1", timeout_s=GUARD_S)
        answer = await emulator.send_raw("CP1", '[2, "abc", "Reset", {', timeout_s=GUARD_S)
    assert json.loads(answer)[:3] == [4, "-1", "FormatViolation"]


async def test_send_raw_matches_the_answer_by_message_id(emulator: CsmsEmulator) -> None:
    async with charger(emulator):
        await emulator.wait_connected("CP1", timeout_s=GUARD_S)
        unknown = await emulator.send_raw("CP1", '[2,"raw-1","NoSuchAction",{}]')
        invalid = await emulator.send_raw("CP1", '[2,"raw-2","RemoteStartTransaction",{"idTag":7}]')
    assert json.loads(unknown)[:3] == [4, "raw-1", "NotSupported"]
    assert json.loads(invalid)[:3] == [4, "raw-2", "TypeConstraintViolation"]


async def test_bare_ocpp_client_does_not_answer_invalid_json(emulator: CsmsEmulator) -> None:
    # Documents ocpp 2.1.0: route_message logs unparsable frames and sends nothing back.
    async with charger(emulator) as cp:
        await emulator.wait_connected("CP1", timeout_s=GUARD_S)
        with pytest.raises(TimeoutError):
            await emulator.send_raw("CP1", "not json", timeout_s=0.2)
        assert (await cp.call(call.Heartbeat())) is not None  # link still usable


def basic_auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_basic_auth_rejects_wrong_password_with_401_and_accepts_right_one() -> None:
    async with CsmsEmulator(basic_auth_password="s3cret") as csms:
        with pytest.raises(InvalidStatus) as rejected:
            async with connect(
                f"{csms.url}/CP1", subprotocols=OCPP16, additional_headers=basic_auth("CP1", "no")
            ):
                pass
        assert rejected.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as wrong_user:
            async with connect(
                f"{csms.url}/CP1",
                subprotocols=OCPP16,
                additional_headers=basic_auth("CP2", "s3cret"),
            ):
                pass
        assert wrong_user.value.response.status_code == 401

        async with charger(csms, additional_headers=basic_auth("CP1", "s3cret")) as cp:
            assert (await cp.call(boot_request())).status == "Accepted"
    assert csms.rejected_handshakes == [("CP1", 401), ("CP1", 401)]
    assert csms.connections["CP1"] == 1


async def test_client_without_ocpp16_subprotocol_is_rejected(emulator: CsmsEmulator) -> None:
    with pytest.raises(InvalidStatus) as rejected:
        async with connect(f"{emulator.url}/CP1"):
            pass
    assert rejected.value.response.status_code == 400
    assert emulator.connections["CP1"] == 0


async def test_stop_while_a_response_is_held_closes_everything() -> None:
    csms = CsmsEmulator()
    await csms.start()
    csms.hold_responses("Heartbeat")
    async with charger(csms) as cp:
        heartbeat = asyncio.create_task(cp.call(call.Heartbeat()))
        received = await csms.wait_for("Heartbeat", timeout_s=GUARD_S)
        await asyncio.wait_for(csms.stop(), GUARD_S)
        assert not csms.is_connected("CP1")
        assert received.seq not in csms.answers
        heartbeat.cancel()  # the library client would otherwise wait out its own 30 s timeout
        await asyncio.wait({heartbeat})
    await csms.stop()  # idempotent
