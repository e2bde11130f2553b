"""The whole agent on a GPIO board: pilot, contactor and lock are the real gpiozero drivers
(PWM pin, bit-banged SPI ADC, coil + mirror contact, lock motor + switch on mock pins), the
simulated EV sits behind the mock ADC, the meter is Modbus TCP against that same EV."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call

from agent.app import App, backend_validator
from agent.config import parse_config, sim_defaults
from agent.evse.iec61851 import duty_for_current
from hal.registry import default_registry
from hal.sim.cp_adc import PP_NOMINAL_OHM, SimGpioBoard
from hil.csms import CsmsEmulator, ReceivedCall
from tests.conftest import CHARGE_POINT_ID, FAST_CSMS_OPTIONS, GUARD_S, registered

DUTY_32A = 32 / 0.6


@dataclass
class Station:
    app: App
    task: asyncio.Task[Any]
    board: SimGpioBoard


@pytest.fixture
async def station(csms: CsmsEmulator, tmp_path: Path) -> AsyncIterator[Station]:
    board = SimGpioBoard()
    await board.start()
    data = sim_defaults(tmp_path / "agent", csms.url, CHARGE_POINT_ID)
    data["csms"].update(FAST_CSMS_OPTIONS)
    data["ocpp"] = {"meter_value_sample_interval_s": 1}
    data["evse"] = [{"id": 1, **board.evse_tables()}]
    config = parse_config(data, backend_validator(default_registry()))
    app = App(config, real_pin_factory=board.factory)
    task = asyncio.create_task(app.run())
    try:
        await asyncio.wait_for(app.started.wait(), GUARD_S)
        await registered(csms)
        yield Station(app, task, board)
    finally:
        try:
            app.stop()
            await asyncio.wait_for(task, GUARD_S)
        finally:
            await board.stop()


def _status(status: str, error_code: str = "NoError") -> Any:
    def match(c: ReceivedCall) -> bool:
        p = c.payload
        return p["connectorId"] == 1 and p["status"] == status and p["errorCode"] == error_code

    return match


async def test_a_session_charges_and_stops(csms: CsmsEmulator, station: Station) -> None:
    board = station.board
    board.ev.plug()
    await csms.wait_for("StatusNotification", predicate=_status("Preparing"), timeout_s=GUARD_S)
    assert not board.lock.switch.state  # nothing locked before a session
    assert board.lamps_lit() == {"occupied"}

    await csms.call(CHARGE_POINT_ID, call.RemoteStartTransaction(id_tag="GPIO", connector_id=1))
    start = await csms.wait_for("StartTransaction", timeout_s=GUARD_S)
    await csms.wait_for("StatusNotification", predicate=_status("Charging"), timeout_s=GUARD_S)
    # locked before the contactor closed; PWM at the EVSE limit on the pin
    assert board.lock.switch.state
    assert board.coil_is_on() and board.contacts_closed()
    assert board.lamps_lit() == {"charging"}
    assert board.cp.pwm_pin.state == pytest.approx(DUTY_32A / 100, abs=0.001)
    pilot = station.app.station.controllers[1].hw.pilot if station.app.station else None
    assert pilot is not None and pilot.cable_max_current_a == 32.0  # type: ignore[attr-defined]

    # energy flows: the meter (fed from the EV) counts up during the transaction
    await csms.wait_for(
        "MeterValues",
        predicate=lambda c: any(
            float(v["value"]) > start.payload["meterStart"]
            for mv in c.payload["meterValue"]
            for v in mv["sampledValue"]
            if v.get("measurand", "Energy.Active.Import.Register")
            == "Energy.Active.Import.Register"
        ),
        timeout_s=GUARD_S,
    )

    answer = await csms.wait_answer(start, timeout_s=GUARD_S)
    tx_id = answer["transactionId"]  # type: ignore[index]
    await csms.call(CHARGE_POINT_ID, call.RemoteStopTransaction(transaction_id=tx_id))
    stop = await csms.wait_for("StopTransaction", timeout_s=GUARD_S)
    assert stop.payload["meterStop"] > start.payload["meterStart"]
    assert not board.coil_is_on()
    await csms.wait_for("StatusNotification", predicate=_status("Finishing"), timeout_s=GUARD_S)
    assert not board.lock.switch.state  # unlocked after the contactor opened

    board.ev.unplug()
    await csms.wait_for(
        "StatusNotification",
        predicate=lambda c: c.seq > stop.seq and _status("Available")(c),
        timeout_s=GUARD_S,
    )
    assert board.lamps_lit() == {"available"}


async def test_ev_pausing_opens_the_contactor(csms: CsmsEmulator, station: Station) -> None:
    board = station.board
    board.ev.plug()
    await csms.call(CHARGE_POINT_ID, call.RemoteStartTransaction(id_tag="GPIO", connector_id=1))
    charging = await csms.wait_for(
        "StatusNotification", predicate=_status("Charging"), timeout_s=GUARD_S
    )
    board.ev.pause()  # C -> B on the ADC
    await csms.wait_for(
        "StatusNotification",
        predicate=lambda c: c.seq > charging.seq and _status("SuspendedEV")(c),
        timeout_s=GUARD_S,
    )
    assert not board.coil_is_on()
    assert board.lock.switch.state  # the session goes on: still locked


async def test_emergency_stop_is_other_error_with_vendor_code(
    csms: CsmsEmulator, station: Station
) -> None:
    board = station.board
    board.ev.plug()
    await csms.call(CHARGE_POINT_ID, call.RemoteStartTransaction(id_tag="GPIO", connector_id=1))
    await csms.wait_for("StatusNotification", predicate=_status("Charging"), timeout_s=GUARD_S)

    board.pin(SimGpioBoard.ESTOP_PIN).drive_high()  # pressed
    assert not board.coil_is_on()  # in the pin callback, before the loop ran
    faulted = await csms.wait_for(
        "StatusNotification", predicate=_status("Faulted", "OtherError"), timeout_s=GUARD_S
    )
    assert faulted.payload["vendorErrorCode"] == "EmergencyStop"
    assert board.lamps_lit() == {"fault"}

    board.pin(SimGpioBoard.ESTOP_PIN).drive_low()  # released
    await csms.wait_for(
        "StatusNotification",
        predicate=lambda c: c.seq > faulted.seq and c.payload["errorCode"] == "NoError",
        timeout_s=GUARD_S,
    )


async def test_jammed_lock_is_a_lock_failure_and_never_closes(
    csms: CsmsEmulator, station: Station
) -> None:
    board = station.board
    board.lock.jammed = True
    board.ev.plug()
    await csms.call(CHARGE_POINT_ID, call.RemoteStartTransaction(id_tag="GPIO", connector_id=1))
    faulted = await csms.wait_for(
        "StatusNotification",
        predicate=_status("Faulted", "ConnectorLockFailure"),
        timeout_s=GUARD_S,
    )
    assert not board.coil_is_on()
    assert not any(state for _, state in board.pin(SimGpioBoard.COIL_PIN).states[1:])

    board.lock.jammed = False
    board.ev.unplug()  # clears the lock failure
    await csms.wait_for(
        "StatusNotification",
        predicate=lambda c: c.seq > faulted.seq and c.payload["errorCode"] == "NoError",
        timeout_s=GUARD_S,
    )


async def test_lock_forced_open_while_charging_opens_the_contactor(
    csms: CsmsEmulator, station: Station
) -> None:
    board = station.board
    board.ev.plug()
    await csms.call(CHARGE_POINT_ID, call.RemoteStartTransaction(id_tag="GPIO", connector_id=1))
    charging = await csms.wait_for(
        "StatusNotification", predicate=_status("Charging"), timeout_s=GUARD_S
    )
    assert board.coil_is_on()

    board.lock.switch.drive_low()  # the position switch: no longer locked (forced, broken)
    faulted = await csms.wait_for(
        "StatusNotification",
        predicate=lambda c: c.seq > charging.seq and _status("Faulted", "ConnectorLockFailure")(c),
        timeout_s=GUARD_S,
    )
    assert not board.coil_is_on()

    board.lock.switch.drive_high()  # locked again: the session goes on
    await csms.wait_for(
        "StatusNotification",
        predicate=lambda c: c.seq > faulted.seq and _status("Charging")(c),
        timeout_s=GUARD_S,
    )
    assert board.coil_is_on()


async def test_a_13_a_cable_caps_the_offered_current(csms: CsmsEmulator, station: Station) -> None:
    board = station.board
    board.cp.cable_ohm = PP_NOMINAL_OHM[13.0]  # PP: a 13 A cable in the socket
    board.ev.plug()
    await csms.wait_for("StatusNotification", predicate=_status("Preparing"), timeout_s=GUARD_S)
    await csms.call(CHARGE_POINT_ID, call.RemoteStartTransaction(id_tag="GPIO", connector_id=1))
    await csms.wait_for("StatusNotification", predicate=_status("Charging"), timeout_s=GUARD_S)
    pwm = {round(state.state * 100, 1) for state in board.cp.pwm_pin.states if 0 < state.state < 1}
    assert pwm == {duty_for_current(13.0)}, (
        pwm
    )  # the PWM never offered more than the cable's rating


async def test_an_invalid_cable_never_charges(csms: CsmsEmulator, station: Station) -> None:
    board = station.board
    board.cp.cable_ohm = 10_000.0  # PP reads no valid cable
    board.ev.plug()
    faulted = await csms.wait_for(
        "StatusNotification", predicate=_status("Faulted", "OtherError"), timeout_s=GUARD_S
    )
    assert faulted.payload["vendorErrorCode"] == "CableFault"
    answer = await csms.call(
        CHARGE_POINT_ID, call.RemoteStartTransaction(id_tag="GPIO", connector_id=1)
    )
    assert answer.status == "Rejected"
    assert not board.coil_is_on()
    assert all(not 0 < s.state < 1 for s in board.cp.pwm_pin.states)  # never any PWM


async def test_unlock_connector_stops_and_releases_the_lock(
    csms: CsmsEmulator, station: Station
) -> None:
    board = station.board
    board.ev.plug()
    await csms.call(CHARGE_POINT_ID, call.RemoteStartTransaction(id_tag="GPIO", connector_id=1))
    await csms.wait_for("StatusNotification", predicate=_status("Charging"), timeout_s=GUARD_S)
    assert board.lock.switch.state

    answer = await csms.call(CHARGE_POINT_ID, call.UnlockConnector(connector_id=1))
    assert answer.status == "Unlocked"
    stop = await csms.wait_for("StopTransaction", timeout_s=GUARD_S)
    assert stop.payload["reason"] == "UnlockCommand"
    assert not board.coil_is_on()
    assert not board.lock.switch.state  # the cable can be taken out
