"""One EVSE's controller: the only writer of that EVSE's state.

HAL callbacks, CSMS commands and timers arrive as events in one inbox; the pure
machines (``iec61851``, ``charger``) decide; this module executes their effects
in order. Two things bypass the inbox because they are safety rules, not
decisions (DESIGN "Safety ordering", IEC 61851-1 Table A.6 seq. 8.1):

* a CP state outside C/D opens the contactor in the HAL callback itself, before
  the event is queued, so the opening never waits behind disk or network I/O;
* a hardware fault report opens the contactor the same way.

When the controller task ends for any reason (stop, cancel, crash) it opens the
contactor and drives CP to state F in a shielded, time-bounded ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from agent.clock import Clock
from agent.events import (
    AuthorizationStatus,
    CpState,
    EvseStatusChanged,
    MeterReading,
    MeterSample,
    ReadingContext,
    StopReason,
)
from agent.evse import charger, iec61851
from agent.evse.charger import ChargerConfig, ChargerState
from agent.evse.sampling import build_sample
from agent.settings import Settings
from agent.transactions.journal import TransactionJournal, TxRecord
from hal.contactor import Contactor
from hal.meter import PowerMeter
from hal.pilot import ControlPilot, PilotOutput
from hal.token_reader import IdTokenReader
from hal.types import FaultReport

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 2.0
LAST_METER_PERSIST_INTERVAL_S = 15.0


class TokenAuthorizer(Protocol):
    async def authorize(self, id_tag: str) -> AuthorizationStatus: ...


@dataclass
class EvseHardware:
    """The HAL devices of one EVSE."""

    meter: PowerMeter
    contactor: Contactor
    pilot: ControlPilot
    token_reader: IdTokenReader | None = None


class EvseController:
    """Runs one EVSE.

    Args:
        evse_id: 1-based EVSE / connector id.
        hardware: The devices.
        journal: Where transactions and their messages are recorded durably.
        settings: Live settings (sample interval, measurands, timeouts).
        authorizer: Decides on presented tokens.
        clock: Time source.
        on_status: Called (in the loop) with every status change.
        on_tx_message: Called after a transaction message was queued in the journal.
        operative: Availability at start.
        max_current_a: Hardware limit of this EVSE, A.
        ventilation_available: Whether state D may be energised.
    """

    def __init__(
        self,
        *,
        evse_id: int,
        hardware: EvseHardware,
        journal: TransactionJournal,
        settings: Settings,
        authorizer: TokenAuthorizer,
        clock: Clock,
        on_status: Callable[[EvseStatusChanged], None],
        on_tx_message: Callable[[], None],
        operative: bool = True,
        max_current_a: float = 32.0,
        ventilation_available: bool = False,
    ) -> None:
        self.evse_id = evse_id
        self.hw = hardware
        self._journal = journal
        self._settings = settings
        self._authorizer = authorizer
        self._clock = clock
        self._on_status = on_status
        self._on_tx_message = on_tx_message
        self._max_current_a = max_current_a
        self._limits_a: dict[str, float] = {}
        self._inbox: asyncio.Queue[charger.Event] = asyncio.Queue()
        self._pilot_state = iec61851.PilotState()
        self._state, self._initial_effects = charger.initial_state(
            config=self._charger_config(ventilation_available),
            operative=operative,
            limit_a=max_current_a,
        )
        self._ventilation_available = ventilation_available
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._tx: TxRecord | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._last_status: EvseStatusChanged | None = None
        self._started = asyncio.Event()
        self._no_transaction = asyncio.Event()
        self._no_transaction.set()
        settings.subscribe(self._on_setting)

    # ------------------------------------------------------------ public API

    @property
    def state(self) -> ChargerState:
        return self._state

    @property
    def transaction(self) -> TxRecord | None:
        """The running transaction, None when there is none."""
        return self._tx

    @property
    def status(self) -> EvseStatusChanged | None:
        return self._last_status

    def post(self, event: charger.Event) -> None:
        """Queue an event (loop thread only)."""
        self._inbox.put_nowait(event)

    def set_limit(self, source: str, limit_a: float | None) -> None:
        """Set or clear one limit; the effective limit is the minimum of all."""
        if limit_a is None:
            self._limits_a.pop(source, None)
        else:
            self._limits_a[source] = limit_a
        self.post(charger.LimitChanged(self.effective_limit_a()))

    def effective_limit_a(self) -> float:
        return min([self._max_current_a, *self._limits_a.values()])

    async def wait_started(self) -> None:
        await self._started.wait()

    async def wait_no_transaction(self) -> None:
        """Return once no transaction runs (its end is journalled)."""
        await self._no_transaction.wait()

    async def run(self) -> None:
        """Run until cancelled. Outputs are left safe however it ends."""
        try:
            for effect in self._initial_effects:
                await self._execute(effect)
            await self._start_hardware()
            self._started.set()
            while True:
                event = await self._inbox.get()
                self._state, effects = charger.step(self._state, event)
                for effect in effects:
                    await self._execute(effect)
        finally:
            # Synchronously, before any await: contactor open, then CP to F.
            self.hw.contactor.switch(False)
            self.hw.pilot.set_output(PilotOutput.error())
            await _shielded(self._release())

    # ------------------------------------------------------ hardware edges

    async def _start_hardware(self) -> None:
        await self.hw.contactor.start(self._on_fault)
        await self.hw.pilot.start(self._on_cp_state, self._on_fault)
        await self.hw.meter.start(self._on_reading, self._on_fault)
        if self.hw.token_reader is not None:
            await self.hw.token_reader.start(self._on_token)

    def _on_cp_state(self, cp: CpState) -> None:
        if not iec61851.is_power_state(cp) and self.hw.contactor.is_on:
            self.hw.contactor.switch(False)  # interlock: before anything is queued
        self._pilot_state, events = iec61851.step(self._pilot_state, cp)
        if events:
            self.post(charger.Pilot(*events))

    def _on_fault(self, report: FaultReport) -> None:
        if report.active and self.hw.contactor.is_on:
            self.hw.contactor.switch(False)
        log.warning(
            "evse %d: fault %s %s %s",
            self.evse_id,
            report.code,
            "raised" if report.active else "cleared",
            report.detail,
        )
        self.post(charger.FaultChanged(report.code, report.active, report.detail))

    def _on_reading(self, reading: MeterReading) -> None:
        del reading  # the latest reading is read from the meter when needed

    def _on_token(self, id_tag: str) -> None:
        self.post(charger.TokenPresented(id_tag))

    def _on_setting(self, name: str, value: object) -> None:
        del value
        if name in ("connection_timeout_s", "stop_transaction_on_ev_side_disconnect"):
            self.post(charger.ConfigChanged(self._charger_config(self._ventilation_available)))

    def _charger_config(self, ventilation_available: bool) -> ChargerConfig:
        return ChargerConfig(
            connection_timeout_s=float(self._settings.get_int("connection_timeout_s")),
            stop_tx_on_ev_side_disconnect=self._settings.get_bool(
                "stop_transaction_on_ev_side_disconnect"
            ),
            ventilation_available=ventilation_available,
        )

    # ------------------------------------------------------------ effects

    async def _execute(self, effect: charger.Effect) -> None:
        match effect:
            case charger.SetContactor(on=on):
                if on and not iec61851.is_power_state(self.hw.pilot.state):
                    # The EV left C/D after the machine decided: the Pilot event is
                    # already queued and will correct the state. Never close here.
                    return
                self.hw.contactor.switch(on)
            case charger.SetPilot(output=output):
                self.hw.pilot.set_output(output)
            case charger.RequestAuthorization(id_tag=tag):
                self._spawn(self._authorize(tag))
            case charger.BeginTransaction(id_tag=tag, remote_start_id=rsid):
                await self._begin(tag, rsid)
            case charger.EndTransaction(reason=reason):
                await self._end(reason)
            case charger.PublishStatus(status=status, error_code=code, info=info):
                self._last_status = EvseStatusChanged(
                    self.evse_id, status, code, info, self._clock.iso_now()
                )
                log.info("evse %d: %s%s", self.evse_id, status, f" ({code})" if code else "")
                self._on_status(self._last_status)
            case charger.StartTimer(name=name, delay_s=delay_s):
                self._cancel_timer(name)
                loop = asyncio.get_running_loop()
                self._timers[name] = loop.call_later(delay_s, self.post, charger.TimerExpired(name))
            case charger.CancelTimer(name=name):
                self._cancel_timer(name)

    def _cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _authorize(self, id_tag: str) -> None:
        try:
            status = await self._authorizer.authorize(id_tag)
        except Exception:
            log.exception("evse %d: authorization of %s failed", self.evse_id, id_tag)
            status = AuthorizationStatus.INVALID
        log.info("evse %d: %s is %s", self.evse_id, id_tag, status)
        self.post(charger.AuthorizationResolved(id_tag, status == AuthorizationStatus.ACCEPTED))

    def _meter_wh(self) -> int:
        reading = self.hw.meter.latest
        if reading is not None:
            return round(reading.energy_import_wh)
        if self._tx is not None:
            return self._tx.last_meter_wh or self._tx.meter_start_wh
        return 0

    async def _begin(self, id_tag: str, remote_start_id: int | None) -> None:
        self._tx = await self._journal.begin(
            evse_id=self.evse_id,
            connector_id=self.evse_id,
            id_tag=id_tag,
            meter_start_wh=self._meter_wh(),
            timestamp=self._clock.iso_now(),
            remote_start_id=remote_start_id,
        )
        self._no_transaction.clear()
        log.info("evse %d: transaction %s started for %s", self.evse_id, self._tx.tx_id, id_tag)
        self._on_tx_message()
        self._sampler = asyncio.create_task(self._sample_loop(self._tx.tx_id))

    async def _end(self, reason: StopReason) -> None:
        tx = self._tx
        if tx is None:
            return
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        timestamp = self._clock.iso_now()
        data = []
        reading = self.hw.meter.latest
        measurands = self._settings.get_list("stop_txn_sampled_data")
        if reading is not None and measurands:
            data.append(
                build_sample(
                    reading,
                    measurands,
                    context=ReadingContext.TRANSACTION_END,
                    timestamp=timestamp,
                    offered_current_a=0.0,
                )
            )
        self._tx = None
        await self._journal.end(
            tx.tx_id,
            reason=reason,
            meter_stop_wh=self._meter_wh_for(tx),
            timestamp=timestamp,
            transaction_data=data,
        )
        log.info("evse %d: transaction %s stopped (%s)", self.evse_id, tx.tx_id, reason)
        self._no_transaction.set()
        self._on_tx_message()

    def _meter_wh_for(self, tx: TxRecord) -> int:
        reading = self.hw.meter.latest
        if reading is not None:
            return max(round(reading.energy_import_wh), tx.meter_start_wh)
        return tx.last_meter_wh or tx.meter_start_wh

    async def _sample_loop(self, tx_id: str) -> None:
        """While a transaction runs: periodic meter values (MeterValueSampleInterval)
        and, at least every ``LAST_METER_PERSIST_INTERVAL_S``, the last meter value
        made durable, so a PowerLoss stop after a power cut is at most that stale."""
        last_sample_s = self._clock.monotonic()
        while True:
            interval_s = self._settings.get_int("meter_value_sample_interval_s")
            period_s = LAST_METER_PERSIST_INTERVAL_S
            if interval_s > 0:
                period_s = min(period_s, interval_s - (self._clock.monotonic() - last_sample_s))
            await asyncio.sleep(max(period_s, 0.0))
            reading = self.hw.meter.latest
            if reading is None:
                continue
            meter_wh = round(reading.energy_import_wh)
            now_s = self._clock.monotonic()
            if interval_s > 0 and now_s - last_sample_s >= interval_s - 1e-3:
                last_sample_s = now_s
                sample = self.sample_now(ReadingContext.SAMPLE_PERIODIC)
                assert sample is not None  # the reading above exists
                await self._journal.record_meter(tx_id, sample, meter_wh)  # also the last value
                self._on_tx_message()
            else:
                await self._journal.update_last_meter(tx_id, meter_wh, self._clock.iso_now())

    def sample_now(self, context: ReadingContext) -> MeterSample | None:
        """A meter sample of the configured measurands now (e.g. for TriggerMessage),
        or None before the meter has answered."""
        reading = self.hw.meter.latest
        if reading is None:
            return None
        return build_sample(
            reading,
            self._settings.get_list("meter_values_sampled_data"),
            context=context,
            timestamp=self._clock.iso_now(),
            offered_current_a=self._offered_a(),
        )

    def _offered_a(self) -> float:
        return self._state.limit_a if charger.offers_energy(self._state) else 0.0

    async def _release(self) -> None:
        """Cancel timers and tasks, then stop the hardware (outputs already safe)."""
        for handle in self._timers.values():
            handle.cancel()
        tasks = [t for t in (*self._tasks, self._sampler) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stops = [self.hw.meter.stop(), self.hw.pilot.stop(), self.hw.contactor.stop()]
        if self.hw.token_reader is not None:
            stops.append(self.hw.token_reader.stop())
        results = await asyncio.gather(*stops, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.error("evse %d: hardware stop failed: %r", self.evse_id, result)


async def _shielded(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` to completion even if the caller is cancelled, within a bound."""
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.wait_for(asyncio.shield(task), SHUTDOWN_TIMEOUT_S)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):  # finish the job, then propagate
            await asyncio.wait_for(task, SHUTDOWN_TIMEOUT_S)
        raise
    except TimeoutError:
        log.error("releasing the EVSE hardware took longer than %.1f s", SHUTDOWN_TIMEOUT_S)
