"""OCPP 2.0.1 device-model requests (B05-B08): GetVariables, SetVariables,
GetBaseReport / GetReport and the NotifyReport pages that follow them.

Request -> ``DeviceModel`` -> answer; the CSMS -> station handlers call these and
never await a CALL: the NotifyReport pages are sent by ``send_report`` from an
``@after`` handler (after the Get*Report answer went out). One instance per
connection: prepared reports die with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ocpp.exceptions import OccurrenceConstraintViolationError, OCPPError
from ocpp.v201 import call, call_result

from agent.clock import Clock
from agent.ocpp.v201 import mapping
from agent.ocpp.v201.device_model import (
    Attribute,
    Component,
    ComponentCriterion,
    DeviceModel,
    GetStatus,
    ReportBase,
    ReportItem,
    pages,
)
from agent.settings import Settings

log = logging.getLogger(__name__)

ITEMS_PER_MESSAGE_SETTING = "device_model_items_per_message"

Send = Callable[[Any], Awaitable[Any]]
"""Sends one CALL payload and returns the answer (raises OCPPError on CALLERROR)."""


class DeviceModelRequests:
    """The device-model requests of one 2.0.1 connection.

    Args:
        model: The station's variables.
        settings: ``device_model_items_per_message`` (read per request).
        clock: ``generatedAt`` of the NotifyReport pages.
    """

    def __init__(self, model: DeviceModel, settings: Settings, clock: Clock) -> None:
        self._model = model
        self._settings = settings
        self._clock = clock
        self._reports: dict[int, list[ReportItem]] = {}
        self._report_lock = asyncio.Lock()  # NotifyReport pages of one report stay together

    def items_per_message(self) -> int:
        """ItemsPerMessage: items per request / report page (at least 1)."""
        return max(1, self._settings.get_int(ITEMS_PER_MESSAGE_SETTING))

    def _check_item_count(self, count: int, what: str) -> None:
        # B05.FR.?? / B06.FR.??: more items than ItemsPerMessage may be refused as a
        # whole with OccurrenceConstraintViolation.
        limit = self.items_per_message()
        if count > limit:
            raise OccurrenceConstraintViolationError(
                details={"cause": f"{count} {what} items; ItemsPerMessage is {limit}"}
            )

    def get_variables(self, data: list[dict[str, Any]]) -> Any:
        """B06: one result per requested item, in request order."""
        self._check_item_count(len(data), "GetVariables")
        model = self._model
        results = []
        for item in data:
            component, variable = item["component"], item["variable"]
            attribute = Attribute(item.get("attribute_type", "Actual"))
            got = model.get(
                _component(component), variable["name"], variable.get("instance"), attribute
            )
            result: dict[str, Any] = {
                "attribute_status": got.status.value,
                "component": component,
                "variable": variable,
            }
            if "attribute_type" in item:
                result["attribute_type"] = item["attribute_type"]
            if got.status == GetStatus.ACCEPTED:
                result["attribute_value"] = got.value
            if got.reason:
                result["attribute_status_info"] = {"reason_code": got.reason[:20]}
            results.append(result)
        return call_result.GetVariables(get_variable_result=results)

    async def set_variables(self, data: list[dict[str, Any]]) -> Any:
        """B05: each item is stored (persisted) before the answer goes out."""
        self._check_item_count(len(data), "SetVariables")
        model = self._model
        results = []
        for item in data:
            component, variable = item["component"], item["variable"]
            attribute = Attribute(item.get("attribute_type", "Actual"))
            done = await model.set(
                _component(component),
                variable["name"],
                str(item["attribute_value"]),
                variable.get("instance"),
                attribute,
            )
            result: dict[str, Any] = {
                "attribute_status": done.status.value,
                "component": component,
                "variable": variable,
            }
            if "attribute_type" in item:
                result["attribute_type"] = item["attribute_type"]
            if done.reason:
                info: dict[str, Any] = {"reason_code": done.reason[:20]}
                if done.detail:
                    info["additional_info"] = done.detail[:512]
                result["attribute_status_info"] = info
            results.append(result)
        return call_result.SetVariables(set_variable_result=results)

    def prepare_report(
        self,
        request_id: int,
        *,
        report_base: str | None = None,
        component_variable: list[dict[str, Any]] | None = None,
        criteria: list[str] | None = None,
    ) -> Any:
        """B07/B08: answer Accepted (pages follow) or EmptyResultSet / NotSupported."""
        model = self._model
        if report_base is not None:
            try:
                base = ReportBase(report_base)
            except ValueError:
                return call_result.GetBaseReport(status="NotSupported")
            items = model.base_report(base)
            status = "Accepted" if items else "EmptyResultSet"
            if items:
                self._reports[request_id] = items
            return call_result.GetBaseReport(status=status)
        requested = component_variable or []
        self._check_item_count(len(requested), "GetReport")
        try:
            wanted = [ComponentCriterion(c) for c in criteria or []]
        except ValueError:
            return call_result.GetReport(status="NotSupported")
        items = model.custom_report(
            [
                (
                    _component(cv["component"]),
                    cv.get("variable", {}).get("name"),
                    cv.get("variable", {}).get("instance"),
                )
                for cv in requested
            ],
            wanted,
        )
        if not items:
            return call_result.GetReport(status="EmptyResultSet")
        self._reports[request_id] = items
        return call_result.GetReport(status="Accepted")

    def take_report(self, request_id: int) -> list[ReportItem] | None:
        """The items of a report answered Accepted, once (None: nothing prepared)."""
        return self._reports.pop(request_id, None)

    async def send_report(self, request_id: int, items: list[ReportItem], send: Send) -> None:
        """Send ``items`` as NotifyReport pages (tbc on all but the last), in order."""
        chunks = list(pages(items, self.items_per_message()))
        generated_at = self._clock.iso_now()
        async with self._report_lock:
            for seq_no, chunk in enumerate(chunks):
                try:
                    await send(
                        call.NotifyReport(
                            request_id=request_id,
                            generated_at=generated_at,
                            seq_no=seq_no,
                            tbc=seq_no < len(chunks) - 1,
                            report_data=[_report_data(item) for item in chunk],
                        )
                    )
                except OCPPError as e:
                    log.warning("NotifyReport %d/%d refused: %s", request_id, seq_no, e)


def _component(raw: dict[str, Any]) -> Component:
    evse = raw.get("evse")
    evse_id = connector_id = None
    if isinstance(evse, dict):
        evse_id = evse.get("id")
        connector_id = evse.get("connector_id")
    return Component(raw["name"], raw.get("instance"), evse_id, connector_id)


def _component_out(component: Component) -> dict[str, Any]:
    out: dict[str, Any] = {"name": component.name}
    if component.instance is not None:
        out["instance"] = component.instance
    if component.evse_id is not None:
        evse: dict[str, Any] = {"id": component.evse_id}
        if component.connector_id is not None:
            evse["connector_id"] = component.connector_id
        out["evse"] = evse
    return out


def _report_data(item: ReportItem) -> dict[str, Any]:
    """ReportDataType of one item (WriteOnly values are left out by the engine)."""
    variable = item.variable
    var_out: dict[str, Any] = {"name": variable.name}
    if variable.instance is not None:
        var_out["instance"] = variable.instance
    attributes = []
    for attribute in item.attributes:
        entry: dict[str, Any] = {
            "type": attribute.type.value,
            "mutability": attribute.mutability.value,
            "persistent": attribute.persistent,
            "constant": attribute.constant,
        }
        if attribute.value is not None:
            entry["value"] = attribute.value
        attributes.append(entry)
    c = variable.characteristics
    characteristics: dict[str, Any] = {
        # 2.0.1 DataEnumType has no passwordString (OCPP 2.1 added it): a string here
        "data_type": mapping.data_type(c.data_type.value),
        "supports_monitoring": c.supports_monitoring,
    }
    if c.unit is not None:
        characteristics["unit"] = c.unit
    if c.min_limit is not None:
        characteristics["min_limit"] = c.min_limit
    if c.max_limit is not None:
        characteristics["max_limit"] = c.max_limit
    if c.values_list is not None:
        characteristics["values_list"] = ",".join(c.values_list)[:1000]
    return {
        "component": _component_out(variable.component),
        "variable": var_out,
        "variable_attribute": attributes,
        "variable_characteristics": characteristics,
    }
