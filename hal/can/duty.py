"""The current a CP duty cycle stands for, for backends that carry it in another form.

The core computes a PWM duty from its current limit (``agent.evse.iec61851``,
IEC 61851-1 Table A.7, REFERENCE 1.2). A DC vehicle link (CHAdeMO) advertises a
current in amperes instead, so its backend inverts the EVSE-side formula here.
"""

from __future__ import annotations

import math

MIN_DUTY_PCT = 10.0  # 6 A
LOW_BAND_MAX_DUTY_PCT = 85.0  # 51 A: D = I / 0.6 up to here
MAX_DUTY_PCT = 96.0  # 80 A: D = I / 2.5 + 64 up to here
DUTY_STEP_PCT = 0.1
"""The core floors duties to 0.1 %: a signalled current can be this much below the limit."""


def current_for_duty(duty_pct: float) -> float | None:
    """The current limit, A, that the EVSE-side formula turns into ``duty_pct``.

    10-85 %: I = D * 0.6; 85-96 %: I = (D - 64) * 2.5 (the inverse of REFERENCE 1.2).

    Returns:
        The current, A, or None for duties that offer no current (below 10 %,
        including the 5 % "digital communication" duty, or above 96 %).
    """
    if not MIN_DUTY_PCT - 1e-9 <= duty_pct <= MAX_DUTY_PCT + 1e-9:
        return None
    if duty_pct <= LOW_BAND_MAX_DUTY_PCT:
        return duty_pct * 0.6
    return (duty_pct - 64.0) * 2.5


def whole_amperes_for_duty(duty_pct: float) -> int:
    """The current of ``duty_pct`` as whole amperes, for 1 A fields such as CHAdeMO 0x108.

    The core floors the duty to 0.1 %, which can signal up to 0.06 A (0.25 A above
    85 %) less than its limit; that step is added back before rounding down, so a
    16 A limit (26.6 %) is 16 A again, never 15 A, and never more than one duty
    step above the limit.

    Returns:
        Amperes, 0 when the duty offers no current.
    """
    current_a = current_for_duty(duty_pct)
    if current_a is None:
        return 0
    step_a = DUTY_STEP_PCT * (0.6 if duty_pct <= LOW_BAND_MAX_DUTY_PCT else 2.5)
    return math.floor(current_a + step_a - 1e-9)
