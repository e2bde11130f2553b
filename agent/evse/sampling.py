"""Build meter samples (OCPP MeterValue content) from a meter reading (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from agent.events import MeterReading, MeterSample, ReadingContext, SampledValue

_PHASES = ("L1", "L2", "L3")


def sampled_values(
    reading: MeterReading, measurands: Iterable[str], *, offered_current_a: float
) -> tuple[SampledValue, ...]:
    """The values for ``measurands`` (OCPP names) that ``reading`` can supply.

    A measurand the meter cannot supply (no export register, no frequency) is
    left out rather than reported as a made-up zero.
    """
    values: list[SampledValue] = []
    for measurand in measurands:
        match measurand:
            case "Energy.Active.Import.Register":
                values.append(SampledValue(measurand, round(reading.energy_import_wh), "Wh"))
            case "Energy.Active.Export.Register" if reading.energy_export_wh is not None:
                values.append(SampledValue(measurand, round(reading.energy_export_wh), "Wh"))
            case "Power.Active.Import":
                values.append(SampledValue(measurand, round(max(reading.power_w, 0.0), 1), "W"))
            case "Current.Import":
                values.extend(
                    SampledValue(measurand, round(a, 2), "A", phase)
                    for a, phase in zip(reading.current_a, _PHASES, strict=False)
                )
            case "Voltage":
                values.extend(
                    SampledValue(measurand, round(v, 1), "V", f"{phase}-N")
                    for v, phase in zip(reading.voltage_v, _PHASES, strict=False)
                )
            case "Frequency" if reading.frequency_hz is not None:
                values.append(SampledValue(measurand, round(reading.frequency_hz, 2), "Hz"))
            case "Current.Offered":
                values.append(SampledValue(measurand, round(offered_current_a, 1), "A"))
    return tuple(values)


def build_sample(
    reading: MeterReading,
    measurands: Iterable[str],
    *,
    context: ReadingContext,
    timestamp: str,
    offered_current_a: float,
) -> MeterSample:
    """One MeterValue: the requested measurands at ``timestamp`` for ``context``."""
    return MeterSample(
        timestamp=timestamp,
        context=context,
        values=sampled_values(reading, measurands, offered_current_a=offered_current_a),
    )
