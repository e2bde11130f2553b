"""GpioContactor (the real driver) on MockFactory pins: the coil wired to the mirror contact."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from gpiozero.pins.mock import MockConnectedPin, MockFactory, MockPin

from hal.gpio.contactor import STUCK_OPEN, WELDED, GpioContactor
from hal.types import FaultCode, FaultReport

COIL, FEEDBACK = 17, 27
GUARD_S = 5.0


@dataclass
class Bench:
    contactor: GpioContactor
    coil: MockConnectedPin
    contacts: MockPin
    faults: list[FaultReport] = field(default_factory=list)
    fault_seen: asyncio.Event = field(default_factory=asyncio.Event)

    def on_fault(self, report: FaultReport) -> None:
        self.faults.append(report)
        self.fault_seen.set()

    def cut_wire(self, contacts_closed: bool) -> None:
        """Break the coil-to-mirror wiring and hold the contacts where they are told."""
        self.coil.input_pin = None
        if contacts_closed:
            self.contacts.drive_high()
        else:
            self.contacts.drive_low()

    async def settled(self) -> bool:
        return await asyncio.wait_for(self.contactor.wait_settled(), GUARD_S)


@pytest.fixture
async def bench() -> AsyncIterator[Bench]:
    factory = MockFactory()
    contacts = factory.pin(FEEDBACK)
    coil = factory.pin(COIL, pin_class=MockConnectedPin, input_pin=contacts)
    contactor = GpioContactor(
        coil_pin=COIL, feedback_pin=FEEDBACK, pin_factory=factory, feedback_settle_s=0.02
    )
    b = Bench(contactor, coil, contacts)
    await contactor.start(b.on_fault)
    try:
        yield b
    finally:
        await contactor.stop()
        factory.reset()


async def test_switch_on_and_off_feedback_follows_no_fault(bench: Bench) -> None:
    assert await bench.settled()
    bench.contactor.switch(True)
    assert bench.contactor.is_on
    assert bench.coil.state  # the coil pin is driven at once, synchronously
    assert bench.contacts.state
    assert await bench.settled()
    assert bench.contactor.feedback_closed is True

    bench.contactor.switch(True)  # idempotent
    bench.contactor.switch(False)
    assert not bench.coil.state
    assert await bench.settled()
    assert bench.faults == []


async def test_welded_contacts_fault_then_clear_when_they_open(bench: Bench) -> None:
    bench.contactor.switch(True)
    assert await bench.settled()
    bench.cut_wire(contacts_closed=True)  # contacts weld shut
    bench.contactor.switch(False)
    assert not await bench.settled()
    assert bench.faults == [FaultReport(FaultCode.POWER_SWITCH_FAILURE, True, WELDED)]
    assert not bench.coil.state
    assert not bench.contactor.is_on

    bench.contacts.drive_low()  # the weld breaks
    assert await bench.settled()
    assert len(bench.faults) == 2
    assert bench.faults[1].code is FaultCode.POWER_SWITCH_FAILURE
    assert not bench.faults[1].active


async def test_stuck_open_faults_forces_coil_off_and_clears_on_off_command(bench: Bench) -> None:
    bench.cut_wire(contacts_closed=False)  # contacts cannot close
    bench.contactor.switch(True)
    assert bench.coil.state
    assert not await bench.settled()
    assert bench.faults == [FaultReport(FaultCode.POWER_SWITCH_FAILURE, True, STUCK_OPEN)]
    assert not bench.coil.state  # forced off
    assert not bench.contactor.is_on
    assert bench.contactor.fault_active

    bench.contactor.switch(False)  # the controller reacts: now the contacts agree
    assert await bench.settled()
    assert [f.active for f in bench.faults] == [True, False]


async def test_contacts_opening_while_on_is_a_fault(bench: Bench) -> None:
    bench.contactor.switch(True)
    assert await bench.settled()
    bench.cut_wire(contacts_closed=False)  # no command: the mirror drops by itself
    # The edge arrives through the gpiozero callback, the check after the settle time.
    await asyncio.wait_for(bench.fault_seen.wait(), GUARD_S)
    assert bench.faults == [FaultReport(FaultCode.POWER_SWITCH_FAILURE, True, STUCK_OPEN)]
    assert not bench.coil.state


async def test_contact_bounce_within_settle_time_is_not_a_fault(bench: Bench) -> None:
    bench.contactor.switch(True)
    bench.cut_wire(contacts_closed=False)
    bench.contacts.drive_high()  # bounced back before the settle time
    assert await bench.settled()
    assert bench.faults == []


async def test_stop_turns_coil_off_and_releases_pins() -> None:
    factory = MockFactory()
    contacts = factory.pin(FEEDBACK)
    coil = factory.pin(COIL, pin_class=MockConnectedPin, input_pin=contacts)
    contactor = GpioContactor(coil_pin=COIL, feedback_pin=FEEDBACK, pin_factory=factory)
    await contactor.start(lambda report: None)
    contactor.switch(True)
    assert coil.state
    await contactor.stop()
    await contactor.stop()  # idempotent
    assert not coil.state
    contactor.switch(True)  # ignored after stop
    assert not coil.state
    # The pins are free again: a new driver can claim them.
    again = GpioContactor(coil_pin=COIL, feedback_pin=FEEDBACK, pin_factory=factory)
    await again.stop()


async def test_without_feedback_there_is_no_supervision() -> None:
    factory = MockFactory()
    faults: list[FaultReport] = []
    contactor = GpioContactor(coil_pin=COIL, feedback_pin=None, pin_factory=factory)
    try:
        await contactor.start(faults.append)
        contactor.switch(True)
        assert factory.pin(COIL).state
        assert contactor.feedback_closed is None
        assert await contactor.wait_settled()
        assert faults == []
    finally:
        await contactor.stop()


async def test_active_low_coil() -> None:
    factory = MockFactory()
    contactor = GpioContactor(
        coil_pin=COIL, feedback_pin=None, pin_factory=factory, coil_active_high=False
    )
    try:
        assert factory.pin(COIL).state  # de-energised = high
        contactor.switch(True)
        assert not factory.pin(COIL).state
    finally:
        await contactor.stop()


RCD, ESTOP = 22, 23


@pytest.fixture
async def safety_bench() -> AsyncIterator[Bench]:
    factory = MockFactory()
    contacts = factory.pin(FEEDBACK)
    coil = factory.pin(COIL, pin_class=MockConnectedPin, input_pin=contacts)
    contactor = GpioContactor(
        coil_pin=COIL,
        feedback_pin=FEEDBACK,
        pin_factory=factory,
        feedback_settle_s=0.02,
        rcd_pin=RCD,
        estop_pin=ESTOP,
        estop_active_high=False,  # a button to ground with a pull-up: low = pressed
    )
    b = Bench(contactor, coil, contacts)
    await contactor.start(b.on_fault)
    try:
        yield b
    finally:
        await contactor.stop()
        factory.reset()


async def test_rcd_trip_opens_the_coil_in_the_callback_and_release_clears(
    safety_bench: Bench,
) -> None:
    bench = safety_bench
    rcd = bench.contactor._safety[FaultCode.GROUND_FAILURE].pin
    bench.contactor.switch(True)
    assert await bench.settled()
    rcd.drive_high()
    assert not bench.coil.state  # synchronously, before the loop ran once
    assert not bench.contactor.is_on
    await asyncio.wait_for(bench.fault_seen.wait(), GUARD_S)
    assert bench.faults == [FaultReport(FaultCode.GROUND_FAILURE, True, "RCD tripped")]

    bench.contactor.switch(True)  # refused while the RCD is tripped
    assert not bench.coil.state
    assert await bench.settled()  # contacts follow the (held-off) coil: no switch fault

    bench.fault_seen.clear()
    rcd.drive_low()
    await asyncio.wait_for(bench.fault_seen.wait(), GUARD_S)
    assert bench.faults[1] == FaultReport(FaultCode.GROUND_FAILURE, False, "released")
    assert not bench.coil.state  # stays off until commanded again
    bench.contactor.switch(True)
    assert bench.coil.state


async def test_emergency_stop_active_low_reports_emergency_stop(safety_bench: Bench) -> None:
    bench = safety_bench
    estop = bench.contactor._safety[FaultCode.EMERGENCY_STOP].pin
    assert estop.state  # pulled up: not pressed
    bench.contactor.switch(True)
    estop.drive_low()  # pressed
    assert not bench.coil.state
    await asyncio.wait_for(bench.fault_seen.wait(), GUARD_S)
    assert bench.faults == [FaultReport(FaultCode.EMERGENCY_STOP, True, "emergency stop")]
    assert bench.contactor.safety_input_active
    estop.drive_high()
    bench.fault_seen.clear()
    await asyncio.wait_for(bench.fault_seen.wait(), GUARD_S)
    assert [(f.code, f.active) for f in bench.faults] == [
        (FaultCode.EMERGENCY_STOP, True),
        (FaultCode.EMERGENCY_STOP, False),
    ]
    assert not any(f.code is FaultCode.POWER_SWITCH_FAILURE for f in bench.faults)


async def test_safety_input_active_at_start_is_reported() -> None:
    factory = MockFactory()
    faults: list[FaultReport] = []
    seen = asyncio.Event()
    contactor = GpioContactor(coil_pin=COIL, feedback_pin=None, pin_factory=factory, rcd_pin=RCD)
    factory.pin(RCD).drive_high()  # tripped before the agent starts
    try:
        await contactor.start(lambda r: (faults.append(r), seen.set()))
        await asyncio.wait_for(seen.wait(), GUARD_S)
        assert faults == [FaultReport(FaultCode.GROUND_FAILURE, True, "RCD tripped")]
        contactor.switch(True)
        assert not factory.pin(COIL).state
    finally:
        await contactor.stop()
