"""The OCPP 2.0.1 device model: components, variables, attributes (REFERENCE 4.3).

Pure bookkeeping: which variables exist, what their characteristics are, how a
GetVariables / SetVariables item is answered, and which items a report holds.
Values live elsewhere: each variable reads and writes its ``Actual`` value through
a ``ValueSource`` (usually one of ``agent.settings``, so the 1.6 keys and the 2.0.1
variables are one source of truth). All values cross this module as OCPP strings.

Result statuses follow OCPP 2.0.1 B06/B05: an unknown component (name, instance,
EVSE or connector) gives UnknownComponent, a known component without that variable
UnknownVariable, an attribute type the variable does not have
NotSupportedAttributeType; a WriteOnly value is never returned (Rejected), a
ReadOnly one is never written (Rejected), a value that does not fit the
characteristics is Rejected with a reason, and a variable that only takes effect
after a reboot answers RebootRequired after the value was stored.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

MAX_VALUE_CHARS = 2500  # ReportData / GetVariableResult value limit


class Attribute(StrEnum):
    ACTUAL = "Actual"
    TARGET = "Target"
    MIN_SET = "MinSet"
    MAX_SET = "MaxSet"


class Mutability(StrEnum):
    READ_ONLY = "ReadOnly"
    WRITE_ONLY = "WriteOnly"
    READ_WRITE = "ReadWrite"


class DataType(StrEnum):
    STRING = "string"
    DECIMAL = "decimal"
    INTEGER = "integer"
    DATE_TIME = "dateTime"
    BOOLEAN = "boolean"
    OPTION_LIST = "OptionList"
    SEQUENCE_LIST = "SequenceList"
    MEMBER_LIST = "MemberList"
    PASSWORD_STRING = "passwordString"


class GetStatus(StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    UNKNOWN_COMPONENT = "UnknownComponent"
    UNKNOWN_VARIABLE = "UnknownVariable"
    NOT_SUPPORTED_ATTRIBUTE_TYPE = "NotSupportedAttributeType"


class SetStatus(StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    UNKNOWN_COMPONENT = "UnknownComponent"
    UNKNOWN_VARIABLE = "UnknownVariable"
    NOT_SUPPORTED_ATTRIBUTE_TYPE = "NotSupportedAttributeType"
    REBOOT_REQUIRED = "RebootRequired"


class ReportBase(StrEnum):
    CONFIGURATION_INVENTORY = "ConfigurationInventory"
    FULL_INVENTORY = "FullInventory"
    SUMMARY_INVENTORY = "SummaryInventory"


class ComponentCriterion(StrEnum):
    ACTIVE = "Active"
    AVAILABLE = "Available"
    ENABLED = "Enabled"
    PROBLEM = "Problem"


class RefusedValue(ValueError):
    """A value a variable refuses; ``reason`` is an OCPP reasonCode (<= 20 chars)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Component:
    """A component reference. ``evse_id``/``connector_id`` None: station level."""

    name: str
    instance: str | None = None
    evse_id: int | None = None
    connector_id: int | None = None


@dataclass(frozen=True, slots=True)
class Characteristics:
    """Read-only description of a variable's values."""

    data_type: DataType
    unit: str | None = None
    min_limit: float | None = None
    max_limit: float | None = None
    values_list: tuple[str, ...] | None = None
    supports_monitoring: bool = False


class ValueSource(Protocol):
    """Where a variable attribute's value lives."""

    def read(self) -> str: ...

    async def write(self, value: str) -> None:
        """Store ``value`` (already checked against the characteristics).

        Raises:
            RefusedValue: the owner refuses it (e.g. a setting's own range).
        """


@dataclass(frozen=True)
class Constant:
    """A value that never changes (``constant`` in reports)."""

    value: str

    def read(self) -> str:
        return self.value

    async def write(self, value: str) -> None:
        raise RefusedValue("ReadOnly", "constant value")


@dataclass(frozen=True)
class Computed:
    """A read-only value computed on each read (e.g. ClockCtrlr.DateTime)."""

    compute: Callable[[], str]

    def read(self) -> str:
        return self.compute()

    async def write(self, value: str) -> None:
        raise RefusedValue("ReadOnly", "computed value")


@dataclass(frozen=True)
class Stored:
    """A value read and written through two callables (a setting, a store entry)."""

    getter: Callable[[], str]
    setter: Callable[[str], Awaitable[None]]

    def read(self) -> str:
        return self.getter()

    async def write(self, value: str) -> None:
        await self.setter(value)


@dataclass(frozen=True)
class Variable:
    """One variable of one component.

    Attributes:
        component: The component it belongs to.
        name: Variable name (e.g. "HeartbeatInterval").
        characteristics: Data type, unit, limits, allowed values.
        mutability: Of the ``Actual`` attribute.
        source: Where the ``Actual`` value lives.
        instance: Variable instance (e.g. "TransactionEvent" of MessageAttempts).
        persistent: Survives a reboot.
        constant: Never changes.
        reboot_required: A new value takes effect only after a reboot.
        other_attributes: Target / MinSet / MaxSet values where the variable has them
            (read-only here).
    """

    component: Component
    name: str
    characteristics: Characteristics
    mutability: Mutability
    source: ValueSource
    instance: str | None = None
    persistent: bool = True
    constant: bool = False
    reboot_required: bool = False
    other_attributes: tuple[tuple[Attribute, ValueSource], ...] = field(default=())

    def attribute_source(self, attribute: Attribute) -> ValueSource | None:
        if attribute == Attribute.ACTUAL:
            return self.source
        return dict(self.other_attributes).get(attribute)

    @property
    def attributes(self) -> tuple[Attribute, ...]:
        return (Attribute.ACTUAL, *(a for a, _ in self.other_attributes))


@dataclass(frozen=True, slots=True)
class GetResult:
    status: GetStatus
    value: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SetResult:
    status: SetStatus
    reason: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class AttributeReport:
    """One ``VariableAttribute`` of a report; ``value`` None for WriteOnly."""

    type: Attribute
    value: str | None
    mutability: Mutability
    persistent: bool
    constant: bool


@dataclass(frozen=True, slots=True)
class ReportItem:
    """One ``ReportData`` entry."""

    variable: Variable
    attributes: tuple[AttributeReport, ...]


def check_value(characteristics: Characteristics, value: str) -> str:
    """Validate an OCPP string value against the characteristics; return it canonical.

    Raises:
        RefusedValue: wrong type ("InvalidValue"), outside the limits
            ("ValueOutOfRange"), not in the values list ("ValueNotInList"),
            too long ("ValueTooLong").
    """
    c = characteristics
    if len(value) > MAX_VALUE_CHARS:
        raise RefusedValue("ValueTooLong", f"at most {MAX_VALUE_CHARS} characters")
    if c.data_type == DataType.BOOLEAN:
        lowered = value.strip().lower()
        if lowered not in ("true", "false"):
            raise RefusedValue("InvalidValue", "expected true or false")
        return lowered
    if c.data_type in (DataType.INTEGER, DataType.DECIMAL):
        number = _number(value, integer=c.data_type == DataType.INTEGER)
        if c.min_limit is not None and number < c.min_limit:
            raise RefusedValue("ValueOutOfRange", f"must be >= {c.min_limit:g}")
        if c.max_limit is not None and number > c.max_limit:
            raise RefusedValue("ValueOutOfRange", f"must be <= {c.max_limit:g}")
        return str(int(number)) if c.data_type == DataType.INTEGER else value.strip()
    if c.data_type == DataType.OPTION_LIST:
        if c.values_list is not None and value not in c.values_list:
            raise RefusedValue("ValueNotInList", f"must be one of {','.join(c.values_list)}")
        return value
    if c.data_type in (DataType.MEMBER_LIST, DataType.SEQUENCE_LIST):
        members = [m.strip() for m in value.split(",") if m.strip()]
        if c.values_list is not None:
            bad = [m for m in members if m not in c.values_list]
            if bad:
                raise RefusedValue("ValueNotInList", f"unsupported: {','.join(bad)}")
        if c.data_type == DataType.MEMBER_LIST and len(set(members)) != len(members):
            raise RefusedValue("InvalidValue", "a member is listed twice")
        return ",".join(members)
    if c.max_limit is not None and len(value) > c.max_limit:  # strings: limits are lengths
        raise RefusedValue("ValueOutOfRange", f"at most {c.max_limit:g} characters")
    if c.min_limit is not None and len(value) < c.min_limit:
        raise RefusedValue("ValueOutOfRange", f"at least {c.min_limit:g} characters")
    return value


def _number(text: str, *, integer: bool) -> float:
    try:
        number = float(int(text.strip())) if integer else float(text.strip())
    except ValueError:
        kind = "an integer" if integer else "a decimal"
        raise RefusedValue("InvalidValue", f"expected {kind}") from None
    if not math.isfinite(number):
        raise RefusedValue("InvalidValue", "expected a finite number")
    return number


class DeviceModel:
    """The station's variables, answering Get/SetVariables and building reports.

    Args:
        variables: Every variable; a (component, variable name, instance) must be
            unique.

    Raises:
        ValueError: a duplicate variable.
    """

    def __init__(self, variables: Iterable[Variable]) -> None:
        self._variables: dict[tuple[Component, str, str | None], Variable] = {}
        self._components: set[Component] = set()
        for variable in variables:
            key = (variable.component, variable.name, variable.instance)
            if key in self._variables:
                raise ValueError(f"duplicate variable {variable.component} {variable.name}")
            self._variables[key] = variable
            self._components.add(variable.component)

    @property
    def variables(self) -> tuple[Variable, ...]:
        return tuple(self._variables.values())

    def find(
        self, component: Component, name: str, instance: str | None = None
    ) -> Variable | GetStatus:
        """The variable, or UnknownComponent / UnknownVariable."""
        variable = self._variables.get((component, name, instance))
        if variable is not None:
            return variable
        if component not in self._components:
            return GetStatus.UNKNOWN_COMPONENT
        return GetStatus.UNKNOWN_VARIABLE

    def get(
        self,
        component: Component,
        name: str,
        instance: str | None = None,
        attribute: Attribute = Attribute.ACTUAL,
    ) -> GetResult:
        """Answer one GetVariableData item."""
        found = self.find(component, name, instance)
        if isinstance(found, GetStatus):
            return GetResult(found)
        source = found.attribute_source(attribute)
        if source is None:
            return GetResult(GetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE)
        if attribute == Attribute.ACTUAL and found.mutability == Mutability.WRITE_ONLY:
            return GetResult(GetStatus.REJECTED, reason="WriteOnly")
        return GetResult(GetStatus.ACCEPTED, source.read()[:MAX_VALUE_CHARS])

    async def set(
        self,
        component: Component,
        name: str,
        value: str,
        instance: str | None = None,
        attribute: Attribute = Attribute.ACTUAL,
    ) -> SetResult:
        """Answer one SetVariableData item, storing the value when accepted."""
        found = self.find(component, name, instance)
        if isinstance(found, GetStatus):
            return SetResult(SetStatus(found.value))
        source = found.attribute_source(attribute)
        if source is None:
            return SetResult(SetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE)
        if attribute != Attribute.ACTUAL or found.mutability == Mutability.READ_ONLY:
            return SetResult(SetStatus.REJECTED, "ReadOnly", "the value cannot be set")
        try:
            canonical = check_value(found.characteristics, value)
            await source.write(canonical)
        except RefusedValue as exc:
            return SetResult(SetStatus.REJECTED, exc.reason, exc.detail)
        if found.reboot_required:
            return SetResult(SetStatus.REBOOT_REQUIRED)
        return SetResult(SetStatus.ACCEPTED)

    def report_item(self, variable: Variable) -> ReportItem:
        """The ``ReportData`` of one variable: every attribute it has."""
        attributes = []
        for attribute in variable.attributes:
            source = variable.attribute_source(attribute)
            assert source is not None
            actual = attribute == Attribute.ACTUAL
            mutability = variable.mutability if actual else Mutability.READ_ONLY
            hidden = mutability == Mutability.WRITE_ONLY
            attributes.append(
                AttributeReport(
                    type=attribute,
                    value=None if hidden else source.read()[:MAX_VALUE_CHARS],
                    mutability=mutability,
                    persistent=variable.persistent,
                    constant=variable.constant,
                )
            )
        return ReportItem(variable, tuple(attributes))

    def base_report(self, base: ReportBase) -> list[ReportItem]:
        """The items of GetBaseReport, in a stable order.

        ConfigurationInventory: every variable a CSMS can set (ReadWrite and
        WriteOnly). FullInventory: every variable. SummaryInventory: the
        availability and problem state of the station, EVSEs and connectors
        (the AvailabilityState, Available and Problem variables).
        """
        if base == ReportBase.FULL_INVENTORY:
            chosen = list(self._variables.values())
        elif base == ReportBase.CONFIGURATION_INVENTORY:
            chosen = [v for v in self._variables.values() if v.mutability != Mutability.READ_ONLY]
        else:
            summary = {"AvailabilityState", "Available", "Problem"}
            chosen = [v for v in self._variables.values() if v.name in summary]
        return [self.report_item(v) for v in chosen]

    def custom_report(
        self,
        component_variables: Sequence[tuple[Component, str | None, str | None]] = (),
        criteria: Sequence[ComponentCriterion] = (),
    ) -> list[ReportItem]:
        """The items of GetReport.

        Args:
            component_variables: (component, variable name or None for all of the
                component's variables, variable instance). A component with
                ``evse_id``/``connector_id`` None matches that component on every
                EVSE/connector as well (as B08 asks for component-only filters).
            criteria: Components whose Active / Available / Enabled variable is
                "true", or whose Problem variable is "true"; a component without
                that variable counts as Active, Available and Enabled (REFERENCE 4.3)
                and without a problem. Several criteria: any of them.
        """
        chosen = []
        for variable in self._variables.values():
            if component_variables and not any(
                _matches(variable, c, n, i) for c, n, i in component_variables
            ):
                continue
            if criteria and not any(self._meets(variable.component, c) for c in criteria):
                continue
            chosen.append(variable)
        return [self.report_item(v) for v in chosen]

    def _meets(self, component: Component, criterion: ComponentCriterion) -> bool:
        name = criterion.value
        variable = self._variables.get((component, name, None))
        if variable is None:
            return criterion != ComponentCriterion.PROBLEM
        return variable.source.read().lower() == "true"


def _matches(
    variable: Variable, component: Component, name: str | None, instance: str | None
) -> bool:
    c = variable.component
    if c.name != component.name or c.instance != component.instance:
        return False
    if component.evse_id is not None and c.evse_id != component.evse_id:
        return False
    if component.connector_id is not None and c.connector_id != component.connector_id:
        return False
    if name is None:
        return True
    return variable.name == name and variable.instance == instance


def pages(items: Sequence[ReportItem], items_per_message: int) -> Iterator[list[ReportItem]]:
    """Split report items into NotifyReport pages of at most ``items_per_message``.

    Yields at least one page (empty when there are no items is never asked: an
    empty result is EmptyResultSet and sends no NotifyReport).

    Raises:
        ValueError: ``items_per_message`` < 1.
    """
    if items_per_message < 1:
        raise ValueError("items_per_message must be >= 1")
    for start in range(0, len(items), items_per_message):
        yield list(items[start : start + items_per_message])
