"""SimRapiController: a simulated OpenEVSE controller speaking RAPI on a pty pair.

The agent's real ``hal.rapi`` backends open ``port`` (the pty's slave path) with
pyserial, exactly as they would open ``/dev/ttyUSB0``. Behind it a small model
of the controller firmware (``lincomatic/open_evse``, REFERENCE 6.1) answers
with checksums and echoed sequence ids, sends ``$AT`` on every state change,
drives the CP line of a simulated EV (``hal.sim.plant.SimEv``), closes its own
relay while enabled and the EV is in C/D, integrates energy, and honours
``$SY`` heartbeat supervision (no pulse for the interval: current capacity
falls back to the safe current until the miss is acknowledged).

For tests and the bench it records every command received with its
``time.monotonic()`` stamp, and can inject garbage, controller faults,
silence, dropped commands and a reboot.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
import tty
from collections.abc import Callable
from typing import NamedTuple

from hal.pilot import PilotMode, PilotOutput
from hal.rapi.frames import Frame, FrameParser, encode
from hal.rapi.states import EvseMode, EvseState
from hal.sim.pilot import SimControlPilot
from hal.sim.plant import SimEv
from hal.types import CpState

_log = logging.getLogger(__name__)

HS_ACK_COOKIE = 165
FIRMWARE_VERSION = "8.2.2.SIM"
RAPI_VERSION = "5.2.1"
_CP_CODES = {CpState.A: 1, CpState.B: 2, CpState.C: 3, CpState.D: 4}


class ReceivedCommand(NamedTuple):
    """One command frame the controller received."""

    monotonic_s: float
    tokens: tuple[str, ...]

    @property
    def command(self) -> str:
        return self.tokens[0]


def duty_for_amps(amps: int) -> float:
    """The PWM duty the controller generates for ``amps`` (REFERENCE 1.2)."""
    if amps <= 51:
        return amps / 0.6
    return amps / 2.5 + 64.0


class SimRapiController:
    """A simulated OpenEVSE board (see the module docstring).

    Args:
        max_current_a: The controller's configured maximum (EEPROM), whole A.
        ev_max_current_a: The EV's on-board charger limit, A.
        ev_phases: Phases the EV charges on.
        voltage_v: Line voltage reported by ``$GG`` and used for energy, V.
        tick_interval_s: Energy integration step, s.
        heartbeat_supported: False: firmware built without HEARTBEAT_SUPERVISION
            (``$SY``/``$GY`` answer ``$NK``).
    """

    def __init__(
        self,
        *,
        max_current_a: int = 32,
        ev_max_current_a: float = 32.0,
        ev_phases: int = 1,
        voltage_v: float = 230.0,
        tick_interval_s: float = 0.1,
        heartbeat_supported: bool = True,
    ) -> None:
        self.pilot = SimControlPilot()
        self.ev = SimEv(
            pilot=self.pilot,
            max_current_a=ev_max_current_a,
            phases=ev_phases,
            voltage_v=voltage_v,
        )
        self.ev.connect_contactor_probe(lambda: self.relay_closed)
        self.max_current_a = max_current_a
        self.voltage_v = voltage_v
        self._tick_interval_s = tick_interval_s
        self._heartbeat_supported = heartbeat_supported
        self.mode = EvseMode.ENABLED  # OpenEVSE boots enabled
        self.capacity_a = max_current_a
        self.fault: int | None = None
        self.hs_interval_s = 0
        self.hs_current_a = 0
        self.hs_trigger = 0  # 0 never missed, 2 missed and not acked, 1 missed and acked
        self.session_ws = 0.0
        self.total_wh = 0
        self.received: collections.deque[ReceivedCommand] = collections.deque(maxlen=10_000)
        """Every command received, oldest first, with its monotonic stamp."""
        self.responses_sent = 0
        self._answering = True
        self._dropped: set[str] = set()
        self._mangles: collections.deque[Callable[[bytes], bytes]] = collections.deque()
        self._parser = FrameParser()
        self._master: int | None = None
        self._slave: int | None = None
        self._port = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hs_timer: asyncio.TimerHandle | None = None
        self._tick_task: asyncio.Task[None] | None = None
        self._last_at: tuple[int, int, int] | None = None
        self._in_session = False
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._apply_outputs()

    # --- wiring -------------------------------------------------------------------

    @property
    def port(self) -> str:
        """The tty path the agent opens.

        Raises:
            RuntimeError: Before ``start``.
        """
        if not self._port:
            raise RuntimeError("SimRapiController not started")
        return self._port

    async def start(self) -> None:
        """Create the pty pair and start answering and simulating.

        Raises:
            RuntimeError: Already started.
        """
        if self._loop is not None:
            raise RuntimeError("SimRapiController already started")
        loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline
        os.set_blocking(master, False)
        self._master, self._slave, self._port = master, slave, os.ttyname(slave)
        self._loop = loop
        loop.add_reader(master, self._on_readable)
        await self.pilot.start(self._on_cp_state)
        self._tick_task = asyncio.create_task(self._tick_loop(), name="sim-rapi-tick")

    async def stop(self) -> None:
        """Stop answering and close the pty. Idempotent."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
            self._tick_task = None
        if self._hs_timer is not None:
            self._hs_timer.cancel()
        if self._master is not None:
            loop.remove_reader(self._master)
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        for _, future in self._waiters:
            future.cancel()
        self._waiters.clear()

    # --- state --------------------------------------------------------------------

    @property
    def relay_closed(self) -> bool:
        """The controller's own relay: closed while enabled, fault-free, EV in C/D."""
        return (
            self.mode is EvseMode.ENABLED
            and self.fault is None
            and self.pilot.output.mode is PilotMode.PWM
            and self.ev.cp_state in (CpState.C, CpState.D)
        )

    @property
    def evse_state(self) -> int:
        """The EVSE_STATE code the controller reports now."""
        if self.fault is not None:
            return self.fault
        if self.mode is EvseMode.DISABLED:
            return EvseState.DISABLED
        if self.mode is EvseMode.SLEEPING:
            return EvseState.SLEEPING
        cp = self.ev.cp_state
        if cp in _CP_CODES:
            return _CP_CODES[cp]
        return EvseState.DIODE_CHECK_FAILED  # E/F sensed while the EVSE drives PWM/+12 V

    @property
    def pilot_state(self) -> int:
        """What the controller senses on CP (A..D as 1..4, 0 when unreadable)."""
        return _CP_CODES.get(self.ev.cp_state, 0)

    def commands(self, name: str) -> list[ReceivedCommand]:
        """The received commands called ``name`` (``"SC"``, ``"FS"``...), oldest first."""
        return [c for c in self.received if c.command == name]

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds; it is checked after every command
        received and every state change (wrap in ``asyncio.wait_for`` as a guard)."""
        if predicate():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        try:
            await future
        finally:
            self._waiters = [w for w in self._waiters if w[1] is not future]

    # --- fault injection ----------------------------------------------------------

    def inject(self, data: bytes) -> None:
        """Write raw bytes to the agent now (line noise, a rogue frame)."""
        self._write(data)

    def inject_fault(self, code: int) -> None:
        """Put the controller in a fault state (``EvseState.GFCI_FAULT``...): relay open."""
        self.fault = code
        self._changed()

    def clear_fault(self) -> None:
        """Leave the fault state."""
        self.fault = None
        self._changed()

    def set_answering(self, answering: bool) -> None:
        """A silent controller reads commands but neither answers nor notifies."""
        self._answering = answering

    def drop_commands(self, *names: str) -> None:
        """Ignore these commands from now on (as if lost on the wire); none to stop."""
        self._dropped = set(names)

    def mangle_next_response(self, mangle: Callable[[bytes], bytes]) -> None:
        """Pass the next answer frame through ``mangle`` before it goes out."""
        self._mangles.append(mangle)

    def reboot(self) -> None:
        """Restart the firmware: enabled, EEPROM current, ``$AB`` notification."""
        self.mode = EvseMode.ENABLED
        self.capacity_a = self.max_current_a
        self.hs_trigger = 0
        self._arm_heartbeat()
        self._last_at = None
        self._notify(("AB", "00", FIRMWARE_VERSION))
        self._changed()

    # --- the wire -----------------------------------------------------------------

    def _on_readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the agent closed its end
            return
        for item in self._parser.feed(data):
            if isinstance(item, Frame):
                self._on_command(item)

    def _write(self, data: bytes) -> None:
        if self._master is None:
            raise RuntimeError("SimRapiController not started")
        try:
            os.write(self._master, data)
        except BlockingIOError:
            _log.warning("sim rapi: pty buffer full, %d bytes lost", len(data))

    def _notify(self, tokens: tuple[str, ...]) -> None:
        if self._answering and self._master is not None:
            self._write(encode(tokens))

    def _respond(self, ok: bool, args: tuple[str, ...], seq_id: int | None) -> None:
        if not self._answering:
            return
        frame = encode(("OK" if ok else "NK", *args), seq_id)
        if self._mangles:
            frame = self._mangles.popleft()(frame)
        self.responses_sent += 1
        self._write(frame)

    def _on_command(self, frame: Frame) -> None:
        self.received.append(ReceivedCommand(time.monotonic(), frame.tokens))
        if frame.command not in self._dropped:
            ok, args = self._execute(frame.command, frame.args)
            self._respond(ok, args, frame.seq_id)
            self._changed()  # a command may change the state: $AT after the answer
        else:
            self._poke()

    def _execute(self, command: str, args: tuple[str, ...]) -> tuple[bool, tuple[str, ...]]:
        if command in ("SY", "GY") and not self._heartbeat_supported:
            return False, ()
        match command, args:
            case "GS", ():
                return True, (f"{self.evse_state:02x}", "0", f"{self.pilot_state:02x}", "0000")
            case "GG", ():
                current_ma = round(self.ev.drawn_current_a * 1000)
                return True, (str(current_ma), str(round(self.voltage_v * 1000)))
            case "GU", ():
                return True, (str(int(self.session_ws)), str(self.total_wh))
            case "GC", ():
                caps = (6, self.max_current_a, self.capacity_a, self.max_current_a)
                return True, tuple(map(str, caps))
            case "GV", ():
                return True, (FIRMWARE_VERSION, RAPI_VERSION)
            case "GY", ():
                return True, self._hs_status()
            case "G0", ():
                return True, ("1" if self.ev.plugged else "0",)
            case "SC", (amps, *rest) if amps.isdigit() and rest in ([], ["V"]):
                wanted = int(amps)
                self.capacity_a = max(6, min(self.max_current_a, wanted))
                return self.capacity_a == wanted, (str(self.capacity_a),)
            case "FE", ():
                self.mode = EvseMode.ENABLED
                return True, ()
            case "FS", ():
                self.mode = EvseMode.SLEEPING
                return True, ()
            case "FD", ():
                self.mode = EvseMode.DISABLED
                return True, ()
            case "SY", ():
                self._arm_heartbeat()
                return self.hs_trigger != 2, self._hs_status()
            case "SY", (cookie,) if cookie.isdigit():
                ok = int(cookie) == HS_ACK_COOKIE
                if ok and self.hs_trigger == 2:
                    self.capacity_a = self.max_current_a
                    self.hs_trigger = 1
                return ok, self._hs_status()
            case "SY", (interval, amps) if interval.isdigit() and amps.isdigit():
                self.hs_interval_s, self.hs_current_a = int(interval), int(amps)
                self._arm_heartbeat()
                return True, self._hs_status()
        return False, ()

    def _hs_status(self) -> tuple[str, ...]:
        return (str(self.hs_interval_s), str(self.hs_current_a), str(self.hs_trigger))

    def _arm_heartbeat(self) -> None:
        if self._hs_timer is not None:
            self._hs_timer.cancel()
            self._hs_timer = None
        if self.hs_interval_s > 0 and self._loop is not None:
            self._hs_timer = self._loop.call_later(self.hs_interval_s, self._heartbeat_missed)

    def _heartbeat_missed(self) -> None:
        """No pulse for the interval: fall back to the safe current until acked."""
        self._hs_timer = None
        if self.hs_current_a < self.capacity_a:
            self.capacity_a = self.hs_current_a
        self.hs_trigger = 2
        self._arm_heartbeat()
        self._changed()

    # --- the model ----------------------------------------------------------------

    def _on_cp_state(self, state: CpState) -> None:
        """The EV changed what it presents on CP (delivered in the loop)."""
        connected = state in (CpState.B, CpState.C, CpState.D)
        if connected and not self._in_session:
            self._in_session = True
            self.session_ws = 0.0
        elif state is CpState.A and self._in_session:
            self._in_session = False
            self.total_wh += int(self.session_ws // 3600)
        self._changed()

    def _apply_outputs(self) -> None:
        if self.mode is EvseMode.DISABLED:
            output = PilotOutput.error()
        elif self.mode is EvseMode.SLEEPING or self.fault is not None:
            output = PilotOutput.steady()
        else:
            output = PilotOutput.pwm(duty_for_amps(self.capacity_a))
        if output != self.pilot.output:
            self.pilot.set_output(output)  # the EV reacts (its CP change comes back later)

    def _changed(self) -> None:
        self._apply_outputs()
        state = (self.evse_state, self.pilot_state, self.capacity_a)
        if state != self._last_at and self._master is not None:
            self._last_at = state
            self._notify(("AT", f"{state[0]:02x}", f"{state[1]:02x}", str(state[2]), "0000"))
        self._poke()

    def _poke(self) -> None:
        for predicate, future in list(self._waiters):
            if not future.done() and predicate():
                future.set_result(None)

    async def _tick_loop(self) -> None:
        last_s = time.monotonic()
        while True:
            await asyncio.sleep(self._tick_interval_s)
            now_s = time.monotonic()
            dt_s, last_s = now_s - last_s, now_s
            power_w = self.ev.power_w
            self.ev.tick(dt_s)
            if self._in_session:
                self.session_ws += power_w * dt_s
