"""Meter readings -> sampled values: which measurands appear, with which phases and units."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ocpp.v16 import enums

from agent.events import MeterReading, ReadingContext, SampledValue
from agent.evse.sampling import build_sample, sampled_values
from agent.settings import SUPPORTED_MEASURANDS

E_IMP = "Energy.Active.Import.Register"
E_EXP = "Energy.Active.Export.Register"
POWER = "Power.Active.Import"
I_IMP = "Current.Import"
I_OFF = "Current.Offered"
VOLT = "Voltage"
FREQ = "Frequency"


def reading(
    *,
    energy_import_wh: float = 12345.6,
    power_w: float = 7360.44,
    current_a: tuple[float, ...] = (10.123, 10.456, 10.789),
    voltage_v: tuple[float, ...] = (230.04, 231.06, 229.96),
    frequency_hz: float | None = 50.014,
    energy_export_wh: float | None = None,
) -> MeterReading:
    return MeterReading(
        energy_import_wh=energy_import_wh,
        power_w=power_w,
        current_a=current_a,
        voltage_v=voltage_v,
        frequency_hz=frequency_hz,
        energy_export_wh=energy_export_wh,
        monotonic_s=1.0,
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
        pytest.param(reading(), ["SoC", "Temperature"], [], id="unsupported-omitted"),
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
)


@given(
    meter=readings,
    measurands=st.lists(st.sampled_from(SUPPORTED_MEASURANDS), unique=True),
    offered_a=st.floats(min_value=0, max_value=80),
)
def test_only_requested_measurands_in_1_6_vocabulary(
    meter: MeterReading, measurands: list[str], offered_a: float
) -> None:
    values = sampled_values(meter, measurands, offered_current_a=offered_a)
    units = {u.value for u in enums.UnitOfMeasure} | {"Hz"}
    phases = {p.value for p in enums.Phase}
    for v in values:
        assert v.measurand in measurands
        assert v.measurand in {m.value for m in enums.Measurand}
        assert v.unit in units
        assert v.phase is None or v.phase in phases
    per_phase = [v for v in values if v.measurand == I_IMP]
    if I_IMP in measurands:
        assert len(per_phase) == len(meter.current_a)
    always = {E_IMP, POWER, I_OFF, I_IMP, VOLT}  # the meter always supplies these
    assert {m for m in measurands if m in always} <= {v.measurand for v in values}
