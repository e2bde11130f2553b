"""SimEv, the simulated EV: CP states, offered current, energy integration. No event loop."""

from __future__ import annotations

import pytest

from hal.pilot import PilotOutput
from hal.sim.pilot import SimControlPilot
from hal.sim.plant import FAULT_NAMES, SimEv, offered_current_a
from hal.types import CpState


def make_ev(**kwargs: float) -> tuple[SimEv, SimControlPilot]:
    pilot = SimControlPilot()
    ev = SimEv(pilot=pilot, **kwargs)  # type: ignore[arg-type]
    ev.connect_contactor_probe(lambda: True)
    return ev, pilot


@pytest.mark.parametrize(
    ("duty_pct", "current_a"),
    [
        (2.0, 0.0),  # < 3 %: no charging
        (5.0, 0.0),  # digital communication required: not for a basic EV
        (7.5, 0.0),  # 7-8 %: no charging
        (9.0, 6.0),  # 8-10 %: 6 A
        (10.0, 6.0),
        (16 / 0.6, 16.0),
        (53.3, 31.98),
        (85.0, 51.0),
        (89.2, 63.0),
        (96.0, 80.0),
        (96.5, 80.0),
        (98.0, 0.0),  # > 97 %: no charging
        (100.0, 0.0),
    ],
)
def test_offered_current_follows_the_iec_ev_side_table(duty_pct: float, current_a: float) -> None:
    assert offered_current_a(PilotOutput.pwm(duty_pct)) == pytest.approx(current_a, abs=1e-9)


def test_steady_and_error_outputs_offer_nothing() -> None:
    assert offered_current_a(PilotOutput.steady()) == 0.0
    assert offered_current_a(PilotOutput.error()) == 0.0


PWM_16A = PilotOutput.pwm(16 / 0.6)


@pytest.mark.parametrize(
    ("plugged", "paused", "output", "faults", "expected"),
    [
        (False, False, PilotOutput.steady(), (), CpState.A),
        (False, False, PWM_16A, (), CpState.A),
        (True, False, PilotOutput.steady(), (), CpState.B),  # no PWM: not requesting
        (True, False, PWM_16A, (), CpState.C),
        (True, True, PWM_16A, (), CpState.B),  # paused by the EV
        (True, False, PilotOutput.pwm(5.0), (), CpState.B),  # HLC required: basic EV waits
        (True, False, PilotOutput.pwm(100.0), (), CpState.B),
        (True, False, PilotOutput.pwm(9.0), (), CpState.C),  # 6 A is enough
        (True, False, PilotOutput.error(), (), CpState.F),  # EVSE drives -12 V
        (True, False, PWM_16A, ("cp-error",), CpState.E),
        (False, False, PilotOutput.steady(), ("cp-error",), CpState.E),
        (True, False, PWM_16A, ("diode",), CpState.F),
        (False, False, PWM_16A, ("diode",), CpState.A),  # no EV, no EV diode
        (True, False, PWM_16A, ("meter", "contactor-welded"), CpState.C),  # not CP faults
    ],
)
def test_cp_state_table(
    plugged: bool,
    paused: bool,
    output: PilotOutput,
    faults: tuple[str, ...],
    expected: CpState,
) -> None:
    ev, pilot = make_ev()
    if plugged:
        ev.plug()
    if paused:
        ev.pause()
    for name in faults:
        ev.inject_fault(name)
    pilot.set_output(output)
    assert ev.cp_state is expected
    assert pilot.state is expected  # the EV presented it on the line (pilot not started)


def test_ev_reacts_to_every_step_and_presents_it() -> None:
    ev, pilot = make_ev()
    seen: list[CpState] = []
    ev.plug()
    seen.append(pilot.state)
    pilot.set_output(PWM_16A)
    seen.append(pilot.state)
    ev.pause()
    seen.append(pilot.state)
    ev.resume()
    seen.append(pilot.state)
    pilot.set_output(PilotOutput.steady())
    seen.append(pilot.state)
    ev.unplug()
    seen.append(pilot.state)
    assert seen == [CpState.B, CpState.C, CpState.B, CpState.C, CpState.B, CpState.A]
    assert [s.state for s in pilot.state_history] == seen


def test_ventilation_required_requests_with_state_d() -> None:
    pilot = SimControlPilot()
    ev = SimEv(pilot=pilot, ventilation_required=True)
    ev.plug()
    pilot.set_output(PWM_16A)
    assert ev.cp_state is CpState.D


def test_energy_integration_three_phases_16a_one_hour() -> None:
    ev, pilot = make_ev(phases=3, voltage_v=230.0, battery_wh=60000, soc_pct=40.0)
    ev.plug()
    pilot.set_output(PWM_16A)
    assert ev.drawn_current_a == pytest.approx(16.0)
    assert ev.power_w == pytest.approx(11040.0)
    ev.tick(3600.0)
    assert ev.energy_import_wh == pytest.approx(11040.0)
    assert ev.soc_pct == pytest.approx(40.0 + 11040.0 / 60000.0 * 100.0)
    values = ev.meter_values()
    assert values["energy_import"] == pytest.approx(11040.0)
    assert values["current_l1"] == values["current_l3"] == pytest.approx(16.0)
    assert values["frequency"] == 50.0


def test_single_phase_draws_on_l1_only_and_is_capped_by_the_ev() -> None:
    ev, pilot = make_ev(phases=1, max_current_a=13.0)
    ev.plug()
    pilot.set_output(PilotOutput.pwm(32 / 0.6))
    assert ev.offered_current_a == pytest.approx(32.0)
    assert ev.current_a == (13.0, 0.0, 0.0)
    ev.tick(1800.0)
    assert ev.energy_import_wh == pytest.approx(230.0 * 13.0 / 2)


def test_no_current_without_power_or_outside_c() -> None:
    pilot = SimControlPilot()
    ev = SimEv(pilot=pilot)
    contacts_closed = False
    ev.connect_contactor_probe(lambda: contacts_closed)
    ev.plug()
    pilot.set_output(PWM_16A)
    ev.tick(60.0)
    assert ev.drawn_current_a == 0.0
    assert ev.energy_import_wh == 0.0
    contacts_closed = True
    assert ev.drawn_current_a == pytest.approx(16.0)
    ev.pause()  # B with power still on (e.g. a welded contactor): the EV draws nothing
    assert ev.drawn_current_a == 0.0
    ev.tick(60.0)
    assert ev.energy_import_wh == 0.0


def test_full_battery_goes_to_b_by_itself() -> None:
    ev, pilot = make_ev(battery_wh=1000.0, soc_pct=99.0, phases=1)
    ev.plug()
    pilot.set_output(PWM_16A)
    assert pilot.state is CpState.C
    ev.tick(10.0)  # 230 V * 16 A * 10 s = 10.2 Wh: more than the 10 Wh of room
    assert ev.full
    assert ev.soc_pct == 100.0
    assert ev.energy_import_wh == pytest.approx(10.0)  # no more than the battery takes
    assert ev.cp_state is CpState.B
    assert not ev.requesting
    assert pilot.state_history[-1].state is CpState.B  # presented on the line
    ev.tick(60.0)
    assert ev.energy_import_wh == pytest.approx(10.0)


def test_faults_notify_observers_and_unknown_names_are_refused() -> None:
    ev, _ = make_ev()
    events: list[tuple[str, bool]] = []
    ev.add_fault_observer(lambda name, active: events.append((name, active)))
    ev.inject_fault("meter")
    ev.inject_fault("meter")  # no-op
    ev.inject_fault("contactor-stuck")
    ev.clear_faults()
    assert events == [
        ("meter", True),
        ("contactor-stuck", True),
        ("meter", False),
        ("contactor-stuck", False),
    ]
    with pytest.raises(ValueError) as info:
        ev.inject_fault("gremlins")
    for name in FAULT_NAMES:
        assert name in str(info.value)


def test_tick_is_deterministic() -> None:
    def run() -> tuple[float, float]:
        ev, pilot = make_ev()
        ev.plug()
        pilot.set_output(PilotOutput.pwm(30.0))
        for _ in range(100):
            ev.tick(0.1)
        return ev.energy_import_wh, ev.soc_pct

    assert run() == run()
    with pytest.raises(ValueError):
        make_ev()[0].tick(-1.0)
