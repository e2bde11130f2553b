"""SimControlPilot: the CP line of a simulated EVSE, sensed from a simulated EV."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from hal._threading import call_in_loop
from hal.pilot import PilotOutput
from hal.types import CpState, FaultReport

_HISTORY_LEN = 10_000


class OutputChange(NamedTuple):
    """One ``set_output`` call as recorded for benchmarks."""

    monotonic_s: float
    output: PilotOutput


class StateChange(NamedTuple):
    """One change of the sensed CP state as recorded for benchmarks."""

    monotonic_s: float
    state: CpState


class SimControlPilot:
    """A simulated CP line (implements ``hal.pilot.ControlPilot``).

    Two sides:
        * EVSE side (the agent): ``set_output``, ``state``, ``start``/``stop``.
        * EV side (``hal.sim.plant.SimEv``): ``connect_ev`` registers the EV's
          observer of the output; the EV calls ``sense`` whenever the CP state it
          presents changes.

    ``sense`` may be called from any thread and before ``start``; once started,
    changes reach ``on_state`` through ``hal._threading.call_in_loop``, the same
    path real pin callbacks take, i.e. on the next loop iteration. Every change
    is delivered in order; repeats of the last delivered state are not.

    ``output_history`` and ``state_history`` record ``time.monotonic()`` stamps of
    each output command and each sensed change (bounded, newest kept) so that
    benchmarks can measure reaction latencies.
    """

    def __init__(self) -> None:
        self._output = PilotOutput.steady()
        self._sensed = CpState.A
        self._reported = CpState.A
        self._ev_observer: Callable[[PilotOutput], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_state: Callable[[CpState], None] | None = None
        self.output_history: deque[OutputChange] = deque(maxlen=_HISTORY_LEN)
        self.state_history: deque[StateChange] = deque(maxlen=_HISTORY_LEN)

    # --- EVSE side (ControlPilot) ---------------------------------------------------

    @property
    def state(self) -> CpState:
        """The last CP state delivered to ``on_state`` (the sensed state before start)."""
        return self._reported if self._on_state is not None else self._sensed

    @property
    def output(self) -> PilotOutput:
        """The output last set."""
        return self._output

    def set_output(self, output: PilotOutput) -> None:
        """Apply a CP output at once; the EV reacts synchronously (may call ``sense``).

        Raises:
            ValueError: A PWM duty outside 0..100 %.
        """
        if not 0.0 <= output.duty_pct <= 100.0:
            raise ValueError(f"duty_pct must be 0..100, got {output.duty_pct}")
        self._output = output
        self.output_history.append(OutputChange(time.monotonic(), output))
        if self._ev_observer is not None:
            self._ev_observer(output)

    async def start(
        self,
        on_state: Callable[[CpState], None],
        on_fault: Callable[[FaultReport], None] | None = None,
    ) -> None:
        """Deliver the current state once, then every change, in the loop thread.

        ``on_fault`` is accepted for the ``ControlPilot`` contract; the simulated
        line reports no faults of its own (EV faults come from the plant).
        """
        del on_fault
        if self._on_state is not None:
            raise RuntimeError("SimControlPilot already started")
        self._loop = asyncio.get_running_loop()
        self._on_state = on_state
        self._reported = self._sensed
        on_state(self._reported)

    async def stop(self) -> None:
        """Drive state F (EVSE not available) and stop delivering. Idempotent."""
        self._on_state = None
        self._loop = None
        if self._output != PilotOutput.error():
            self.set_output(PilotOutput.error())

    # --- EV side ------------------------------------------------------------------

    def connect_ev(self, observer: Callable[[PilotOutput], None]) -> None:
        """Register the EV's observer of output changes (one EV per CP line)."""
        self._ev_observer = observer

    def sense(self, state: CpState) -> None:
        """The EV presents ``state`` on CP (any thread)."""
        if state == self._sensed:
            return
        self._sensed = state
        self.state_history.append(StateChange(time.monotonic(), state))
        loop = self._loop
        if loop is not None:
            call_in_loop(loop, self._deliver, state)

    def _deliver(self, state: CpState) -> None:
        on_state = self._on_state
        if on_state is None or state == self._reported:
            return
        self._reported = state
        on_state(state)
