"""RapiController: one OpenEVSE controller (safety MCU) on one serial port.

The controller owns the hard real-time rules (REFERENCE 1.4 safety note): it
drives CP, closes its relay only while enabled and the EV is in C/D, opens it
on C -> B and on its own faults. The agent decides *whether* it may charge and
at what current. One ``RapiController`` serves the "pilot", "contactor" and
"meter" roles of one EVSE (``hal.rapi.roles``); ``RapiLinks`` (``hal.rapi.links``)
hands out one per port, as ``ModbusRtuLines`` does for RS-485 lines.

What the roles ask for becomes controller commands (REFERENCE 6.1):

========================================  ==========================================
agent                                     controller
========================================  ==========================================
pilot PWM duty D                          ``$SC <amps> V`` (volatile) + ``$FE`` enable
pilot steady +12 V (X1)                   ``$FS`` sleep (+12 V, relay open)
pilot error (F)                           ``$FD`` disable (-12 V, relay open at once)
contactor on                              permission only: enabled, the controller
                                          closes its relay when the EV is in C/D
contactor off                             ``$FS`` at once (the relay opens even if the
                                          controller's own C -> B rule already did);
                                          while the EV still requests energy the
                                          controller keeps sleeping (RAPI has no "PWM
                                          on, relay held open"); once the EV is out
                                          of C/D a wanted PWM is re-enabled (``$FE``)
========================================  ==========================================

Supervision (``$SY``): at start the controller is told to fall back to
``safe_current_a`` by itself when no heartbeat comes for ``heartbeat_timeout_s``;
then a pulse goes out every ``heartbeat_interval_s``. A pulse answered ``$NK``
means one was missed (the agent stalled): it is acknowledged (``$SY 165``) and
the agent's current is sent again. ``$GS`` each period re-reads the state in
case an ``$AT`` notification was lost; an ``$AB`` (controller rebooted) makes
the agent configure it again and re-send everything.

Everything runs in the event loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from hal.faults import FaultLatch
from hal.pilot import PilotMode, PilotOutput
from hal.rapi.frames import Frame
from hal.rapi.link import RapiLink, RapiLinkError, RapiResponse
from hal.rapi.links import RapiLinks as RapiLinks  # where it used to live
from hal.rapi.states import (
    MODE_COMMANDS,
    EvseMode,
    EvseState,
    amps_for_duty,
    cp_state_for,
    fault_for,
    wanted_mode,
)
from hal.types import CpState, FaultCode, FaultReport

_log = logging.getLogger(__name__)

HS_ACK_COOKIE = 165  # RAPI $SY: acknowledges a missed heartbeat (0xA5)
_POWER_STATES = (CpState.C, CpState.D)


@dataclass(frozen=True)
class RapiSettings:
    """One RAPI port and how the agent supervises its controller.

    Attributes:
        port: Serial device path.
        baudrate: Line speed, baud (OpenEVSE: 115200).
        timeout_s: Time a command waits for its answer, s.
        heartbeat_interval_s: Period of ``$SY`` pulses and ``$GS`` re-reads, s.
        heartbeat_timeout_s: The controller falls back to ``safe_current_a`` when
            no pulse came for this long, whole s (``$SY interval amps``).
        safe_current_a: The controller's fallback current, whole A (>= 6).
        fault_after_s: No answer at all for this long: the pilot reports
            ``InternalError`` (the agent cannot see or command the EVSE), s.
    """

    port: str
    baudrate: int = 115200
    timeout_s: float = 0.5
    heartbeat_interval_s: float = 2.0
    heartbeat_timeout_s: int = 10
    safe_current_a: int = 6
    fault_after_s: float = 3.0


def _mode_of(evse_state: int) -> EvseMode:
    if evse_state == EvseState.SLEEPING:
        return EvseMode.SLEEPING
    if evse_state == EvseState.DISABLED:
        return EvseMode.DISABLED
    return EvseMode.ENABLED


class RapiController:
    """The agent's side of one OpenEVSE controller (see the module docstring).

    Args:
        settings: Port and supervision settings.
        on_garbage: Passed to the link (diagnostics, tests).
        garbage_log_interval_s: At most one garbage warning per this period, s.
    """

    def __init__(
        self,
        settings: RapiSettings,
        *,
        on_garbage: Callable[[str, int], None] | None = None,
        garbage_log_interval_s: float = 10.0,
    ) -> None:
        self.settings = settings
        self._on_garbage = on_garbage
        self._garbage_log_interval_s = garbage_log_interval_s
        self.link = self._new_link()
        self._cp = CpState.F  # nothing known yet: "EVSE not available"
        self._evse_state: int | None = None
        self._output = PilotOutput.steady()
        self._contactor_on = False
        self._hold_open = False
        self._applied_mode: EvseMode | None = None
        self._applied_amps: int | None = None
        self._mode_commands_sent = 0
        self._state_listeners: list[Callable[[CpState], None]] = []
        self._fault_listeners: list[Callable[[FaultReport], None]] = []
        self._latches = {
            code: FaultLatch(code, self._emit_fault)
            for code in sorted({f[0] for f in _ALL_FAULTS}, key=str)
        }
        self._link_latch = FaultLatch(FaultCode.INTERNAL_ERROR, self._emit_fault)
        self._users = 0
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._configured = False
        self._heartbeat = False  # the firmware supports $SY supervision
        self._last_answer_s: float | None = None

    # --- what the roles read -------------------------------------------------------

    @property
    def cp_state(self) -> CpState:
        """The CP state last reported by the controller (F before the first)."""
        return self._cp

    @property
    def evse_state(self) -> int | None:
        """The controller's last ``evsestate`` code, or None before the first."""
        return self._evse_state

    @property
    def output(self) -> PilotOutput:
        """The pilot output the agent asked for."""
        return self._output

    @property
    def contactor_on(self) -> bool:
        """Whether the agent permits the relay to close (the commanded state)."""
        return self._contactor_on

    @property
    def ev_connected(self) -> bool:
        """True while the controller senses an EV (B, C or D)."""
        return self._cp in (CpState.B, CpState.C, CpState.D)

    # --- what the roles command ----------------------------------------------------

    def set_output(self, output: PilotOutput) -> None:
        """Ask for a pilot output; the commands go out at once (never awaits).

        Raises:
            ValueError: A PWM duty outside 0..100 %.
        """
        if not 0.0 <= output.duty_pct <= 100.0:
            raise ValueError(f"duty_pct must be 0..100, got {output.duty_pct}")
        if output.mode is PilotMode.PWM and amps_for_duty(output.duty_pct) is None:
            _log.warning(
                "%s: duty %.1f %% cannot be signalled over RAPI; sleeping",
                self.settings.port,
                output.duty_pct,
            )
        self._output = output
        self._apply()

    def switch_contactor(self, on: bool) -> None:
        """Permit (on) or forbid (off) the relay; off sends ``$FS`` at once."""
        if on:
            self._contactor_on = True
            self._hold_open = False
            self._apply()
            return
        self._contactor_on = False
        if self._cp in _POWER_STATES:
            self._hold_open = True
        if self._users and self._applied_mode in (EvseMode.ENABLED, None):
            self._send_mode(EvseMode.SLEEPING)  # before anything else
        self._apply()

    # --- listeners -----------------------------------------------------------------

    def add_state_listener(self, fn: Callable[[CpState], None]) -> None:
        """Call ``fn`` (loop thread) with every change of ``cp_state``."""
        self._state_listeners.append(fn)

    def add_fault_listener(self, fn: Callable[[FaultReport], None]) -> None:
        """Call ``fn`` (loop thread) with controller faults; active ones are replayed."""
        self._fault_listeners.append(fn)
        for code, latch in (*self._latches.items(), (FaultCode.INTERNAL_ERROR, self._link_latch)):
            if latch.active:
                fn(FaultReport(code, True, latch.detail or ""))

    # --- lifetime ------------------------------------------------------------------

    async def acquire(self) -> None:
        """A role starts: the first one opens the link and starts supervision.

        Returns once the controller has been configured and its state read, or
        that failed (then ``InternalError`` is reported and retried each period).
        """
        self._users += 1
        if self._task is None:
            if self.link.closed:
                self.link = self._new_link()
            self._ready.clear()
            self._task = asyncio.create_task(self._supervise(), name=f"rapi-{self.settings.port}")
        await self._ready.wait()

    async def release(self) -> None:
        """A role stops: the last one waits for commands in flight (bounded by
        their timeouts), stops supervision and closes the port."""
        self._users = max(0, self._users - 1)
        if self._users:
            return
        await self.close()

    async def close(self) -> None:
        """Stop supervision and close the port now. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()
        self.link.close()
        self._configured = False
        self._applied_mode = self._applied_amps = None

    async def flush(self) -> None:
        """Wait until every command in flight is answered or timed out."""
        pending = self.link.pending_futures()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # --- commands ------------------------------------------------------------------

    def _apply(self, *, force: bool = False) -> None:
        """Send what differs between the wanted and the applied controller state."""
        if not self._users or (not self._configured and not force):
            return
        mode = wanted_mode(self._output, hold_open=self._hold_open)
        amps = amps_for_duty(self._output.duty_pct) if mode is EvseMode.ENABLED else None
        if mode is not EvseMode.ENABLED and (force or mode != self._applied_mode):
            self._send_mode(mode)  # opening first
        if amps is not None and (force or amps != self._applied_amps):
            self._send_current(amps)
        if mode is EvseMode.ENABLED and (force or mode != self._applied_mode):
            self._send_mode(mode)

    def _send_mode(self, mode: EvseMode) -> None:
        self._applied_mode = mode
        self._mode_commands_sent += 1
        future = self.link.send(MODE_COMMANDS[mode])
        future.add_done_callback(lambda f: self._mode_done(f, mode))

    def _mode_done(self, future: asyncio.Future[RapiResponse], mode: EvseMode) -> None:
        failed = future.cancelled() or future.exception() is not None or not future.result().ok
        if failed and self._applied_mode is mode:
            self._applied_mode = None  # unknown: the next period sends it again

    def _send_current(self, amps: int) -> None:
        self._applied_amps = amps
        future = self.link.send("SC", str(amps), "V")
        future.add_done_callback(lambda f: self._current_done(f, amps))

    def _current_done(self, future: asyncio.Future[RapiResponse], amps: int) -> None:
        if future.cancelled() or future.exception() is not None:
            if self._applied_amps == amps:
                self._applied_amps = None
            return
        response = future.result()
        if not response.ok:  # clamped to the controller's min/max, or over temperature
            _log.warning(
                "%s: $SC %d refused, controller set %s A",
                self.settings.port,
                amps,
                " ".join(response.args) or "?",
            )

    # --- supervision ---------------------------------------------------------------

    async def _supervise(self) -> None:
        period_s = self.settings.heartbeat_interval_s
        while True:
            try:
                if not self._configured:
                    await self._configure()
                else:
                    await self._pulse()
                    await self._refresh_state()
                    self._apply()
            except RapiLinkError as exc:
                self._link_failed(exc)
            finally:
                self._ready.set()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), period_s)  # the period, or $AB

    async def _configure(self) -> None:
        """Supervision settings, the state, then every wanted output (forced)."""
        s = self.settings
        status = await self._request("GY")
        self._heartbeat = status.ok
        if status.args[:2] != (str(s.heartbeat_timeout_s), str(s.safe_current_a)):
            # $SY with parameters is stored in the controller's EEPROM: only on change
            configured = await self._request(
                "SY", str(s.heartbeat_timeout_s), str(s.safe_current_a)
            )
            self._heartbeat = configured.ok
        if not self._heartbeat:
            _log.warning(
                "%s: controller firmware refuses $SY: no fallback current if the agent "
                "stops (build it with HEARTBEAT_SUPERVISION)",
                s.port,
            )
        elif len(status.args) >= 3 and status.args[2] == "2":  # a missed pulse, not acked
            await self._request("SY", str(HS_ACK_COOKIE))
        await self._refresh_state()
        self._configured = True
        self._apply(force=True)

    async def _pulse(self) -> None:
        if not self._heartbeat:
            return
        response = await self._request("SY")
        if response.ok:
            return
        _log.warning("%s: controller missed a heartbeat; acknowledging", self.settings.port)
        await self._request("SY", str(HS_ACK_COOKIE))
        self._applied_amps = None  # the controller restored its own maximum: send ours

    async def _refresh_state(self) -> None:
        sent_before = self._mode_commands_sent
        response = await self._request("GS")
        parsed = _parse_ints(response.args, (16, 10, 16))
        if parsed is None:
            raise RapiLinkError(f"{self.settings.port}: bad $GS answer {response.args}")
        evse_state, _elapsed_s, pilot_state = parsed
        if sent_before == self._mode_commands_sent:  # no newer command since: reconcile
            actual = _mode_of(evse_state)
            if self._applied_mode is not None and actual != self._applied_mode:
                _log.warning(
                    "%s: controller is %s, expected %s; correcting",
                    self.settings.port,
                    actual,
                    self._applied_mode,
                )
                self._applied_mode = None
        self._update_state(evse_state, pilot_state)

    async def versions(self) -> tuple[str, str]:
        """(firmware version, RAPI version) from ``$GV``, for ``evse-agent hal check``.

        Raises:
            RapiLinkError: No answer, or ``$NK``.
        """
        response = await self._request("GV")
        if not response.ok or len(response.args) < 2:
            raise RapiLinkError(f"$GV refused: {' '.join(response.args) or 'NK'}")
        return response.args[0], response.args[1]

    async def _request(self, *tokens: str) -> RapiResponse:
        response = await self.link.request(*tokens)
        self._answered()
        return response

    def _answered(self) -> None:
        self._last_answer_s = time.monotonic()
        self._link_latch.clear("controller answers again")

    def _link_failed(self, exc: RapiLinkError) -> None:
        self._configured = False  # on recovery: configure and re-send everything
        self._applied_mode = self._applied_amps = None
        last = self._last_answer_s
        silent = last is None or time.monotonic() - last >= self.settings.fault_after_s
        if silent and self._link_latch.raise_(f"RAPI controller not answering: {exc}"):
            self._set_cp(CpState.F)

    # --- notifications -------------------------------------------------------------

    def on_async(self, frame: Frame) -> None:
        """The link's notification handler ($AT, $AB, ...)."""
        self._answered()
        if frame.command == "AT":
            parsed = _parse_ints(frame.args, (16, 16))
            if parsed is None:
                _log.warning("%s: bad $AT %s ignored", self.settings.port, frame.args)
                return
            self._update_state(parsed[0], parsed[1])
        elif frame.command == "AB":
            _log.warning(
                "%s: controller rebooted (%s); configuring it again",
                self.settings.port,
                " ".join(frame.args),
            )
            self._configured = False
            self._applied_mode = self._applied_amps = None
            self._wake.set()

    def _update_state(self, evse_state: int, pilot_state: int) -> None:
        self._evse_state = evse_state
        fault = fault_for(evse_state)
        for code, latch in self._latches.items():
            if fault is not None and fault[0] is code:
                latch.raise_(fault[1])
            else:
                latch.clear()
        self._set_cp(cp_state_for(evse_state, pilot_state, self._cp))

    def _set_cp(self, cp: CpState) -> None:
        if cp == self._cp:
            return
        self._cp = cp
        for fn in list(self._state_listeners):
            fn(cp)  # the agent's interlock may switch the contactor off right here
        if cp not in _POWER_STATES and self._hold_open:
            self._hold_open = False
            self._apply()

    def _emit_fault(self, report: FaultReport) -> None:
        for fn in list(self._fault_listeners):
            fn(report)

    def _new_link(self) -> RapiLink:
        return RapiLink(
            self.settings.port,
            baudrate=self.settings.baudrate,
            timeout_s=self.settings.timeout_s,
            on_async=self.on_async,
            garbage_log_interval_s=self._garbage_log_interval_s,
            on_garbage=self._on_garbage,
        )


_ALL_FAULTS = [
    fault for code in range(0x05, EvseState.SLEEPING) if (fault := fault_for(code)) is not None
]


def _parse_ints(args: tuple[str, ...], bases: tuple[int, ...]) -> tuple[int, ...] | None:
    if len(args) < len(bases):
        return None
    try:
        return tuple(int(a, b) for a, b in zip(args, bases, strict=False))
    except ValueError:
        return None
