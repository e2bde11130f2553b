"""Version choice: ``csms.ocpp_version = "auto"`` offers ocpp2.0.1 and ocpp1.6 and runs
the adapter of the subprotocol the CSMS selects (OCPP-J 2.0.1 Part 4 3.1)."""

from __future__ import annotations

import pytest

from hil.csms201 import PREFER_OCPP16, PREFER_OCPP201, CsmsEmulator201
from tests.conftest import GUARD_S, StartApp
from tests.ocpp.v201_helpers import CP
from tests.powerloss.harness import wait_journal


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


async def test_auto_on_2_0_1_follows_the_configured_transaction_points(
    make_csms: object, start_app: StartApp
) -> None:
    del make_csms
    async with CsmsEmulator201(subprotocols=PREFER_OCPP201) as csms:
        agent = await start_app(
            csms,
            csms_options={"ocpp_version": "auto"},
            ocpp={"tx_start_point": ["EVConnected"]},
        )
        await csms.wait_for("StatusNotification", timeout_s=GUARD_S)
        agent.sim("plug")  # the cable alone starts the transaction (TxStartPoint)
        started = await csms.wait_for("TransactionEvent", timeout_s=GUARD_S)
        assert started.payload["eventType"] == "Started"
        assert started.payload["triggerReason"] == "CablePluggedIn"
        assert "idToken" not in started.payload
        await agent.stop()


@pytest.mark.parametrize("how", ["offline", "dropped"])
async def test_auto_moves_a_running_transaction_from_1_6_to_2_0_1_without_a_restart(
    make_csms: object, start_app: StartApp, how: str
) -> None:
    """A live move: a transaction starts over 1.6; the CSMS goes offline while samples are
    queued (or just drops the connection) and comes back preferring 2.0.1. The same
    agent, not restarted, carries on in 2.0.1: queued samples as TransactionEvents flagged
    offline, seqNo continuing in order after the 1.6 start (event 0), every sample once,
    one end; no 1.6 stop."""
    del make_csms
    async with CsmsEmulator201(subprotocols=PREFER_OCPP16) as csms:
        agent = await start_app(
            csms,
            ocpp={
                "meter_value_sample_interval_s": 1,
                "transaction_message_retry_interval_s": 1,
            },
            csms_options={"ocpp_version": "auto"},
        )
        await csms.wait_for("StatusNotification", timeout_s=GUARD_S)
        assert csms.negotiated[CP] == "ocpp1.6"
        agent.sim("plug")
        agent.sim("swipe", "TAG-MOVE")
        start = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
        await csms.wait_answer(start, timeout_s=GUARD_S)
        meter16 = await csms.wait_for("MeterValues", timeout_s=GUARD_S)
        await csms.wait_answer(meter16, timeout_s=GUARD_S)

        queued_times: list[str] = []
        if how == "offline":
            await csms.go_offline()
            queued = await wait_journal(
                agent.data_dir, lambda j: len(j.queued("meter")) >= 2, what="2 queued samples"
            )
            assert len(queued.running) == 1
            queued_times = [t for q in queued.queued("meter") for t in q.sample_times]
            csms.set_subprotocols(PREFER_OCPP201)
            await csms.go_online()
        else:
            csms.set_subprotocols(PREFER_OCPP201)  # the listening server serves the new list
            await csms.drop_connections()
        updated = await csms.wait_for(
            "TransactionEvent",
            predicate=lambda c: (
                c.payload.get("eventType") == "Updated"
                and bool(c.payload.get("meterValue"))
                and c.payload["meterValue"][0]["timestamp"] not in queued_times
            ),
            timeout_s=GUARD_S,
        )  # a sample taken after the reconnect: the move is complete
        assert csms.negotiated[CP] == "ocpp2.0.1"
        await csms.wait_answer(updated, timeout_s=GUARD_S)
        agent.sim("unplug")
        end = await csms.wait_for(
            "TransactionEvent",
            predicate=lambda c: c.payload.get("eventType") == "Ended",
            timeout_s=GUARD_S,
        )
        await csms.wait_answer(end, timeout_s=GUARD_S)
        await wait_journal(
            agent.data_dir,
            lambda j: not j.queue and not j.running,
            what="an empty queue and no running transaction",
        )
        await agent.stop()

    # 1.6 part: one start and its samples, no stop
    assert len(csms.calls("StartTransaction")) == 1
    assert not csms.calls("StopTransaction")
    meters16 = csms.calls("MeterValues")
    # 2.0.1 part: the rest of the same transaction, in seqNo order, then its end
    events = csms.calls("TransactionEvent")
    assert [e.payload["eventType"] for e in events].count("Started") == 0
    assert [e.payload["eventType"] for e in events].count("Ended") == 1
    assert events[-1] is end
    assert end.payload["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert len({e.payload["transactionInfo"]["transactionId"] for e in events}) == 1
    seq_nos = [int(e.payload["seqNo"]) for e in events]
    assert seq_nos == list(range(seq_nos[0], seq_nos[0] + len(seq_nos))), seq_nos
    # every sample once; the last 1.6 MeterValues before the loss may have been in flight
    # (its answer lost with the link) and then comes again as the first 2.0.1 event,
    # with the seqNo the journal gave it (OCPP-J: resend after a lost answer)
    samples16 = [mv["timestamp"] for c in meters16 for mv in c.payload["meterValue"]]
    samples201 = [mv["timestamp"] for e in events[:-1] for mv in e.payload.get("meterValue", [])]
    last16 = [mv["timestamp"] for mv in meters16[-1].payload["meterValue"]]
    resent = [mv["timestamp"] for mv in events[0].payload.get("meterValue", [])] == last16
    # event 0 was the 1.6 start, then one per 1.6 MeterValues
    assert seq_nos[0] >= (len(meters16) if resent else 1 + len(meters16)), (seq_nos, resent)
    every = [*samples16, *(samples201[len(last16) :] if resent else samples201)]
    assert len(every) == len(set(every)), "a sample was delivered twice"
    assert set(queued_times) <= set(samples201)
    taken_offline = set(queued_times) - set(last16)  # not the one in flight at the loss
    for e in events:  # taken while offline: flagged offline
        if {mv["timestamp"] for mv in e.payload.get("meterValue", [])} & taken_offline:
            assert e.payload.get("offline") is True, e.payload
