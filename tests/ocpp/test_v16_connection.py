"""OCPP 1.6J connection handling and the persisted outbox, end to end over loopback.

Charging must not depend on the link; transaction messages queued while offline reach the
CSMS in order with the transaction id it assigned; CALLERRORs are retried per
TransactionMessageAttempts / TransactionMessageRetryInterval (OCPP 1.6 3.7, 4.2.1); a CSMS
that stops answering is declared dead and reconnected to.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

from hil.csms import CallErrorReply, CsmsEmulator, ReceivedCall
from tests.conftest import GUARD_S, RunningApp, StartApp, registered

CP = "CP1"
ENERGY = "Energy.Active.Import.Register"
SAMPLING = {"meter_value_sample_interval_s": 1}


class QueuedTxMessages:
    """Counts transaction messages the station core queues (observable while offline)."""

    def __init__(self, agent: RunningApp) -> None:
        assert agent.app.station is not None
        self.count = 0
        self._changed = asyncio.Event()
        agent.app.station.subscribe_tx_messages(self._on_queued)

    def _on_queued(self) -> None:
        self.count += 1
        self._changed.set()

    async def wait(self, count: int) -> None:
        """Wait until ``count`` messages were queued since this counter was made."""
        async with asyncio.timeout(GUARD_S):
            while self.count < count:
                self._changed.clear()
                await self._changed.wait()


async def charging(csms: CsmsEmulator, agent: RunningApp, id_tag: str) -> int:
    """Start a session, wait until the contactor is closed; return the CSMS transaction id."""
    mark = csms.received[-1].seq
    start = await agent.start_charging(csms, id_tag)
    await csms.wait_for(
        "StatusNotification",
        predicate=lambda c: c.seq > mark and c.payload["status"] == "Charging",
        timeout_s=GUARD_S,
    )
    assert agent.rig.coil_is_on()
    return answered_id(csms, start)


def answered_id(csms: CsmsEmulator, start: ReceivedCall) -> int:
    answer = csms.answers[start.seq]
    assert isinstance(answer, dict), answer
    return int(answer["transactionId"])


def energy_wh(meter_values: ReceivedCall) -> int:
    (sample,) = meter_values.payload["meterValue"]
    (value,) = [v for v in sample["sampledValue"] if v["measurand"] == ENERGY]
    return int(value["value"])


def meter_timestamp(meter_values: ReceivedCall) -> str:
    (sample,) = meter_values.payload["meterValue"]
    return str(sample["timestamp"])


async def test_charging_continues_while_the_csms_is_offline(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms, ocpp=SAMPLING)
    await registered(csms)
    tx_id = await charging(csms, agent, "TAG1")
    await csms.wait_for("MeterValues", timeout_s=GUARD_S)
    online_samples = len(csms.calls("MeterValues"))
    energy_before_wh = agent.rig.ev.energy_import_wh
    coil_changes = len(agent.rig.coil_pin_obj.states)
    queued = QueuedTxMessages(agent)

    await csms.go_offline()
    await queued.wait(2)  # two periodic samples taken while offline
    assert agent.rig.coil_is_on()
    assert len(agent.rig.coil_pin_obj.states) == coil_changes  # never switched meanwhile
    assert agent.rig.ev.energy_import_wh > energy_before_wh + 1  # ~22 kW for over 1 s

    await csms.go_online()
    await csms.wait_for("MeterValues", count=online_samples + 2, timeout_s=GUARD_S)
    meter_values = csms.calls("MeterValues")
    assert {m.payload["transactionId"] for m in meter_values} == {tx_id}
    energies = [energy_wh(m) for m in meter_values]
    assert energies == sorted(energies) and energies[-1] > energies[0]
    assert csms.calls("StopTransaction") == []
    assert len(csms.calls("StartTransaction")) == 1


async def test_offline_transaction_is_delivered_in_order_with_the_csms_transaction_id(
    make_csms: Callable[..., Awaitable[CsmsEmulator]], start_app: StartApp
) -> None:
    csms = await make_csms(first_transaction_id=500)
    agent = await start_app(csms, ocpp={**SAMPLING, "allow_offline_tx_for_unknown_id": True})
    boot = await registered(csms)
    await csms.go_offline()
    queued = QueuedTxMessages(agent)

    agent.sim("plug")
    agent.sim("swipe", "TAG1")  # unknown while offline: allowed by AllowOfflineTxForUnknownId
    await queued.wait(3)  # start and two samples
    assert agent.rig.coil_is_on()
    agent.sim("swipe", "TAG1")
    await queued.wait(queued.count + 1)  # the stop
    assert not agent.rig.coil_is_on()

    await csms.go_online()
    stop = await csms.wait_for("StopTransaction", timeout_s=GUARD_S)
    (start,) = csms.calls("StartTransaction")
    meter_values = csms.calls("MeterValues")
    assert start.payload["idTag"] == "TAG1"
    assert answered_id(csms, start) == 500
    assert len(meter_values) >= 2
    # chronological, and every later message carries the id the CSMS assigned
    assert start.seq < min(m.seq for m in meter_values) < max(m.seq for m in meter_values)
    assert max(m.seq for m in meter_values) < stop.seq
    assert {m.payload["transactionId"] for m in meter_values} == {500}
    assert stop.payload["transactionId"] == 500
    assert stop.payload["reason"] == "Local"
    stamps = [start.payload["timestamp"], *map(meter_timestamp, meter_values)]
    assert stamps == sorted(stamps) and stamps[-1] <= stop.payload["timestamp"]
    energies = [energy_wh(m) for m in meter_values]
    assert start.payload["meterStart"] <= energies[0] < energies[-1] <= stop.payload["meterStop"]
    assert csms.calls("Authorize") == []  # nobody to ask while offline
    # the status reported after reconnecting is the current one
    boot2 = await registered(csms, after_seq=boot.seq)
    last = [
        c.payload["status"]
        for c in csms.calls("StatusNotification")
        if c.seq > boot2.seq and c.payload["connectorId"] == 1
    ]
    assert last[0] == "Finishing"


async def test_refused_stop_transaction_is_retried_with_growing_intervals(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(
        csms,
        ocpp={"transaction_message_attempts": 3, "transaction_message_retry_interval_s": 1},
    )
    await registered(csms)
    await agent.start_charging(csms, "TAG1")

    csms.fail_next("StopTransaction", 2)
    agent.sim("swipe", "TAG1")
    third = await csms.wait_for("StopTransaction", count=3, timeout_s=GUARD_S)
    assert isinstance(await csms.wait_answer(third, timeout_s=GUARD_S), dict)

    stops = csms.calls("StopTransaction")
    assert len(stops) == 3
    assert [isinstance(csms.answers[c.seq], CallErrorReply) for c in stops] == [True, True, False]
    assert stops[0].payload == stops[1].payload == stops[2].payload
    # OCPP 1.6 4.2.1: wait RetryInterval x the number of previous transmissions
    assert stops[1].monotonic_s - stops[0].monotonic_s >= 0.95
    assert stops[2].monotonic_s - stops[1].monotonic_s >= 1.95


async def test_message_refused_every_time_is_dropped_and_the_queue_moves_on(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(
        csms,
        ocpp={"transaction_message_attempts": 2, "transaction_message_retry_interval_s": 0},
    )
    await registered(csms)
    await agent.start_charging(csms, "TAG1")

    csms.fail_next("StopTransaction", 5)
    agent.sim("swipe", "TAG1")  # this stop is refused twice, then dropped
    agent.sim("swipe", "TAG2")  # a new session on the same cable queues behind it
    second = await csms.wait_for("StartTransaction", count=2, timeout_s=GUARD_S)
    assert second.payload["idTag"] == "TAG2"
    assert isinstance(await csms.wait_answer(second, timeout_s=GUARD_S), dict)
    stops = csms.calls("StopTransaction")
    assert len(stops) == 2
    assert all(isinstance(csms.answers[c.seq], CallErrorReply) for c in stops)
    assert all(c.seq < second.seq for c in stops)


async def test_a_dead_link_is_not_a_delivery_attempt(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    # With one attempt allowed, a stop lost with the link must still be delivered later.
    agent = await start_app(
        csms, ocpp={"transaction_message_attempts": 1}, csms_options={"call_timeout_s": 0.5}
    )
    await registered(csms)
    await agent.start_charging(csms, "TAG1")

    csms.hold_responses("StopTransaction")
    agent.sim("swipe", "TAG1")
    first = await csms.wait_for("StopTransaction", timeout_s=GUARD_S)
    await csms.wait_connected(CP, count=2, timeout_s=GUARD_S)  # the agent gave up on the link
    csms.release_responses("StopTransaction")
    second = await csms.wait_for("StopTransaction", count=2, timeout_s=GUARD_S)
    assert isinstance(await csms.wait_answer(second, timeout_s=GUARD_S), dict)
    assert second.payload == first.payload


async def test_unanswered_heartbeat_drops_the_link_and_reconnects(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    csms.heartbeat_interval_s = 1
    await start_app(csms, csms_options={"call_timeout_s": 0.5})
    boot = await registered(csms)

    csms.hold_responses("Heartbeat")
    held = await csms.wait_for("Heartbeat", predicate=lambda c: c.seq > boot.seq, timeout_s=GUARD_S)
    await csms.wait_connected(CP, count=2, timeout_s=GUARD_S)
    csms.release_responses("Heartbeat")
    boot2 = await registered(csms, after_seq=held.seq)
    assert boot2.monotonic_s - held.monotonic_s >= 0.5  # not before the call timed out
    assert csms.connections[CP] == 2


async def test_reconnect_after_the_csms_dropped_the_connection(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    await start_app(csms)
    boot = await registered(csms)
    await csms.wait_for(
        "StatusNotification",
        predicate=lambda c: c.seq > boot.seq and c.payload["connectorId"] == 0,
        timeout_s=GUARD_S,
    )
    mark = csms.received[-1].seq

    await csms.drop_connections()
    await csms.wait_connected(CP, count=2, timeout_s=GUARD_S)
    boot2 = await registered(csms, after_seq=boot.seq)
    zero = await csms.wait_for(
        "StatusNotification",
        predicate=lambda c: c.seq > boot2.seq and c.payload["connectorId"] == 0,
        timeout_s=GUARD_S,
    )
    assert zero.payload["status"] == "Available"
    after = [c for c in csms.received if c.seq > mark]
    assert after[0] is boot2  # BootNotification first (1.6 4.2)


async def test_charging_is_undisturbed_by_a_reconnect(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms, ocpp=SAMPLING)
    boot = await registered(csms)
    tx_id = await charging(csms, agent, "TAG1")
    coil_changes = len(agent.rig.coil_pin_obj.states)

    await csms.drop_connections()
    boot2 = await registered(csms, after_seq=boot.seq)
    after = await csms.wait_for(
        "MeterValues", predicate=lambda c: c.seq > boot2.seq, timeout_s=GUARD_S
    )
    assert after.payload["transactionId"] == tx_id, [
        (c.seq, c.action, c.payload) for c in csms.received
    ]
    assert agent.rig.coil_is_on()
    assert len(agent.rig.coil_pin_obj.states) == coil_changes
    assert csms.calls("StopTransaction") == []


async def answer_then_drop(csms: CsmsEmulator, agent: RunningApp, action: str) -> ReceivedCall:
    """Answer the held ``action`` CALL and close the connection right behind the answer,
    while a flash write (held until both are sent) occupies the agent's store; return the CALL."""
    assert agent.app.store is not None
    held = await csms.wait_for(action, timeout_s=GUARD_S)
    loop = asyncio.get_running_loop()
    writing = asyncio.Event()
    finish_write = threading.Event()

    def slow_write(conn: object) -> None:
        loop.call_soon_threadsafe(writing.set)
        finish_write.wait(GUARD_S)  # the store stays busy until both frames are out

    slow = asyncio.create_task(agent.app.store.run(slow_write))
    await writing.wait()
    csms.release_responses(action)  # the answer goes out first,
    await csms.drop_connections()  # then the close frame
    finish_write.set()
    await slow
    return held


def read_by_agent(frames: list[tuple[str, str]], held: ReceivedCall) -> bool:
    return any(d == "recv" and held.unique_id in f for d, f in frames)


async def test_start_answer_read_just_before_the_link_drops_is_not_sent_again(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    # The charger has read the answer: sending the StartTransaction again would open a
    # second transaction at the CSMS that is never stopped (1.6 has no idempotency key).
    frames: list[tuple[str, str]] = []
    agent = await start_app(csms, trace=lambda direction, frame: frames.append((direction, frame)))
    await registered(csms)
    csms.hold_responses("StartTransaction")
    agent.sim("plug")
    agent.sim("swipe", "TAG1")
    start = await answer_then_drop(csms, agent, "StartTransaction")
    tx_id = answered_id(csms, start)
    assert read_by_agent(frames, start)

    await registered(csms, after_seq=start.seq)  # reconnected
    agent.sim("swipe", "TAG1")
    stop = await csms.wait_for("StopTransaction", timeout_s=GUARD_S)
    assert len(csms.calls("StartTransaction")) == 1
    assert stop.payload["transactionId"] == tx_id


async def test_stop_answer_read_just_before_the_link_drops_is_not_sent_again(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    frames: list[tuple[str, str]] = []
    agent = await start_app(csms, trace=lambda direction, frame: frames.append((direction, frame)))
    await registered(csms)
    await charging(csms, agent, "TAG1")
    csms.hold_responses("StopTransaction")
    agent.sim("swipe", "TAG1")
    stop = await answer_then_drop(csms, agent, "StopTransaction")
    assert read_by_agent(frames, stop)

    await registered(csms, after_seq=stop.seq)  # reconnected
    # a new session queues behind any resend of the stop
    next_start = await agent.start_charging(csms, "TAG2")
    assert [c.seq < next_start.seq for c in csms.calls("StopTransaction")] == [True]
