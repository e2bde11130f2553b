"""OpenEVSE controller states and what they mean to the HAL (pure tables).

EVSE_STATE codes are from ``lincomatic/open_evse: open_evse.h`` (REFERENCE 6.1).
The controller reports two codes: ``evsestate`` (what the controller is doing,
including its fault states) and ``pilotstate`` (what it senses on CP, A..D).
"""

from __future__ import annotations

import math
from enum import IntEnum, StrEnum

from hal.pilot import PilotMode, PilotOutput
from hal.types import CpState, FaultCode


class EvseState(IntEnum):
    """EVSE_STATE_xxx codes."""

    UNKNOWN = 0x00
    A = 0x01
    B = 0x02
    C = 0x03
    D = 0x04  # vent required
    DIODE_CHECK_FAILED = 0x05
    GFCI_FAULT = 0x06
    NO_GROUND = 0x07
    STUCK_RELAY = 0x08
    GFI_SELF_TEST_FAILED = 0x09
    OVER_TEMPERATURE = 0x0A
    OVER_CURRENT = 0x0B
    RELAY_CLOSURE_FAULT = 0x0E  # some forks
    SLEEPING = 0xFE
    DISABLED = 0xFF


class EvseMode(StrEnum):
    """What the agent asks the controller to do (``$FE`` / ``$FS`` / ``$FD``)."""

    ENABLED = "enabled"  # PWM at the current capacity; the controller closes its relay in C/D
    SLEEPING = "sleeping"  # steady +12 V, relay open (the controller waits for the EV first)
    DISABLED = "disabled"  # -12 V (state F), relay opened at once


MODE_COMMANDS: dict[EvseMode, str] = {
    EvseMode.ENABLED: "FE",
    EvseMode.SLEEPING: "FS",
    EvseMode.DISABLED: "FD",
}

_CP_BY_CODE = {1: CpState.A, 2: CpState.B, 3: CpState.C, 4: CpState.D}

FAULTS: dict[int, tuple[FaultCode, str]] = {
    # REFERENCE 2.3: a diode fault means Faulted; EVCommunicationError is a warning
    # code that 1.6 only allows with non-faulted statuses, so OtherError it is.
    EvseState.DIODE_CHECK_FAILED: (FaultCode.OTHER_ERROR, "EV diode check failed"),
    EvseState.GFCI_FAULT: (FaultCode.GROUND_FAILURE, "GFCI (residual current) tripped"),
    EvseState.NO_GROUND: (FaultCode.GROUND_FAILURE, "no ground"),
    EvseState.STUCK_RELAY: (FaultCode.POWER_SWITCH_FAILURE, "stuck relay"),
    EvseState.GFI_SELF_TEST_FAILED: (FaultCode.GROUND_FAILURE, "GFI self-test failed"),
    EvseState.OVER_TEMPERATURE: (FaultCode.HIGH_TEMPERATURE, "over temperature"),
    EvseState.OVER_CURRENT: (FaultCode.OVER_CURRENT_FAILURE, "over current"),
    EvseState.RELAY_CLOSURE_FAULT: (FaultCode.POWER_SWITCH_FAILURE, "relay closure fault"),
}
"""Controller fault states -> the fault the HAL reports."""


def fault_for(evse_state: int) -> tuple[FaultCode, str] | None:
    """The fault an ``evsestate`` code stands for, or None in a normal state."""
    if evse_state in FAULTS:
        return FAULTS[evse_state]
    if 0x05 <= evse_state < EvseState.SLEEPING:
        return FaultCode.OTHER_ERROR, f"controller fault state 0x{evse_state:02x}"
    return None


def cp_state_for(evse_state: int, pilot_state: int, previous: CpState) -> CpState:
    """The CP state the HAL reports for a controller's ``evsestate``/``pilotstate``.

    A..D come from the controller's state; while it sleeps or is in a fault it
    still senses the EV, so ``pilotstate`` tells; disabled (-12 V) and a failed
    diode check read as F. Anything unreadable keeps ``previous``.
    """
    if evse_state in _CP_BY_CODE:
        return _CP_BY_CODE[evse_state]
    if evse_state in (EvseState.DISABLED, EvseState.DIODE_CHECK_FAILED):
        return CpState.F
    return _CP_BY_CODE.get(pilot_state, previous)


def amps_for_duty(duty_pct: float) -> int | None:
    """Whole amps for a PWM duty, the inverse of the core's duty computation.

    Reads the duty as an EV does (IEC 61851-1 Table A.8, REFERENCE 1.2) and
    rounds down to whole amps, allowing for the core rounding its duty down
    to 0.1 % (at most 0.06 A under 51 A), so 26.6 % is 16 A, not 15 A.

    Returns:
        6..80 A, or None where the duty offers no energy (< 8 %, > 97 %,
        or 3-7 % digital communication, which RAPI controllers cannot signal).
    """
    if duty_pct < 8.0 or duty_pct > 97.0:
        return None
    if duty_pct < 10.0:
        current_a = 6.0
    elif duty_pct <= 85.0:
        current_a = duty_pct * 0.6
    elif duty_pct <= 96.0:
        current_a = (duty_pct - 64.0) * 2.5
    else:
        current_a = 80.0
    return max(6, min(80, math.floor(current_a + 0.07)))


def wanted_mode(output: PilotOutput, *, hold_open: bool) -> EvseMode:
    """The controller mode that realises a pilot output.

    ``hold_open``: the agent switched the relay off while the EV requests energy;
    RAPI has no "PWM on, relay held open" state, so the controller sleeps.
    """
    if output.mode is PilotMode.ERROR:
        return EvseMode.DISABLED
    if output.mode is PilotMode.STEADY or hold_open or amps_for_duty(output.duty_pct) is None:
        return EvseMode.SLEEPING
    return EvseMode.ENABLED
