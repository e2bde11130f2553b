"""What an EVSE controller puts into a sample: SoC from a pilot that knows it (the optional
``hal.pilot.StateOfChargeSource``), the offered current, the configured measurands."""

from __future__ import annotations

from typing import Any, cast

from agent.clock import Clock
from agent.events import MeterReading, ReadingContext, SampledValue
from agent.evse.controller import EvseController, EvseHardware
from agent.settings import Settings
from hal.pilot import StateOfChargeSource

READING = MeterReading(
    energy_import_wh=1234.0,
    power_w=0.0,
    current_a=(0.0,),
    voltage_v=(230.0,),
    frequency_hz=None,
    energy_export_wh=None,
    monotonic_s=0.0,
)
SOC = SampledValue("SoC", 81.3, "Percent", location="EV")


class FakeMeter:
    latest: MeterReading | None = READING


class SocPilot:
    """A pilot backend that knows the EV's state of charge (like a CHAdeMO one)."""

    def __init__(self, soc_pct: float | None) -> None:
        self._soc_pct = soc_pct

    @property
    def soc_pct(self) -> float | None:
        return self._soc_pct


class PlainPilot:
    """A pilot that knows nothing about the EV's battery (PWM only)."""


class MemoryBackend:
    async def set(self, key: str, value: Any) -> None:
        del key, value


def controller(pilot: object, measurands: list[str]) -> EvseController:
    never = cast(Any, None)  # not touched while only sampling
    return EvseController(
        evse_id=1,
        hardware=EvseHardware(
            meter=cast(Any, FakeMeter()), contactor=never, pilot=cast(Any, pilot)
        ),
        journal=never,
        settings=Settings(MemoryBackend(), {}, {"meter_values_sampled_data": measurands}),
        authorizer=never,
        clock=Clock(),
        on_status=lambda _: None,
        on_tx_message=lambda: None,
    )


def test_the_fake_pilots_are_what_they_claim() -> None:
    assert isinstance(SocPilot(50.0), StateOfChargeSource)
    assert not isinstance(PlainPilot(), StateOfChargeSource)


def test_soc_from_a_pilot_that_knows_it() -> None:
    ctl = controller(SocPilot(81.3), ["SoC", "Energy.Active.Import.Register"])
    sample = ctl.sample_now(ReadingContext.TRIGGER)
    assert sample is not None
    assert sample.values == (SOC, SampledValue("Energy.Active.Import.Register", 1234, "Wh"))


def test_no_soc_while_the_ev_has_not_reported_one() -> None:
    sample = controller(SocPilot(None), ["SoC"]).sample_now(ReadingContext.TRIGGER)
    assert sample is not None and sample.values == ()


def test_no_soc_from_a_pilot_without_it() -> None:
    sample = controller(PlainPilot(), ["SoC"]).sample_now(ReadingContext.TRIGGER)
    assert sample is not None and sample.values == ()


def test_explicit_measurands_time_and_context() -> None:
    ctl = controller(SocPilot(81.3), ["Energy.Active.Import.Register"])
    sample = ctl.sample_now(
        ReadingContext.SAMPLE_CLOCK,
        measurands=["SoC", "Current.Offered"],
        timestamp="2030-01-01T00:15:00.000Z",
    )
    assert sample is not None
    assert sample.timestamp == "2030-01-01T00:15:00.000Z"
    assert sample.context is ReadingContext.SAMPLE_CLOCK
    # no transaction: nothing is offered to the EV
    assert sample.values == (SOC, SampledValue("Current.Offered", 0.0, "A"))
    assert ctl.offered_current_a == 0.0


def test_no_sample_before_the_meter_answered() -> None:
    ctl = controller(SocPilot(81.3), ["SoC"])
    meter = cast(FakeMeter, ctl.hw.meter)
    meter.latest = None
    assert ctl.sample_now(ReadingContext.TRIGGER) is None
