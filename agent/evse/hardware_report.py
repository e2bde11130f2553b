"""What the devices of each EVSE report right now, for a diagnostics bundle.

``evse-agent hal check`` builds and probes idle hardware; a running agent cannot do
that (the devices are in use, a session may be running). This report only *reads*
what the live devices and the controller already know: nothing is switched, started
or polled, so it is safe at any moment. Per device it gives the facts a technician
asks for first and a PASS/FAIL verdict in the ``hal check`` sense (``ok``): False
when an active fault names that device (or, for the pilot, CP shows an error state).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.events import FaultCode
from agent.evse.controller import EvseController

_DEVICE_FAULTS: Mapping[str, frozenset[FaultCode]] = {
    "meter": frozenset({FaultCode.POWER_METER_FAILURE}),
    "contactor": frozenset(
        {FaultCode.POWER_SWITCH_FAILURE, FaultCode.GROUND_FAILURE, FaultCode.EMERGENCY_STOP}
    ),
    "pilot": frozenset(
        {FaultCode.DIODE_FAULT, FaultCode.CABLE_FAULT, FaultCode.EV_COMMUNICATION_ERROR}
    ),
    "lock": frozenset({FaultCode.CONNECTOR_LOCK_FAILURE}),
}
"""The fault codes that make each device FAIL (any other fault is the EVSE's)."""


def hardware_report(
    controllers: Mapping[int, EvseController], now_monotonic_s: float
) -> dict[str, Any]:
    """Per EVSE id (as a string): status, active faults and each device's live facts.

    Args:
        controllers: The station's EVSE controllers by EVSE id.
        now_monotonic_s: ``time.monotonic()`` now, s (gives the meter reading's age).

    Returns:
        Plain data (JSON-serialisable): ``{"1": {"status", "error_code", "faults",
        "devices": {"meter": {...}, "contactor": {...}, "pilot": {...}, "lock": ...}}}``;
        each device entry has ``ok`` (no active fault names it) and its facts. Never
        raises for a device that has nothing to say yet (a meter before its first
        reading shows ``reading: None``).
    """
    report: dict[str, Any] = {}
    for evse_id, ctl in sorted(controllers.items()):
        faults = tuple(ctl.state.faults)
        active = {code for code, _ in faults}
        status = ctl.status
        hw = ctl.hw
        reading = hw.meter.latest
        devices: dict[str, Any] = {
            "meter": {
                "reading": None
                if reading is None
                else {
                    "energy_import_wh": reading.energy_import_wh,
                    "power_w": reading.power_w,
                    "current_a": list(reading.current_a),
                    "voltage_v": list(reading.voltage_v),
                    "age_s": round(now_monotonic_s - reading.monotonic_s, 3),
                },
            },
            "contactor": {"coil_on": hw.contactor.is_on},
            "pilot": {
                "cp_state": hw.pilot.state.value,
                "pilot_error": ctl.state.pilot_error,
                "output": hw.pilot.output.mode.value,
                "duty_pct": hw.pilot.output.duty_pct,
            },
        }
        if hw.lock is not None:
            devices["lock"] = {"locked": hw.lock.is_locked}
        for name, entry in devices.items():
            entry["ok"] = not (active & _DEVICE_FAULTS.get(name, frozenset()))
        devices["pilot"]["ok"] &= not ctl.state.pilot_error
        report[str(evse_id)] = {
            "status": status.status.value if status is not None else None,
            "error_code": status.error_code.value
            if status is not None and status.error_code is not None
            else None,
            "faults": [{"code": code.value, "detail": detail} for code, detail in faults],
            "devices": devices,
        }
    return report
