"""The 2.0.1 device model engine: every Get/SetVariables status, reports, paging."""

from __future__ import annotations

import pytest

from agent.ocpp.v201.device_model import (
    Attribute,
    Characteristics,
    Component,
    ComponentCriterion,
    Computed,
    Constant,
    DataType,
    DeviceModel,
    GetStatus,
    Mutability,
    RefusedValue,
    ReportBase,
    SetStatus,
    Stored,
    Variable,
    check_value,
    pages,
)

COMM = Component("OCPPCommCtrlr")
SECURITY = Component("SecurityCtrlr")
EVSE1 = Component("EVSE", evse_id=1)
EVSE2 = Component("EVSE", evse_id=2)


class Box:
    """A stored value with a write log."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.writes: list[str] = []

    def source(self) -> Stored:
        async def write(value: str) -> None:
            self.writes.append(value)
            self.value = value

        return Stored(lambda: self.value, write)


def model() -> tuple[DeviceModel, dict[str, Box]]:
    boxes = {
        "heartbeat": Box("300"),
        "password": Box("s3cret-s3cret-s3cret"),
        "attempts": Box("3"),
        "measurands": Box("Energy.Active.Import.Register"),
        "evse1_available": Box("true"),
        "evse2_available": Box("false"),
    }
    variables = [
        Variable(
            COMM,
            "HeartbeatInterval",
            Characteristics(DataType.INTEGER, unit="s", min_limit=1, max_limit=86400),
            Mutability.READ_WRITE,
            boxes["heartbeat"].source(),
        ),
        Variable(
            COMM,
            "MessageAttempts",
            Characteristics(DataType.INTEGER, min_limit=1),
            Mutability.READ_WRITE,
            boxes["attempts"].source(),
            instance="TransactionEvent",
            reboot_required=True,
        ),
        Variable(
            COMM,
            "FileTransferProtocols",
            Characteristics(DataType.MEMBER_LIST, values_list=("HTTP", "HTTPS", "FTP")),
            Mutability.READ_ONLY,
            Constant("HTTP,HTTPS,FTP"),
            constant=True,
        ),
        Variable(
            SECURITY,
            "BasicAuthPassword",
            Characteristics(DataType.PASSWORD_STRING, min_limit=16, max_limit=40),
            Mutability.WRITE_ONLY,
            boxes["password"].source(),
        ),
        Variable(
            Component("SampledDataCtrlr"),
            "TxUpdatedMeasurands",
            Characteristics(
                DataType.MEMBER_LIST,
                values_list=("Energy.Active.Import.Register", "Power.Active.Import", "SoC"),
            ),
            Mutability.READ_WRITE,
            boxes["measurands"].source(),
        ),
        Variable(
            Component("ClockCtrlr"),
            "DateTime",
            Characteristics(DataType.DATE_TIME),
            Mutability.READ_ONLY,
            Computed(lambda: "2026-11-24T22:00:00Z"),
            persistent=False,
        ),
        Variable(
            EVSE1,
            "Available",
            Characteristics(DataType.BOOLEAN),
            Mutability.READ_ONLY,
            boxes["evse1_available"].source(),
        ),
        Variable(
            EVSE1,
            "Power",
            Characteristics(DataType.DECIMAL, unit="W", max_limit=22000),
            Mutability.READ_ONLY,
            Constant("0"),
            other_attributes=((Attribute.MAX_SET, Constant("22000")),),
        ),
        Variable(
            EVSE2,
            "Available",
            Characteristics(DataType.BOOLEAN),
            Mutability.READ_ONLY,
            boxes["evse2_available"].source(),
        ),
    ]
    return DeviceModel(variables), boxes


def test_get_answers_every_status() -> None:
    dm, _ = model()
    assert dm.get(COMM, "HeartbeatInterval").value == "300"
    assert dm.get(Component("NoSuchCtrlr"), "HeartbeatInterval").status == (
        GetStatus.UNKNOWN_COMPONENT
    )
    assert dm.get(Component("EVSE", evse_id=3), "Available").status == (GetStatus.UNKNOWN_COMPONENT)
    assert dm.get(COMM, "NoSuchVariable").status == GetStatus.UNKNOWN_VARIABLE
    assert dm.get(COMM, "MessageAttempts").status == GetStatus.UNKNOWN_VARIABLE  # instance
    assert dm.get(COMM, "MessageAttempts", "TransactionEvent").value == "3"
    assert dm.get(COMM, "HeartbeatInterval", attribute=Attribute.TARGET).status == (
        GetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE
    )
    assert dm.get(EVSE1, "Power", attribute=Attribute.MAX_SET).value == "22000"


def test_write_only_values_never_leave() -> None:
    dm, _ = model()
    result = dm.get(SECURITY, "BasicAuthPassword")
    assert result.status == GetStatus.REJECTED
    assert result.value is None
    for base in ReportBase:
        for item in dm.base_report(base):
            if item.variable.name == "BasicAuthPassword":
                assert [a.value for a in item.attributes] == [None]


async def test_set_answers_every_status_and_stores_only_accepted_values() -> None:
    dm, boxes = model()
    assert (await dm.set(COMM, "HeartbeatInterval", "60")).status == SetStatus.ACCEPTED
    assert boxes["heartbeat"].value == "60"
    out_of_range = await dm.set(COMM, "HeartbeatInterval", "0")
    assert (out_of_range.status, out_of_range.reason) == (SetStatus.REJECTED, "ValueOutOfRange")
    not_a_number = await dm.set(COMM, "HeartbeatInterval", "sixty")
    assert (not_a_number.status, not_a_number.reason) == (SetStatus.REJECTED, "InvalidValue")
    assert boxes["heartbeat"].writes == ["60"]
    read_only = await dm.set(COMM, "FileTransferProtocols", "FTP")
    assert (read_only.status, read_only.reason) == (SetStatus.REJECTED, "ReadOnly")
    assert (await dm.set(Component("X"), "Y", "1")).status == SetStatus.UNKNOWN_COMPONENT
    assert (await dm.set(COMM, "Y", "1")).status == SetStatus.UNKNOWN_VARIABLE
    target = await dm.set(COMM, "HeartbeatInterval", "5", attribute=Attribute.TARGET)
    assert target.status == SetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE
    reboot = await dm.set(COMM, "MessageAttempts", "5", instance="TransactionEvent")
    assert reboot.status == SetStatus.REBOOT_REQUIRED
    assert boxes["attempts"].value == "5"  # stored; effective after the reboot


async def test_write_only_can_be_set_and_length_limits_apply() -> None:
    dm, boxes = model()
    short = await dm.set(SECURITY, "BasicAuthPassword", "short")
    assert short.status == SetStatus.REJECTED
    assert (await dm.set(SECURITY, "BasicAuthPassword", "x" * 20)).status == SetStatus.ACCEPTED
    assert boxes["password"].value == "x" * 20


async def test_member_lists_are_checked_and_canonical() -> None:
    dm, boxes = model()
    bad = await dm.set(Component("SampledDataCtrlr"), "TxUpdatedMeasurands", "Voltage")
    assert (bad.status, bad.reason) == (SetStatus.REJECTED, "ValueNotInList")
    twice = await dm.set(Component("SampledDataCtrlr"), "TxUpdatedMeasurands", "SoC,SoC")
    assert twice.status == SetStatus.REJECTED
    ok = await dm.set(
        Component("SampledDataCtrlr"), "TxUpdatedMeasurands", " SoC , Power.Active.Import "
    )
    assert ok.status == SetStatus.ACCEPTED
    assert boxes["measurands"].value == "SoC,Power.Active.Import"


def test_base_reports() -> None:
    dm, _ = model()
    full = dm.base_report(ReportBase.FULL_INVENTORY)
    assert len(full) == len(dm.variables)
    config = {i.variable.name for i in dm.base_report(ReportBase.CONFIGURATION_INVENTORY)}
    assert config == {
        "HeartbeatInterval",
        "MessageAttempts",
        "BasicAuthPassword",
        "TxUpdatedMeasurands",
    }
    summary = dm.base_report(ReportBase.SUMMARY_INVENTORY)
    assert {(i.variable.component, i.variable.name) for i in summary} == {
        (EVSE1, "Available"),
        (EVSE2, "Available"),
    }
    power = next(i for i in full if i.variable.name == "Power")
    assert [(a.type, a.value, a.mutability) for a in power.attributes] == [
        (Attribute.ACTUAL, "0", Mutability.READ_ONLY),
        (Attribute.MAX_SET, "22000", Mutability.READ_ONLY),
    ]
    clock = next(i for i in full if i.variable.name == "DateTime")
    assert clock.attributes[0].persistent is False


def test_custom_report_filters_by_component_variable_and_criteria() -> None:
    dm, _ = model()
    every_evse = dm.custom_report([(Component("EVSE"), None, None)])
    assert {i.variable.component for i in every_evse} == {EVSE1, EVSE2}
    one = dm.custom_report([(COMM, "MessageAttempts", "TransactionEvent")])
    assert [i.variable.name for i in one] == ["MessageAttempts"]
    available = dm.custom_report([(Component("EVSE"), None, None)], [ComponentCriterion.AVAILABLE])
    assert {i.variable.component for i in available} == {EVSE1}
    problems = dm.custom_report(criteria=[ComponentCriterion.PROBLEM])
    assert problems == []  # nothing has a Problem variable set


def test_pages_hold_at_most_items_per_message() -> None:
    dm, _ = model()
    items = dm.base_report(ReportBase.FULL_INVENTORY)
    split = list(pages(items, 4))
    assert [len(p) for p in split] == [4, 4, 1]
    assert [i for p in split for i in p] == items
    with pytest.raises(ValueError):
        list(pages(items, 0))


def test_duplicate_variables_are_refused() -> None:
    variable = Variable(
        COMM, "X", Characteristics(DataType.STRING), Mutability.READ_ONLY, Constant("")
    )
    with pytest.raises(ValueError, match="duplicate"):
        DeviceModel([variable, variable])


@pytest.mark.parametrize(
    ("data_type", "value", "expected"),
    [
        (DataType.BOOLEAN, "TRUE", "true"),
        (DataType.INTEGER, " 42 ", "42"),
        (DataType.DECIMAL, "1.5", "1.5"),
        (DataType.OPTION_LIST, "A", "A"),
    ],
)
def test_check_value_canonical_forms(data_type: DataType, value: str, expected: str) -> None:
    values = ("A", "B") if data_type == DataType.OPTION_LIST else None
    assert check_value(Characteristics(data_type, values_list=values), value) == expected


@pytest.mark.parametrize(
    ("data_type", "value"),
    [
        (DataType.BOOLEAN, "yes"),
        (DataType.INTEGER, "1.5"),
        (DataType.DECIMAL, "nan"),
        (DataType.OPTION_LIST, "C"),
        (DataType.STRING, "x" * 2501),
    ],
)
def test_check_value_refusals(data_type: DataType, value: str) -> None:
    values = ("A", "B") if data_type == DataType.OPTION_LIST else None
    with pytest.raises(RefusedValue):
        check_value(Characteristics(data_type, values_list=values), value)
