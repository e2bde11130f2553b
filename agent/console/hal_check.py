"""``evse-agent hal check``: probe every configured device and say PASS or FAIL.

For each EVSE and each HAL role the backend is built exactly as the agent builds
it (same registry, same options), started, asked what it sees, and stopped. The
contactor is never switched on. A backend can describe itself by implementing
``hal.probe.Probeable``; otherwise the role's contract is used:

* meter: one reading (``read_once`` where the backend has it, else the first
  reading delivered after ``start``) within the timeout;
* contactor: started with the coil off; PASS unless a fault (e.g. a welded
  contact) is reported within the timeout; the mirror contact is shown;
* pilot: the CP state it senses and no fault within the timeout;
* token reader, lock, indicator: they start and stop cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hal.probe import Probeable
from hal.types import FaultReport, MeterReading


@dataclass(frozen=True)
class DeviceCheck:
    """What one device showed.

    Attributes:
        evse_id: The EVSE the device belongs to.
        role: HAL role ("meter", "contactor", ...).
        backend: Backend name from the config.
        ok: PASS (True) or FAIL (False).
        detail: One line: what was found, or why it failed.
    """

    evse_id: int
    role: str
    backend: str
    ok: bool
    detail: str

    def line(self) -> str:
        """``evse 1 meter     modbus-rtu   PASS  sdm630: ...``"""
        verdict = "PASS" if self.ok else "FAIL"
        return f"evse {self.evse_id} {self.role:<12} {self.backend:<14} {verdict}  {self.detail}"


class _Watch:
    """Collects faults and CP states a backend reports while being probed."""

    def __init__(self) -> None:
        self.faults: list[FaultReport] = []
        self.states: list[Any] = []
        self.readings: list[MeterReading] = []
        self.reading_seen = asyncio.Event()

    def on_fault(self, report: FaultReport) -> None:
        self.faults.append(report)

    def on_state(self, state: Any) -> None:
        self.states.append(state)

    def on_reading(self, reading: MeterReading) -> None:
        self.readings.append(reading)
        self.reading_seen.set()

    def active_faults(self) -> list[str]:
        active: dict[str, str] = {}
        for report in self.faults:
            if report.active:
                active[report.code] = f"{report.code} {report.detail}".strip()
            else:
                active.pop(report.code, None)
        return list(active.values())


def describe_reading(reading: MeterReading) -> str:
    """``1234.5 Wh, 7200 W, 230.1/230.0/229.9 V, 10.0/10.0/10.0 A, 50.00 Hz``"""
    parts = [f"{reading.energy_import_wh:.1f} Wh", f"{reading.power_w:.0f} W"]
    if reading.voltage_v:
        parts.append("/".join(f"{v:.1f}" for v in reading.voltage_v) + " V")
    if reading.current_a:
        parts.append("/".join(f"{a:.1f}" for a in reading.current_a) + " A")
    if reading.frequency_hz is not None:
        parts.append(f"{reading.frequency_hz:.2f} Hz")
    return ", ".join(parts)


async def probe_device(role: str, device: Any, timeout_s: float) -> tuple[bool, str]:
    """Start ``device`` in ``role``, look at it for up to ``timeout_s``, stop it.

    Never raises for a device problem: it becomes (False, reason).
    """
    watch = _Watch()
    try:
        ok, detail = await _start_and_look(role, device, watch, timeout_s)
    except Exception as exc:  # a probe reports, it does not crash
        ok, detail = False, f"{type(exc).__name__}: {exc}".strip()
    finally:
        stop = getattr(device, "stop", None)
        if stop is not None:
            with contextlib.suppress(Exception):
                await stop()
    faults = watch.active_faults()
    if ok and faults:
        ok, detail = False, f"{detail}; fault: {'; '.join(faults)}"
    return ok, detail


async def _start_and_look(
    role: str, device: Any, watch: _Watch, timeout_s: float
) -> tuple[bool, str]:
    if role == "meter":
        return await _meter(device, watch, timeout_s)
    if role == "contactor":
        await device.start(watch.on_fault)
        await _settle(device, timeout_s)
    elif role == "pilot":
        await device.start(watch.on_state, watch.on_fault)
        await _settle(device, timeout_s)
    else:
        start = getattr(device, "start", None)
        if start is not None:
            await _start_other(role, start, watch)
    if isinstance(device, Probeable):
        return await device.probe()
    return True, _default_detail(role, device, watch)


async def _start_other(role: str, start: Callable[..., Awaitable[None]], watch: _Watch) -> None:
    if role == "token_reader":
        await start(lambda _tag: None)
    else:
        await start()


async def _meter(device: Any, watch: _Watch, timeout_s: float) -> tuple[bool, str]:
    model = getattr(getattr(device, "register_map", None), "model", None)
    prefix = f"{model}: " if model else ""
    read_once = getattr(device, "read_once", None)
    if read_once is not None:
        reading = await asyncio.wait_for(read_once(), timeout_s)
        return True, prefix + describe_reading(reading)
    await device.start(watch.on_reading, watch.on_fault)
    try:
        await asyncio.wait_for(watch.reading_seen.wait(), timeout_s)
    except TimeoutError:
        return False, f"{prefix}no reading within {timeout_s:g} s"
    return True, prefix + describe_reading(watch.readings[-1])


async def _settle(device: Any, timeout_s: float) -> None:
    """Give the backend its own settle check, bounded, then one loop turn."""
    wait_settled = getattr(device, "wait_settled", None)
    if wait_settled is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wait_settled(), timeout_s)
    await asyncio.sleep(0)  # deliver callbacks queued by the start


def _default_detail(role: str, device: Any, watch: _Watch) -> str:
    if role == "contactor":
        feedback = getattr(device, "feedback_closed", None)
        mirror = "no feedback" if feedback is None else ("closed" if feedback else "open")
        return f"coil {'on' if device.is_on else 'off'}, mirror contact {mirror}"
    if role == "pilot":
        state = watch.states[-1] if watch.states else device.state
        detail = f"CP state {state}"
        voltage = getattr(device, "cp_voltage_v", None)
        if voltage is not None:
            detail += f", CP {voltage:+.1f} V"
        return detail
    return "started"


async def check_hardware(
    evse_devices: Mapping[int, Mapping[str, tuple[str, Any]]],
    *,
    timeout_s: float = 3.0,
) -> list[DeviceCheck]:
    """Probe every device, one at a time, in EVSE and role order.

    Args:
        evse_devices: EVSE id -> role -> (backend name, built but not started device).
        timeout_s: The longest look at one device, s.
    """
    results = []
    for evse_id in sorted(evse_devices):
        for role, (backend, device) in evse_devices[evse_id].items():
            ok, detail = await probe_device(role, device, timeout_s)
            results.append(DeviceCheck(evse_id, role, backend, ok, detail))
    return results
