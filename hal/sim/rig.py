"""SimEvseRig: one EVSE's simulated hardware, wired together around a SimEv.

The real drivers run against protocol-speaking simulators:

    SimEv --values--> SimModbusMeterServer <--Modbus TCP-- ModbusTcpPowerMeter
    SimEv <--CP-----> SimControlPilot (the agent drives it directly)
    MockConnectedPin coil --wire--> mirror-contact pin <-- GpioContactor
    SimIdTokenReader.swipe()

Faults named by the plant are applied here: ``meter`` silences the server,
``meter-frozen`` freezes its registers, ``contactor-welded``/``contactor-stuck``
cut the coil-to-mirror wire and hold the contacts closed/open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from gpiozero.pins.mock import MockConnectedPin, MockPin

from hal.gpio.contactor import GpioContactor
from hal.modbus.registers import load_register_map
from hal.modbus.tcp_meter import ModbusTcpPowerMeter
from hal.sim.modbus_server import SimModbusMeterServer
from hal.sim.pilot import SimControlPilot
from hal.sim.plant import FAULT_NAMES, SimEv
from hal.sim.token_reader import SimIdTokenReader

_log = logging.getLogger(__name__)

COMMANDS: tuple[str, ...] = (
    "plug",
    "unplug",
    "swipe",
    "pause",
    "resume",
    "fault",
    "clear",
    "status",
)
"""Commands accepted by ``SimEvseRig.apply``."""


class SimEvseRig:
    """The simulated hardware of one EVSE.

    Construction wires the pins, the pilot, the EV and the contactor driver;
    ``start`` opens the Modbus server, creates the meter driver pointed at it and
    starts the EV clock. The agent starts/stops ``meter``, ``contactor``,
    ``pilot`` and ``token_reader`` itself (the rig's ``stop`` stops them too, in
    case it did not).

    Args:
        evse_id: EVSE number (for names and messages).
        pin_factory: A gpiozero ``MockFactory``; the coil pin becomes a
            ``MockConnectedPin`` wired to the feedback pin.
        coil_pin: Mock pin number of the contactor coil.
        feedback_pin: Mock pin number of the mirror contact.
        ev_max_current_a: EV charger limit per phase, A.
        ev_phases: Phases the EV charges on.
        voltage_v: Grid voltage, V.
        meter_model: Register map the simulated meter speaks.
        tick_interval_s: EV clock period: energy integration and meter register
            updates, s.
        meter_poll_interval_s: Poll period of the meter driver, s.
        meter_timeout_s: Request timeout of the meter driver, s.
        meter_fault_after_s: Debounce of meter faults (silent and frozen), s.
        feedback_settle_s: Mirror-contact settle time of the contactor driver, s.

    Raises:
        ValueError: Unknown meter model (RegisterMapError) or bad EV parameters.
    """

    def __init__(
        self,
        *,
        evse_id: int,
        pin_factory: Any,
        coil_pin: int,
        feedback_pin: int,
        ev_max_current_a: float = 32.0,
        ev_phases: int = 3,
        voltage_v: float = 230.0,
        meter_model: str = "sdm630",
        tick_interval_s: float = 0.1,
        meter_poll_interval_s: float = 1.0,
        meter_timeout_s: float = 1.0,
        meter_fault_after_s: float = 5.0,
        feedback_settle_s: float = 0.1,
    ) -> None:
        if tick_interval_s <= 0:
            raise ValueError("tick_interval_s must be > 0")
        self.evse_id = evse_id
        self._tick_interval_s = tick_interval_s
        self._register_map = load_register_map(meter_model)
        self._meter_poll_interval_s = meter_poll_interval_s
        self._meter_timeout_s = meter_timeout_s
        self._meter_fault_after_s = meter_fault_after_s
        self._feedback_pin: MockPin = pin_factory.pin(feedback_pin)
        self._coil_pin: MockConnectedPin = pin_factory.pin(
            coil_pin, pin_class=MockConnectedPin, input_pin=self._feedback_pin
        )
        self.pilot = SimControlPilot()
        self.token_reader = SimIdTokenReader()
        self.ev = SimEv(
            pilot=self.pilot,
            max_current_a=ev_max_current_a,
            phases=ev_phases,
            voltage_v=voltage_v,
        )
        self.ev.connect_contactor_probe(self._contacts_closed)
        self.ev.add_fault_observer(self._on_ev_fault)
        self.contactor = GpioContactor(
            coil_pin=coil_pin,
            feedback_pin=feedback_pin,
            pin_factory=pin_factory,
            feedback_settle_s=feedback_settle_s,
        )
        self.server = SimModbusMeterServer(self._register_map)
        self._meter: ModbusTcpPowerMeter | None = None
        self._tick_task: asyncio.Task[None] | None = None

    @property
    def meter(self) -> ModbusTcpPowerMeter:
        """The real meter driver pointed at the simulated meter (exists after ``start``).

        Raises:
            RuntimeError: Before ``start``.
        """
        if self._meter is None:
            raise RuntimeError("SimEvseRig.meter exists after start()")
        return self._meter

    @property
    def coil_pin_obj(self) -> MockConnectedPin:
        """The coil's mock pin; its ``.states`` carry change timestamps (benchmarks)."""
        return self._coil_pin

    @property
    def feedback_pin_obj(self) -> MockPin:
        """The mirror contact's mock pin (the main contacts' state)."""
        return self._feedback_pin

    def coil_is_on(self) -> bool:
        """True while the coil pin is driven (active-high coil)."""
        return bool(self._coil_pin.state)

    async def start(self) -> None:
        """Start the Modbus server, create the meter driver and start the EV clock."""
        if self._tick_task is not None:
            raise RuntimeError("SimEvseRig already started")
        self.server.update(self.ev.meter_values())
        await self.server.start()
        self._meter = ModbusTcpPowerMeter(
            host="127.0.0.1",
            port=self.server.port,
            register_map=self._register_map,
            poll_interval_s=self._meter_poll_interval_s,
            timeout_s=self._meter_timeout_s,
            fault_after_s=self._meter_fault_after_s,
            frozen_after_s=self._meter_fault_after_s,
            frozen_min_energy_wh=0.0,  # the simulated registers are exact
        )
        self._tick_task = asyncio.get_running_loop().create_task(
            self._run_clock(), name=f"sim-ev-clock evse {self.evse_id}"
        )

    async def stop(self) -> None:
        """Stop the EV clock, the drivers (if still running) and the server. Idempotent."""
        task, self._tick_task = self._tick_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._meter is not None:
            await self._meter.stop()
        await self.contactor.stop()
        await self.pilot.stop()
        await self.token_reader.stop()
        await self.server.stop()

    def apply(self, command: str, arg: str | None = None) -> str:
        """Run one control command (the ``evse-agent sim ...`` socket uses this).

        Commands: ``plug``, ``unplug``, ``swipe TOKEN``, ``pause``, ``resume``,
        ``fault NAME`` (see ``hal.sim.plant.FAULT_NAMES``), ``clear``, ``status``.

        Returns:
            A one-line human answer.

        Raises:
            ValueError: Unknown command, missing/unexpected argument, bad token or
                unknown fault name, with a message saying what is valid.
        """
        needs_arg = command in ("swipe", "fault")
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}; valid: {', '.join(COMMANDS)}")
        if needs_arg and not arg:
            what = "TOKEN" if command == "swipe" else f"NAME ({', '.join(FAULT_NAMES)})"
            raise ValueError(f"{command} needs an argument: {command} {what}")
        if not needs_arg and arg:
            raise ValueError(f"{command} takes no argument, got {arg!r}")
        ev = self.ev
        prefix = f"evse {self.evse_id}:"
        if command == "plug":
            ev.plug()
            return f"{prefix} plugged in, CP {ev.cp_state}"
        if command == "unplug":
            ev.unplug()
            return f"{prefix} unplugged, CP {ev.cp_state}"
        if command == "pause":
            ev.pause()
            return f"{prefix} EV paused, CP {ev.cp_state}"
        if command == "resume":
            ev.resume()
            return f"{prefix} EV resumed, CP {ev.cp_state}"
        if command == "swipe":
            assert arg is not None
            if self.token_reader.swipe(arg):
                return f"{prefix} swiped {arg.strip().upper()}"
            return f"{prefix} swipe of {arg.strip().upper()} ignored: reader not started"
        if command == "fault":
            assert arg is not None
            ev.inject_fault(arg)
            return f"{prefix} fault {arg} injected, CP {ev.cp_state}"
        if command == "clear":
            ev.clear_faults()
            return f"{prefix} faults cleared, CP {ev.cp_state}"
        return self.status()

    def status(self) -> str:
        """One line: CP state, offer, draw, energy, SoC, contactor and faults."""
        ev = self.ev
        faults = ",".join(sorted(ev.faults)) or "none"
        return (
            f"evse {self.evse_id}: CP {ev.cp_state}, plugged {ev.plugged}, "
            f"offered {ev.offered_current_a:.1f} A, drawing {ev.drawn_current_a:.1f} A, "
            f"energy {ev.energy_import_wh:.1f} Wh, SoC {ev.soc_pct:.1f} %, "
            f"coil {'on' if self.coil_is_on() else 'off'}, "
            f"contacts {'closed' if self._contacts_closed() else 'open'}, faults {faults}"
        )

    def _contacts_closed(self) -> bool:
        return bool(self._feedback_pin.state)

    def _on_ev_fault(self, name: str, active: bool) -> None:
        if name == "meter":
            self.server.set_answering(not active)
        elif name == "meter-frozen":
            self.server.freeze(active)
        elif name in ("contactor-welded", "contactor-stuck"):
            self._set_contactor_fault(name, active)

    def _set_contactor_fault(self, name: str, active: bool) -> None:
        coil, contacts = self._coil_pin, self._feedback_pin
        if active:
            coil.input_pin = None  # the mirror no longer follows the coil
            if name == "contactor-welded":
                contacts.drive_high()
            else:
                contacts.drive_low()
            return
        if "contactor-welded" in self.ev.faults or "contactor-stuck" in self.ev.faults:
            return  # another contactor fault still holds the contacts
        coil.input_pin = contacts
        if coil.state:
            contacts.drive_high()
        else:
            contacts.drive_low()

    async def _run_clock(self) -> None:
        """Advance the EV by the measured elapsed time and publish meter values."""
        last_s = time.monotonic()
        while True:
            await asyncio.sleep(self._tick_interval_s)
            now_s = time.monotonic()
            self.ev.tick(now_s - last_s)
            last_s = now_s
            try:
                self.server.update(self.ev.meter_values())
            except ValueError:
                _log.exception("evse %d: meter values do not fit the register map", self.evse_id)
