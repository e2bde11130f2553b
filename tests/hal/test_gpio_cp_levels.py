"""CP plateau -> state (thresholds, hysteresis) and PP resistor -> cable rating, as tables."""

from __future__ import annotations

import pytest

from hal.gpio.cp_levels import cable_rating_a, classify_cp, pp_resistance_ohm
from hal.types import CpState

A, B, C, D, E, F = CpState.A, CpState.B, CpState.C, CpState.D, CpState.E, CpState.F


@pytest.mark.parametrize(
    ("high_v", "expected"),
    [
        (12.0, A),
        (9.0, B),
        (6.0, C),
        (3.0, D),
        (0.0, E),
        (-12.0, F),
        (10.6, A),
        (10.4, B),
        (7.6, B),
        (7.4, C),
        (4.6, C),
        (4.4, D),
        (1.6, D),
        (1.4, E),
        (-5.9, E),
        (-6.1, F),
    ],
)
def test_nominal_levels_and_midpoint_thresholds(high_v: float, expected: CpState) -> None:
    assert classify_cp(high_v, None, 0.5) is expected


@pytest.mark.parametrize(
    ("high_v", "previous", "expected"),
    [
        (10.2, A, A),  # A -> B needs the level 0.5 V below the 10.5 V mid-point
        (9.9, A, B),
        (10.8, B, B),  # B -> A needs 0.5 V above it
        (11.1, B, A),
        (7.2, B, B),
        (6.9, B, C),
        (7.8, C, C),
        (8.1, C, B),
        (1.2, D, D),
        (-5.6, E, E),
        (-6.6, E, F),
        (-5.8, F, F),
        (-5.4, F, E),
        (9.0, C, B),  # far from the boundary: hysteresis does not matter
    ],
)
def test_hysteresis_holds_the_current_state(
    high_v: float, previous: CpState, expected: CpState
) -> None:
    assert classify_cp(high_v, previous, 0.5) is expected


@pytest.mark.parametrize(
    ("ohm", "rating_a"),
    [
        (None, None),
        (59.0, None),  # < 60 ohm: error
        (80.0, 63.0),
        (100.0, 63.0),
        (150.0, 32.0),  # between the 63 A and 32 A bands: the lower rating
        (220.0, 32.0),
        (350.0, 20.0),
        (680.0, 20.0),
        (1000.0, 13.0),
        (1500.0, 13.0),
        (3000.0, 13.0),
        (4600.0, None),  # open
    ],
)
def test_pp_resistor_codes_the_cable_rating(ohm: float | None, rating_a: float | None) -> None:
    assert cable_rating_a(ohm) == rating_a


def test_pp_divider_inverts_and_open_is_none() -> None:
    adc_v = 3.3 * 680 / (680 + 1000)
    assert pp_resistance_ohm(adc_v, 3.3, 1000.0) == pytest.approx(680.0)
    assert pp_resistance_ohm(3.3, 3.3, 1000.0) is None
