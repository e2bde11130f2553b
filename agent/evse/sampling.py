"""Build meter samples (OCPP MeterValue content) from a meter reading (pure).

Configured measurand entries are OCPP names, optionally narrowed to one phase
(OCPP 1.6 9.1: "Voltage.L1"). Without a phase, per-phase quantities (current,
voltage) are reported for every phase the meter measures and totals (energy,
power) once without a phase. A value the meter cannot supply is left out rather
than reported as a made-up zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

from agent.events import MeterReading, MeterSample, ReadingContext, SampledValue
from agent.settings import MEASURAND_PHASES

_PHASES = ("L1", "L2", "L3")
LOCATION_EV = "EV"
"""OCPP Location of a value the vehicle reported (SoC)."""


def parse_measurand(entry: str) -> tuple[str, str | None]:
    """Split a configured entry into (measurand, phase or None).

    ``"Voltage.L1"`` -> ``("Voltage", "L1")``; ``"Voltage"`` -> ``("Voltage", None)``.
    An entry that is not a known measurand+phase combination comes back whole.
    """
    for measurand, phases in MEASURAND_PHASES:
        prefix = f"{measurand}."
        if entry.startswith(prefix) and entry[len(prefix) :] in phases:
            return measurand, entry[len(prefix) :]
    return entry, None


def sampled_values(
    reading: MeterReading,
    measurands: Iterable[str],
    *,
    offered_current_a: float,
    soc_pct: float | None = None,
) -> tuple[SampledValue, ...]:
    """The values for ``measurands`` (configured entries) that can be supplied.

    Args:
        reading: The meter's latest reading.
        measurands: Configured entries, in the order they should appear.
        offered_current_a: Current the EVSE offers the EV now, A per phase (0
            when it offers nothing); gives ``Current.Offered`` and, with the
            measured phase voltages, ``Power.Offered``.
        soc_pct: The EV's state of charge, percent, or None when unknown (then
            ``SoC`` is left out).

    Returns:
        The values in request order; a (measurand, phase) asked for twice
        (``Voltage`` and ``Voltage.L1``) appears once.
    """
    values: list[SampledValue] = []
    seen: set[tuple[str, str | None]] = set()
    for entry in measurands:
        measurand, phase = parse_measurand(entry)
        for value in _values_of(reading, measurand, phase, offered_current_a, soc_pct):
            key = (value.measurand, value.phase)
            if key not in seen:
                seen.add(key)
                values.append(value)
    return tuple(values)


def _values_of(
    reading: MeterReading,
    measurand: str,
    phase: str | None,
    offered_a: float,
    soc_pct: float | None,
) -> Iterator[SampledValue]:
    match measurand:
        case "Energy.Active.Import.Register":
            yield SampledValue(measurand, round(reading.energy_import_wh), "Wh")
        case "Energy.Active.Export.Register" if reading.energy_export_wh is not None:
            yield SampledValue(measurand, round(reading.energy_export_wh), "Wh")
        case "Power.Active.Import" if phase is None:
            yield SampledValue(measurand, round(max(reading.power_w, 0.0), 1), "W")
        case "Power.Active.Import":
            for watts, name in _phase_values(reading.power_phase_w, phase):
                yield SampledValue(measurand, round(max(watts, 0.0), 1), "W", name)
        case "Current.Import":
            for amps, name in _phase_values(reading.current_a, phase):
                yield SampledValue(measurand, round(amps, 2), "A", name)
        case "Voltage":
            # The meter measures line-to-neutral: "Voltage.L1" is reported as L1-N.
            for volts, name in _phase_values(reading.voltage_v, _line(phase)):
                yield SampledValue(measurand, round(volts, 1), "V", f"{name}-N")
        case "Frequency" if reading.frequency_hz is not None:
            yield SampledValue(measurand, round(reading.frequency_hz, 2), "Hz")
        case "Current.Offered":
            yield SampledValue(measurand, round(offered_a, 1), "A")
        case "Power.Offered" if reading.voltage_v:
            watts = offered_a * sum(reading.voltage_v)  # per phase the meter sees
            yield SampledValue(measurand, round(watts, 1), "W")
        case "SoC" if soc_pct is not None and math.isfinite(soc_pct):
            yield SampledValue(measurand, round(soc_pct, 1), "Percent", location=LOCATION_EV)


def _line(phase: str | None) -> str | None:
    return None if phase is None else phase.removesuffix("-N")


def _phase_values(per_phase: Sequence[float], phase: str | None) -> Iterator[tuple[float, str]]:
    """(value, phase name) for every phase, or only for ``phase`` when given."""
    for value, name in zip(per_phase, _PHASES, strict=False):
        if phase is None or phase == name:
            yield value, name


def build_sample(
    reading: MeterReading,
    measurands: Iterable[str],
    *,
    context: ReadingContext,
    timestamp: str,
    offered_current_a: float,
    soc_pct: float | None = None,
) -> MeterSample:
    """One MeterValue: the requested measurands at ``timestamp`` for ``context``.

    See :func:`sampled_values` for the arguments.
    """
    return MeterSample(
        timestamp=timestamp,
        context=context,
        values=sampled_values(
            reading, measurands, offered_current_a=offered_current_a, soc_pct=soc_pct
        ),
    )


def station_sample(
    readings: Sequence[MeterReading | None],
    measurands: Iterable[str],
    *,
    context: ReadingContext,
    timestamp: str,
) -> MeterSample | None:
    """The station-level (connector 0) sample: the sum over every EVSE meter.

    Only quantities whose sum means something are reported: the energy
    registers and the total import power. Per-phase values, voltages and
    offered values are per connector and left out.

    Args:
        readings: The latest reading of every EVSE meter (None for a meter that
            has not answered yet); pass all of them.
        measurands: Configured entries.
        context: Why the sample is taken.
        timestamp: ISO 8601 UTC.

    Returns:
        The sample, or None when there is nothing to report: no readings, a meter
        without a reading yet (a sum over some meters would be a wrong station
        total), or no summable measurand configured.
    """
    if not readings or any(r is None for r in readings):
        return None
    answered = [r for r in readings if r is not None]
    values: list[SampledValue] = []
    for entry in dict.fromkeys(measurands):
        match entry:
            case "Energy.Active.Import.Register":
                total = sum(r.energy_import_wh for r in answered)
                values.append(SampledValue(entry, round(total), "Wh"))
            case "Energy.Active.Export.Register":
                exports = [r.energy_export_wh for r in answered]
                if all(e is not None for e in exports):
                    values.append(SampledValue(entry, round(sum(e or 0.0 for e in exports)), "Wh"))
            case "Power.Active.Import":
                total = sum(max(r.power_w, 0.0) for r in answered)
                values.append(SampledValue(entry, round(total, 1), "W"))
    if not values:
        return None
    return MeterSample(timestamp=timestamp, context=context, values=tuple(values))
