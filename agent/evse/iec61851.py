"""IEC 61851-1 control pilot interpretation (pure).

Turns the sequence of sensed CP states A-F into session-level pilot events and
converts a current limit into the PWM duty the EVSE signals. No I/O, no clock.

Plugged-ness survives E/F: B -> E -> B is one plug-in with an error in between,
not a second plug-in (DESIGN "iec61851").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from agent.events import CpState

MIN_CURRENT_A = 6.0  # IEC 61851-1 Table A.7: below 6 A no energy may be offered
MAX_CURRENT_A = 80.0  # highest current the duty table can express


class PilotEvent(StrEnum):
    """What a CP state change means for the session."""

    PLUGGED = "plugged"
    UNPLUGGED = "unplugged"
    POWER_REQUESTED = "power_requested"  # EV entered C or D
    POWER_RELEASED = "power_released"  # EV left C or D
    VENTILATION_REQUIRED = "ventilation_required"  # EV entered D
    VENTILATION_RELEASED = "ventilation_released"  # EV left D
    ERROR_RAISED = "error_raised"  # E or F sensed
    ERROR_CLEARED = "error_cleared"  # left E or F


@dataclass(frozen=True, slots=True)
class PilotState:
    """What the interpreter remembers between samples."""

    cp: CpState = CpState.A
    plugged: bool = False


_POWER_STATES = frozenset({CpState.C, CpState.D})
_ERROR_STATES = frozenset({CpState.E, CpState.F})


def is_power_state(cp: CpState) -> bool:
    """True for C and D, the only states in which the contactor may be closed."""
    return cp in _POWER_STATES


def step(state: PilotState, cp: CpState) -> tuple[PilotState, list[PilotEvent]]:
    """Interpret one sensed CP state.

    Args:
        state: The interpreter state before the sample.
        cp: The newly sensed (debounced) CP state.

    Returns:
        The new state and the events it implies, in the order a controller must
        handle them: power released before unplugged, plugged before power requested.
    """
    if cp == state.cp:
        return state, []
    events: list[PilotEvent] = []
    was_power = state.cp in _POWER_STATES
    is_power = cp in _POWER_STATES
    if was_power and not is_power:
        events.append(PilotEvent.POWER_RELEASED)
    if state.cp == CpState.D and cp != CpState.D:
        events.append(PilotEvent.VENTILATION_RELEASED)
    if state.cp in _ERROR_STATES and cp not in _ERROR_STATES:
        events.append(PilotEvent.ERROR_CLEARED)
    if cp in _ERROR_STATES and state.cp not in _ERROR_STATES:
        events.append(PilotEvent.ERROR_RAISED)

    plugged = state.plugged
    if cp == CpState.A and plugged:
        events.append(PilotEvent.UNPLUGGED)
        plugged = False
    elif cp in (CpState.B, CpState.C, CpState.D) and not plugged:
        events.append(PilotEvent.PLUGGED)
        plugged = True
    # E/F: plugged-ness is kept as it was (an error does not unplug the EV).

    if is_power and not was_power:
        events.append(PilotEvent.POWER_REQUESTED)
    if cp == CpState.D and state.cp != CpState.D:
        events.append(PilotEvent.VENTILATION_REQUIRED)
    return PilotState(cp=cp, plugged=plugged), events


def duty_for_current(current_a: float) -> float | None:
    """The PWM duty (percent) that signals ``current_a`` to the EV.

    IEC 61851-1 Table A.7 (REFERENCE 1.2): 6-51 A -> I / 0.6; 51-80 A -> I / 2.5 + 64.
    Values above 80 A are clamped to 80 A. The two formulas leave a gap between
    51 A (85 %) and 52.5 A, so limits in (51, 52.5) are rounded down to 51 A; a
    duty is never rounded up to a higher current than the limit allows.

    Returns:
        The duty in percent rounded down to 0.1 %, or None when the limit is below
        6 A and no energy may be offered (the caller signals steady +12 V instead).
    """
    if current_a < MIN_CURRENT_A:
        return None
    current_a = min(current_a, MAX_CURRENT_A)
    if current_a < 52.5:
        duty = min(current_a, 51.0) / 0.6
    else:
        duty = current_a / 2.5 + 64.0
    # floor to 0.1 % so rounding never signals more current than allowed
    return int(duty * 10 + 1e-9) / 10
