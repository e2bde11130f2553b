"""The station's 2.0.1 variables: required set, one source of truth with the 1.6 keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from agent.config import parse_config, sim_defaults
from agent.ocpp.v16 import keys
from agent.ocpp.v201.device_model import (
    Attribute,
    Component,
    DataType,
    DeviceModel,
    GetStatus,
    Mutability,
    RefusedValue,
    ReportBase,
    SetStatus,
    Variable,
    check_value,
)
from agent.ocpp.v201.variables import (
    INT32_MAX,
    EvseFacts,
    LiveValues,
    StationFacts,
    build_device_model,
)
from agent.persistence.settings_store import SettingsStore
from agent.persistence.store import Store
from agent.settings import Settings

PASSWORD = "0123456789abcdef0123"
STATION = StationFacts(
    charge_point_id="CP-7",
    evses=(EvseFacts(1, 3, 32.0), EvseFacts(2, 1, 16.0, "cType2")),
    nominal_voltage_v=230.0,
    security_profile=1,
)
CTX = keys.KeyContext(number_of_connectors=2)

# REFERENCE 4.3: the required variables of every block built here, plus the ones the
# brief names (HeartbeatInterval, WebSocketPingInterval, Enabled/Entries, ...).
# (component, evse id, connector id, variable, variable instance)
REQUIRED: list[tuple[str, int | None, int | None, str, str | None]] = [
    ("OCPPCommCtrlr", None, None, "FileTransferProtocols", None),
    ("OCPPCommCtrlr", None, None, "MessageTimeout", "Default"),
    ("OCPPCommCtrlr", None, None, "MessageAttempts", "TransactionEvent"),
    ("OCPPCommCtrlr", None, None, "MessageAttemptInterval", "TransactionEvent"),
    ("OCPPCommCtrlr", None, None, "NetworkConfigurationPriority", None),
    ("OCPPCommCtrlr", None, None, "NetworkProfileConnectionAttempts", None),
    ("OCPPCommCtrlr", None, None, "OfflineThreshold", None),
    ("OCPPCommCtrlr", None, None, "ResetRetries", None),
    ("OCPPCommCtrlr", None, None, "RetryBackOffRandomRange", None),
    ("OCPPCommCtrlr", None, None, "RetryBackOffRepeatTimes", None),
    ("OCPPCommCtrlr", None, None, "RetryBackOffWaitMinimum", None),
    ("OCPPCommCtrlr", None, None, "UnlockOnEVSideDisconnect", None),
    ("OCPPCommCtrlr", None, None, "WebSocketPingInterval", None),
    ("OCPPCommCtrlr", None, None, "HeartbeatInterval", None),
    ("TxCtrlr", None, None, "EVConnectionTimeOut", None),
    ("TxCtrlr", None, None, "StopTxOnEVSideDisconnect", None),
    ("TxCtrlr", None, None, "StopTxOnInvalidId", None),
    ("TxCtrlr", None, None, "TxStartPoint", None),
    ("TxCtrlr", None, None, "TxStopPoint", None),
    ("SampledDataCtrlr", None, None, "TxStartedMeasurands", None),
    ("SampledDataCtrlr", None, None, "TxUpdatedMeasurands", None),
    ("SampledDataCtrlr", None, None, "TxUpdatedInterval", None),
    ("SampledDataCtrlr", None, None, "TxEndedMeasurands", None),
    ("SampledDataCtrlr", None, None, "TxEndedInterval", None),
    ("AlignedDataCtrlr", None, None, "Interval", None),
    ("AlignedDataCtrlr", None, None, "Measurands", None),
    ("AlignedDataCtrlr", None, None, "TxEndedInterval", None),
    ("AlignedDataCtrlr", None, None, "TxEndedMeasurands", None),
    ("AuthCtrlr", None, None, "AuthorizeRemoteStart", None),
    ("AuthCtrlr", None, None, "LocalAuthorizeOffline", None),
    ("AuthCtrlr", None, None, "LocalPreAuthorize", None),
    ("AuthCtrlr", None, None, "Enabled", None),
    ("DeviceDataCtrlr", None, None, "ItemsPerMessage", "GetReport"),
    ("DeviceDataCtrlr", None, None, "ItemsPerMessage", "GetVariables"),
    ("DeviceDataCtrlr", None, None, "ItemsPerMessage", "SetVariables"),
    ("DeviceDataCtrlr", None, None, "BytesPerMessage", "GetReport"),
    ("DeviceDataCtrlr", None, None, "BytesPerMessage", "GetVariables"),
    ("DeviceDataCtrlr", None, None, "BytesPerMessage", "SetVariables"),
    ("SecurityCtrlr", None, None, "Identity", None),
    ("SecurityCtrlr", None, None, "OrganizationName", None),
    ("SecurityCtrlr", None, None, "SecurityProfile", None),
    ("SecurityCtrlr", None, None, "CertificateEntries", None),
    ("SecurityCtrlr", None, None, "BasicAuthPassword", None),
    ("SecurityCtrlr", None, None, "CertSigningWaitMinimum", None),
    ("SecurityCtrlr", None, None, "CertSigningRepeatTimes", None),
    ("ClockCtrlr", None, None, "DateTime", None),
    ("ClockCtrlr", None, None, "TimeSource", None),
    ("SmartChargingCtrlr", None, None, "Entries", "ChargingProfiles"),
    ("SmartChargingCtrlr", None, None, "LimitChangeSignificance", None),
    ("SmartChargingCtrlr", None, None, "PeriodsPerSchedule", None),
    ("SmartChargingCtrlr", None, None, "ProfileStackLevel", None),
    ("SmartChargingCtrlr", None, None, "RateUnit", None),
    ("LocalAuthListCtrlr", None, None, "Enabled", None),
    ("LocalAuthListCtrlr", None, None, "Entries", None),
    ("LocalAuthListCtrlr", None, None, "ItemsPerMessage", None),
    ("LocalAuthListCtrlr", None, None, "BytesPerMessage", None),
    ("ChargingStation", None, None, "AvailabilityState", None),
    ("ChargingStation", None, None, "Available", None),
    ("ChargingStation", None, None, "SupplyPhases", None),
    *[
        row
        for evse_id in (1, 2)
        for row in (
            ("EVSE", evse_id, None, "AvailabilityState", None),
            ("EVSE", evse_id, None, "Available", None),
            ("EVSE", evse_id, None, "SupplyPhases", None),
            ("EVSE", evse_id, None, "Power", None),
            ("Connector", evse_id, 1, "AvailabilityState", None),
            ("Connector", evse_id, 1, "Available", None),
            ("Connector", evse_id, 1, "SupplyPhases", None),
            ("Connector", evse_id, 1, "ConnectorType", None),
        )
    ],
]

# (component, variable, instance, 1.6 key, a 2.0.1 value, the same value in 1.6)
SHARED: list[tuple[str, str, str | None, str, str, str]] = [
    ("OCPPCommCtrlr", "HeartbeatInterval", None, "HeartbeatInterval", "77", "77"),
    (
        "OCPPCommCtrlr",
        "MessageAttempts",
        "TransactionEvent",
        "TransactionMessageAttempts",
        "4",
        "4",
    ),
    (
        "OCPPCommCtrlr",
        "MessageAttemptInterval",
        "TransactionEvent",
        "TransactionMessageRetryInterval",
        "15",
        "15",
    ),
    ("OCPPCommCtrlr", "ResetRetries", None, "ResetRetries", "5", "5"),
    ("OCPPCommCtrlr", "WebSocketPingInterval", None, "WebSocketPingInterval", "0", "0"),
    (
        "OCPPCommCtrlr",
        "UnlockOnEVSideDisconnect",
        None,
        "UnlockConnectorOnEVSideDisconnect",
        "false",
        "false",
    ),
    ("TxCtrlr", "EVConnectionTimeOut", None, "ConnectionTimeOut", "45", "45"),
    (
        "TxCtrlr",
        "StopTxOnEVSideDisconnect",
        None,
        "StopTransactionOnEVSideDisconnect",
        "false",
        "false",
    ),
    ("TxCtrlr", "StopTxOnInvalidId", None, "StopTransactionOnInvalidId", "false", "false"),
    ("AuthCtrlr", "AuthorizeRemoteStart", None, "AuthorizeRemoteTxRequests", "true", "true"),
    ("AuthCtrlr", "LocalAuthorizeOffline", None, "LocalAuthorizeOffline", "false", "false"),
    ("AuthCtrlr", "LocalPreAuthorize", None, "LocalPreAuthorize", "true", "true"),
    (
        "AuthCtrlr",
        "OfflineTxForUnknownIdEnabled",
        None,
        "AllowOfflineTxForUnknownId",
        "true",
        "true",
    ),
    ("AuthCacheCtrlr", "Enabled", None, "AuthorizationCacheEnabled", "false", "false"),
    ("LocalAuthListCtrlr", "Enabled", None, "LocalAuthListEnabled", "false", "false"),
    ("AlignedDataCtrlr", "Interval", None, "ClockAlignedDataInterval", "900", "900"),
    (
        "AlignedDataCtrlr",
        "Measurands",
        None,
        "MeterValuesAlignedData",
        "Voltage,SoC",
        "Voltage,SoC",
    ),
    ("AlignedDataCtrlr", "TxEndedMeasurands", None, "StopTxnAlignedData", "Voltage", "Voltage"),
    ("SampledDataCtrlr", "TxUpdatedInterval", None, "MeterValueSampleInterval", "10", "10"),
    (
        "SampledDataCtrlr",
        "TxUpdatedMeasurands",
        None,
        "MeterValuesSampledData",
        "Current.Import.L1,Power.Offered",
        "Current.Import.L1,Power.Offered",
    ),
    ("SampledDataCtrlr", "TxEndedMeasurands", None, "StopTxnSampledData", "SoC", "SoC"),
]


class FakeBackend:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def set(self, key: str, value: Any) -> None:
        self.calls.append((key, value))


class FixedClock:
    def iso_now(self) -> str:
        return "2026-11-24T22:00:00.000Z"


class Live:
    """Live values a test can change."""

    def __init__(self) -> None:
        self.states = {0: "Available", 1: "Occupied", 2: "Faulted"}
        self.power_w = {1: 7360.5, 2: 0.0}
        self.list_entries = 3
        self.profiles = 2
        self.certificates = 1

    def values(self) -> LiveValues:
        return LiveValues(
            availability_state=lambda evse_id: self.states[evse_id],
            active_power_w=lambda evse_id: self.power_w[evse_id],
            local_list_entries=lambda: self.list_entries,
            charging_profile_entries=lambda: self.profiles,
            certificate_entries=lambda: self.certificates,
        )


def make(settings: Settings | None = None) -> tuple[DeviceModel, Settings, Live]:
    settings = settings or Settings(FakeBackend(), {})
    live = Live()
    model = build_device_model(settings, station=STATION, clock=FixedClock(), live=live.values())
    return model, settings, live


def component(name: str, evse_id: int | None = None, connector_id: int | None = None) -> Component:
    return Component(name, evse_id=evse_id, connector_id=connector_id)


def variable(dm: DeviceModel, c: Component, name: str, instance: str | None = None) -> Variable:
    found = dm.find(c, name, instance)
    assert isinstance(found, Variable), (c, name, instance)
    return found


@pytest.mark.parametrize(
    ("comp", "evse_id", "connector_id", "name", "instance"),
    REQUIRED,
    ids=[f"{r[0]}{r[1] or ''}.{r[3]}[{r[4] or ''}]" for r in REQUIRED],
)
def test_every_required_variable_exists_and_reads(
    comp: str, evse_id: int | None, connector_id: int | None, name: str, instance: str | None
) -> None:
    dm, _, _ = make()
    found = variable(dm, component(comp, evse_id, connector_id), name, instance)
    result = dm.get(found.component, name, instance)
    if found.mutability == Mutability.WRITE_ONLY:
        assert (result.status, result.reason) == (GetStatus.REJECTED, "WriteOnly")
    else:
        assert result.status == GetStatus.ACCEPTED
        assert result.value is not None
        check_value(found.characteristics, result.value)  # the value fits its own description


def test_unknown_evse_and_connector_are_unknown_components() -> None:
    dm, _, _ = make()
    assert dm.get(component("EVSE", 3), "Available").status == GetStatus.UNKNOWN_COMPONENT
    assert dm.get(component("Connector", 1, 2), "Available").status == (GetStatus.UNKNOWN_COMPONENT)


@pytest.mark.parametrize(
    ("comp", "name", "instance", "key", "value", "text16"), SHARED, ids=[r[1] for r in SHARED]
)
async def test_set_variables_is_seen_by_the_1_6_key_and_back(
    comp: str, name: str, instance: str | None, key: str, value: str, text16: str
) -> None:
    dm, settings, _ = make()
    k = keys.find(key)
    assert k is not None
    before = keys.read(k, settings, CTX).value
    assert dm.get(component(comp), name, instance).value == before

    assert (await dm.set(component(comp), name, value, instance)).status == SetStatus.ACCEPTED
    assert keys.read(k, settings, CTX).value == text16

    assert await keys.change(settings, key, before or "") == keys.ChangeResult.ACCEPTED
    assert dm.get(component(comp), name, instance).value == before


async def test_basic_auth_password_is_the_authorization_key_and_never_leaves() -> None:
    dm, settings, _ = make()
    security = component("SecurityCtrlr")
    result = await dm.set(security, "BasicAuthPassword", PASSWORD)
    assert result.status == SetStatus.ACCEPTED
    assert settings.get("authorization_key") == PASSWORD  # what the connection uses

    assert dm.get(security, "BasicAuthPassword").value is None
    assert dm.get(security, "BasicAuthPassword").status == GetStatus.REJECTED
    assert variable(dm, security, "BasicAuthPassword").source.read() == ""
    for base in ReportBase:
        for item in dm.base_report(base):
            assert all(a.value != PASSWORD for a in item.attributes)
            if item.variable.name == "BasicAuthPassword":
                assert [a.value for a in item.attributes] == [None]
    for item in dm.custom_report([(security, None, None)]):
        assert all(a.value != PASSWORD for a in item.attributes)
    auth_key = keys.find("AuthorizationKey")
    assert auth_key is not None
    assert keys.read(auth_key, settings, CTX).value is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("short", "ValueOutOfRange", id="under-16"),
        pytest.param("x" * 41, "ValueOutOfRange", id="over-40"),
    ],
)
async def test_basic_auth_password_length_is_checked(value: str, reason: str) -> None:
    dm, settings, _ = make()
    result = await dm.set(component("SecurityCtrlr"), "BasicAuthPassword", value)
    assert (result.status, result.reason) == (SetStatus.REJECTED, reason)
    assert settings.get("authorization_key") == ""


async def test_network_configuration_priority_requires_a_reboot() -> None:
    dm, settings, _ = make()
    comm = component("OCPPCommCtrlr")
    reboot = [v.name for v in dm.variables if v.reboot_required]
    assert reboot == ["NetworkConfigurationPriority"]
    result = await dm.set(comm, "NetworkConfigurationPriority", "1")
    assert result.status == SetStatus.REBOOT_REQUIRED
    assert settings.get("network_configuration_priority") == ("1",)
    refused = await dm.set(comm, "NetworkConfigurationPriority", "5")  # no such slot
    assert (refused.status, refused.reason) == (SetStatus.REJECTED, "ValueNotInList")


@pytest.mark.parametrize(
    ("value", "status", "reason"),
    [
        pytest.param("EVConnected,Authorized", SetStatus.ACCEPTED, None, id="two-members"),
        pytest.param("EnergyTransfer", SetStatus.ACCEPTED, None, id="one-member"),
        pytest.param("ParkingBayOccupancy", SetStatus.REJECTED, "ValueNotInList", id="no-sensor"),
        pytest.param("DataSigned", SetStatus.REJECTED, "ValueNotInList", id="no-signing"),
        pytest.param("Authorized,Authorized", SetStatus.REJECTED, "InvalidValue", id="twice"),
        pytest.param("", SetStatus.REJECTED, "InvalidValue", id="empty"),
    ],
)
async def test_tx_start_point_takes_what_the_station_detects(
    value: str, status: SetStatus, reason: str | None
) -> None:
    dm, settings, _ = make()
    result = await dm.set(component("TxCtrlr"), "TxStartPoint", value)
    assert (result.status, result.reason) == (status, reason)
    expected = tuple(value.split(",")) if status == SetStatus.ACCEPTED else ("PowerPathClosed",)
    assert settings.get("tx_start_point") == expected


@pytest.mark.parametrize(
    ("comp", "name", "instance"),
    [
        pytest.param("DeviceDataCtrlr", "ItemsPerMessage", "GetReport", id="read-only-setting"),
        pytest.param("SecurityCtrlr", "SecurityProfile", None, id="configured"),
        pytest.param("SmartChargingCtrlr", "ProfileStackLevel", None, id="constant"),
        pytest.param("ClockCtrlr", "DateTime", None, id="computed"),
    ],
)
async def test_read_only_variables_refuse_writes(
    comp: str, name: str, instance: str | None
) -> None:
    dm, _, _ = make()
    before = dm.get(component(comp), name, instance).value
    result = await dm.set(component(comp), name, before or "1", instance)
    assert (result.status, result.reason) == (SetStatus.REJECTED, "ReadOnly")
    assert dm.get(component(comp), name, instance).value == before


async def test_values_survive_a_restart(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    try:
        dm, _, _ = make(Settings(SettingsStore(store), await SettingsStore(store).load()))
        tx = component("TxCtrlr")
        assert (await dm.set(tx, "TxStopPoint", "EVConnected")).status == SetStatus.ACCEPTED
        comm = component("OCPPCommCtrlr")
        assert (await dm.set(comm, "OfflineThreshold", "120")).status == SetStatus.ACCEPTED
        security = component("SecurityCtrlr")
        assert (await dm.set(security, "BasicAuthPassword", PASSWORD)).status == (
            SetStatus.ACCEPTED
        )
    finally:
        await store.close()

    store = await Store.open(tmp_path)
    try:
        reloaded = Settings(SettingsStore(store), await SettingsStore(store).load())
    finally:
        await store.close()
    dm, _, _ = make(reloaded)
    assert dm.get(component("TxCtrlr"), "TxStopPoint").value == "EVConnected"
    assert dm.get(component("OCPPCommCtrlr"), "OfflineThreshold").value == "120"
    assert reloaded.get("authorization_key") == PASSWORD


def test_setting_variables_are_persistent_and_live_values_are_not() -> None:
    dm, _, _ = make()
    assert variable(dm, component("OCPPCommCtrlr"), "HeartbeatInterval").persistent
    for c, name in [
        (component("ClockCtrlr"), "DateTime"),
        (component("EVSE", 1), "Power"),
        (component("LocalAuthListCtrlr"), "Entries"),
    ]:
        v = variable(dm, c, name)
        assert not v.persistent
        assert not v.constant


def test_live_values_are_read_on_every_get() -> None:
    dm, _, live = make()
    evse1 = component("EVSE", 1)
    assert dm.get(component("ClockCtrlr"), "DateTime").value == "2026-11-24T22:00:00.000Z"
    assert dm.get(evse1, "AvailabilityState").value == "Occupied"
    assert dm.get(component("Connector", 2, 1), "AvailabilityState").value == "Faulted"
    assert dm.get(component("ChargingStation"), "AvailabilityState").value == "Available"
    assert dm.get(evse1, "Power").value == "7360.5"
    live.states[1] = "Available"
    live.power_w[1] = 0.0
    live.list_entries = 4
    live.profiles = 0
    live.certificates = 5
    assert dm.get(evse1, "AvailabilityState").value == "Available"
    assert dm.get(evse1, "Power").value == "0"
    assert dm.get(component("LocalAuthListCtrlr"), "Entries").value == "4"
    assert dm.get(component("SmartChargingCtrlr"), "Entries", "ChargingProfiles").value == "0"
    assert dm.get(component("SecurityCtrlr"), "CertificateEntries").value == "5"


def test_station_facts_are_reported() -> None:
    dm, _, _ = make()
    evse1, evse2 = component("EVSE", 1), component("EVSE", 2)
    assert dm.get(evse1, "Power", attribute=Attribute.MAX_SET).value == "22080"  # 3 x 32 A x 230 V
    assert dm.get(evse2, "Power", attribute=Attribute.MAX_SET).value == "3680"
    assert variable(dm, evse1, "Power").characteristics.max_limit == 22080
    assert dm.get(evse2, "SupplyPhases").value == "1"
    assert dm.get(component("ChargingStation"), "SupplyPhases").value == "3"
    assert dm.get(component("Connector", 1, 1), "ConnectorType").value == "sType2"
    assert dm.get(component("Connector", 2, 1), "ConnectorType").value == "cType2"
    assert dm.get(component("SecurityCtrlr"), "Identity").value == "CP-7"
    assert dm.get(component("SecurityCtrlr"), "SecurityProfile").value == "1"
    assert dm.get(component("SmartChargingCtrlr"), "RateUnit").value == "A,W"
    protocols = dm.get(component("OCPPCommCtrlr"), "FileTransferProtocols").value
    assert protocols is not None and set(protocols.split(",")) == {"HTTP", "HTTPS", "FTP"}


def test_summary_inventory_holds_the_availability_of_every_component() -> None:
    dm, _, _ = make()
    items = dm.base_report(ReportBase.SUMMARY_INVENTORY)
    states = {
        (i.variable.component.name, i.variable.component.evse_id): i.attributes[0].value
        for i in items
        if i.variable.name == "AvailabilityState"
    }
    assert states == {
        ("ChargingStation", None): "Available",
        ("EVSE", 1): "Occupied",
        ("EVSE", 2): "Faulted",
        ("Connector", 1): "Occupied",
        ("Connector", 2): "Faulted",
    }


async def test_a_set_notifies_setting_listeners() -> None:
    dm, settings, _ = make()
    heard: list[tuple[str, object]] = []
    settings.subscribe(lambda name, value: heard.append((name, value)))
    await dm.set(component("SampledDataCtrlr"), "TxUpdatedInterval", "30")
    assert heard == [("meter_value_sample_interval_s", 30)]


def test_duplicate_evse_ids_are_refused() -> None:
    station = StationFacts("CP", (EvseFacts(1, 3, 32.0), EvseFacts(1, 3, 32.0)), 230.0, 0)
    with pytest.raises(ValueError, match="duplicate EVSE"):
        build_device_model(
            Settings(FakeBackend(), {}), station=station, clock=FixedClock(), live=Live().values()
        )


# ---------------------------------------------- characteristics match the settings


WRITABLE = [v for v in make()[0].variables if v.mutability != Mutability.READ_ONLY]
NON_EMPTY = {"TxStartPoint", "TxStopPoint", "NetworkConfigurationPriority"}


def candidates(v: Variable) -> st.SearchStrategy[str]:
    c = v.characteristics
    if c.data_type == DataType.INTEGER:
        low = int(c.min_limit) if c.min_limit is not None else -10
        high = int(c.max_limit) if c.max_limit is not None else INT32_MAX
        return st.integers(low - 3, low + 3).map(str) | st.integers(high - 3, high + 3).map(str)
    if c.data_type == DataType.BOOLEAN:
        return st.sampled_from(["true", "false", "TRUE", "yes", "1", ""])
    if c.values_list is not None:
        members = st.sampled_from([*c.values_list, "Temperature", "ParkingBayOccupancy"])
        return st.lists(members, max_size=4).map(",".join)
    return st.text(max_size=50)


@pytest.mark.parametrize("v", WRITABLE, ids=[f"{v.component.name}.{v.name}" for v in WRITABLE])
@hypothesis_settings(max_examples=30)
@given(data=st.data())
async def test_a_value_the_characteristics_accept_is_stored(
    v: Variable, data: st.DataObject
) -> None:
    dm, _, _ = make()
    value = data.draw(candidates(v))
    result = await dm.set(v.component, v.name, value, v.instance)
    try:
        canonical = check_value(v.characteristics, value)
    except RefusedValue as exc:
        assert (result.status, result.reason) == (SetStatus.REJECTED, exc.reason)
        return
    if v.name in NON_EMPTY and canonical == "":
        assert (result.status, result.reason) == (SetStatus.REJECTED, "InvalidValue")
        return
    assert result.status in (SetStatus.ACCEPTED, SetStatus.REBOOT_REQUIRED), result
    if v.mutability == Mutability.READ_WRITE:
        assert dm.get(v.component, v.name, v.instance).value == canonical


def test_station_facts_from_config(tmp_path: Path) -> None:
    doc = sim_defaults(tmp_path, "ws://127.0.0.1:9000/ocpp", "CP-9", evse_count=2)
    doc["evse"][1]["phases"] = 1
    doc["evse"][1]["max_current_a"] = 16.0
    config = parse_config(doc)
    facts = StationFacts.from_config(config, connector_type="cType2")
    assert facts.charge_point_id == "CP-9"
    assert facts.security_profile == config.csms.security_profile
    assert facts.nominal_voltage_v == config.station.nominal_voltage_v
    assert [(e.id, e.phases, e.max_current_a, e.connector_type) for e in facts.evses] == [
        (1, 3, 32.0, "cType2"),
        (2, 1, 16.0, "cType2"),
    ]
