"""Assembling the 2.0.1 adapter from the agent's parts (called by ``agent.app``).

Kept apart from the composition root so that ``agent/app.py`` only decides *which*
adapters the configured ``csms.ocpp_version`` needs; what the 2.0.1 device model
reads live (availability, power, counts) is wired here.
"""

from __future__ import annotations

import dataclasses

from agent.authorization.authorizer import Authorizer
from agent.authorization.local_list import LocalAuthList
from agent.clock import Clock
from agent.config import AgentConfig
from agent.events import ConnectorStatus
from agent.ocpp.v201 import mapping
from agent.ocpp.v201.adapter import BootInfo, Trace, V201Adapter
from agent.ocpp.v201.variables import LiveValues, StationFacts, build_device_model
from agent.settings import Settings
from agent.station import Station
from agent.transactions.journal import TransactionJournal
from firmware_update.diagnostics import DiagnosticsService
from firmware_update.manager import FirmwareManager


def live_values(station: Station, local_list_entries: int = 0) -> LiveValues:
    """The device model's live getters over the station core.

    Args:
        station: The core (controller status, meter readings, smart charging).
        local_list_entries: Entries of the local authorization list at start (the
            list's count lives in SQLite; reading it per GetVariables would block).
    """

    def availability(evse_id: int) -> str:
        if evse_id == 0:
            return mapping.availability_state(station.station_status().status)
        ctl = station.controllers.get(evse_id)
        if ctl is None or ctl.status is None:
            return mapping.availability_state(ConnectorStatus.UNAVAILABLE)
        return mapping.availability_state(ctl.status.status)

    def power_w(evse_id: int) -> float:
        ctl = station.controllers.get(evse_id)
        reading = ctl.meter_reading if ctl is not None else None
        return float(reading.power_w) if reading is not None else 0.0

    def profiles() -> int:
        service = station.smart_charging
        return len(service.profiles) if service is not None else 0

    return LiveValues(
        availability_state=availability,
        active_power_w=power_w,
        local_list_entries=lambda: local_list_entries,
        charging_profile_entries=profiles,
        certificate_entries=lambda: 0,
    )


def build_v201_adapter(
    config: AgentConfig,
    *,
    station: Station,
    settings: Settings,
    authorizer: Authorizer,
    clock: Clock,
    boot: BootInfo,
    boot_reason: mapping.BootReason,
    trace: Trace | None = None,
    firmware: FirmwareManager | None = None,
    diagnostics: DiagnosticsService | None = None,
    attach_authorizer: bool = True,
    local_list_entries: int = 0,
    journal: TransactionJournal | None = None,
    local_list: LocalAuthList | None = None,
) -> V201Adapter:
    """The 2.0.1 adapter with the station's device model (one source of truth with
    the 1.6 keys: both write ``settings``)."""
    entries = _Count(local_list_entries)  # LocalAuthListCtrlr.Entries, kept current
    model = build_device_model(
        settings,
        station=StationFacts.from_config(config),
        clock=clock,
        live=dataclasses.replace(
            live_values(station, local_list_entries), local_list_entries=entries.get
        ),
    )
    adapter = V201Adapter(
        station=station,
        settings=settings,
        device_model=model,
        authorizer=authorizer,
        clock=clock,
        boot=boot,
        boot_reason=boot_reason,
        call_timeout_s=config.csms.call_timeout_s,
        boot_retry_s=config.csms.boot_retry_s,
        trace=trace,
        firmware=firmware,
        diagnostics=diagnostics,
        attach_authorizer=attach_authorizer,
        reset_supported_per_evse=True,  # Station.reset_evse (B12)
        journal=journal,
    )
    adapter.accept_unsigned_updates = config.firmware.accept_unsigned_updates
    adapter.local_list = local_list
    adapter.local_list_size = entries.set
    return adapter


class _Count:
    """An entry count read by the device model and updated by the adapter."""

    def __init__(self, value: int) -> None:
        self._value = value

    def get(self) -> int:
        return self._value

    def set(self, value: int) -> None:
        self._value = value
