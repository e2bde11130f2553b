"""SimEv: the simulated electric vehicle ("plant") behind the simulated EVSE hardware.

A small deterministic model: no event loop, no clock. The EV presents a CP state
on the ``SimControlPilot`` (REFERENCE 1.1), reads the offered current from the
PWM duty the EVSE drives (REFERENCE 1.2, EV-side table), draws current when it
requests energy and power flows, and integrates energy on ``tick(dt_s)``.

Faults the plant cannot apply itself (meter, contactor) are announced to fault
observers; ``hal.sim.rig.SimEvseRig`` applies them to the server and the pins.
"""

from __future__ import annotations

from collections.abc import Callable

from hal.pilot import PilotMode, PilotOutput
from hal.sim.pilot import SimControlPilot
from hal.types import CpState

FAULT_NAMES: tuple[str, ...] = (
    "cp-error",  # CP shorted to PE: the EVSE sees state E
    "diode",  # EV diode shorted: the HAL reports F
    "meter",  # the meter stops answering
    "meter-frozen",  # the meter's registers freeze
    "contactor-welded",  # main contacts stay closed
    "contactor-stuck",  # main contacts stay open
)
"""Fault names accepted by ``SimEv.inject_fault``."""

MIN_CURRENT_A = 6.0  # IEC 61851-1: the lowest current a PWM duty can offer
FREQUENCY_HZ = 50.0


def offered_current_a(output: PilotOutput) -> float:
    """Current the EV may draw for a CP output, A; 0.0 means "no charging".

    EV-side reading of the duty (IEC 61851-1 Table A.8, REFERENCE 1.2): < 3 %
    none; 3-7 % digital communication required (none for this basic EV); 7-8 %
    none; 8-10 % 6 A; 10-85 % D * 0.6; 85-96 % (D - 64) * 2.5; 96-97 % 80 A;
    > 97 % none. Steady +12 V (X1) and -12 V (F) offer nothing.
    """
    if output.mode is not PilotMode.PWM:
        return 0.0
    duty = output.duty_pct
    if duty < 8.0 or duty > 97.0:
        return 0.0
    if duty < 10.0:
        return 6.0
    if duty <= 85.0:
        return duty * 0.6
    if duty <= 96.0:
        return (duty - 64.0) * 2.5
    return 80.0


class SimEv:
    """A simulated EV on one CP line.

    Args:
        pilot: The CP line; the EV registers itself as its output observer and
            presents its state with ``pilot.sense``.
        max_current_a: The EV's on-board charger limit per phase, A.
        phases: Phases the EV charges on (1..3).
        voltage_v: Line-to-neutral grid voltage, V.
        battery_wh: Usable battery capacity, Wh.
        soc_pct: Initial state of charge, %.
        ventilation_required: Request energy with state D instead of C.
    """

    def __init__(
        self,
        *,
        pilot: SimControlPilot,
        max_current_a: float = 32.0,
        phases: int = 3,
        voltage_v: float = 230.0,
        battery_wh: float = 60000,
        soc_pct: float = 40.0,
        ventilation_required: bool = False,
    ) -> None:
        if phases not in (1, 2, 3):
            raise ValueError(f"phases must be 1, 2 or 3, got {phases}")
        if battery_wh <= 0 or not 0.0 <= soc_pct <= 100.0 or max_current_a <= 0:
            raise ValueError("battery_wh and max_current_a must be > 0, soc_pct 0..100")
        self._pilot = pilot
        self.max_current_a = max_current_a
        self.phases = phases
        self._voltage_v = voltage_v
        self._battery_wh = float(battery_wh)
        self._soc_pct = float(soc_pct)
        self._ventilation_required = ventilation_required
        self._plugged = False
        self._paused = False
        self._faults: set[str] = set()
        self._energy_import_wh = 0.0
        self._power_flows: Callable[[], bool] = _never
        self._fault_observers: list[Callable[[str, bool], None]] = []
        pilot.connect_ev(self._on_pilot_output)
        self._present()

    # --- wiring -------------------------------------------------------------------

    def connect_contactor_probe(self, fn: Callable[[], bool]) -> None:
        """Tell the EV how to see whether power flows (the main contacts are closed)."""
        self._power_flows = fn

    def add_fault_observer(self, fn: Callable[[str, bool], None]) -> None:
        """Call ``fn(name, active)`` whenever a fault is injected or cleared."""
        self._fault_observers.append(fn)

    # --- user actions -------------------------------------------------------------

    def plug(self) -> None:
        """Plug the cable in."""
        self._plugged = True
        self._present()

    def unplug(self) -> None:
        """Pull the cable out."""
        self._plugged = False
        self._present()

    def pause(self) -> None:
        """Stop requesting energy (the EV opens S2: C -> B)."""
        self._paused = True
        self._present()

    def resume(self) -> None:
        """Request energy again."""
        self._paused = False
        self._present()

    def inject_fault(self, name: str) -> None:
        """Inject a fault by name (see ``FAULT_NAMES``); injecting it twice is a no-op.

        Raises:
            ValueError: Unknown name; the message lists the valid ones.
        """
        if name not in FAULT_NAMES:
            raise ValueError(f"unknown fault {name!r}; valid: {', '.join(FAULT_NAMES)}")
        if name in self._faults:
            return
        self._faults.add(name)
        self._present()
        for observer in list(self._fault_observers):
            observer(name, True)

    def clear_faults(self) -> None:
        """Clear every injected fault."""
        cleared = [n for n in FAULT_NAMES if n in self._faults]
        self._faults.clear()
        self._present()
        for name in cleared:
            for observer in list(self._fault_observers):
                observer(name, False)

    # --- state --------------------------------------------------------------------

    @property
    def plugged(self) -> bool:
        """True while the cable is in."""
        return self._plugged

    @property
    def paused(self) -> bool:
        """True while the user paused charging."""
        return self._paused

    @property
    def faults(self) -> frozenset[str]:
        """Names of the injected faults."""
        return frozenset(self._faults)

    @property
    def full(self) -> bool:
        """True once the battery reached 100 % (the EV stops requesting)."""
        return self._soc_pct >= 100.0

    @property
    def requesting(self) -> bool:
        """True when the EV wants energy now (plugged, not paused, not full, offered >= 6 A)."""
        return (
            self._plugged
            and not self._paused
            and not self.full
            and self.offered_current_a >= MIN_CURRENT_A
        )

    @property
    def cp_state(self) -> CpState:
        """What the EVSE senses on CP.

        Precedence: a CP short (``cp-error``) is E; the EVSE driving -12 V reads
        F (nothing else is measurable then); unplugged is A; a shorted EV diode is
        F; requesting energy is C (D with ``ventilation_required``); else B.
        """
        if "cp-error" in self._faults:
            return CpState.E
        if self._pilot.output.mode is PilotMode.ERROR:
            return CpState.F
        if not self._plugged:
            return CpState.A
        if "diode" in self._faults:
            return CpState.F
        if self.requesting:
            return CpState.D if self._ventilation_required else CpState.C
        return CpState.B

    @property
    def offered_current_a(self) -> float:
        """Current the EVSE offers per the CP duty, A (0 = no charging)."""
        return offered_current_a(self._pilot.output)

    @property
    def drawn_current_a(self) -> float:
        """Current drawn per phase, A: min(offered, max) while requesting and powered."""
        if self.cp_state not in (CpState.C, CpState.D) or not self._power_flows():
            return 0.0
        return min(self.offered_current_a, self.max_current_a)

    @property
    def soc_pct(self) -> float:
        """State of charge, %."""
        return self._soc_pct

    @property
    def energy_import_wh(self) -> float:
        """Energy delivered to the EV since the plant was created, Wh (monotonic)."""
        return self._energy_import_wh

    @property
    def power_w(self) -> float:
        """Total active power drawn, W."""
        return self.phases * self._voltage_v * self.drawn_current_a

    @property
    def current_a(self) -> tuple[float, float, float]:
        """Current per phase L1..L3, A (unused phases 0)."""
        drawn = self.drawn_current_a
        return (
            drawn,
            drawn if self.phases >= 2 else 0.0,
            drawn if self.phases >= 3 else 0.0,
        )

    @property
    def voltage_v(self) -> tuple[float, float, float]:
        """Line-to-neutral voltage per phase, V (the grid side: always present)."""
        return (self._voltage_v, self._voltage_v, self._voltage_v)

    @property
    def frequency_hz(self) -> float:
        """Grid frequency, Hz."""
        return FREQUENCY_HZ

    def meter_values(self) -> dict[str, float]:
        """What a meter in front of this EV measures, by register-map quantity name (SI)."""
        current = self.current_a
        voltage = self.voltage_v
        return {
            "energy_import": self._energy_import_wh,
            "energy_export": 0.0,
            "power": self.power_w,
            "current_l1": current[0],
            "current_l2": current[1],
            "current_l3": current[2],
            "voltage_l1": voltage[0],
            "voltage_l2": voltage[1],
            "voltage_l3": voltage[2],
            "frequency": FREQUENCY_HZ,
        }

    # --- time ---------------------------------------------------------------------

    def tick(self, dt_s: float) -> None:
        """Advance the model by ``dt_s`` seconds: integrate energy, charge the battery.

        Energy (Wh) += phases * voltage * current * dt / 3600. At 100 % SoC the EV
        stops requesting (C -> B) by itself.

        Raises:
            ValueError: Negative ``dt_s``.
        """
        if dt_s < 0:
            raise ValueError(f"dt_s must be >= 0, got {dt_s}")
        energy_wh = self.power_w * dt_s / 3600.0
        if energy_wh <= 0:
            return
        room_wh = (100.0 - self._soc_pct) / 100.0 * self._battery_wh
        energy_wh = min(energy_wh, room_wh)
        self._energy_import_wh += energy_wh
        self._soc_pct = min(100.0, self._soc_pct + energy_wh / self._battery_wh * 100.0)
        if room_wh - energy_wh <= 1e-9:
            self._soc_pct = 100.0
        self._present()

    def _on_pilot_output(self, output: PilotOutput) -> None:
        """The EVSE changed the CP output: react at once (a real EV takes seconds)."""
        self._present()

    def _present(self) -> None:
        self._pilot.sense(self.cp_state)


def _never() -> bool:
    return False
