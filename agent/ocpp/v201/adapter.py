"""OCPP 2.0.1 adapter: projects the station core onto OCPP 2.0.1 (blocks B, G, F,
P and the device model; authorization C01 online; N07 fault events).

One ``V201Adapter`` lives as long as the agent; each WebSocket connection gets a
fresh ``_Session`` (an ``ocpp.v201.ChargePoint`` plus the tasks that send our
requests). Rules kept here (2.0.1 Part 2 B01-B04, Part 4 OCPP-J):

* BootNotification first. While Pending the station answers the CSMS (device
  model, TriggerMessage(BootNotification), ...) but sends nothing else and refuses
  RequestStart/StopTransaction (B02.FR.02/03); it retries the boot after the
  interval. While Rejected it answers nothing and retries after the interval (B03).
* One outstanding CALL per direction: the library's call lock serializes our
  calls; handlers never await a call (the receive loop would deadlock): what
  follows an answer (NotifyReport pages, a triggered message, a Reset) is spawned
  in the session's TaskGroup from an ``@after`` handler.
* Malformed frames and unknown actions are answered with a 2.0.1 CALLERROR
  (message id "-1" when none can be read); the library itself answers neither
  correctly (it drops unparsable frames and swaps NotImplemented/NotSupported).
* A CALL timeout means the link is dead: the socket is closed and the supervisor
  reconnects.

* Transaction events (E) come from the persisted journal through the shared outbox
  (``agent.ocpp.outbox``: order, MessageAttempts / MessageAttemptInterval), each
  projected at send time by ``agent.ocpp.v201.transactions``. A message counts as
  delivered the moment its CALLRESULT is read (acknowledged in the receive path), so
  a link that drops before the sender resumes does not send it twice.

* Smart charging (K) is ``agent.ocpp.v201.smart_charging`` on the shared engine.

* Authorization, local list and reservation (C, D, H): thin handlers over
  ``agent.ocpp.v201.authorization`` and ``agent.ocpp.v201.reservation``; the
  reservation service's "ended by the station" news becomes ReservationStatusUpdate,
  queued in the adapter while no session runs.

* Firmware (L01), GetLog (N01) and SecurityEventNotification: ``firmware.py``; the
  reports come from the firmware journal's persisted queue. SetNetworkProfile (B09):
  ``network.py`` onto ``agent.network_profiles`` (the supervisor switches, B10).

Not yet here: certificates (A/M).

Modules: this one (the adapter: what the core reports, queued for a session; N07
fault events), ``session.py`` (one connection, on ``agent.ocpp.session.OcppSession``),
``handlers.py`` (CSMS -> station routing), ``reports.py`` (device-model requests);
OCPP-J frame rules are shared with 1.6 (``agent.ocpp.v16.rpc``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from agent.authorization.authorizer import Authorizer
from agent.authorization.local_list import LocalAuthList
from agent.clock import Clock
from agent.events import ConnectorStatus, EvseStatusChanged, FaultCode, MeterSample
from agent.network_profiles import NetworkProfileStore
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
from agent.ocpp.v201 import mapping
from agent.ocpp.v201 import reservation as res201
from agent.ocpp.v201.device_model import DeviceModel
from agent.ocpp.v201.reports import ITEMS_PER_MESSAGE_SETTING
from agent.ocpp.v201.session import Session201
from agent.settings import Settings
from agent.station import Station
from agent.transactions.journal import TransactionJournal
from firmware_update.diagnostics import DiagnosticsService
from firmware_update.manager import FirmwareManager

__all__ = [
    "DATA_TRANSFER_VENDOR",
    "EVENTS_KEPT",
    "ITEMS_PER_MESSAGE_SETTING",
    "SAMPLES_KEPT",
    "SUBPROTOCOL",
    "BootInfo",
    "LinkDead",
    "Trace",
    "V201Adapter",
]

SUBPROTOCOL = "ocpp2.0.1"
EVENTS_KEPT = 64
"""NotifyEvents kept while offline (oldest dropped first): not transaction-related."""

SAMPLES_KEPT = 32
"""J01 MeterValues without a transaction kept while offline (oldest dropped first)."""


class V201Adapter(OcppAdapterBase[Session201]):
    """The OCPP 2.0.1 side of the agent.

    Args:
        station: The core.
        settings: Live settings (the device model writes through them).
        device_model: The station's variables (``build_device_model``).
        authorizer: Gets this adapter attached as its online authorizer when
            ``attach_authorizer`` (with version "auto" the composition root attaches
            whichever adapter is online).
        clock: Set from the CSMS's time (BootNotification, Heartbeat).
        boot: Identity for BootNotification.
        boot_reason: Reason of the first BootNotification of this process
            (``mapping.boot_reason``); later boots in the same process say the same,
            a triggered one says Triggered.
        call_timeout_s: Longest wait for an answer to one of our CALLs, s; a timeout
            closes the connection.
        boot_retry_s: Retry delay after Pending/Rejected when the CSMS gives interval 0.
        trace: Optional raw-frame hook.
        firmware: For FirmwareStatusNotification triggers (Idle without).
        diagnostics: For LogStatusNotification triggers (Idle without).
        reset_supported_per_evse: Whether a Reset of one EVSE is possible (B12);
            without it such a Reset is Rejected.
        journal: The persisted transaction messages, delivered as TransactionEvents
            (None: no transaction messages are sent).
    """

    subprotocol = SUBPROTOCOL

    def __init__(
        self,
        *,
        station: Station,
        settings: Settings,
        device_model: DeviceModel,
        authorizer: Authorizer,
        clock: Clock,
        boot: BootInfo,
        boot_reason: mapping.BootReason = mapping.BootReason.POWER_UP,
        call_timeout_s: float = 30.0,
        boot_retry_s: float = 30.0,
        trace: Trace | None = None,
        firmware: FirmwareManager | None = None,
        diagnostics: DiagnosticsService | None = None,
        attach_authorizer: bool = True,
        reset_supported_per_evse: bool = False,
        journal: TransactionJournal | None = None,
    ) -> None:
        super().__init__()
        self.station = station
        self.settings = settings
        self.device_model = device_model
        self.authorizer = authorizer
        self.clock = clock
        self.boot = boot
        self.boot_reason = boot_reason
        self.call_timeout_s = call_timeout_s
        self.boot_retry_s = boot_retry_s
        self.trace = trace
        self.firmware = firmware
        self.diagnostics = diagnostics
        self.reset_supported_per_evse = reset_supported_per_evse
        self.journal = journal
        # UpdateFirmware without signature ([firmware] accept_unsigned_updates)
        self.accept_unsigned_updates = False
        # B09 SetNetworkProfile target (None: Rejected); set by the composition root
        self.network_profiles: NetworkProfileStore | None = None
        self.outbox = OutboxDelivery(journal, settings) if journal is not None else None
        # D: the Local Authorization List (build_v201_adapter sets it; None: no list)
        # and who keeps LocalAuthListCtrlr.Entries current after a SendLocalList
        self.local_list: LocalAuthList | None = None
        self.local_list_size: Callable[[int], None] = lambda _entries: None
        # H: ReservationStatusUpdates (expired / removed by the station) to send
        self.reservation_updates = res201.ReservationUpdates()
        if station.reservations is not None:
            station.reservations.subscribe_ended(self.reservation_updates.push)
        # idToken type a RequestStartTransaction named, by token (for its Started event)
        self.remote_token_types: dict[str, str] = {}
        # what the core reported, waiting for the session's senders
        self.statuses: LatestByKey[EvseStatusChanged] = LatestByKey()
        # J01: clock-aligned samples of idle EVSEs and the station (evse 0)
        self.samples: Backlog[tuple[int, MeterSample]] = Backlog(SAMPLES_KEPT)
        # N07: fault raised/cleared events waiting for a connection (in order)
        self.events: Backlog[dict[str, Any]] = Backlog(EVENTS_KEPT)
        self._active_faults: dict[int, FaultCode] = {}
        self._next_event_id = 1
        self.registered = asyncio.Event()  # set on every Accepted boot (tests, bench)
        for status in station.all_statuses():
            self._track_fault(status)
        station.subscribe_status(self._on_status)
        station.subscribe_samples(self._on_sample)
        if self.outbox is not None:
            station.subscribe_tx_messages(self.outbox.wake)
        if attach_authorizer:
            authorizer.attach(self)

    # --------------------------------------------------- core -> adapter

    def _on_sample(self, evse_id: int, sample: MeterSample) -> None:
        self.samples.put((evse_id, sample))

    def _on_status(self, event: EvseStatusChanged) -> None:
        self._track_fault(event)
        if event.evse_id == 0:
            return  # 2.0.1 has no connector 0: the EVSEs report the change themselves
        self.statuses.put(event.evse_id, event)

    def queue_all_statuses(self) -> None:
        """Queue every connector's current status (after each accepted boot)."""
        for status in self.station.all_statuses():
            self._on_status(status)

    def _track_fault(self, event: EvseStatusChanged) -> None:
        """N07: a fault code appearing or going away on an EVSE is a NotifyEvent."""
        if event.evse_id == 0:
            return
        previous = self._active_faults.get(event.evse_id)
        current = event.error_code if event.status == ConnectorStatus.FAULTED else None
        if current is None and event.error_code is not None:
            current = event.error_code  # a warning: the fault without the Faulted status
        if current == previous:
            return
        if previous is not None:
            self._queue_fault_event(event.evse_id, previous, cleared=True, when=event.timestamp)
        if current is not None:
            self._queue_fault_event(event.evse_id, current, cleared=False, when=event.timestamp)
            self._active_faults[event.evse_id] = current
        else:
            del self._active_faults[event.evse_id]

    def _queue_fault_event(
        self, evse_id: int, code: FaultCode, *, cleared: bool, when: str
    ) -> None:
        self.events.put(
            mapping.fault_event(
                event_id=self._next_event_id,
                evse_id=evse_id,
                code=code,
                cleared=cleared,
                timestamp=when,
            )
        )
        self._next_event_id += 1

    # ------------------------------------------------------ DataTransfer

    async def data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: Any = None
    ) -> tuple[str, Any] | None:
        """P02: send a DataTransfer to the CSMS.

        Returns:
            (status, data) of the answer; None when offline or the CSMS answered a
            CALLERROR.

        Raises:
            LinkDead: no answer within ``call_timeout_s`` (the session ends).
        """
        session = self._session
        if session is None or not session.accepted:
            return None
        return await session.data_transfer(vendor_id, message_id, data)

    # ------------------------------------------------------------ sessions

    async def run_session(self, ws: Any, charge_point_id: str) -> None:
        """Run OCPP 2.0.1 over an open WebSocket until it closes or the link dies."""
        await self._run(Session201(self, ws, charge_point_id))
