"""The composition root: builds the whole agent from an ``AgentConfig`` and runs it.

Nothing else constructs long-lived objects; there are no singletons and no
module-level state. Start-up order matters and is kept here:

1. open the store (migrations), load persisted settings and availability;
2. end transactions a crash left running (PowerLoss), before any controller runs;
3. start the hardware and the EVSE controllers (outputs commanded safe first);
4. start the OCPP connection (charging never waits for it);
5. tell systemd we are ready and keep its watchdog fed.

Shutdown runs in the opposite order; controllers open their contactors first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.authorization.authorizer import Authorizer
from agent.authorization.cache import AuthCache
from agent.authorization.local_list import LocalAuthList
from agent.clock import Clock
from agent.config import (
    ROLES,
    SIM_BACKEND,
    AgentConfig,
    BackendConfig,
    BackendValidator,
    ConfigError,
    EvseConfig,
    parse_dataclass,
)
from agent.console.sim_control import SimControlServer, socket_path
from agent.events import EvseStatusChanged
from agent.evse.aligned import ClockAlignedSampler
from agent.evse.controller import EvseController, EvseHardware
from agent.evse.hardware_report import hardware_report
from agent.ocpp.connection import ConnectionSupervisor, FirstOnline, SessionRunner
from agent.ocpp.session import BootInfo
from agent.persistence.settings_store import SettingsStore
from agent.persistence.store import Store
from agent.reservations.service import STORE_KEY as RESERVATIONS_KEY
from agent.reservations.service import ReservationService
from agent.sd_notify import notify, watchdog_interval_s
from agent.settings import Settings
from agent.smart_charging.service import SmartChargingService
from agent.station import AVAILABILITY_KEY, ResetKind, Station
from agent.transactions.journal import TransactionJournal
from firmware_update.certs import CertificateStore
from firmware_update.diagnostics import BundleSources, DiagnosticsService, FrameRecorder
from firmware_update.journal import FirmwareJournal
from firmware_update.machine import Phase
from firmware_update.manager import FirmwareManager, ManagerOptions
from firmware_update.slots import DirSlots, SlotBackend
from hal.faults import HalError
from hal.gpio.pins import make_pin_factory
from hal.modbus.lines import ModbusRtuLines
from hal.rapi.links import RapiLinks
from hal.registry import BackendContext, Registry, default_registry
from hal.sim.rig import SimEvseRig

if TYPE_CHECKING:
    from agent.console.hal_check import DeviceCheck
    from agent.network_profiles import NetworkProfileStore
    from agent.ocpp.outbox import OutboxDelivery
    from agent.ocpp.session import Trace
    from agent.ocpp.v16.adapter import V16Adapter
    from agent.ocpp.v201.adapter import V201Adapter

log = logging.getLogger(__name__)

# Ended, fully delivered transactions kept in the journal (the rest are pruned at start).
FINISHED_TRANSACTIONS_KEPT = 100
# Persisted just before a CSMS Reset restarts the process: the next boot says RemoteReset.
LAST_EXIT_KEY = "agent.last_exit"
# Firmware phases at start that mean "this is the first boot of a new install".
_BOOTED_AFTER_INSTALL = frozenset({Phase.REBOOTING, Phase.CONFIRMING, Phase.REVERTING})


class ExitReason(StrEnum):
    STOPPED = "stopped"  # asked to stop (signal, test)
    RESET = "reset"  # a CSMS Reset: the caller restarts the process


def backend_validator(registry: Registry) -> BackendValidator:
    """A config validator that checks backend options against the registry and
    returns them with the backend's defaults filled in."""

    def validate(role: str, name: str, options: Mapping[str, Any], path: str) -> dict[str, Any]:
        try:
            spec = registry.get(role, name)
        except LookupError as e:
            raise ConfigError(f"{path}.backend: {e}") from None
        parsed: Any = parse_dataclass(spec.options, dict(options), path)
        return {f.name: getattr(parsed, f.name) for f in dataclasses.fields(parsed)}

    return validate


@dataclass
class _EvseParts:
    hardware: EvseHardware
    rig: SimEvseRig | None


class App:
    """The running agent.

    Args:
        config: Validated configuration.
        registry: HAL backends (default: the built-ins only; `evse-agent` passes the
            built-ins plus the installed plug-ins, `hal.registry.installed_registry`).
        trace: Optional raw OCPP frame hook.
        sim_pin_factory: gpiozero factory for simulated pins (a new MockFactory
            when None). Real GPIO backends get theirs from the registry context.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        registry: Registry | None = None,
        trace: Trace | None = None,
        sim_pin_factory: Any = None,
        real_pin_factory: Any = None,
    ) -> None:
        self.config = config
        self.registry = registry or default_registry()
        self.trace = trace
        self._sim_pin_factory = sim_pin_factory
        self._real_pin_factory = real_pin_factory
        self._pin_factory_failed = False
        self.clock = Clock()
        self.rigs: dict[int, SimEvseRig] = {}
        # one owner per RS-485 port, shared by every "modbus-rtu" meter on it
        self._rtu_lines = ModbusRtuLines()
        # one owner per OpenEVSE (RAPI) port, shared by its pilot, contactor and meter
        self._rapi_links = RapiLinks()
        self.started = asyncio.Event()
        self._stop = asyncio.Event()
        self._exit = ExitReason.STOPPED
        # set while running
        self.store: Store | None = None
        self.station: Station | None = None
        self.adapter: V16Adapter | None = None  # the 1.6 adapter (versions "1.6", "auto")
        self.adapter201: V201Adapter | None = None  # versions "2.0.1", "auto"
        self.supervisor: ConnectionSupervisor | None = None
        self.firmware: FirmwareManager | None = None
        self.diagnostics: DiagnosticsService | None = None
        self.frames = FrameRecorder(self.clock.now)
        self._background: set[asyncio.Task[None]] = set()

    @property
    def data_dir(self) -> Path:
        return self.config.station.data_dir

    def stop(self) -> None:
        """Ask the agent to shut down (safe to call from a signal handler)."""
        self._stop.set()

    def _request_restart(self, kind: ResetKind) -> None:
        del kind
        self._exit = ExitReason.RESET
        self._stop.set()

    async def run(self) -> ExitReason:
        """Run until ``stop()`` or a Reset; returns why it ended."""
        cfg = self.config
        store = await Store.open(cfg.station.data_dir)
        self.store = store
        tasks: list[asyncio.Task[Any]] = []
        parts: dict[int, _EvseParts] = {}
        sim_server: SimControlServer | None = None
        smart_charging: SmartChargingService | None = None
        reservations: ReservationService | None = None
        try:
            settings_store = SettingsStore(store)
            persisted = await settings_store.load()
            settings = Settings(settings_store, persisted, cfg.ocpp)
            journal = TransactionJournal(store)
            authorizer = Authorizer(settings, AuthCache(store), self.clock)
            local_list = LocalAuthList(store)
            authorizer.attach_local_list(
                local_list, lambda: settings.get_bool("local_auth_list_enabled")
            )
            for evse_cfg in cfg.evses:
                parts[evse_cfg.id] = await self._build_evse(evse_cfg)
            availability = {
                int(k.rsplit(".", 1)[1]): bool(v)
                for k, v in persisted.items()
                if k.startswith(AVAILABILITY_KEY.format(""))
            }
            controllers: dict[int, EvseController] = {}
            station = Station(
                controllers=controllers,
                journal=journal,
                settings_store=settings_store,
                authorizer=authorizer,
                clock=self.clock,
                request_restart=self._request_restart,
                availability=availability,
            )
            self.station = station
            for evse_cfg in cfg.evses:
                controllers[evse_cfg.id] = EvseController(
                    evse_id=evse_cfg.id,
                    hardware=parts[evse_cfg.id].hardware,
                    journal=journal,
                    settings=settings,
                    authorizer=authorizer,
                    clock=self.clock,
                    on_status=station.publish,
                    on_tx_message=station.tx_message_queued,
                    operative=station.effective_operative(evse_cfg.id),
                    max_current_a=min(evse_cfg.max_current_a, cfg.station.max_current_a),
                    ventilation_available=cfg.station.ventilation_available,
                    on_sample=station.publish_sample,
                    admit=station.admit_start,
                    # 2.0.1 TxStartPoint/TxStopPoint; 1.6 (and "auto", which may end
                    # up on 1.6) keeps 1.6's fixed points
                    configurable_tx_points=cfg.csms.ocpp_version == "2.0.1",
                )
            interrupted = await station.recover_interrupted()
            await journal.forget_finished(keep_last=FINISHED_TRANSACTIONS_KEPT)
            smart_charging = SmartChargingService(
                controllers=controllers,
                settings_store=settings_store,
                clock=self.clock,
                nominal_voltage_v=cfg.station.nominal_voltage_v,
                phases_by_evse={e.id: e.phases for e in cfg.evses},
                max_current_a_by_evse={
                    0: cfg.station.max_current_a,
                    **{e.id: min(e.max_current_a, cfg.station.max_current_a) for e in cfg.evses},
                },
                subscribe_tx=station.subscribe_tx_messages,
            )
            # limits are in force before the controllers run (they survive a reboot)
            await smart_charging.start()
            station.smart_charging = smart_charging
            # persisted reservations hold their connectors before the controllers run
            reservations = ReservationService(
                controllers=controllers,
                settings=settings,
                settings_store=settings_store,
                clock=self.clock,
                station_operative=lambda: station.effective_operative(0),
            )
            await reservations.start(
                persisted.get(RESERVATIONS_KEY),
                used_ids={r.reservation_id for r in interrupted if r.reservation_id is not None},
            )
            station.attach_reservations(reservations)
            station.master_pass_group = lambda: str(settings.get("master_pass_group_id"))
            slots, firmware, diagnostics = self._build_firmware(store, station)
            # slot backends block (``rauc status`` can take seconds): not on the loop
            booted_version = await asyncio.to_thread(slots.booted_version)
            booted_slot = await asyncio.to_thread(slots.booted_slot)
            boot = BootInfo(
                vendor=cfg.station.vendor,
                model=cfg.station.model,
                serial_number=cfg.station.serial_number,
                firmware_version=booted_version,
            )
            version = cfg.csms.ocpp_version
            runners: list[SessionRunner] = []  # in order of preference ("auto": 2.0.1 first)
            profiles: NetworkProfileStore | None = None  # 2.0.1 B09/B10 (1.6: [csms] only)
            if version in ("2.0.1", "auto"):
                # imported here: a 1.6-only agent does not load the 2.0.1 schemas (~10 MB)
                from agent.network_profiles import NetworkProfileStore, config_endpoint
                from agent.ocpp.v201 import adapter as v201
                from agent.ocpp.v201.build import build_v201_adapter
                from agent.ocpp.v201.mapping import boot_reason

                reset = ResetKind.HARD if persisted.get(LAST_EXIT_KEY) == "reset" else None
                self.adapter201 = build_v201_adapter(
                    cfg,
                    station=station,
                    settings=settings,
                    authorizer=authorizer,
                    clock=self.clock,
                    boot=v201.BootInfo(**dataclasses.asdict(boot)),
                    boot_reason=boot_reason(reset=reset),
                    trace=self._trace,
                    firmware=firmware,
                    diagnostics=diagnostics,
                    attach_authorizer=version == "2.0.1",
                    local_list_entries=await local_list.size(),
                    journal=journal,
                    local_list=local_list,
                )
                runners.append(self.adapter201)
                profiles = NetworkProfileStore(settings_store, config_endpoint(cfg.csms), persisted)
                self.adapter201.network_profiles = profiles
            if LAST_EXIT_KEY in persisted:
                await settings_store.delete(LAST_EXIT_KEY)
            if version in ("1.6", "auto"):
                # imported here too: a 2.0.1-only agent does not load the 1.6 stack
                from agent.ocpp.v16.adapter import V16Adapter

                self.adapter = V16Adapter(
                    station=station,
                    settings=settings,
                    journal=journal,
                    authorizer=authorizer,
                    clock=self.clock,
                    boot=boot,
                    call_timeout_s=cfg.csms.call_timeout_s,
                    boot_retry_s=cfg.csms.boot_retry_s,
                    local_list=local_list,
                    trace=self._trace,
                    firmware=firmware,
                    diagnostics=diagnostics,
                    accept_unsigned_updates=cfg.firmware.accept_unsigned_updates,
                )
                runners.append(self.adapter)
            if len(runners) > 1:  # "auto": whichever adapter has the session authorizes
                assert self.adapter201 is not None and self.adapter is not None
                authorizer.attach(FirstOnline([self.adapter201, self.adapter]))
            # before the connection: a trial boot of a new slot is counted here
            await firmware.start()
            if self.adapter201 is not None and firmware.phase in _BOOTED_AFTER_INSTALL:
                from agent.ocpp.v201.mapping import BootReason

                self.adapter201.boot_reason = BootReason.FIRMWARE_UPDATE
            for ctl in controllers.values():
                tasks.append(asyncio.create_task(ctl.run(), name=f"evse-{ctl.evse_id}"))
            await asyncio.gather(*(c.wait_started() for c in controllers.values()))
            aligned = ClockAlignedSampler(
                clock=self.clock,
                settings=settings,
                evses=controllers,
                publish=station.publish_sample,
            )
            tasks.append(asyncio.create_task(aligned.run(), name="clock-aligned-data"))
            adapter201 = self.adapter201

            def negotiated(runner: SessionRunner) -> None:
                # "auto": the transaction points follow the version the CSMS selected
                for ctl in controllers.values():
                    ctl.use_configurable_tx_points(runner is adapter201)

            self.supervisor = ConnectionSupervisor(
                csms=cfg.csms,
                charge_point_id=cfg.station.charge_point_id,
                runners=runners,
                settings=settings,
                profiles=profiles,
                on_runner=negotiated if len(runners) > 1 else None,
            )
            tasks.append(asyncio.create_task(self.supervisor.run(), name="ocpp-connection"))
            if self.rigs:
                sim_server = SimControlServer(socket_path(cfg.station.data_dir), self.apply_sim)
                await sim_server.start()
            watchdog_s = watchdog_interval_s()
            if watchdog_s is not None:
                tasks.append(asyncio.create_task(self._watchdog(watchdog_s), name="watchdog"))
            notify("READY=1")
            self.started.set()
            log.info(
                "evse-agent %s (firmware %s, slot %s) running as %s",
                __version__,
                booted_version,
                booted_slot,
                cfg.station.charge_point_id,
            )
            stopper = asyncio.create_task(self._stop.wait())
            done, _ = await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            for task in done:
                if task is not stopper:  # a service ended by itself: that is a failure
                    error = task.exception()
                    raise error or RuntimeError(f"{task.get_name()} ended unexpectedly")
            if self._exit == ExitReason.RESET:
                await settings_store.set(LAST_EXIT_KEY, "reset")
                for link in (self.adapter, self.adapter201):
                    if link is not None and link.online and link.outbox is not None:
                        await self._deliver_before_restart(link.outbox, cfg.csms.call_timeout_s)
            return self._exit
        finally:
            if self._exit != ExitReason.RESET:
                # Not on Reset: the process re-executes itself with the same PID and
                # says READY=1 again; STOPPING=1 would make systemd kill it.
                notify("STOPPING=1")
            if smart_charging is not None:
                await smart_charging.stop()
            if reservations is not None:
                await reservations.stop()
            if self.firmware is not None:
                await self.firmware.stop()
            if self.diagnostics is not None:
                await self.diagnostics.stop()
            # controllers first: they open the contactors
            for task in reversed(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if sim_server is not None:
                await sim_server.stop()
            await self._release_shared_hardware()
            await store.close()

    async def _release_shared_hardware(self) -> None:
        """Stop the simulated rigs and close the shared buses (RS-485 lines, RAPI ports)."""
        for rig in self.rigs.values():
            with contextlib.suppress(Exception):
                await rig.stop()
        await self._rtu_lines.close()
        await self._rapi_links.close()

    async def check_hardware(self, timeout_s: float = 3.0) -> list[DeviceCheck]:
        """``evse-agent hal check``: build every configured device as ``run`` does,
        probe it (``agent.console.hal_check``) and release everything. The contactor
        is never switched on and no CSMS is contacted. A device that cannot even be
        built (no GPIO, bad port) is a FAIL naming the reason; nothing raises.
        """
        from agent.console import hal_check  # only the technician's command probes

        devices: dict[int, dict[str, tuple[str, Any]]] = {}
        results: list[DeviceCheck] = []
        try:
            for evse_cfg in self.config.evses:
                rig = None
                if any(
                    (b := getattr(evse_cfg, role)) is not None and b.backend == SIM_BACKEND
                    for role in ROLES
                ):
                    rig = await self._start_rig(evse_cfg)
                devices[evse_cfg.id] = {}
                for role in ROLES:
                    backend = getattr(evse_cfg, role)
                    if backend is None:
                        continue
                    try:
                        device = self._build_role(role, backend, rig)
                    except Exception as exc:  # reported, not raised: the check goes on
                        detail = f"cannot build: {exc}"
                        results.append(
                            hal_check.DeviceCheck(evse_cfg.id, role, backend.backend, False, detail)
                        )
                        continue
                    devices[evse_cfg.id][role] = (backend.backend, device)
            results.extend(await hal_check.check_hardware(devices, timeout_s=timeout_s))
        finally:
            await self._release_shared_hardware()
        return sorted(results, key=lambda r: (r.evse_id, ROLES.index(r.role)))

    def _trace(self, direction: str, frame: str) -> None:
        self.frames(direction, frame)  # kept for diagnostics bundles
        if self.trace is not None:
            self.trace(direction, frame)

    def _build_firmware(
        self, store: Store, station: Station
    ) -> tuple[SlotBackend, FirmwareManager, DiagnosticsService]:
        """The slot backend, update manager and diagnostics service ([firmware])."""
        cfg = self.config
        fw = cfg.firmware
        slots: SlotBackend
        if fw.slot_backend == "rauc":
            from firmware_update.slots.rauc import RaucSlots

            slots = RaucSlots(
                shlex.split(fw.rauc_command),
                default_version=__version__,
                # the armed trial must survive the reboot (data partition)
                state_file=(fw.slots_dir or self.data_dir / "slots") / "rauc-trial.json",
            )
        else:
            slots = DirSlots(fw.slots_dir or self.data_dir / "slots", default_version=__version__)
        journal = FirmwareJournal(store)
        firmware = FirmwareManager(
            journal=journal,
            slots=slots,
            certificates=CertificateStore(self.data_dir / "certs"),
            station=station,
            now=self.clock.now,
            options=ManagerOptions(
                work_dir=self.data_dir / "firmware",
                max_download_bytes=fw.max_download_bytes,
                download_timeout_s=fw.download_timeout_s,
                health_timeout_s=fw.health_timeout_s,
                trial_boot_attempts=fw.trial_boot_attempts,
                delivery_timeout_s=cfg.csms.call_timeout_s,
            ),
            restart=self._firmware_reboot,
            wait_registered=self._wait_registered,
        )
        station.reset_blocked = lambda: firmware.busy
        diagnostics = DiagnosticsService(
            journal=journal,
            reports_queued=firmware.reports_queued,
            sources=BundleSources(
                data_dir=self.data_dir,
                config=lambda: dataclasses.asdict(cfg),
                hal_status=lambda: hardware_report(station.controllers, self.clock.monotonic()),
                frames=self.frames,
            ),
            now=self.clock.now,
            charge_point_id=cfg.station.charge_point_id,
        )
        self.firmware, self.diagnostics = firmware, diagnostics
        return slots, firmware, diagnostics

    async def _wait_registered(self) -> None:
        """Until the first Accepted BootNotification, in whichever version."""
        events = [a.registered for a in (self.adapter, self.adapter201) if a is not None]
        waits = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    def _firmware_reboot(self) -> None:
        """Reboot into the new slot: the configured command, else restart the process."""
        command = self.config.firmware.reboot_command
        if not command:
            self._request_restart(ResetKind.HARD)
            return
        log.warning("firmware update: running %s", command)
        task = asyncio.get_running_loop().create_task(_run_reboot(shlex.split(command)))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _deliver_before_restart(outbox: OutboxDelivery, timeout_s: float) -> None:
        """OCPP 1.6 5.14 / 2.0.1 B11: the transaction messages of a Reset go out before
        the restart when the CSMS is reachable (bounded; otherwise they stay queued)."""
        try:
            await asyncio.wait_for(outbox.idle.wait(), timeout_s)
        except TimeoutError:
            log.warning("restarting with transaction messages still queued")

    async def _watchdog(self, interval_s: float) -> None:
        """Feed the systemd watchdog while the loop is alive (a stuck loop starves it)."""
        while True:
            notify("WATCHDOG=1")
            await asyncio.sleep(interval_s)

    # ------------------------------------------------------------ hardware

    async def _build_evse(self, evse_cfg: EvseConfig) -> _EvseParts:
        rig = None
        roles = (evse_cfg.meter, evse_cfg.contactor, evse_cfg.pilot, evse_cfg.token_reader)
        if any(r is not None and r.backend == SIM_BACKEND for r in roles):
            rig = await self._start_rig(evse_cfg)

        def build(role: str, backend: BackendConfig | None) -> Any:
            return None if backend is None else self._build_role(role, backend, rig)

        hardware = EvseHardware(
            meter=build("meter", evse_cfg.meter),
            contactor=build("contactor", evse_cfg.contactor),
            pilot=build("pilot", evse_cfg.pilot),
            token_reader=build("token_reader", evse_cfg.token_reader),
            lock=build("lock", evse_cfg.lock),
            indicator=build("indicator", evse_cfg.indicator),
        )
        return _EvseParts(hardware, rig)

    def _build_role(self, role: str, backend: BackendConfig, rig: SimEvseRig | None) -> Any:
        """One role's device: the rig's simulated one, or the registry's backend.

        Raises:
            BackendError: The backend cannot be built (e.g. GPIO without a pin factory).
        """
        if backend.backend == SIM_BACKEND:
            assert rig is not None
            return {
                "meter": rig.meter,
                "contactor": rig.contactor,
                "pilot": rig.pilot,
                "token_reader": rig.token_reader,
            }[role]
        spec = self.registry.get(role, backend.backend)
        options: Any = parse_dataclass(spec.options, dict(backend.options), f"evse.{role}")
        context = BackendContext(
            pin_factory=self._pin_factory(),
            modbus_rtu_lines=self._rtu_lines,
            rapi_links=self._rapi_links,
        )
        return spec.factory(options, context)

    def _pin_factory(self) -> Any:
        """The board's GPIO pin factory, made on first use. A board without GPIO
        gets None (logged once): only GPIO backends need it, and they refuse
        to build without one."""
        if self._real_pin_factory is None and not self._pin_factory_failed:
            try:
                self._real_pin_factory = make_pin_factory()
            except HalError as e:
                self._pin_factory_failed = True
                log.warning("no GPIO: %s", e)
        return self._real_pin_factory

    async def _start_rig(self, evse_cfg: EvseConfig) -> SimEvseRig:
        if self._sim_pin_factory is None:
            self._sim_pin_factory = make_pin_factory("mock")
        sim = self.config.sim
        rig = SimEvseRig(
            evse_id=evse_cfg.id,
            pin_factory=self._sim_pin_factory,
            coil_pin=10 + 2 * evse_cfg.id,
            feedback_pin=11 + 2 * evse_cfg.id,
            ev_max_current_a=sim.ev_max_current_a,
            ev_phases=sim.ev_phases,
            voltage_v=self.config.station.nominal_voltage_v,
            tick_interval_s=sim.tick_interval_s,
            meter_fault_after_s=sim.meter_fault_after_s,
        )
        await rig.start()
        self.rigs[evse_cfg.id] = rig
        return rig

    async def wait_status(self, evse_id: int, status: str) -> None:
        """Return once EVSE ``evse_id`` reports ``status`` (tests and scenarios)."""
        assert self.station is not None, "the app is not running"
        controller = self.station.controllers[evse_id]
        reached = asyncio.Event()

        def check(event: EvseStatusChanged) -> None:
            if event.evse_id == evse_id and event.status == status:
                reached.set()

        unsubscribe = self.station.subscribe_status(check)
        try:
            if controller.status is not None:
                check(controller.status)
            await reached.wait()
        finally:
            unsubscribe()

    def coil_is_on(self, evse_id: int) -> bool:
        """The simulated contactor coil of ``evse_id`` (scenario checks)."""
        return self.rigs[evse_id].coil_is_on()

    def apply_sim(self, evse_id: int, command: str, arg: str | None) -> str:
        """Drive a simulated EV (the sim control socket calls this)."""
        rig = self.rigs.get(evse_id)
        if rig is None:
            raise ValueError(f"no simulated EVSE {evse_id} (have {sorted(self.rigs)})")
        return rig.apply(command, arg)


async def _run_reboot(argv: list[str]) -> None:
    """Run the configured reboot command (the system then stops the agent)."""
    try:
        process = await asyncio.create_subprocess_exec(*argv)
        code = await process.wait()
    except OSError as e:
        log.error("reboot command %s failed: %s", argv, e)
        return
    if code != 0:
        log.error("reboot command %s exited with %d", argv, code)
