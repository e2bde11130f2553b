"""GpioStatusIndicator on mock pins: one lamp per status, the fault lamp wins."""

from __future__ import annotations

import pytest
from gpiozero.pins.mock import MockFactory

from hal.gpio.indicator import GpioStatusIndicator

AVAILABLE, OCCUPIED, CHARGING, FAULT = 19, 20, 21, 26


@pytest.mark.parametrize(
    ("status", "faulted", "lit"),
    [
        ("Available", False, {AVAILABLE}),
        ("Preparing", False, {OCCUPIED}),
        ("SuspendedEV", False, {OCCUPIED}),
        ("Charging", False, {CHARGING}),
        ("Faulted", True, {FAULT}),
        ("Charging", True, {FAULT}),  # a fault during a session
        ("Unavailable", False, set()),
        ("SomethingNew", False, set()),
    ],
)
async def test_one_lamp_per_status(status: str, faulted: bool, lit: set[int]) -> None:
    factory = MockFactory()
    indicator = GpioStatusIndicator(
        pin_factory=factory,
        available_pin=AVAILABLE,
        occupied_pin=OCCUPIED,
        charging_pin=CHARGING,
        fault_pin=FAULT,
    )
    try:
        indicator.show("Charging", False)  # something else lit before
        indicator.show(status, faulted)
        on = {pin for pin in (AVAILABLE, OCCUPIED, CHARGING, FAULT) if factory.pin(pin).state}
        assert on == lit
    finally:
        await indicator.stop()
    assert not any(factory.pin(p).state for p in (AVAILABLE, OCCUPIED, CHARGING, FAULT))


async def test_active_low_and_missing_lamps() -> None:
    factory = MockFactory()
    indicator = GpioStatusIndicator(pin_factory=factory, fault_pin=FAULT, active_high=False)
    try:
        assert factory.pin(FAULT).state  # off = high
        indicator.show("Available", False)  # no lamp for it: nothing happens
        assert indicator.lit == frozenset()
        indicator.show("Faulted", True)
        assert not factory.pin(FAULT).state
        assert indicator.lit == {"fault"}
    finally:
        await indicator.stop()


def test_no_lamp_is_refused() -> None:
    with pytest.raises(ValueError, match="lamp"):
        GpioStatusIndicator(pin_factory=MockFactory())
