"""Pure conversions for a directly sensed CP/PP line: volts -> CP state, ohms -> cable rating.

No I/O, no clock: ``hal.gpio.pilot`` samples, these classify.
"""

from __future__ import annotations

from hal.types import CpState

_ORDER: tuple[CpState, ...] = (CpState.A, CpState.B, CpState.C, CpState.D, CpState.E, CpState.F)

# Boundaries between adjacent states of the positive CP plateau, V: the mid-points
# between the nominal levels 12 / 9 / 6 / 3 / 0 / -12 V (REFERENCE 1.1, esp32-evse
# calibration advice). _BOUNDARIES_V[i] separates _ORDER[i] (above) from _ORDER[i + 1].
_BOUNDARIES_V: tuple[float, ...] = (10.5, 7.5, 4.5, 1.5, -6.0)

DIODE_FAULT_ABOVE_V = -10.0
"""A negative plateau above this while PWM runs means no (or a shorted) EV diode
(REFERENCE 1.4: Tinkerforge faults above -10 V)."""


def classify_cp(high_v: float, previous: CpState | None, hysteresis_v: float) -> CpState:
    """The CP state for a positive plateau of ``high_v`` volts.

    Hysteresis: a boundary next to ``previous`` is moved ``hysteresis_v`` away
    from it, so a level sitting on a threshold does not flicker between two
    states. ``previous=None`` classifies without hysteresis.

    Args:
        high_v: Positive CP plateau, V.
        previous: The state reported so far, or None.
        hysteresis_v: Hysteresis, V (>= 0).
    """
    rank = _ORDER.index(previous) if previous is not None else None
    for i, boundary_v in enumerate(_BOUNDARIES_V):
        if rank is not None:
            # at or above the upper state: harder to fall below; else harder to rise above
            boundary_v += -hysteresis_v if rank <= i else hysteresis_v
        if high_v > boundary_v:
            return _ORDER[i]
    return CpState.F


# (upper bound of the resistor band, ohm, cable rating A), lowest resistance first.
# Bands per REFERENCE 1.3 (EVerest bring-up table); a value between two bands gets
# the lower rating; below 60 ohm or above 4.5 kohm there is no valid cable.
_PP_BANDS: tuple[tuple[float, float], ...] = (
    (140.0, 63.0),  # 80..140 ohm (63 A three-phase; 70 A single-phase cables use it too)
    (308.0, 32.0),  # 164..308 ohm (140..164: between bands -> 32 A)
    (936.0, 20.0),  # 400..936 ohm (308..400 -> 20 A)
    (4500.0, 13.0),  # 1100..2460 ohm (936..1100 and 2460..4500 -> 13 A)
)
PP_MIN_OHM = 60.0
PP_MAX_OHM = 4500.0


def cable_rating_a(resistance_ohm: float | None) -> float | None:
    """Cable ampacity coded by the PP-PE resistor, A; None for no/invalid cable.

    Args:
        resistance_ohm: Measured PP-PE resistance, ohm; None when open.
    """
    if resistance_ohm is None or resistance_ohm < PP_MIN_OHM or resistance_ohm > PP_MAX_OHM:
        return None
    for upper_ohm, rating_a in _PP_BANDS:
        if resistance_ohm <= upper_ohm:
            return rating_a
    return None  # pragma: no cover - the last band ends at PP_MAX_OHM


def pp_resistance_ohm(adc_v: float, vref_v: float, pullup_ohm: float) -> float | None:
    """The PP-PE resistor from a pull-up divider reading, ohm; None when (nearly) open.

    The PP input is pulled up to ``vref_v`` through ``pullup_ohm``; the cable's
    resistor pulls it down: ``adc_v = vref_v * R / (R + pullup_ohm)``.
    """
    if adc_v >= vref_v * 0.995:
        return None
    return pullup_ohm * max(adc_v, 0.0) / (vref_v - adc_v)
