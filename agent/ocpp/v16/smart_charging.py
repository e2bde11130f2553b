"""OCPP 1.6 SmartCharging (1.6 3.13, 5.5, 5.7, 5.16; a TxProfile in
RemoteStartTransaction) on the shared engine.

Each method is request -> core call -> answer: ``charging`` projects the payloads, the
station's ``SmartChargingService`` validates, installs, clears and composes. One
instance per connection.
"""

from __future__ import annotations

import logging
from typing import Any

from ocpp.v16 import call_result

from agent.clock import Clock, to_iso
from agent.ocpp.v16 import charging
from agent.smart_charging import ChargingProfile, Purpose
from agent.station import Station
from agent.transactions.journal import TransactionJournal

log = logging.getLogger(__name__)


class SmartCharging16:
    """The SmartCharging profile of one 1.6 connection.

    Args:
        station: The core; ``station.smart_charging`` None means every request is
            answered NotSupported / Unknown / Rejected.
        clock: "Now" for relative schedules.
        journal: The CSMS transaction id of a running transaction, once known.
        answered_starts: CSMS transaction id -> our transaction id, learned in the
            receive path before the journal has it (the session's live dict).
    """

    def __init__(
        self,
        station: Station,
        clock: Clock,
        journal: TransactionJournal,
        answered_starts: dict[int, str],
    ) -> None:
        self._station = station
        self._clock = clock
        self._journal = journal
        self._answered_starts = answered_starts

    async def set_charging_profile(self, connector_id: int, raw: Any) -> Any:
        """SetChargingProfile (1.6 §5.16): Accepted once installed and persisted."""
        result = call_result.SetChargingProfile
        service = self._station.smart_charging
        if service is None:
            return result(status="NotSupported")
        try:
            profile = charging.profile_from_16(connector_id, raw, now=self._clock.now())
        except ValueError as e:
            log.warning("SetChargingProfile rejected: %s", e)
            return result(status="Rejected")
        if not await self._tx_id_matches(profile):
            log.warning(
                "SetChargingProfile rejected: transactionId %s not running on %d",
                profile.transaction_id,
                connector_id,
            )
            return result(status="Rejected")
        outcome = await service.install(profile)
        if not outcome.accepted:
            log.warning("SetChargingProfile rejected: %s", "; ".join(outcome.problems))
        return result(status="Accepted" if outcome.accepted else "Rejected")

    async def _tx_id_matches(self, profile: ChargingProfile) -> bool:
        """A TxProfile naming a transactionId must name the one running on its connector."""
        if profile.purpose is not Purpose.TX or profile.transaction_id is None:
            return True
        ctl = self._station.controllers.get(profile.evse_id)
        if ctl is None or ctl.transaction is None:
            return True  # validation rejects it with the reason
        tx_id = ctl.transaction.tx_id
        known = {str(k) for k, v in self._answered_starts.items() if v == tx_id}
        record = await self._journal.get(tx_id)
        if record is not None and record.csms_tx_id is not None:
            known.add(str(record.csms_tx_id))
        return profile.transaction_id in known

    async def clear_charging_profile(
        self,
        profile_id: int | None,
        connector_id: int | None,
        purpose: str | None,
        stack_level: int | None,
    ) -> Any:
        """ClearChargingProfile (1.6 §5.5, errata 3.25): Accepted or Unknown."""
        result = call_result.ClearChargingProfile
        service = self._station.smart_charging
        if service is None:
            return result(status="Unknown")
        try:
            criteria = charging.clear_criteria_from_16(
                profile_id, connector_id, purpose, stack_level
            )
        except ValueError:
            return result(status="Unknown")
        cleared = await service.clear(criteria)
        return result(status="Accepted" if cleared else "Unknown")

    def get_composite_schedule(self, connector_id: int, duration_s: int, unit: str | None) -> Any:
        """GetCompositeSchedule (1.6 §5.7): the schedule from now, or Rejected."""
        result = call_result.GetCompositeSchedule
        service = self._station.smart_charging
        if service is None:
            return result(status="Rejected")
        try:
            schedule = service.composite(connector_id, duration_s, charging.rate_unit_from_16(unit))
        except ValueError as e:
            log.info("GetCompositeSchedule rejected: %s", e)
            return result(status="Rejected")
        return result(
            status="Accepted",
            connector_id=connector_id,
            schedule_start=to_iso(schedule.start),
            charging_schedule=charging.composite_to_16(schedule),
        )

    def remote_start_profile(self, connector_id: int | None, raw: Any) -> ChargingProfile | None:
        """The TxProfile of a RemoteStartTransaction, or None when it must be Rejected
        (not a TxProfile, no smart charging, malformed, or no single connector)."""
        station = self._station
        if connector_id is None and len(station.controllers) == 1:
            connector_id = next(iter(station.controllers))
        if station.smart_charging is None or connector_id is None:
            return None
        try:
            profile = charging.profile_from_16(connector_id, raw, now=self._clock.now())
        except ValueError as e:
            log.warning("RemoteStartTransaction chargingProfile unusable: %s", e)
            return None
        return profile if profile.purpose is Purpose.TX else None
