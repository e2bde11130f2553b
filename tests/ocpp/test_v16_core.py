"""OCPP 1.6J Core profile, end to end: the whole App on simulated hardware against the CSMS
emulator over a loopback WebSocket. Assertions are on what the CSMS received and answered.
"""

from __future__ import annotations

import pytest
from ocpp.v16 import call

from agent import __version__
from agent.app import ExitReason
from agent.ocpp.v16 import keys
from hil.csms import CsmsEmulator, ReceivedCall
from tests.conftest import GUARD_S, RunningApp, StartApp, registered

CP = "CP1"
ENERGY = "Energy.Active.Import.Register"
SAMPLING = {"meter_value_sample_interval_s": 1}
FAULT_GUARD_S = 20.0  # the simulated meter's fault debounce is 5 s


# ------------------------------------------------------------------ helpers


def last_seq(csms: CsmsEmulator) -> int:
    """Sequence number of the last CALL received so far (0 before the first)."""
    return csms.received[-1].seq if csms.received else 0


def status_calls(csms: CsmsEmulator, connector_id: int, after_seq: int = 0) -> list[ReceivedCall]:
    return [
        c
        for c in csms.calls("StatusNotification")
        if c.payload["connectorId"] == connector_id and c.seq > after_seq
    ]


def statuses(csms: CsmsEmulator, connector_id: int, after_seq: int = 0) -> list[str]:
    return [c.payload["status"] for c in status_calls(csms, connector_id, after_seq)]


async def wait_status(
    csms: CsmsEmulator,
    connector_id: int,
    status: str,
    *,
    after_seq: int = 0,
    timeout_s: float = GUARD_S,
) -> ReceivedCall:
    """The first StatusNotification(connector_id, status) received after ``after_seq``."""

    def match(c: ReceivedCall) -> bool:
        p = c.payload
        return c.seq > after_seq and p["connectorId"] == connector_id and p["status"] == status

    return await csms.wait_for("StatusNotification", predicate=match, timeout_s=timeout_s)


def transaction_id(csms: CsmsEmulator, start: ReceivedCall) -> int:
    answer = csms.answers[start.seq]
    assert isinstance(answer, dict), answer
    return int(answer["transactionId"])


def energy_wh(meter_values: ReceivedCall) -> int:
    (sample,) = meter_values.payload["meterValue"]
    values = [v for v in sample["sampledValue"] if v["measurand"] == ENERGY]
    assert len(values) == 1, sample
    assert values[0]["unit"] == "Wh"
    return int(values[0]["value"])


async def wait_meter_values(
    csms: CsmsEmulator, tx_id: int, count: int, timeout_s: float = GUARD_S
) -> list[ReceivedCall]:
    await csms.wait_for(
        "MeterValues",
        predicate=lambda c: c.payload.get("transactionId") == tx_id,
        count=count,
        timeout_s=timeout_s,
    )
    return [c for c in csms.calls("MeterValues") if c.payload.get("transactionId") == tx_id]


async def wait_stop(csms: CsmsEmulator, tx_id: int) -> ReceivedCall:
    return await csms.wait_for(
        "StopTransaction",
        predicate=lambda c: c.payload["transactionId"] == tx_id,
        timeout_s=GUARD_S,
    )


async def get_configuration(csms: CsmsEmulator, *names: str) -> dict[str, dict[str, object]]:
    result = await csms.call(CP, call.GetConfiguration(key=list(names)))
    assert result is not None
    return {item["key"]: item for item in result.configuration_key or []}


async def change_configuration(csms: CsmsEmulator, key: str, value: str) -> str:
    result = await csms.call(CP, call.ChangeConfiguration(key=key, value=value))
    assert result is not None
    return str(result.status)


async def charging(csms: CsmsEmulator, agent: RunningApp, id_tag: str = "TAG1") -> int:
    """Start a local session and wait until it charges; return the CSMS transaction id."""
    mark = last_seq(csms)
    start = await agent.start_charging(csms, id_tag)
    await wait_status(csms, 1, "Charging", after_seq=mark)
    return transaction_id(csms, start)


# --------------------------------------------------------------------- boot


async def test_boot_reports_identity_adopts_interval_and_sends_heartbeats(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    csms.heartbeat_interval_s = 1
    await start_app(csms)

    boot = await csms.wait_for("BootNotification", timeout_s=GUARD_S)
    assert boot.payload == {
        "chargePointVendor": "evse-agent",
        "chargePointModel": "evse-agent-sim",
        "chargePointSerialNumber": "SIM-CP1",
        "firmwareVersion": __version__,
    }
    first = await csms.wait_for("Heartbeat", timeout_s=GUARD_S)
    second = await csms.wait_for("Heartbeat", count=2, timeout_s=GUARD_S)
    assert first.seq > boot.seq
    assert second.monotonic_s - first.monotonic_s == pytest.approx(1.0, abs=0.5)
    config = await get_configuration(csms, "HeartbeatInterval")
    assert config["HeartbeatInterval"]["value"] == "1"


async def test_boot_pending_retries_answers_the_csms_and_refuses_remote_start(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    csms.boot_status = "Pending"
    csms.heartbeat_interval_s = 1  # OCPP 1.6 4.2: retry after `interval`
    await start_app(csms)
    first = await csms.wait_for("BootNotification", timeout_s=GUARD_S)
    await csms.wait_answer(first, timeout_s=GUARD_S)

    config = await get_configuration(csms, "NumberOfConnectors")
    assert config["NumberOfConnectors"]["value"] == "1"
    remote = await csms.call(CP, call.RemoteStartTransaction(id_tag="TAG1", connector_id=1))
    assert remote.status == "Rejected"

    second = await csms.wait_for("BootNotification", count=2, timeout_s=GUARD_S)
    assert second.monotonic_s - first.monotonic_s >= 0.9
    await csms.wait_answer(second, timeout_s=GUARD_S)  # answered Pending too
    # Nothing but BootNotification while Pending (no status, no heartbeat).
    assert {c.action for c in csms.received} == {"BootNotification"}

    csms.boot_status = "Accepted"
    accepted = await csms.wait_for("BootNotification", count=3, timeout_s=GUARD_S)
    await wait_status(csms, 0, "Available", after_seq=accepted.seq)
    await wait_status(csms, 1, "Available", after_seq=accepted.seq)


async def test_boot_rejected_answers_nothing_and_retries(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    csms.boot_status = "Rejected"
    csms.heartbeat_interval_s = 1
    await start_app(csms)
    first = await csms.wait_for("BootNotification", timeout_s=GUARD_S)
    await csms.wait_answer(first, timeout_s=GUARD_S)

    # The retry proves the agent took the Rejected in; holding its answer keeps it Rejected.
    csms.hold_responses("BootNotification")
    second = await csms.wait_for("BootNotification", count=2, timeout_s=GUARD_S)
    assert second.monotonic_s - first.monotonic_s >= 0.9  # retried after `interval`
    # OCPP 1.6 4.2: while Rejected the charger answers nothing
    with pytest.raises(TimeoutError):
        await csms.call(CP, call.GetConfiguration(key=["HeartbeatInterval"]), timeout_s=0.5)
    assert {c.action for c in csms.received} == {"BootNotification"}

    csms.boot_status = "Accepted"
    csms.release_responses("BootNotification")
    await registered(csms, after_seq=first.seq)
    assert len(csms.calls("BootNotification")) == 2


async def test_boot_rejected_a_call_right_behind_the_answer_is_not_answered(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    # The CALL reaches the charger after the Rejected answer (one ordered stream), so it
    # falls in the Rejected period and must not be answered either.
    csms.boot_status = "Rejected"
    csms.heartbeat_interval_s = 5
    await start_app(csms)
    first = await csms.wait_for("BootNotification", timeout_s=GUARD_S)
    await csms.wait_answer(first, timeout_s=GUARD_S)
    with pytest.raises(TimeoutError):
        await csms.call(CP, call.GetConfiguration(key=["HeartbeatInterval"]), timeout_s=0.5)


async def test_status_of_connector_0_and_1_after_boot(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    await start_app(csms)
    boot = await registered(csms)
    zero = await wait_status(csms, 0, "Available")
    one = await wait_status(csms, 1, "Available")
    assert zero.seq > boot.seq and one.seq > boot.seq
    assert zero.payload["errorCode"] == one.payload["errorCode"] == "NoError"


# ----------------------------------------------------------- local sessions


async def test_local_session_authorize_start_meter_values_and_local_stop(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms, ocpp=SAMPLING)
    await registered(csms)

    mark = last_seq(csms)
    start = await agent.start_charging(csms, "TAG1")
    authorize = csms.calls("Authorize")
    assert [c.payload for c in authorize] == [{"idTag": "TAG1"}]
    assert authorize[0].seq < start.seq
    assert start.payload["connectorId"] == 1
    assert start.payload["idTag"] == "TAG1"
    assert isinstance(start.payload["meterStart"], int) and start.payload["meterStart"] >= 0
    tx_id = transaction_id(csms, start)
    await wait_status(csms, 1, "Charging", after_seq=mark)

    meter_values = await wait_meter_values(csms, tx_id, count=2)
    energies = [energy_wh(m) for m in meter_values]
    assert energies == sorted(energies) and energies[-1] > energies[0] >= 0
    for m in meter_values:
        assert m.payload["connectorId"] == 1
        contexts = {v.get("context") for v in m.payload["meterValue"][0]["sampledValue"]}
        assert contexts == {"Sample.Periodic"}

    agent.sim("pause")  # the EV stops asking for energy: SuspendedEV
    paused = await wait_status(csms, 1, "SuspendedEV", after_seq=meter_values[-1].seq)
    agent.sim("resume")
    await wait_status(csms, 1, "Charging", after_seq=paused.seq)

    agent.sim("swipe", "TAG1")  # the same tag again ends the session
    stop = await wait_stop(csms, tx_id)
    assert stop.payload["reason"] == "Local"
    assert stop.payload["idTag"] == "TAG1"
    assert stop.payload["meterStop"] >= energies[-1]
    finishing = await wait_status(csms, 1, "Finishing")
    agent.sim("unplug")
    await wait_status(csms, 1, "Available", after_seq=finishing.seq)

    seen = statuses(csms, 1)
    assert [s for s in seen if s != "SuspendedEV"] == [
        "Available",
        "Preparing",
        "Charging",
        "Charging",
        "Finishing",
        "Available",
    ]
    # SuspendedEV only while the EV had not yet asked for energy, and while paused
    assert seen.count("SuspendedEV") in (1, 2)
    assert len(csms.calls("StartTransaction")) == 1
    assert len(csms.calls("StopTransaction")) == 1


async def test_unplug_while_charging_stops_with_ev_disconnected(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    tx_id = await charging(csms, agent)
    mark = last_seq(csms)

    agent.sim("unplug")
    stop = await wait_stop(csms, tx_id)
    assert stop.payload["reason"] == "EVDisconnected"
    await wait_status(csms, 1, "Available", after_seq=mark)
    assert "Finishing" not in statuses(csms, 1, after_seq=mark)  # nothing left to finish
    assert not agent.rig.coil_is_on()


async def test_rejected_authorization_starts_no_transaction(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    csms.set_authorize_status("BAD", "Invalid")
    agent = await start_app(csms)
    boot = await registered(csms)

    # Unplugged: the swipe makes the EVSE Preparing; the refusal makes it Available again.
    agent.sim("swipe", "BAD")
    preparing = await wait_status(csms, 1, "Preparing", after_seq=boot.seq)
    refused = await wait_status(csms, 1, "Available", after_seq=preparing.seq)
    assert [c.payload["idTag"] for c in csms.calls("Authorize")] == ["BAD"]

    # Had BAD been accepted, plugging in would start its transaction now.
    agent.sim("plug")
    await wait_status(csms, 1, "Preparing", after_seq=refused.seq)
    agent.sim("swipe", "GOOD")
    start = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    assert start.payload["idTag"] == "GOOD"
    assert [c.payload["idTag"] for c in csms.calls("StartTransaction")] == ["GOOD"]


# ---------------------------------------------------------- remote control


async def test_remote_start_and_remote_stop(csms: CsmsEmulator, start_app: StartApp) -> None:
    agent = await start_app(csms, ocpp=SAMPLING)
    await registered(csms)

    result = await csms.call(CP, call.RemoteStartTransaction(id_tag="REM1", connector_id=1))
    assert result.status == "Accepted"
    await wait_status(csms, 1, "Preparing")
    agent.sim("plug")
    start = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    assert start.payload["idTag"] == "REM1"
    assert start.payload["connectorId"] == 1
    assert csms.calls("Authorize") == []  # AuthorizeRemoteTxRequests is false
    await csms.wait_answer(start, timeout_s=GUARD_S)
    tx_id = transaction_id(csms, start)
    # The first MeterValues carries the id: the agent has stored it.
    await wait_meter_values(csms, tx_id, count=1)

    busy = await csms.call(CP, call.RemoteStartTransaction(id_tag="REM2", connector_id=1))
    assert busy.status == "Rejected"
    unknown = await csms.call(CP, call.RemoteStopTransaction(transaction_id=tx_id + 1000))
    assert unknown.status == "Rejected"

    stopped = await csms.call(CP, call.RemoteStopTransaction(transaction_id=tx_id))
    assert stopped.status == "Accepted"
    stop = await wait_stop(csms, tx_id)
    assert stop.payload["reason"] == "Remote"
    assert [c.payload["idTag"] for c in csms.calls("StartTransaction")] == ["REM1"]


@pytest.mark.parametrize("connector_id", [0, 2])
async def test_remote_start_on_connector_0_or_an_unknown_one_is_rejected(
    csms: CsmsEmulator, start_app: StartApp, connector_id: int
) -> None:
    await start_app(csms)
    await registered(csms)
    result = await csms.call(
        CP, call.RemoteStartTransaction(id_tag="REM1", connector_id=connector_id)
    )
    assert result.status == "Rejected"


async def test_remote_start_without_a_connector_picks_one(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    agent.sim("plug")
    result = await csms.call(CP, call.RemoteStartTransaction(id_tag="REM1"))
    assert result.status == "Accepted"
    start = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    assert start.payload["connectorId"] == 1
    assert start.payload["idTag"] == "REM1"


async def test_remote_start_right_after_the_boot_is_accepted(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    # The CALL follows the Accepted answer on the same ordered stream: the charger is
    # registered when it reads it (OCPP 1.6 4.2: only Pending/Rejected refuse remote start).
    agent = await start_app(csms)
    boot = await csms.wait_for("BootNotification", timeout_s=GUARD_S)
    await csms.wait_answer(boot, timeout_s=GUARD_S)

    result = await csms.call(CP, call.RemoteStartTransaction(id_tag="REM1", connector_id=1))
    assert result.status == "Accepted"
    agent.sim("plug")
    start = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    assert start.payload["idTag"] == "REM1"


async def test_remote_stop_right_after_the_start_answer(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    # The CSMS may stop a transaction as soon as it has answered its StartTransaction: the
    # id it assigned reached the charger before the RemoteStopTransaction did.
    agent = await start_app(csms)
    await registered(csms)
    start = await agent.start_charging(csms, "TAG1")  # returns once the CSMS answered
    tx_id = transaction_id(csms, start)

    result = await csms.call(CP, call.RemoteStopTransaction(transaction_id=tx_id))
    assert result.status == "Accepted"
    stop = await wait_stop(csms, tx_id)
    assert stop.payload["reason"] == "Remote"


async def test_remote_start_is_authorized_when_authorize_remote_tx_requests(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    assert await change_configuration(csms, "AuthorizeRemoteTxRequests", "true") == "Accepted"

    result = await csms.call(CP, call.RemoteStartTransaction(id_tag="REM1", connector_id=1))
    assert result.status == "Accepted"
    authorize = await csms.wait_for("Authorize", timeout_s=GUARD_S)
    assert authorize.payload == {"idTag": "REM1"}
    agent.sim("plug")
    start = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    assert start.payload["idTag"] == "REM1"
    assert authorize.seq < start.seq


async def test_remote_start_refused_by_authorization_starts_nothing(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    csms.set_authorize_status("BAD", "Blocked")
    agent = await start_app(csms)
    await registered(csms)
    assert await change_configuration(csms, "AuthorizeRemoteTxRequests", "true") == "Accepted"

    await csms.call(CP, call.RemoteStartTransaction(id_tag="BAD", connector_id=1))
    authorize = await csms.wait_for("Authorize", timeout_s=GUARD_S)
    await csms.wait_answer(authorize, timeout_s=GUARD_S)
    # Once the verdict is in, the EVSE drops back to Available.
    await wait_status(csms, 1, "Available", after_seq=authorize.seq)
    agent.sim("plug")
    agent.sim("swipe", "GOOD")
    start = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    assert [c.payload["idTag"] for c in csms.calls("StartTransaction")] == ["GOOD"]
    assert start.payload["idTag"] == "GOOD"


# ------------------------------------------------------------ meter data


async def test_stop_txn_sampled_data_is_sent_as_transaction_end(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    measurands = f"{ENERGY},Voltage"
    assert await change_configuration(csms, "StopTxnSampledData", measurands) == "Accepted"
    tx_id = await charging(csms, agent)

    agent.sim("swipe", "TAG1")
    stop = await wait_stop(csms, tx_id)
    begin, sample = stop.payload["transactionData"]  # the default interval (60 s) never fired
    assert {v["context"] for v in begin["sampledValue"]} == {"Transaction.Begin"}
    values = sample["sampledValue"]
    assert {v["measurand"] for v in values} == {ENERGY, "Voltage"}
    assert {v["context"] for v in values} == {"Transaction.End"}
    (energy,) = [v for v in values if v["measurand"] == ENERGY]
    assert int(energy["value"]) == stop.payload["meterStop"]
    assert len([v for v in values if v["measurand"] == "Voltage"]) == 3  # one per phase


async def test_no_transaction_data_without_stop_txn_sampled_data(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    tx_id = await charging(csms, agent)
    agent.sim("swipe", "TAG1")
    stop = await wait_stop(csms, tx_id)
    assert "transactionData" not in stop.payload


# ------------------------------------------------------------ availability


async def test_change_availability_idle_is_accepted_and_survives_a_restart(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)

    result = await csms.call(CP, call.ChangeAvailability(connector_id=1, type="Inoperative"))
    assert result.status == "Accepted"
    await wait_status(csms, 1, "Unavailable")

    await agent.stop()
    boot1 = csms.calls("BootNotification")[-1]
    again = await start_app(csms, data_dir=agent.data_dir)
    boot2 = await registered(csms, after_seq=boot1.seq)
    assert statuses(csms, 1, after_seq=boot2.seq) == ["Unavailable"]
    refused = await csms.call(CP, call.RemoteStartTransaction(id_tag="REM1", connector_id=1))
    assert refused.status == "Rejected"  # an Unavailable EVSE does not start

    result = await csms.call(CP, call.ChangeAvailability(connector_id=1, type="Operative"))
    assert result.status == "Accepted"
    await wait_status(csms, 1, "Available", after_seq=boot2.seq)
    assert statuses(csms, 1, after_seq=boot2.seq) == ["Unavailable", "Available"]
    assert again.rig.ev.plugged is False


async def test_change_availability_during_a_transaction_is_scheduled(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    tx_id = await charging(csms, agent)

    result = await csms.call(CP, call.ChangeAvailability(connector_id=1, type="Inoperative"))
    assert result.status == "Scheduled"
    assert agent.rig.coil_is_on()  # the running transaction is not disturbed
    mark = last_seq(csms)
    agent.sim("swipe", "TAG1")
    await wait_stop(csms, tx_id)
    await wait_status(csms, 1, "Unavailable", after_seq=mark)
    assert statuses(csms, 1, after_seq=mark) == ["Unavailable"]  # not Finishing first
    assert "Unavailable" not in statuses(csms, 1)[:-1]


async def test_change_availability_of_connector_0_covers_the_station(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    await start_app(csms)
    boot = await registered(csms)

    result = await csms.call(CP, call.ChangeAvailability(connector_id=0, type="Inoperative"))
    assert result.status == "Accepted"
    down0 = await wait_status(csms, 0, "Unavailable", after_seq=boot.seq)
    down1 = await wait_status(csms, 1, "Unavailable", after_seq=boot.seq)

    result = await csms.call(CP, call.ChangeAvailability(connector_id=0, type="Operative"))
    assert result.status == "Accepted"
    await wait_status(csms, 0, "Available", after_seq=down0.seq)
    await wait_status(csms, 1, "Available", after_seq=down1.seq)

    unknown = await csms.call(CP, call.ChangeAvailability(connector_id=7, type="Inoperative"))
    assert unknown.status == "Rejected"


# ----------------------------------------------------------- configuration


async def test_get_configuration_of_all_keys(csms: CsmsEmulator, start_app: StartApp) -> None:
    await start_app(csms, ocpp={"authorization_key": "0123456789abcdef"})
    await registered(csms)

    result = await csms.call(CP, call.GetConfiguration())
    items = result.configuration_key
    assert [i["key"] for i in items] == [k.name for k in keys.KEYS]
    assert result.unknown_key is None or result.unknown_key == []
    by_key = {i["key"]: i for i in items}
    assert "value" not in by_key["AuthorizationKey"]  # a secret is never read back
    assert all("value" in i for k, i in by_key.items() if k != "AuthorizationKey")
    assert by_key["NumberOfConnectors"] == {
        "key": "NumberOfConnectors",
        "readonly": True,
        "value": "1",
    }
    assert by_key["SupportedFeatureProfiles"]["value"] == (
        "Core,LocalAuthListManagement,Reservation,RemoteTrigger,SmartCharging"
    )
    assert by_key["HeartbeatInterval"]["readonly"] is False
    assert "0123456789abcdef" not in repr(items)


async def test_get_configuration_of_specific_and_unknown_keys(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    await start_app(csms, ocpp={"meter_value_sample_interval_s": 7})
    await registered(csms)

    result = await csms.call(
        CP,
        call.GetConfiguration(key=["MeterValueSampleInterval", "NoSuchKey", "StopTxnSampledData"]),
    )
    assert result.configuration_key == [
        {"key": "MeterValueSampleInterval", "readonly": False, "value": "7"},
        {"key": "StopTxnSampledData", "readonly": False, "value": ""},
    ]
    assert result.unknown_key == ["NoSuchKey"]


async def test_change_configuration_is_persisted_across_a_restart(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms, ocpp={"meter_value_sample_interval_s": 60})
    await registered(csms)
    assert await change_configuration(csms, "MeterValueSampleInterval", "15") == "Accepted"
    assert await change_configuration(csms, "LocalPreAuthorize", "TRUE") == "Accepted"
    config = await get_configuration(csms, "MeterValueSampleInterval", "LocalPreAuthorize")
    assert config["MeterValueSampleInterval"]["value"] == "15"
    assert config["LocalPreAuthorize"]["value"] == "true"

    await agent.stop()
    boot1 = csms.calls("BootNotification")[-1]
    # The same start-up config again: the CSMS's value wins over the config file.
    await start_app(csms, ocpp={"meter_value_sample_interval_s": 60}, data_dir=agent.data_dir)
    await registered(csms, after_seq=boot1.seq)
    config = await get_configuration(csms, "MeterValueSampleInterval", "LocalPreAuthorize")
    assert config["MeterValueSampleInterval"]["value"] == "15"
    assert config["LocalPreAuthorize"]["value"] == "true"


async def test_changed_heartbeat_interval_applies_at_once(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    await start_app(csms)  # the CSMS says 300 s at boot
    boot = await registered(csms)
    assert await change_configuration(csms, "HeartbeatInterval", "1") == "Accepted"
    first = await csms.wait_for(
        "Heartbeat", predicate=lambda c: c.seq > boot.seq, timeout_s=GUARD_S
    )
    second = await csms.wait_for("Heartbeat", count=2, timeout_s=GUARD_S)
    assert second.monotonic_s - first.monotonic_s == pytest.approx(1.0, abs=0.5)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("NumberOfConnectors", "2", "Rejected"),  # read-only
        ("SupportedFeatureProfiles", "Core", "Rejected"),  # read-only
        ("NoSuchKey", "1", "NotSupported"),
        ("HeartbeatInterval", "abc", "Rejected"),
        ("HeartbeatInterval", "0", "Rejected"),  # below the minimum
        ("AuthorizeRemoteTxRequests", "maybe", "Rejected"),
        ("MeterValuesSampledData", f"{ENERGY},Temperature", "Rejected"),  # no sensor
        ("MeterValuesSampledData", "Bogus.Measurand", "Rejected"),
    ],
)
async def test_change_configuration_refusals(
    csms: CsmsEmulator, start_app: StartApp, key: str, value: str, expected: str
) -> None:
    await start_app(csms)
    await registered(csms)
    before = await csms.call(CP, call.GetConfiguration())

    assert await change_configuration(csms, key, value) == expected
    after = await csms.call(CP, call.GetConfiguration())
    assert after.configuration_key == before.configuration_key  # nothing changed


# ------------------------------------------------------- other CS commands


async def test_clear_cache_and_data_transfer(csms: CsmsEmulator, start_app: StartApp) -> None:
    await start_app(csms)
    await registered(csms)
    cleared = await csms.call(CP, call.ClearCache())
    assert cleared.status == "Accepted"
    transfer = await csms.call(CP, call.DataTransfer(vendor_id="com.example", message_id="x"))
    assert transfer.status == "UnknownVendorId"


async def test_clear_cache_forgets_cached_tags(csms: CsmsEmulator, start_app: StartApp) -> None:
    # With LocalPreAuthorize a cached Accepted tag starts without an Authorize (1.6 3.5.1);
    # after ClearCache the CSMS is asked again.
    agent = await start_app(csms, ocpp={"local_pre_authorize": True})
    await registered(csms)
    agent.sim("plug")

    async def session(id_tag: str) -> None:
        before = len(csms.calls("StartTransaction"))
        agent.sim("swipe", id_tag)
        start = await csms.wait_for("StartTransaction", count=before + 1, timeout_s=GUARD_S)
        assert start.payload["idTag"] == id_tag
        agent.sim("swipe", id_tag)
        await csms.wait_for("StopTransaction", count=before + 1, timeout_s=GUARD_S)

    await session("TAG1")  # Authorize, cached
    await session("TAG1")  # from the cache
    await session("TAG2")  # Authorize; its start also proves TAG1's answers were cached
    assert [c.payload["idTag"] for c in csms.calls("Authorize")] == ["TAG1", "TAG2"]

    assert (await csms.call(CP, call.ClearCache())).status == "Accepted"
    await session("TAG1")
    assert [c.payload["idTag"] for c in csms.calls("Authorize")] == ["TAG1", "TAG2", "TAG1"]


async def test_unlock_connector_during_a_transaction_stops_it(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    tx_id = await charging(csms, agent)

    result = await csms.call(CP, call.UnlockConnector(connector_id=1))
    assert result.status in ("Unlocked", "NotSupported")  # the sim EVSE has no lock
    stop = await wait_stop(csms, tx_id)
    assert stop.payload["reason"] == "UnlockCommand"
    assert not agent.rig.coil_is_on()


async def reset_during_a_transaction(
    csms: CsmsEmulator, start_app: StartApp, kind: str
) -> tuple[RunningApp, int]:
    """Reset while charging; return the exited App and the transaction's CSMS id."""
    agent = await start_app(csms)
    await registered(csms)
    tx_id = await charging(csms, agent)

    result = await csms.call(CP, call.Reset(type=kind))
    assert result.status == "Accepted"
    assert await agent.exited() == ExitReason.RESET
    assert not agent.rig.coil_is_on()
    return agent, tx_id


async def restart_and_check_stop_delivered_once(
    csms: CsmsEmulator, start_app: StartApp, agent: RunningApp, tx_id: int, reason: str
) -> None:
    """Restart on the same data: the stop arrives (if it was not before), and only once: a
    new session's StartTransaction is queued behind any resend of it."""
    last_boot = csms.calls("BootNotification")[-1]
    again = await start_app(csms, data_dir=agent.data_dir)
    await registered(csms, after_seq=last_boot.seq)
    stop = await wait_stop(csms, tx_id)
    assert stop.payload["reason"] == reason
    next_start = await again.start_charging(csms, "TAG2")
    stops = [c for c in csms.calls("StopTransaction") if c.seq < next_start.seq]
    assert [c.payload["transactionId"] for c in stops] == [tx_id]


async def test_soft_reset_sends_the_stop_before_restarting(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    # OCPP 1.6 5.14: "After receipt of a Reset.req, the Charge Point SHALL send a
    # StopTransaction.req for any ongoing transaction before performing the reset";
    # a soft reset stops them gracefully. (Queued if no StopTransaction.conf comes.)
    agent, tx_id = await reset_during_a_transaction(csms, start_app, "Soft")
    stops = [c for c in csms.calls("StopTransaction") if c.payload["transactionId"] == tx_id]
    assert [c.payload["reason"] for c in stops] == ["SoftReset"]
    await restart_and_check_stop_delivered_once(csms, start_app, agent, tx_id, "SoftReset")


async def test_hard_reset_stops_the_transaction_and_ends_run(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    # A hard reset need not stop gracefully; the stop may follow the restart (1.6 5.14).
    agent, tx_id = await reset_during_a_transaction(csms, start_app, "Hard")
    await restart_and_check_stop_delivered_once(csms, start_app, agent, tx_id, "HardReset")


# ------------------------------------------------------------------ faults


async def test_meter_fault_while_charging(csms: CsmsEmulator, start_app: StartApp) -> None:
    agent = await start_app(csms)
    await registered(csms)
    tx_id = await charging(csms, agent)
    charging_since = status_calls(csms, 1)[-1]

    agent.sim("fault", "meter")
    faulted = await wait_status(
        csms, 1, "Faulted", after_seq=charging_since.seq, timeout_s=FAULT_GUARD_S
    )
    assert faulted.payload["errorCode"] == "PowerMeterFailure"
    assert not agent.rig.coil_is_on()

    agent.sim("clear")
    await wait_status(csms, 1, "Charging", after_seq=faulted.seq, timeout_s=FAULT_GUARD_S)
    assert agent.rig.coil_is_on()
    assert not [c for c in csms.calls("StopTransaction") if c.payload["transactionId"] == tx_id]


async def test_welded_contactor_is_a_power_switch_failure(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    boot = await registered(csms)

    agent.sim("fault", "contactor-welded")
    faulted = await wait_status(csms, 1, "Faulted", after_seq=boot.seq)
    assert faulted.payload["errorCode"] == "PowerSwitchFailure"
    agent.sim("clear")
    await wait_status(csms, 1, "Available", after_seq=faulted.seq)


async def test_cp_error_while_charging_is_other_error(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    agent = await start_app(csms)
    await registered(csms)
    await charging(csms, agent)
    charging_since = status_calls(csms, 1)[-1]

    agent.sim("fault", "cp-error")
    faulted = await wait_status(csms, 1, "Faulted", after_seq=charging_since.seq)
    assert faulted.payload["errorCode"] == "OtherError"
    assert not agent.rig.coil_is_on()
    agent.sim("clear")
    await wait_status(csms, 1, "Charging", after_seq=faulted.seq)
    assert agent.rig.coil_is_on()
