"""ControlPilot role: the IEC 61851 CP line (output and state sensing)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from hal.types import CpState, FaultReport


class PilotMode(StrEnum):
    """What the EVSE drives on CP (REFERENCE 1.1)."""

    STEADY = "steady"  # +12 V DC, "X1": EVSE not ready to supply energy
    PWM = "pwm"  # 1 kHz +-12 V, "X2": duty encodes the current limit
    ERROR = "error"  # -12 V, state F: EVSE not available


@dataclass(frozen=True, slots=True)
class PilotOutput:
    """A CP output command. ``duty_pct`` matters only in ``PilotMode.PWM``."""

    mode: PilotMode
    duty_pct: float = 100.0

    @staticmethod
    def steady() -> PilotOutput:
        return PilotOutput(PilotMode.STEADY, 100.0)

    @staticmethod
    def pwm(duty_pct: float) -> PilotOutput:
        return PilotOutput(PilotMode.PWM, duty_pct)

    @staticmethod
    def error() -> PilotOutput:
        return PilotOutput(PilotMode.ERROR, 0.0)


class ControlPilot(Protocol):
    """The CP line.

    Contract:
        * ``set_output`` applies at once and returns (no awaiting). The HAL does not
          interpret currents: the core computes the duty (``agent.evse.iec61851``).
        * ``on_state`` is called in the event loop thread with every *change* of
          the sensed CP state (already debounced by the backend), and once at start
          with the initial state.
        * ``on_fault`` (loop thread) receives faults the pilot hardware detects
          itself: a missing EV diode, a safety MCU's fault state, a lost vehicle
          link. The backend makes its own output safe first; the controller
          opens the contactor on any active fault.
        * ``state`` is the last sensed state.
        * ``stop`` drives state F (EVSE not available) and releases the hardware.
    """

    @property
    def state(self) -> CpState: ...

    @property
    def output(self) -> PilotOutput: ...

    def set_output(self, output: PilotOutput) -> None: ...

    async def start(
        self,
        on_state: Callable[[CpState], None],
        on_fault: Callable[[FaultReport], None],
    ) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class StateOfChargeSource(Protocol):
    """Optional extra of a pilot backend that learns the EV's state of charge
    (e.g. CHAdeMO over CAN, ISO 15118). The core checks for it with ``isinstance``.

    Contract:
        * ``soc_pct`` is the last state of charge the EV reported, percent
          (0-100), or None while no EV has reported one (none plugged, link down).
          Reading it never blocks and never raises.
    """

    @property
    def soc_pct(self) -> float | None: ...


@runtime_checkable
class CableRatingSource(Protocol):
    """Optional extra of a pilot backend that reads the proximity pilot (PP) of a
    socket with a detachable cable (REFERENCE 1.3). The core checks for it with
    ``isinstance`` and limits the EVSE to the cable's rating.

    Contract:
        * ``cable_max_current_a`` is the rating coded by the PP resistor of the
          plugged cable, A, or None (no PP wired, no cable, invalid resistor).
          It is current when ``on_state`` reports a new CP state (the backend
          reads PP first). Reading it never blocks and never raises.
    """

    @property
    def cable_max_current_a(self) -> float | None: ...
