"""OCPP 2.0.1 smart charging (K01-K10, F01 with a profile) on the shared engine.

Each method is request -> core call -> answer: ``charging`` projects the payloads, the
station's ``SmartChargingService`` validates, installs, clears and composes. The
adapter's ``@on`` handlers call these and never await a CALL; ReportChargingProfiles
pages are sent by ``send_report`` from an ``@after`` handler (after the
GetChargingProfiles answer went out, K09.FR.?? "then"). One instance per connection:
prepared reports die with it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.v201 import call, call_result

from agent.ocpp.v201 import charging
from agent.smart_charging.profiles import ChargingProfile, Purpose
from agent.smart_charging.service import SmartChargingService
from agent.station import Station

log = logging.getLogger(__name__)

Send = Callable[[Any], Awaitable[Any]]
"""Sends one CALL payload and returns the answer (raises OCPPError on CALLERROR)."""


class SmartCharging201:
    """The K block of one 2.0.1 connection.

    Args:
        station: The core; ``station.smart_charging`` None means every request is
            answered Rejected (NotEnabled) / Unknown / NoProfiles.
        items_per_message: Profiles per ReportChargingProfiles page (read per request).
    """

    def __init__(self, station: Station, items_per_message: Callable[[], int]) -> None:
        self._station = station
        self._items_per_message = items_per_message
        self._reports: dict[int, list[charging.ReportPage]] = {}

    @property
    def _service(self) -> SmartChargingService | None:
        return self._station.smart_charging

    # ------------------------------------------------------------ K01

    async def set_charging_profile(self, evse_id: int, raw: Any) -> Any:
        """K01: Accepted once installed and persisted, else Rejected with a reasonCode."""
        service = self._service
        if service is None:
            return _rejected_profile("NotEnabled", "smart charging is not configured")
        try:
            profile = charging.profile_from_201(evse_id, raw)
        except charging.ProfileRefused as e:
            return _rejected_profile(e.reason_code, e.detail)
        problems = service.check(profile)
        if not problems:
            ctl = self._station.controllers.get(evse_id)
            tx = ctl.transaction if ctl is not None else None
            problem = charging.transaction_problem(profile, tx.tx_id if tx else None)
            problem = problem or charging.conflict(profile, service.profiles)
            problems = [problem] if problem else []
        if not problems:
            outcome = await service.install(profile)
            problems = list(outcome.problems)
        if problems:
            log.warning("SetChargingProfile %d rejected: %s", profile.profile_id, problems)
            return _rejected_profile(charging.reason_code(problems[0]), "; ".join(problems))
        return call_result.SetChargingProfile(status="Accepted")

    # ------------------------------------------------------------ K09

    def get_charging_profiles(self, request_id: int, evse_id: int | None, raw: Any) -> Any:
        """K09: Accepted (ReportChargingProfiles follow) or NoProfiles."""
        service = self._service
        try:
            criteria = charging.report_criteria_from_201(evse_id, raw)
        except (TypeError, ValueError) as e:
            info = charging.status_info("InvalidValue", str(e))
            return call_result.GetChargingProfiles(status="NoProfiles", status_info=info)
        profiles = service.profiles if service is not None else ()
        pages = charging.report_pages(profiles, criteria, self._items_per_message())
        if not pages:
            return call_result.GetChargingProfiles(status="NoProfiles")
        self._reports[request_id] = pages
        return call_result.GetChargingProfiles(status="Accepted")

    async def send_report(self, request_id: int, send: Send) -> None:
        """Send the pages prepared for ``request_id`` (tbc on all but the last)."""
        pages = self._reports.pop(request_id, [])
        for index, page in enumerate(pages):
            fields = charging.report_request(request_id, page, tbc=index < len(pages) - 1)
            try:
                await send(call.ReportChargingProfiles(**fields))
            except OCPPError as e:
                log.warning("ReportChargingProfiles %d/%d refused: %s", request_id, index, e)

    # ------------------------------------------------------------ K10

    async def clear_charging_profile(
        self, charging_profile_id: int | None, criteria: dict[str, Any] | None
    ) -> Any:
        """K10: Accepted when something was cleared, else Unknown."""
        service = self._service
        try:
            wanted = charging.clear_criteria_from_201(charging_profile_id, criteria)
        except (TypeError, ValueError) as e:
            info = charging.status_info("InvalidValue", str(e))
            return call_result.ClearChargingProfile(status="Unknown", status_info=info)
        if service is None or wanted is None:
            return call_result.ClearChargingProfile(status="Unknown")
        cleared = await service.clear(wanted)
        return call_result.ClearChargingProfile(status="Accepted" if cleared else "Unknown")

    # ------------------------------------------------------------ K08

    def get_composite_schedule(self, duration_s: int, evse_id: int, unit: str | None) -> Any:
        """K08: the composite from now, or Rejected (unknown EVSE, unit, duration)."""
        service = self._service
        if service is None:
            info = charging.status_info("NotEnabled", "smart charging is not configured")
            return call_result.GetCompositeSchedule(status="Rejected", status_info=info)
        try:
            rate_unit = charging.rate_unit_from_201(unit)
            schedule = service.composite(evse_id, duration_s, rate_unit)
            answer = charging.composite_to_201(evse_id, schedule)
        except ValueError as e:
            code = "UnknownEvse" if "EVSE" in str(e) else "UnsupportedParam"
            info = charging.status_info(code, str(e))
            return call_result.GetCompositeSchedule(status="Rejected", status_info=info)
        return call_result.GetCompositeSchedule(status="Accepted", schedule=answer)

    # ------------------------------------------------------------ F01 + K05

    def expect_remote_start_profile(
        self, evse_id: int | None, id_token: str, raw: Any
    ) -> int | None:
        """Prepare the TxProfile of a RequestStartTransaction before the start is posted,
        so the first PWM of the transaction obeys it (as 1.6 RemoteStart).

        Returns:
            The EVSE id the profile waits on, or None when the request must be Rejected
            (no smart charging, no single EVSE, not a TxProfile, a transactionId given
            (the transaction does not exist yet), or the profile is invalid).
        """
        service = self._service
        if evse_id is None and len(self._station.controllers) == 1:
            evse_id = next(iter(self._station.controllers))
        if service is None or evse_id is None:
            return None
        profile: ChargingProfile | None
        try:
            profile = charging.profile_from_201(evse_id, raw)
        except charging.ProfileRefused as e:
            log.warning("RequestStartTransaction chargingProfile refused: %s", e)
            return None
        if profile.purpose is not Purpose.TX or profile.transaction_id is not None:
            log.warning("RequestStartTransaction chargingProfile must be a TxProfile without id")
            return None
        if not service.expect_tx_profile(evse_id, id_token, profile):
            return None
        return evse_id

    def forget_remote_start_profile(self, evse_id: int) -> None:
        """The start was refused: drop the profile ``expect_remote_start_profile`` left."""
        service = self._service
        if service is not None:
            service.forget_tx_profile(evse_id)


def _rejected_profile(reason_code: str, detail: str) -> Any:
    return call_result.SetChargingProfile(
        status="Rejected", status_info=charging.status_info(reason_code, detail)
    )


__all__ = ["Send", "SmartCharging201"]
