"""OCPP 1.6 CSMS -> charger handlers: the ``ChargePoint16`` routing object of one
connection. Each handler answers from the station core or delegates to the session;
none awaits a CALL of ours (that would deadlock the receive loop): what follows an
answer (a triggered message, a reset, a firmware request) runs from an ``@after``
handler. Frame rules (CALLERRORs in 1.6 spelling, trace hook): ``rpc.py``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action

from agent.ocpp.session import DATA_TRANSFER_VENDOR
from agent.ocpp.v16 import firmware as fw16
from agent.ocpp.v16 import keys, mapping
from agent.ocpp.v16.rpc import Dialect, FramedChargePoint, after, on
from agent.station import ResetKind
from firmware_update.status import LogKind

if TYPE_CHECKING:
    from agent.ocpp.v16.session import Session16

log = logging.getLogger(__name__)


class ChargePoint16(FramedChargePoint, ChargePoint):  # type: ignore[misc]  # ocpp: no hints
    """The ocpp-library object of one 1.6 connection (constructed like
    ``FramedChargePoint``); the handlers delegate to the session."""

    session: Session16
    dialect = Dialect(Action, mapping.error_code_16)

    # --- CSMS -> charger handlers (never await self.call in here)

    @on(Action.remote_start_transaction)
    def on_remote_start(
        self, id_tag: str, connector_id: int | None = None, charging_profile: Any = None
    ) -> Any:
        return self.session.remote_start(id_tag, connector_id, charging_profile)

    @on(Action.remote_stop_transaction)
    async def on_remote_stop(self, transaction_id: int) -> Any:
        return await self.session.remote_stop(transaction_id)

    @on(Action.change_availability)
    async def on_change_availability(self, connector_id: int, type: str) -> Any:
        result = await self.session.adapter.station.change_availability(
            connector_id, operative=(type == "Operative")
        )
        return call_result.ChangeAvailability(status=result.value)

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None) -> Any:
        return self.session.get_configuration(key)

    @on(Action.change_configuration)
    async def on_change_configuration(self, key: str, value: str) -> Any:
        result = await keys.change(self.session.adapter.settings, key, value)
        log.info("ChangeConfiguration %s: %s", key, result)
        return call_result.ChangeConfiguration(status=result.value)

    @on(Action.clear_cache)
    async def on_clear_cache(self) -> Any:
        await self.session.adapter.station.clear_cache()
        return call_result.ClearCache(status="Accepted")

    @on(Action.reset)
    def on_reset(self, type: str) -> Any:
        # a firmware install being applied is never interrupted half-way
        blocked = self.session.adapter.station.reset_blocked()
        return call_result.Reset(status="Rejected" if blocked else "Accepted")

    @after(Action.reset)
    async def after_reset(self, type: str) -> None:
        if self.session.adapter.station.reset_blocked():
            return
        kind = ResetKind.HARD if type == "Hard" else ResetKind.SOFT
        await self.session.adapter.station.reset(kind)

    @on(Action.unlock_connector)
    async def on_unlock_connector(self, connector_id: int) -> Any:
        result = await self.session.adapter.station.unlock(connector_id)
        return call_result.UnlockConnector(status=result.value)

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None) -> Any:
        ok = self.session.can_trigger(requested_message, connector_id)
        return call_result.TriggerMessage(status="Accepted" if ok else "Rejected")

    @after(Action.trigger_message)
    def after_trigger_message(
        self, requested_message: str, connector_id: int | None = None
    ) -> None:
        # 1.6 5.17: the requested message follows the TriggerMessage answer
        if self.session.can_trigger(requested_message, connector_id):
            self.session.spawn(self.session.send_triggered(requested_message, connector_id))

    @on(Action.set_charging_profile)
    async def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: Any) -> Any:
        return await self.session.smart.set_charging_profile(connector_id, cs_charging_profiles)

    @on(Action.clear_charging_profile)
    async def on_clear_charging_profile(
        self,
        id: int | None = None,
        connector_id: int | None = None,
        charging_profile_purpose: str | None = None,
        stack_level: int | None = None,
    ) -> Any:
        return await self.session.smart.clear_charging_profile(
            id, connector_id, charging_profile_purpose, stack_level
        )

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(
        self, connector_id: int, duration: int, charging_rate_unit: str | None = None
    ) -> Any:
        return self.session.smart.get_composite_schedule(connector_id, duration, charging_rate_unit)

    @on(Action.get_local_list_version)
    async def on_get_local_list_version(self) -> Any:
        return call_result.GetLocalListVersion(list_version=await self.session.local_list_version())

    @on(Action.send_local_list)
    async def on_send_local_list(
        self,
        list_version: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
    ) -> Any:
        status = await self.session.send_local_list(
            list_version, update_type, local_authorization_list or []
        )
        return call_result.SendLocalList(status=status)

    @on(Action.reserve_now)
    async def on_reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None = None,
    ) -> Any:
        status = await self.session.reserve_now(
            connector_id, expiry_date, id_tag, reservation_id, parent_id_tag
        )
        return call_result.ReserveNow(status=status)

    @on(Action.cancel_reservation)
    async def on_cancel_reservation(self, reservation_id: int) -> Any:
        ok = await self.session.adapter.station.cancel_reservation(reservation_id)
        return call_result.CancelReservation(status="Accepted" if ok else "Rejected")

    @on(Action.update_firmware)
    def on_update_firmware(
        self,
        location: str,
        retrieve_date: str,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> Any:
        adapter = self.session.adapter
        self.session.firmware_request = fw16.update_firmware(
            adapter.firmware,
            adapter.accept_unsigned_updates,
            location,
            retrieve_date,
            retries,
            retry_interval,
        )
        return call_result.UpdateFirmware()

    @after(Action.update_firmware)
    async def after_update_firmware(self, **_: Any) -> None:
        await self.session.start_firmware_request()

    @on(Action.signed_update_firmware)
    def on_signed_update_firmware(
        self,
        request_id: int,
        firmware: dict[str, Any],
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> Any:
        status, self.session.firmware_request = fw16.signed_update_firmware(
            self.session.adapter.firmware, request_id, firmware, retries, retry_interval
        )
        return call_result.SignedUpdateFirmware(status=status)

    @after(Action.signed_update_firmware)
    async def after_signed_update_firmware(self, **_: Any) -> None:
        # after the answer: no status of the new update may overtake it
        await self.session.start_firmware_request()

    @on(Action.get_diagnostics)
    async def on_get_diagnostics(
        self,
        location: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        start_time: str | None = None,
        stop_time: str | None = None,
    ) -> Any:
        return await self.session.start_upload(
            LogKind.DIAGNOSTICS, location, 0, retries, retry_interval, start_time, stop_time
        )

    @on(Action.get_log)
    async def on_get_log(
        self,
        log: dict[str, Any],
        log_type: str,
        request_id: int,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> Any:
        return await self.session.start_upload(
            LogKind(log_type),
            str(log.get("remote_location", "")),
            request_id,
            retries,
            retry_interval,
            log.get("oldest_timestamp"),
            log.get("latest_timestamp"),
        )

    @on(Action.extended_trigger_message)
    def on_extended_trigger_message(
        self, requested_message: str, connector_id: int | None = None
    ) -> Any:
        ok = self.session.can_extended_trigger(requested_message, connector_id)
        return call_result.ExtendedTriggerMessage(status="Accepted" if ok else "Rejected")

    @after(Action.extended_trigger_message)
    def after_extended_trigger_message(
        self, requested_message: str, connector_id: int | None = None
    ) -> None:
        if self.session.can_extended_trigger(requested_message, connector_id):
            self.session.spawn(
                self.session.send_extended_triggered(requested_message, connector_id)
            )

    @on(Action.data_transfer)
    def on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: str | None = None
    ) -> Any:
        if vendor_id != DATA_TRANSFER_VENDOR:
            return call_result.DataTransfer(status="UnknownVendorId")
        return call_result.DataTransfer(status="UnknownMessageId")
