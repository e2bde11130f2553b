"""PolledModbusMeter: the polling, debounce and frozen-register logic of Modbus meters.

The transports (TCP in ``tcp_meter``, RTU in ``rtu_meter``) subclass it and supply
one hook, ``_read_blocks``, that reads the register map's blocks; everything that
decides whether a reading is good, and when the meter is a fault, lives here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping

from hal.faults import FaultLatch, MeterError
from hal.modbus.registers import RegisterMap
from hal.types import FaultCode, FaultReport, MeterReading

_log = logging.getLogger(__name__)


class PolledModbusMeter(ABC):
    """A Modbus energy meter polled on a fixed grid (implements ``hal.meter.PowerMeter``).

    Each poll reads the register map's blocks (``_read_blocks``) and turns them
    into a ``MeterReading`` stamped with ``time.monotonic()`` when the last answer
    arrived. Everything runs in the event loop; nothing blocks it.

    Failure handling:
        * No answer, a Modbus exception response, a link error or a value that
          does not decode: that poll yields no reading (the subclass drops or
          keeps its link as fits the transport).
        * No good reading for ``fault_after_s`` (counted from ``start`` or from the
          last good reading): ``POWER_METER_FAILURE`` raised once. The next good
          reading clears it, then is delivered.
        * Frozen registers: while ``power_w`` exceeds ``frozen_min_power_w`` the
          import energy must move. When it has not moved for ``frozen_after_s``
          although the measured power should have added at least
          ``frozen_min_energy_wh`` meanwhile, the fault is raised and readings are
          withheld until it moves (or the power drops), so stale values never look
          fresh. The energy floor keeps a coarse register (float32 kWh at a high
          total, or a meter that counts in 10 Wh steps) under light load from
          looking frozen.
        * ``energy_import_wh`` going backwards: the reading is dropped (counted in
          ``dropped_readings`` and logged); it is not a good reading.

    Args:
        label: Names the meter in logs and the poll task ("host:port", "port#id").
        register_map: The meter model's layout.
        poll_interval_s: Period of the polls, s.
        fault_after_s: Debounce before a silent meter is a fault, s.
        frozen_after_s: How long energy may stand still under load, s.
        frozen_min_power_w: Power above which the energy register must move, W.
        frozen_min_energy_wh: Energy the power must account for while the
            register stands still before it counts as frozen, Wh (about the
            register's resolution; 0 for an exact simulator).

    Raises:
        ValueError: A period or debounce that is not > 0.
    """

    def __init__(
        self,
        *,
        label: str,
        register_map: RegisterMap,
        poll_interval_s: float,
        fault_after_s: float,
        frozen_after_s: float,
        frozen_min_power_w: float,
        frozen_min_energy_wh: float,
    ) -> None:
        if poll_interval_s <= 0 or fault_after_s <= 0 or frozen_after_s <= 0:
            raise ValueError("poll_interval_s, fault_after_s, frozen_after_s must be > 0")
        self._label = label
        self._map = register_map
        self._poll_interval_s = poll_interval_s
        self._fault_after_s = fault_after_s
        self._frozen_after_s = frozen_after_s
        self._frozen_min_power_w = frozen_min_power_w
        self._frozen_min_energy_wh = frozen_min_energy_wh

        self._io_lock = asyncio.Lock()
        self._latest: MeterReading | None = None
        self._on_reading: Callable[[MeterReading], None] | None = None
        self._fault: FaultLatch | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._silence_timer: asyncio.TimerHandle | None = None
        self._last_error = "no poll yet"
        self._energy_still_since_s: float | None = None
        self._unaccounted_wh = 0.0  # energy the power implies since the register last moved
        self._last_reading_s: float | None = None
        self._last_energy_wh: float | None = None
        self._dropped_readings = 0

    # --- the transport's hooks ------------------------------------------------------

    @abstractmethod
    async def _read_blocks(self) -> list[list[int]]:
        """Read every block of ``self._map.blocks``, one request each, in order.

        Called with the I/O lock held, never concurrently.

        Raises:
            MeterError: No answer, an exception response or a link failure
                (one-line reason). ``ValueError`` for data that cannot be right.
        """

    def _on_bad_data(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Called after a read whose data did not decode (e.g. to drop a desynced link)."""

    def _close_link(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Release the transport; called by ``stop``. Must be idempotent."""

    # --- PowerMeter -------------------------------------------------------------------

    @property
    def register_map(self) -> RegisterMap:
        """The meter model's layout."""
        return self._map

    @property
    def latest(self) -> MeterReading | None:
        """The last good reading, or None before the first one."""
        return self._latest

    @property
    def dropped_readings(self) -> int:
        """Readings dropped because the import energy went backwards."""
        return self._dropped_readings

    @property
    def fault_active(self) -> bool:
        """True while ``POWER_METER_FAILURE`` is raised."""
        return self._fault is not None and self._fault.active

    async def start(
        self,
        on_reading: Callable[[MeterReading], None],
        on_fault: Callable[[FaultReport], None],
    ) -> None:
        """Poll once, then keep polling every ``poll_interval_s`` in a task.

        Returns after the first poll was attempted (at most about
        ``(1 + blocks) * timeout_s`` of the transport). Never raises for an
        absent meter.

        Raises:
            RuntimeError: Already started.
        """
        if self._task is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._stopping = False
        self._on_reading = on_reading
        self._fault = FaultLatch(FaultCode.POWER_METER_FAILURE, on_fault)
        self._arm_silence_timer()
        first_poll_s = time.monotonic()
        await self.poll_once()
        self._task = asyncio.get_running_loop().create_task(
            self._run(first_poll_s), name=f"meter-poll {self._label}"
        )

    async def stop(self) -> None:
        """Cancel polling and release the link. Idempotent."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._silence_timer is not None:
            self._silence_timer.cancel()
            self._silence_timer = None
        self._close_link()

    async def read_once(self) -> MeterReading:
        """Read the meter now, outside the fault and monotonic bookkeeping.

        For technician commands; works whether or not polling runs.

        Raises:
            MeterError: The meter did not answer or answered garbage (one-line reason).
        """
        values = await self._read_values()
        return self._to_reading(values, time.monotonic())

    async def poll_once(self) -> MeterReading | None:
        """Run one poll cycle: read, check, deliver. The poll task calls this.

        Returns:
            The reading delivered to ``on_reading``, or None when the poll gave
            no good reading (no answer, dropped, or withheld as frozen).
        """
        try:
            values = await self._read_values()
        except MeterError as exc:
            self._last_error = str(exc)
            _log.debug("meter %s: %s", self._label, exc)
            return None
        reading = self._to_reading(values, time.monotonic())
        if not self._accept(reading):
            return None
        self._arm_silence_timer()
        if self._fault is not None:
            self._fault.clear("meter answers again")
        self._latest = reading
        if self._on_reading is not None:
            self._on_reading(reading)
        return reading

    # --- internals --------------------------------------------------------------------

    async def _run(self, first_poll_s: float) -> None:
        """Poll on a fixed grid; a slow poll skips slots instead of bunching up.

        The loop also ends on ``_stopping``: Python 3.11's ``asyncio.wait_for``
        (used inside pymodbus) can swallow a cancellation that coincides with the
        inner operation finishing, and ``stop`` must not hang on that.
        """
        next_s = first_poll_s
        while not self._stopping:
            next_s += self._poll_interval_s
            now = time.monotonic()
            if next_s < now:
                next_s = now
            await asyncio.sleep(next_s - now)
            if self._stopping:
                break
            try:
                await self.poll_once()
            except Exception:  # a driver bug must not kill polling silently
                _log.exception("meter %s: poll failed", self._label)

    def _accept(self, reading: MeterReading) -> bool:
        """Monotonic-energy and frozen-register checks. True when the reading is good."""
        energy = reading.energy_import_wh
        if self._last_energy_wh is not None and energy < self._last_energy_wh:
            self._dropped_readings += 1
            self._last_error = f"energy went backwards ({self._last_energy_wh} -> {energy} Wh)"
            _log.warning("meter %s: %s, reading dropped", self._label, self._last_error)
            return False
        now = reading.monotonic_s
        if (
            reading.power_w <= self._frozen_min_power_w
            or self._energy_still_since_s is None
            or self._last_reading_s is None
            or energy != self._last_energy_wh
        ):
            self._energy_still_since_s = now
            self._unaccounted_wh = 0.0
        else:
            self._unaccounted_wh += reading.power_w * (now - self._last_reading_s) / 3600.0
        self._last_energy_wh = energy
        self._last_reading_s = now
        still_s = now - self._energy_still_since_s
        if still_s >= self._frozen_after_s and self._unaccounted_wh >= self._frozen_min_energy_wh:
            self._last_error = (
                f"registers frozen: {reading.power_w:.0f} W but energy still for {still_s:.1f} s "
                f"(about {self._unaccounted_wh:.1f} Wh unaccounted)"
            )
            if self._fault is not None:
                self._fault.raise_(self._last_error)
            return False
        return True

    def _arm_silence_timer(self) -> None:
        """(Re)start the ``fault_after_s`` countdown; only while started."""
        if self._silence_timer is not None:
            self._silence_timer.cancel()
            self._silence_timer = None
        if self._fault is None or self._stopping:
            return
        loop = asyncio.get_running_loop()
        self._silence_timer = loop.call_later(self._fault_after_s, self._on_silence)

    def _on_silence(self) -> None:
        self._silence_timer = None
        if self._fault is not None:
            self._fault.raise_(f"no good reading for {self._fault_after_s:g} s: {self._last_error}")

    async def _read_values(self) -> Mapping[str, float]:
        """Read every block and decode, one poll at a time."""
        async with self._io_lock:
            try:
                return self._map.decode_blocks(await self._read_blocks())
            except ValueError as exc:
                self._on_bad_data()
                raise MeterError(one_line(f"bad data: {exc}")) from exc

    def _to_reading(self, values: Mapping[str, float], monotonic_s: float) -> MeterReading:
        phases = [p for p in ("l1", "l2", "l3") if f"current_{p}" in values]
        volts = [p for p in ("l1", "l2", "l3") if f"voltage_{p}" in values]
        return MeterReading(
            energy_import_wh=values["energy_import"],
            power_w=values["power"],
            current_a=tuple(values[f"current_{p}"] for p in phases),
            voltage_v=tuple(values[f"voltage_{p}"] for p in volts),
            frequency_hz=values.get("frequency"),
            energy_export_wh=values.get("energy_export"),
            monotonic_s=monotonic_s,
        )


def one_line(text: str) -> str:
    """Collapse whitespace so an error detail fits one log/OCPP line."""
    return " ".join(text.split())
