"""Meter readings -> sampled values: which measurands appear, with which phases and units."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ocpp.v16 import enums

from agent.events import MeterReading, ReadingContext, SampledValue
from agent.evse.sampling import (
    build_sample,
    parse_measurand,
    sampled_values,
    station_sample,
)
from agent.settings import MEASURAND_CHOICES

E_IMP = "Energy.Active.Import.Register"
E_EXP = "Energy.Active.Export.Register"
POWER = "Power.Active.Import"
I_IMP = "Current.Import"
I_OFF = "Current.Offered"
VOLT = "Voltage"
FREQ = "Frequency"
P_OFF = "Power.Offered"
SOC = "SoC"


def reading(
    *,
    energy_import_wh: float = 12345.6,
    power_w: float = 7360.44,
    current_a: tuple[float, ...] = (10.123, 10.456, 10.789),
    voltage_v: tuple[float, ...] = (230.04, 231.06, 229.96),
    frequency_hz: float | None = 50.014,
    energy_export_wh: float | None = None,
    power_phase_w: tuple[float, ...] = (),
) -> MeterReading:
    return MeterReading(
        energy_import_wh=energy_import_wh,
        power_w=power_w,
        current_a=current_a,
        voltage_v=voltage_v,
        frequency_hz=frequency_hz,
        energy_export_wh=energy_export_wh,
        monotonic_s=1.0,
        power_phase_w=power_phase_w,
    )


SINGLE_PHASE = reading(current_a=(15.5,), voltage_v=(229.9,))


@pytest.mark.parametrize(
    ("meter", "measurands", "expected"),
    [
        pytest.param(reading(), [E_IMP], [SampledValue(E_IMP, 12346, "Wh")], id="energy-whole-wh"),
        pytest.param(reading(), [E_EXP], [], id="export-omitted-when-none"),
        pytest.param(
            reading(energy_export_wh=12.6), [E_EXP], [SampledValue(E_EXP, 13, "Wh")], id="export"
        ),
        pytest.param(reading(), [POWER], [SampledValue(POWER, 7360.4, "W")], id="power"),
        pytest.param(
            reading(power_w=-500.0), [POWER], [SampledValue(POWER, 0.0, "W")], id="export-power-0"
        ),
        pytest.param(
            reading(),
            [I_IMP],
            [
                SampledValue(I_IMP, 10.12, "A", "L1"),
                SampledValue(I_IMP, 10.46, "A", "L2"),
                SampledValue(I_IMP, 10.79, "A", "L3"),
            ],
            id="current-per-phase",
        ),
        pytest.param(
            SINGLE_PHASE, [I_IMP], [SampledValue(I_IMP, 15.5, "A", "L1")], id="current-1-phase"
        ),
        pytest.param(
            reading(),
            [VOLT],
            [
                SampledValue(VOLT, 230.0, "V", "L1-N"),
                SampledValue(VOLT, 231.1, "V", "L2-N"),
                SampledValue(VOLT, 230.0, "V", "L3-N"),
            ],
            id="voltage-per-phase",
        ),
        pytest.param(
            SINGLE_PHASE, [VOLT], [SampledValue(VOLT, 229.9, "V", "L1-N")], id="voltage-1-phase"
        ),
        pytest.param(reading(), [FREQ], [SampledValue(FREQ, 50.01, "Hz")], id="frequency"),
        pytest.param(reading(frequency_hz=None), [FREQ], [], id="frequency-omitted-when-none"),
        pytest.param(reading(), [I_OFF], [SampledValue(I_OFF, 16.0, "A")], id="offered"),
        pytest.param(reading(), [SOC, "Temperature"], [], id="unsupported-omitted"),
        pytest.param(reading(), [], [], id="nothing-asked"),
        pytest.param(
            reading(),
            [I_OFF, E_IMP],
            [SampledValue(I_OFF, 16.0, "A"), SampledValue(E_IMP, 12346, "Wh")],
            id="request-order-kept",
        ),
    ],
)
def test_sampled_values(
    meter: MeterReading, measurands: list[str], expected: list[SampledValue]
) -> None:
    assert list(sampled_values(meter, measurands, offered_current_a=16.04)) == expected


def test_build_sample_stamps_context_and_time() -> None:
    sample = build_sample(
        reading(),
        [E_IMP, I_OFF],
        context=ReadingContext.TRANSACTION_END,
        timestamp="2026-11-24T19:00:00.000Z",
        offered_current_a=0.0,
    )
    assert sample.context is ReadingContext.TRANSACTION_END
    assert sample.timestamp == "2026-11-24T19:00:00.000Z"
    assert sample.values == (SampledValue(E_IMP, 12346, "Wh"), SampledValue(I_OFF, 0.0, "A"))


finite = st.floats(min_value=-1e6, max_value=1e9, allow_nan=False, allow_infinity=False)
readings = st.builds(
    MeterReading,
    energy_import_wh=st.floats(min_value=0, max_value=1e9),
    power_w=finite,
    current_a=st.lists(finite, min_size=1, max_size=3).map(tuple),
    voltage_v=st.lists(finite, min_size=1, max_size=3).map(tuple),
    frequency_hz=st.none() | st.floats(min_value=45, max_value=65),
    energy_export_wh=st.none() | st.floats(min_value=0, max_value=1e9),
    monotonic_s=st.just(0.0),
    power_phase_w=st.lists(finite, max_size=3).map(tuple),
)


@given(
    meter=readings,
    measurands=st.lists(st.sampled_from(MEASURAND_CHOICES), unique=True),
    offered_a=st.floats(min_value=0, max_value=80),
    soc=st.none() | st.floats(min_value=0, max_value=100),
)
def test_only_requested_measurands_in_1_6_vocabulary(
    meter: MeterReading, measurands: list[str], offered_a: float, soc: float | None
) -> None:
    values = sampled_values(meter, measurands, offered_current_a=offered_a, soc_pct=soc)
    units = {u.value for u in enums.UnitOfMeasure} | {"Hz"}
    phases = {p.value for p in enums.Phase}
    locations = {loc.value for loc in enums.Location}
    requested = {parse_measurand(m)[0] for m in measurands}
    for v in values:
        assert v.measurand in requested
        assert v.measurand in {m.value for m in enums.Measurand}
        assert v.unit in units
        assert v.phase is None or v.phase in phases
        assert v.location is None or v.location in locations
    assert len({(v.measurand, v.phase) for v in values}) == len(values)  # no duplicates
    per_phase = [v for v in values if v.measurand == I_IMP]
    if I_IMP in measurands:
        assert len(per_phase) == len(meter.current_a)
    always = {E_IMP, POWER, I_OFF, I_IMP, VOLT, P_OFF}  # the meter always supplies these
    assert {m for m in measurands if m in always} <= {v.measurand for v in values}
    if SOC in measurands and soc is not None:
        assert SampledValue(SOC, round(soc, 1), "Percent", location="EV") in values


# ------------------------------------------------------------ phases (OCPP 1.6 9.1)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("Voltage", ("Voltage", None)),
        ("Voltage.L1", ("Voltage", "L1")),
        ("Voltage.L2-N", ("Voltage", "L2-N")),
        ("Current.Import.L3", ("Current.Import", "L3")),
        ("Power.Active.Import.L1", ("Power.Active.Import", "L1")),
        ("Power.Active.Import", ("Power.Active.Import", None)),
        ("Energy.Active.Import.Register", ("Energy.Active.Import.Register", None)),
        ("Current.Import.N", ("Current.Import.N", None)),  # not a phase we measure
        ("Voltage.L1-L2", ("Voltage.L1-L2", None)),
    ],
)
def test_parse_measurand(entry: str, expected: tuple[str, str | None]) -> None:
    assert parse_measurand(entry) == expected


@pytest.mark.parametrize(
    ("meter", "measurands", "expected"),
    [
        pytest.param(
            reading(), ["Voltage.L2"], [SampledValue(VOLT, 231.1, "V", "L2-N")], id="voltage-l2"
        ),
        pytest.param(
            reading(), ["Voltage.L3-N"], [SampledValue(VOLT, 230.0, "V", "L3-N")], id="l3-n"
        ),
        pytest.param(
            reading(),
            ["Current.Import.L1", "Current.Import.L3"],
            [SampledValue(I_IMP, 10.12, "A", "L1"), SampledValue(I_IMP, 10.79, "A", "L3")],
            id="current-two-phases",
        ),
        pytest.param(SINGLE_PHASE, ["Current.Import.L3"], [], id="phase-the-meter-lacks"),
        pytest.param(
            reading(),
            [VOLT, "Voltage.L1"],
            [
                SampledValue(VOLT, 230.0, "V", "L1-N"),
                SampledValue(VOLT, 231.1, "V", "L2-N"),
                SampledValue(VOLT, 230.0, "V", "L3-N"),
            ],
            id="asked-twice-once",
        ),
        pytest.param(
            reading(power_phase_w=(2300.04, 2400.0, -10.0)),
            ["Power.Active.Import.L1", "Power.Active.Import.L3", POWER],
            [
                SampledValue(POWER, 2300.0, "W", "L1"),
                SampledValue(POWER, 0.0, "W", "L3"),
                SampledValue(POWER, 7360.4, "W"),
            ],
            id="power-per-phase",
        ),
        pytest.param(reading(), ["Power.Active.Import.L1"], [], id="power-phase-unknown"),
    ],
)
def test_phase_entries(
    meter: MeterReading, measurands: list[str], expected: list[SampledValue]
) -> None:
    assert list(sampled_values(meter, measurands, offered_current_a=16.0)) == expected


# ------------------------------------------------------------ offered, SoC


@pytest.mark.parametrize(
    ("meter", "offered_a", "expected"),
    [
        pytest.param(reading(), 16.0, [SampledValue(P_OFF, 11057.0, "W")], id="3-phase"),
        pytest.param(SINGLE_PHASE, 16.0, [SampledValue(P_OFF, 3678.4, "W")], id="1-phase"),
        pytest.param(reading(), 0.0, [SampledValue(P_OFF, 0.0, "W")], id="nothing-offered"),
        pytest.param(reading(voltage_v=()), 16.0, [], id="no-voltage-no-power"),
    ],
)
def test_power_offered_is_the_offered_current_on_every_measured_phase(
    meter: MeterReading, offered_a: float, expected: list[SampledValue]
) -> None:
    assert list(sampled_values(meter, [P_OFF], offered_current_a=offered_a)) == expected


@pytest.mark.parametrize(
    ("soc", "expected"),
    [
        pytest.param(55.56, [SampledValue(SOC, 55.6, "Percent", location="EV")], id="known"),
        pytest.param(100.0, [SampledValue(SOC, 100.0, "Percent", location="EV")], id="full"),
        pytest.param(None, [], id="unknown"),
        pytest.param(float("nan"), [], id="nan"),
    ],
)
def test_soc_comes_from_the_ev(soc: float | None, expected: list[SampledValue]) -> None:
    assert list(sampled_values(reading(), [SOC], offered_current_a=0.0, soc_pct=soc)) == expected


# ------------------------------------------------------------ station total (connector 0)


def test_station_sample_sums_what_sums() -> None:
    meters = [
        reading(energy_import_wh=1000.4, power_w=7000.0, energy_export_wh=1.0),
        reading(energy_import_wh=2000.4, power_w=-300.0, energy_export_wh=2.0),
    ]
    sample = station_sample(
        meters,
        [E_IMP, E_EXP, POWER, I_IMP, VOLT, I_OFF, E_IMP],
        context=ReadingContext.SAMPLE_CLOCK,
        timestamp="2026-11-24T00:15:00.000Z",
    )
    assert sample is not None
    assert sample.context is ReadingContext.SAMPLE_CLOCK
    assert sample.timestamp == "2026-11-24T00:15:00.000Z"
    assert sample.values == (
        SampledValue(E_IMP, 3001, "Wh"),
        SampledValue(E_EXP, 3, "Wh"),
        SampledValue(POWER, 7000.0, "W"),
    )


@pytest.mark.parametrize(
    ("meters", "measurands"),
    [
        pytest.param([], [E_IMP], id="no-meters"),
        pytest.param([reading()], [VOLT, I_IMP], id="nothing-summable"),
        pytest.param([reading(energy_export_wh=1.0), reading()], [E_EXP], id="export-unknown"),
        pytest.param([reading(), None], [E_IMP], id="a-meter-not-answered-yet"),
    ],
)
def test_station_sample_none(meters: list[MeterReading | None], measurands: list[str]) -> None:
    sample = station_sample(
        meters, measurands, context=ReadingContext.SAMPLE_CLOCK, timestamp="2026-11-24T00:15:00Z"
    )
    assert sample is None
