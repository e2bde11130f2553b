"""OCPP 1.6J adapter: projects the station core onto OCPP 1.6 (Core, RemoteTrigger,
SmartCharging, LocalAuthListManagement, Reservation).

One ``V16Adapter`` lives as long as the agent; each WebSocket connection gets a
fresh ``_Session`` (an ``ocpp.v16.ChargePoint`` plus the tasks that send our
requests). Rules kept here (OCPP 1.6 4.2, 3.7; OCPP-J 4):

* BootNotification first; nothing else is sent until Accepted. While Pending we
  answer the CSMS but refuse remote start/stop; while Rejected we answer nothing
  and retry after the interval.
* One outstanding CALL per direction: the library's call lock serializes our
  calls; handlers never await a call (they would deadlock the receive loop).
* Transaction messages come from the persisted journal in order, each mapped at
  send time so the CSMS transaction id is filled in once it is known.
* A CALL timeout means the link is dead: the connection is closed and the
  supervisor reconnects. "Online" requires a recent round trip.

Modules: this one (the adapter: what the core reports, queued for a session),
``session.py`` (one connection, on ``agent.ocpp.session.OcppSession``),
``handlers.py`` (CSMS -> charger routing), ``rpc.py`` (OCPP-J frame rules).
"""

from __future__ import annotations

import asyncio
from typing import Any

from agent.authorization.authorizer import Authorizer
from agent.authorization.local_list import LocalAuthList
from agent.clock import Clock
from agent.events import EvseStatusChanged, MeterSample
from agent.ocpp.outbox import OutboxDelivery
from agent.ocpp.session import (
    DATA_TRANSFER_VENDOR,
    Backlog,
    BootInfo,
    LatestByKey,
    LinkDead,
    OcppAdapterBase,
    Trace,
)
from agent.ocpp.v16.session import TRIGGERABLE, Session16
from agent.settings import Settings
from agent.station import Station
from agent.transactions.journal import TransactionJournal
from firmware_update.diagnostics import DiagnosticsService
from firmware_update.manager import FirmwareManager

__all__ = [
    "DATA_TRANSFER_VENDOR",
    "SAMPLES_KEPT",
    "SUBPROTOCOL",
    "TRIGGERABLE",
    "BootInfo",
    "LinkDead",
    "Trace",
    "V16Adapter",
]

SUBPROTOCOL = "ocpp1.6"
SAMPLES_KEPT = 32
"""Non-transaction MeterValues kept while offline (oldest dropped first)."""


class V16Adapter(OcppAdapterBase[Session16]):
    """The OCPP 1.6J side of the agent.

    Args:
        station: The core.
        settings: Live settings (the 1.6 keys map onto them).
        journal: Persisted transaction messages.
        authorizer: Gets this adapter attached as its online authorizer.
        clock: Set from the CSMS's time.
        boot: Identity for BootNotification.
        boot_retry_s: Retry delay after Pending/Rejected when the CSMS gives interval 0.
        trace: Optional raw-frame hook (demo timeline, diagnostics).
        local_list: The Local Authorization List (SendLocalList / GetLocalListVersion).
    """

    subprotocol = SUBPROTOCOL

    def __init__(
        self,
        *,
        station: Station,
        settings: Settings,
        journal: TransactionJournal,
        authorizer: Authorizer,
        clock: Clock,
        boot: BootInfo,
        call_timeout_s: float = 30.0,
        boot_retry_s: float = 30.0,
        trace: Trace | None = None,
        local_list: LocalAuthList | None = None,
        firmware: FirmwareManager | None = None,
        diagnostics: DiagnosticsService | None = None,
        accept_unsigned_updates: bool = False,
    ) -> None:
        super().__init__()
        self.station = station
        self.settings = settings
        self.journal = journal
        self.authorizer = authorizer
        self.clock = clock
        self.boot = boot
        self.call_timeout_s = call_timeout_s
        self.boot_retry_s = boot_retry_s
        self.trace = trace
        self.local_list = local_list
        # FirmwareManagement + whitepaper secure update / logging (agent/ocpp/v16/firmware.py)
        self.firmware = firmware
        self.diagnostics = diagnostics
        self.accept_unsigned_updates = accept_unsigned_updates
        self.outbox = OutboxDelivery(journal, settings)
        # what the core reported, waiting for the session's senders
        self.statuses: LatestByKey[EvseStatusChanged] = LatestByKey()
        # meter samples outside transactions (clock-aligned), sent best effort
        self.samples: Backlog[tuple[int, MeterSample]] = Backlog(SAMPLES_KEPT)
        self.registered = asyncio.Event()  # set on every Accepted boot (tests, bench)
        station.subscribe_status(self._on_status)
        station.subscribe_tx_messages(self.outbox.wake)
        station.subscribe_samples(self._on_sample)
        authorizer.attach(self)

    # --------------------------------------------------- core -> adapter

    def _on_status(self, event: EvseStatusChanged) -> None:
        self.statuses.put(event.evse_id, event)

    def _on_sample(self, connector_id: int, sample: MeterSample) -> None:
        self.samples.put((connector_id, sample))

    def queue_all_statuses(self) -> None:
        """Queue every connector's current status (after each accepted boot)."""
        for status in self.station.all_statuses():
            self._on_status(status)

    # ------------------------------------------------------------ sessions

    async def run_session(self, ws: Any, charge_point_id: str) -> None:
        """Run OCPP over an open WebSocket until it closes or the link dies."""
        await self._run(Session16(self, ws, charge_point_id))
