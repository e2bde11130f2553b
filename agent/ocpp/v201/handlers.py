"""OCPP 2.0.1 CSMS -> station handlers: the ``ChargePoint201`` routing object of one
connection. Each handler answers from the station core, the session or a feature
module (device model ``reports``, ``smart_charging``, ``authorization``,
``reservation``, ``network``, ``firmware``); none awaits a CALL of ours (that would
deadlock the receive loop): what follows an answer (NotifyReport pages, a triggered
message, a Reset) is spawned in the session from an ``@after`` handler. Frame rules
(CALLERRORs in 2.0.1 spelling, trace hook): ``agent.ocpp.v16.rpc`` (OCPP-J framing
is the same in both versions).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.enums import Action

from agent.ocpp.session import DATA_TRANSFER_VENDOR
from agent.ocpp.v16.rpc import Dialect, FramedChargePoint, after, on
from agent.ocpp.v201 import authorization as auth201
from agent.ocpp.v201 import firmware as fw201
from agent.ocpp.v201 import mapping
from agent.ocpp.v201 import network as net201
from agent.ocpp.v201 import reservation as res201
from agent.settings import NETWORK_PROFILE_SLOTS

if TYPE_CHECKING:
    from agent.ocpp.v201.session import Session201


class ChargePoint201(FramedChargePoint, ChargePoint):  # type: ignore[misc]  # ocpp: no hints
    """The 2.0.1 ChargePoint of one connection (constructed like ``FramedChargePoint``):
    each handler answers from the core, the session or a feature module."""

    session: Session201
    dialect = Dialect(Action, mapping.error_code_201)

    # --- CSMS -> station handlers (never await self.call in here)

    @on(Action.get_variables)
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        return self.session.device_model_requests.get_variables(get_variable_data)

    @on(Action.set_variables)
    async def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        return await self.session.device_model_requests.set_variables(set_variable_data)

    @on(Action.get_base_report)
    def on_get_base_report(self, request_id: int, report_base: str, **_: Any) -> Any:
        return self.session.device_model_requests.prepare_report(
            request_id, report_base=report_base
        )

    @after(Action.get_base_report)
    def after_get_base_report(self, request_id: int, **_: Any) -> None:
        self.session.send_prepared_report(request_id)

    @on(Action.get_report)
    def on_get_report(
        self,
        request_id: int,
        component_variable: list[dict[str, Any]] | None = None,
        component_criteria: list[str] | None = None,
        **_: Any,
    ) -> Any:
        return self.session.device_model_requests.prepare_report(
            request_id, component_variable=component_variable, criteria=component_criteria
        )

    @after(Action.get_report)
    def after_get_report(self, request_id: int, **_: Any) -> None:
        self.session.send_prepared_report(request_id)

    @on(Action.change_availability)
    async def on_change_availability(
        self, operational_status: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> Any:
        return await self.session.change_availability(operational_status, evse)

    @on(Action.reset)
    def on_reset(self, type: str, evse_id: int | None = None, **_: Any) -> Any:
        return self.session.answer_reset(type, evse_id)

    @after(Action.reset)
    def after_reset(self, type: str, evse_id: int | None = None, **_: Any) -> None:
        self.session.start_reset(type, evse_id)

    @on(Action.trigger_message)
    def on_trigger_message(
        self, requested_message: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> Any:
        status = self.session.trigger_status(requested_message, evse)
        return call_result.TriggerMessage(status=status)

    @after(Action.trigger_message)
    def after_trigger_message(
        self, requested_message: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> None:
        # F06: the requested message follows the TriggerMessage answer
        if self.session.trigger_status(requested_message, evse) == "Accepted":
            evse_id = evse.get("id") if evse else None
            self.session.spawn(self.session.send_triggered(requested_message, evse_id))

    @on(Action.unlock_connector)
    async def on_unlock_connector(self, evse_id: int, connector_id: int, **_: Any) -> Any:
        return await self.session.unlock(evse_id, connector_id)

    @on(Action.request_start_transaction)
    def on_request_start_transaction(
        self,
        id_token: dict[str, Any],
        remote_start_id: int,
        evse_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        return self.session.request_start(id_token, remote_start_id, evse_id, charging_profile)

    @on(Action.request_stop_transaction)
    def on_request_stop_transaction(self, transaction_id: str, **_: Any) -> Any:
        return self.session.request_stop(transaction_id)

    @on(Action.get_transaction_status)
    async def on_get_transaction_status(self, transaction_id: str | None = None, **_: Any) -> Any:
        return await self.session.get_transaction_status(transaction_id)

    @on(Action.data_transfer)
    def on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: Any = None, **_: Any
    ) -> Any:
        # P01: no vendor extension is implemented yet
        if vendor_id != DATA_TRANSFER_VENDOR:
            return call_result.DataTransfer(status="UnknownVendorId")
        return call_result.DataTransfer(status="UnknownMessageId")

    @on(Action.send_local_list)
    async def on_send_local_list(
        self,
        version_number: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> Any:
        answer = await self.session.send_local_list(
            version_number, update_type, local_authorization_list
        )
        return call_result.SendLocalList(**answer.fields())

    @on(Action.get_local_list_version)
    async def on_get_local_list_version(self, **_: Any) -> Any:
        adapter = self.session.adapter
        version = await auth201.get_local_list_version(
            adapter.local_list, enabled=adapter.settings.get_bool("local_auth_list_enabled")
        )
        return call_result.GetLocalListVersion(version_number=version)

    @on(Action.reserve_now)
    async def on_reserve_now(
        self,
        id: int,
        expiry_date_time: str,
        id_token: dict[str, Any],
        evse_id: int | None = None,
        group_id_token: dict[str, Any] | None = None,
        connector_type: str | None = None,
        **_: Any,
    ) -> Any:
        adapter = self.session.adapter
        status = await res201.reserve_now(
            adapter.station,
            adapter.device_model,
            accepted_boot=self.session.accepted,
            reservation_id=id,
            expiry_date_time=expiry_date_time,
            id_token=id_token,
            evse_id=evse_id,
            group_id_token=group_id_token,
            connector_type=connector_type,
        )
        return call_result.ReserveNow(status=status.value)

    @on(Action.cancel_reservation)
    async def on_cancel_reservation(self, reservation_id: int, **_: Any) -> Any:
        ok = await self.session.adapter.station.cancel_reservation(reservation_id)
        return call_result.CancelReservation(status="Accepted" if ok else "Rejected")

    @on(Action.clear_cache)
    async def on_clear_cache(self, **_: Any) -> Any:
        await self.session.adapter.station.clear_cache()
        return call_result.ClearCache(status="Accepted")

    # --- K: smart charging (agent.ocpp.v201.smart_charging)

    @on(Action.set_charging_profile)
    async def on_set_charging_profile(
        self, evse_id: int, charging_profile: dict[str, Any], **_: Any
    ) -> Any:
        return await self.session.smart.set_charging_profile(evse_id, charging_profile)

    @on(Action.get_charging_profiles)
    def on_get_charging_profiles(
        self,
        request_id: int,
        charging_profile: dict[str, Any],
        evse_id: int | None = None,
        **_: Any,
    ) -> Any:
        return self.session.smart.get_charging_profiles(request_id, evse_id, charging_profile)

    @after(Action.get_charging_profiles)
    def after_get_charging_profiles(self, request_id: int, **_: Any) -> None:
        self.session.spawn(self.session.smart.send_report(request_id, self.session._call))

    @on(Action.clear_charging_profile)
    async def on_clear_charging_profile(
        self,
        charging_profile_id: int | None = None,
        charging_profile_criteria: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        return await self.session.smart.clear_charging_profile(
            charging_profile_id, charging_profile_criteria
        )

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(
        self, duration: int, evse_id: int, charging_rate_unit: str | None = None, **_: Any
    ) -> Any:
        return self.session.smart.get_composite_schedule(duration, evse_id, charging_rate_unit)

    @on(Action.set_network_profile)
    async def on_set_network_profile(
        self, configuration_slot: int, connection_data: dict[str, Any], **_: Any
    ) -> Any:
        adapter = self.session.adapter
        fields = await net201.set_network_profile(
            adapter.network_profiles,
            NETWORK_PROFILE_SLOTS,
            configuration_slot,
            connection_data,
        )
        return call_result.SetNetworkProfile(**fields)

    @on(Action.update_firmware)
    def on_update_firmware(
        self,
        request_id: int,
        firmware: dict[str, Any],
        retries: int | None = None,
        retry_interval: int | None = None,
        **_: Any,
    ) -> Any:
        adapter = self.session.adapter
        status, self.session.firmware_request = fw201.update_firmware(
            adapter.firmware,
            request_id,
            firmware,
            retries,
            retry_interval,
            accept_unsigned=adapter.accept_unsigned_updates,
        )
        return call_result.UpdateFirmware(status=status)

    @after(Action.update_firmware)
    async def after_update_firmware(self, **_: Any) -> None:
        # L01: after the answer, so no status of the new update can overtake it
        request, self.session.firmware_request = self.session.firmware_request, None
        if request is not None and self.session.adapter.firmware is not None:
            await self.session.adapter.firmware.request(request)

    @on(Action.get_log)
    async def on_get_log(
        self,
        log: dict[str, Any],
        log_type: str,
        request_id: int,
        retries: int | None = None,
        retry_interval: int | None = None,
        **_: Any,
    ) -> Any:
        service, name, cancelled = self.session.adapter.diagnostics, None, False
        if service is not None:
            try:
                upload = fw201.log_request(log_type, log, request_id, retries, retry_interval)
            except (ValueError, KeyError) as e:
                logging.getLogger(__name__).warning("GetLog %d rejected: %s", request_id, e)
            else:
                name, cancelled = await service.request(upload)
        return call_result.GetLog(**fw201.get_log_answer(name, cancelled))
