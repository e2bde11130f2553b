"""The HAL roles of an OpenEVSE controller: pilot, contactor and meter over RAPI.

Each role is a thin view onto one shared ``RapiController`` (one per serial
port); the controller turns what the roles ask for into RAPI commands and its
notifications into CP states and faults. See ``hal.rapi.controller``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from hal.faults import FaultLatch
from hal.pilot import PilotOutput
from hal.rapi.controller import RapiController
from hal.rapi.link import RapiLinkError
from hal.types import CpState, FaultCode, FaultReport, MeterReading

_log = logging.getLogger(__name__)


class RapiControlPilot:
    """``hal.pilot.ControlPilot`` on an OpenEVSE controller.

    ``set_output`` sends ``$SC amps V`` + ``$FE`` (PWM), ``$FS`` (steady) or
    ``$FD`` (error) at once. CP states come from ``$AT`` notifications and
    ``$GS`` re-reads; the controller's fault states (GFCI, no ground, stuck
    relay, diode check, over-temperature, over-current) and a silent controller
    are reported through ``on_fault``.
    """

    def __init__(self, controller: RapiController) -> None:
        self._controller = controller
        self._started = False

    @property
    def state(self) -> CpState:
        return self._controller.cp_state

    @property
    def output(self) -> PilotOutput:
        return self._controller.output

    def set_output(self, output: PilotOutput) -> None:
        self._controller.set_output(output)

    async def start(
        self,
        on_state: Callable[[CpState], None],
        on_fault: Callable[[FaultReport], None],
    ) -> None:
        """Open the link (shared), report the initial state once, then every change.

        Raises:
            RuntimeError: Already started.
        """
        if self._started:
            raise RuntimeError("RapiControlPilot already started")
        self._started = True
        self._controller.add_fault_listener(on_fault)
        await self._controller.acquire()
        self._controller.add_state_listener(on_state)
        on_state(self._controller.cp_state)

    async def probe(self) -> tuple[bool, str]:
        """``hal.probe.Probeable``: the controller's versions and CP state (no switching)."""
        try:
            firmware, rapi = await self._controller.versions()
        except RapiLinkError as exc:
            return False, f"no answer on {self._controller.settings.port}: {exc}"
        return True, f"OpenEVSE firmware {firmware}, RAPI {rapi}, CP state {self.state}"

    async def stop(self) -> None:
        """Drive state F (``$FD``), wait for its answer (bounded), release the link."""
        self._controller.set_output(PilotOutput.error())
        await self._controller.flush()  # $FD answered (or timed out) before we go
        if self._started:
            self._started = False
            await self._controller.release()


class RapiContactor:
    """``hal.contactor.Contactor`` for the relay inside an OpenEVSE controller.

    The relay belongs to the controller: ``switch(True)`` permits it to close
    (it does so while enabled and the EV is in C/D), ``switch(False)`` sends
    ``$FS`` at once. ``is_on`` is the commanded state. Relay faults (stuck
    relay) are reported by the pilot role, which sees the controller's state.
    """

    def __init__(self, controller: RapiController) -> None:
        self._controller = controller
        self._started = False

    @property
    def is_on(self) -> bool:
        return self._controller.contactor_on

    def switch(self, on: bool) -> None:
        self._controller.switch_contactor(on)

    async def start(self, on_fault: Callable[[FaultReport], None]) -> None:
        del on_fault  # the controller's faults reach the agent once, through the pilot
        if self._started:
            raise RuntimeError("RapiContactor already started")
        self._started = True
        await self._controller.acquire()

    async def stop(self) -> None:
        """Forbid the relay and release the link. Idempotent."""
        self._controller.switch_contactor(False)
        await self._controller.flush()
        if self._started:
            self._started = False
            await self._controller.release()


class RapiPowerMeter:
    """``hal.meter.PowerMeter`` from an OpenEVSE controller's ammeter and energy counter.

    Each poll reads ``$GG`` (current mA, voltage mV) and ``$GU`` (session energy
    Ws, accumulated Wh). The controller resets the session counter when an EV
    connects and adds it to the accumulated one when the EV leaves, so the
    monotonic register is built here: the accumulated Wh at the first reading
    plus every session's Ws since.

    Args:
        controller: The shared controller.
        phases: Phases the EVSE supplies; the controller measures one current,
            assumed equal on each (power = phases x V x I).
        poll_interval_s: Period between polls, s.
        fault_after_s: No good answer for this long: ``PowerMeterFailure``, s.
    """

    def __init__(
        self,
        controller: RapiController,
        *,
        phases: int = 1,
        poll_interval_s: float = 1.0,
        fault_after_s: float = 5.0,
    ) -> None:
        if phases not in (1, 2, 3):
            raise ValueError(f"phases must be 1, 2 or 3, got {phases}")
        self._controller = controller
        self._phases = phases
        self._poll_interval_s = poll_interval_s
        self._fault_after_s = fault_after_s
        self._latest: MeterReading | None = None
        self._task: asyncio.Task[None] | None = None
        self._latch: FaultLatch | None = None
        self._on_reading: Callable[[MeterReading], None] | None = None
        self._last_good_s = 0.0
        self._base_wh: float | None = None  # accumulated energy before the counted session
        self._session_ws = 0  # last session counter seen
        self._session_offset_ws = 0  # part of that counter already in _base_wh

    @property
    def latest(self) -> MeterReading | None:
        return self._latest

    async def start(
        self,
        on_reading: Callable[[MeterReading], None],
        on_fault: Callable[[FaultReport], None],
    ) -> None:
        """Open the link (shared), poll once, then every ``poll_interval_s``.

        Raises:
            RuntimeError: Already started.
        """
        if self._task is not None:
            raise RuntimeError("RapiPowerMeter already started")
        self._on_reading = on_reading
        self._latch = FaultLatch(FaultCode.POWER_METER_FAILURE, on_fault)
        await self._controller.acquire()
        self._last_good_s = time.monotonic()
        first_done = asyncio.Event()
        self._task = asyncio.create_task(
            self._poll_loop(first_done), name=f"rapi-meter-{self._controller.settings.port}"
        )
        await first_done.wait()

    async def stop(self) -> None:
        """Stop polling and release the link. Idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self._controller.release()

    async def _poll_loop(self, first_done: asyncio.Event) -> None:
        while True:
            try:
                await self._poll()
            finally:
                first_done.set()
            await asyncio.sleep(self._poll_interval_s)

    async def _poll(self) -> None:
        assert self._latch is not None
        link = self._controller.link
        try:
            gg, gu = await asyncio.gather(link.request("GG"), link.request("GU"))
            answered_s = time.monotonic()
            current_ma, voltage_mv = (int(v) for v in gg.args[:2])
            session_ws, total_wh = (int(v) for v in gu.args[:2])
            if not (gg.ok and gu.ok) or len(gg.args) < 2 or len(gu.args) < 2:
                raise ValueError(f"answers {gg} {gu}")
        except (RapiLinkError, ValueError) as exc:
            if time.monotonic() - self._last_good_s >= self._fault_after_s:
                self._latch.raise_(f"RAPI meter not answering: {exc}")
            return
        energy_wh = self._energy_wh(session_ws, total_wh)
        if self._latest is not None and energy_wh < self._latest.energy_import_wh:
            _log.warning("%s: energy went backwards, reading dropped", link.port)
            return
        current_a = max(0.0, current_ma / 1000.0)  # -1 A: the controller has no ammeter
        voltage_v = voltage_mv / 1000.0
        reading = MeterReading(
            energy_import_wh=energy_wh,
            power_w=self._phases * voltage_v * current_a,
            current_a=(current_a,) * self._phases,
            voltage_v=(voltage_v,) * self._phases,
            frequency_hz=None,
            energy_export_wh=None,
            monotonic_s=answered_s,
        )
        self._latest = reading
        self._last_good_s = answered_s
        self._latch.clear("RAPI meter answers again")
        if self._on_reading is not None:
            self._on_reading(reading)

    def _energy_wh(self, session_ws: int, total_wh: int) -> float:
        if self._base_wh is None:
            # A finished session is already in the accumulated Wh; a running one is not.
            self._base_wh = float(total_wh)
            self._session_offset_ws = 0 if self._controller.ev_connected else session_ws
        elif session_ws < self._session_ws:  # a new session started: bank the last one
            self._base_wh += (self._session_ws - self._session_offset_ws) / 3600.0
            self._session_offset_ws = 0
        self._session_ws = session_ws
        return self._base_wh + (session_ws - self._session_offset_ws) / 3600.0
