"""This station's OCPP 2.0.1 device model (REFERENCE 4.3) over the neutral settings.

Every required variable of the blocks built here (OCPPCommCtrlr, TxCtrlr,
SampledDataCtrlr, AlignedDataCtrlr, AuthCtrlr, DeviceDataCtrlr, SecurityCtrlr,
ClockCtrlr, SmartChargingCtrlr, LocalAuthListCtrlr, ChargingStation / EVSE /
Connector) is one of:

* a setting (``agent.settings``): read and written through a codec between the OCPP
  string and the setting value (boolean ``true``/``false``, integer in decimal,
  list ``a,b``). A 2.0.1 variable whose concept 1.6 also has uses the setting of the
  1.6 key (HeartbeatInterval <-> ``heartbeat_interval_s``, ...), so both versions see
  one value; a 2.0.1-only concept has its own setting. Characteristics are derived
  from the setting's definition (type, minimum, allowed members), so a value the
  device model accepts fits the setting; if the setting still refuses it the item is
  Rejected with reason ``InvalidValue``;
* a constant (limits of this firmware, e.g. ProfileStackLevel);
* a computed value read on every access (ClockCtrlr.DateTime, AvailabilityState,
  Entries, EVSE Power).

Write-only values (SecurityCtrlr.BasicAuthPassword) are never read back: the source
returns "" and the engine rejects Get and leaves them out of reports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent.authorization.local_list import DEFAULT_MAX_LENGTH as LOCAL_LIST_MAX_LENGTH
from agent.authorization.local_list import DEFAULT_SEND_MAX_LENGTH as SEND_LOCAL_LIST_MAX_LENGTH
from agent.config import AgentConfig
from agent.ocpp.connection import MAX_FRAME_BYTES
from agent.ocpp.v201.device_model import (
    Attribute,
    Characteristics,
    Component,
    Computed,
    Constant,
    DataType,
    DeviceModel,
    Mutability,
    RefusedValue,
    Stored,
    ValueSource,
    Variable,
)
from agent.settings import (
    SettingDef,
    SettingError,
    Settings,
    SettingValue,
    definition,
    from_text,
    to_text,
)
from agent.smart_charging import RateUnit
from agent.smart_charging.service import (
    MAX_PERIODS,
    MAX_PROFILES_INSTALLED,
    MAX_STACK_LEVEL,
    SUPPORTED_UNITS,
)
from firmware_update.download import SUPPORTED_SCHEMES

OCPP_COMM_CTRLR = Component("OCPPCommCtrlr")
TX_CTRLR = Component("TxCtrlr")
SAMPLED_DATA_CTRLR = Component("SampledDataCtrlr")
ALIGNED_DATA_CTRLR = Component("AlignedDataCtrlr")
AUTH_CTRLR = Component("AuthCtrlr")
AUTH_CACHE_CTRLR = Component("AuthCacheCtrlr")
DEVICE_DATA_CTRLR = Component("DeviceDataCtrlr")
SECURITY_CTRLR = Component("SecurityCtrlr")
CLOCK_CTRLR = Component("ClockCtrlr")
SMART_CHARGING_CTRLR = Component("SmartChargingCtrlr")
LOCAL_AUTH_LIST_CTRLR = Component("LocalAuthListCtrlr")
RESERVATION_CTRLR = Component("ReservationCtrlr")
CHARGING_STATION = Component("ChargingStation")

INT32_MAX = 2**31 - 1
"""OCPP 2.0.1 ``integer`` is 32-bit: the upper limit of every integer setting."""

AVAILABILITY_STATES = ("Available", "Occupied", "Reserved", "Unavailable", "Faulted")
"""AvailabilityState values (ConnectorStatusEnumType spelling)."""

# BasicAuthPassword is a passwordString of 16-40 characters (A00.FR.205 / appendix).
BASIC_AUTH_PASSWORD_MIN_CHARS = 16
BASIC_AUTH_PASSWORD_MAX_CHARS = 40

_UNIT_NAMES = {RateUnit.A: "A", RateUnit.W: "W"}
"""SmartChargingCtrlr.RateUnit spelling of each rate unit."""


class WallClock(Protocol):
    """What ClockCtrlr.DateTime reads (``agent.clock.Clock`` is one)."""

    def iso_now(self) -> str:
        """The station's UTC time, ISO 8601 with ``Z``."""
        ...


@dataclass(frozen=True, slots=True)
class EvseFacts:
    """One EVSE as the device model describes it (one connector, id 1).

    Attributes:
        id: EVSE id, 1..n.
        phases: Supply phases, 1 or 3.
        max_current_a: Hardware rating per phase, A.
        connector_type: ConnectorEnumType of its connector, e.g. ``sType2`` (a Type 2
            socket) or ``cType2`` (a tethered Type 2 cable).
    """

    id: int
    phases: int
    max_current_a: float
    connector_type: str = "sType2"


@dataclass(frozen=True, slots=True)
class StationFacts:
    """Configured facts the device model reports read-only.

    Attributes:
        charge_point_id: SecurityCtrlr.Identity.
        evses: Every EVSE, in id order.
        nominal_voltage_v: Phase-to-neutral voltage, V (for EVSE Power limits).
        security_profile: SecurityCtrlr.SecurityProfile (0-3).
    """

    charge_point_id: str
    evses: tuple[EvseFacts, ...]
    nominal_voltage_v: float
    security_profile: int

    @classmethod
    def from_config(cls, config: AgentConfig, connector_type: str = "sType2") -> StationFacts:
        """The facts of a parsed agent configuration (every EVSE gets ``connector_type``)."""
        return cls(
            charge_point_id=config.station.charge_point_id,
            evses=tuple(
                EvseFacts(e.id, e.phases, e.max_current_a, connector_type) for e in config.evses
            ),
            nominal_voltage_v=config.station.nominal_voltage_v,
            security_profile=config.csms.security_profile,
        )


@dataclass(frozen=True, slots=True)
class LiveValues:
    """Read-only values computed on every read.

    Each getter is called synchronously from the event loop while a GetVariables or
    a report is answered: it must be cheap and must not raise (keep counts that live
    in SQLite cached in memory).

    Attributes:
        availability_state: EVSE id (0 = the whole station) -> one of
            ``AVAILABILITY_STATES``; a connector reports its EVSE's state.
        active_power_w: EVSE id -> present active power, W.
        local_list_entries: Entries in the local authorization list.
        charging_profile_entries: Installed charging profiles.
        certificate_entries: Installed certificates (all types).
    """

    availability_state: Callable[[int], str]
    active_power_w: Callable[[int], float]
    local_list_entries: Callable[[], int]
    charging_profile_entries: Callable[[], int]
    certificate_entries: Callable[[], int]


# ------------------------------------------------------------------ codec


def encode(value: SettingValue) -> str:
    """A setting value as an OCPP 2.0.1 variable string."""
    return to_text(value)


def decode(setting: str, text: str) -> SettingValue:
    """Parse a variable string (already checked by the device model) for ``setting``.

    Raises:
        SettingError: the text is not a value of the setting's type.
    """
    return from_text(setting, text)


def _characteristics(
    d: SettingDef,
    *,
    unit: str | None,
    max_limit: float | None,
    data_type: DataType | None,
) -> Characteristics:
    default = d.default
    if isinstance(default, bool):
        return Characteristics(DataType.BOOLEAN)
    if isinstance(default, int):
        return Characteristics(
            DataType.INTEGER,
            unit=unit,
            min_limit=None if d.min_value is None else float(d.min_value),
            max_limit=INT32_MAX if max_limit is None else max_limit,
        )
    if isinstance(default, tuple):
        return Characteristics(data_type or DataType.MEMBER_LIST, values_list=d.allowed)
    if d.secret:
        return Characteristics(
            DataType.PASSWORD_STRING,
            min_limit=BASIC_AUTH_PASSWORD_MIN_CHARS,
            max_limit=BASIC_AUTH_PASSWORD_MAX_CHARS,
        )
    return Characteristics(data_type or DataType.STRING, max_limit=max_limit)


def _setting_source(settings: Settings, d: SettingDef, *, non_empty: bool) -> Stored:
    def read() -> str:
        return "" if d.secret else encode(settings.get(d.name))

    async def write(text: str) -> None:
        try:
            value = decode(d.name, text)
            if non_empty and value == ():
                raise RefusedValue("InvalidValue", "at least one member is needed")
            await settings.set(d.name, value)
        except SettingError as exc:
            raise RefusedValue("InvalidValue", str(exc)) from None

    return Stored(read, write)


# ------------------------------------------------------------------ builders


class _Builder:
    """Collects the variables of one device model."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.variables: list[Variable] = []

    def setting(
        self,
        component: Component,
        name: str,
        setting: str,
        *,
        instance: str | None = None,
        unit: str | None = None,
        max_limit: float | None = None,
        data_type: DataType | None = None,
        non_empty: bool = False,
        reboot_required: bool = False,
    ) -> None:
        d = definition(setting)
        if d.secret:
            mutability = Mutability.WRITE_ONLY
        elif d.mutable:
            mutability = Mutability.READ_WRITE
        else:
            mutability = Mutability.READ_ONLY
        self.variables.append(
            Variable(
                component,
                name,
                _characteristics(d, unit=unit, max_limit=max_limit, data_type=data_type),
                mutability,
                _setting_source(self.settings, d, non_empty=non_empty),
                instance=instance,
                reboot_required=reboot_required,
            )
        )

    def constant(
        self,
        component: Component,
        name: str,
        value: str,
        characteristics: Characteristics,
        *,
        instance: str | None = None,
        constant: bool = True,
    ) -> None:
        """A read-only value; ``constant`` False for configured values that may change."""
        self.variables.append(
            Variable(
                component,
                name,
                characteristics,
                Mutability.READ_ONLY,
                Constant(value),
                instance=instance,
                constant=constant,
            )
        )

    def computed(
        self,
        component: Component,
        name: str,
        compute: Callable[[], str],
        characteristics: Characteristics,
        *,
        instance: str | None = None,
        other_attributes: tuple[tuple[Attribute, ValueSource], ...] = (),
    ) -> None:
        self.variables.append(
            Variable(
                component,
                name,
                characteristics,
                Mutability.READ_ONLY,
                Computed(compute),
                instance=instance,
                persistent=False,
                other_attributes=other_attributes,
            )
        )


def _integer(value: int) -> Characteristics:
    return Characteristics(DataType.INTEGER, min_limit=value, max_limit=value)


def _decimal_text(value: float) -> str:
    """A decimal without a useless fraction: 22080.0 -> "22080", 7.36 -> "7.36"."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _member_list(*members: str) -> tuple[str, Characteristics]:
    return ",".join(members), Characteristics(DataType.MEMBER_LIST, values_list=members)


def build_device_model(
    settings: Settings, *, station: StationFacts, clock: WallClock, live: LiveValues
) -> DeviceModel:
    """The station's device model: every variable of REFERENCE 4.3 and a few optional ones.

    Args:
        settings: The neutral settings the 1.6 keys use too (one source of truth).
        station: Configured identity, EVSEs and limits.
        clock: Source of ClockCtrlr.DateTime.
        live: Getters of the values computed on each read.

    Returns:
        A ``DeviceModel``; its setting-backed variables write through ``settings``
        (persisted before the SetVariables answer).

    Raises:
        ValueError: two EVSEs with the same id.
    """
    b = _Builder(settings)
    _comm_ctrlr(b)
    _tx_and_metering(b)
    _authorization(b)
    _device_data(b)
    _security(b, station, live)
    _clock(b, clock)
    _smart_charging(b, live)
    _topology(b, station, live)
    return DeviceModel(b.variables)


def _comm_ctrlr(b: _Builder) -> None:
    c = OCPP_COMM_CTRLR
    protocols, protocol_characteristics = _member_list(*(s.upper() for s in SUPPORTED_SCHEMES))
    b.constant(c, "FileTransferProtocols", protocols, protocol_characteristics)
    b.setting(c, "HeartbeatInterval", "heartbeat_interval_s", unit="s")
    b.setting(c, "MessageTimeout", "message_timeout_s", instance="Default", unit="s")
    b.setting(c, "MessageAttempts", "transaction_message_attempts", instance="TransactionEvent")
    b.setting(
        c,
        "MessageAttemptInterval",
        "transaction_message_retry_interval_s",
        instance="TransactionEvent",
        unit="s",
    )
    # B10: a new priority is used after the Reset that the CSMS sends next.
    b.setting(
        c,
        "NetworkConfigurationPriority",
        "network_configuration_priority",
        data_type=DataType.SEQUENCE_LIST,
        non_empty=True,
        reboot_required=True,
    )
    b.setting(c, "NetworkProfileConnectionAttempts", "network_profile_connection_attempts")
    b.setting(c, "OfflineThreshold", "offline_threshold_s", unit="s")
    b.setting(c, "ResetRetries", "reset_retries")
    b.setting(c, "RetryBackOffRandomRange", "retry_back_off_random_range_s", unit="s")
    b.setting(c, "RetryBackOffRepeatTimes", "retry_back_off_repeat_times")
    b.setting(c, "RetryBackOffWaitMinimum", "retry_back_off_wait_minimum_s", unit="s")
    b.setting(c, "UnlockOnEVSideDisconnect", "unlock_connector_on_ev_side_disconnect")
    b.setting(c, "WebSocketPingInterval", "websocket_ping_interval_s", unit="s")


def _tx_and_metering(b: _Builder) -> None:
    # EVConnectionTimeOut is 1.6 ConnectionTimeOut: time from authorization to plug-in.
    b.setting(TX_CTRLR, "EVConnectionTimeOut", "connection_timeout_s", unit="s")
    b.setting(TX_CTRLR, "StopTxOnEVSideDisconnect", "stop_transaction_on_ev_side_disconnect")
    b.setting(TX_CTRLR, "StopTxOnInvalidId", "stop_transaction_on_invalid_id")
    b.setting(TX_CTRLR, "TxStartPoint", "tx_start_point", non_empty=True)
    b.setting(TX_CTRLR, "TxStopPoint", "tx_stop_point", non_empty=True)

    s = SAMPLED_DATA_CTRLR
    b.setting(s, "TxStartedMeasurands", "tx_started_measurands")
    b.setting(s, "TxUpdatedMeasurands", "meter_values_sampled_data")
    b.setting(s, "TxUpdatedInterval", "meter_value_sample_interval_s", unit="s")
    b.setting(s, "TxEndedMeasurands", "stop_txn_sampled_data")
    b.setting(s, "TxEndedInterval", "sampled_data_tx_ended_interval_s", unit="s")

    a = ALIGNED_DATA_CTRLR
    b.setting(a, "Interval", "clock_aligned_data_interval_s", unit="s")
    b.setting(a, "Measurands", "meter_values_aligned_data")
    b.setting(a, "TxEndedInterval", "aligned_data_tx_ended_interval_s", unit="s")
    b.setting(a, "TxEndedMeasurands", "stop_txn_aligned_data")


def _authorization(b: _Builder) -> None:
    # Every start is authorized (no free vend): AuthCtrlr.Enabled is read-only true.
    b.constant(AUTH_CTRLR, "Enabled", "true", Characteristics(DataType.BOOLEAN))
    b.setting(AUTH_CTRLR, "AuthorizeRemoteStart", "authorize_remote_tx_requests")
    b.setting(AUTH_CTRLR, "LocalAuthorizeOffline", "local_authorize_offline")
    b.setting(AUTH_CTRLR, "LocalPreAuthorize", "local_pre_authorize")
    b.setting(AUTH_CTRLR, "OfflineTxForUnknownIdEnabled", "allow_offline_tx_for_unknown_id")
    b.setting(AUTH_CTRLR, "MasterPassGroupId", "master_pass_group_id")  # C16, "" = none
    b.setting(AUTH_CACHE_CTRLR, "Enabled", "authorization_cache_enabled")
    # H: reservations are always on; NonEvseSpecific is 1.6 ReserveConnectorZeroSupported
    b.constant(RESERVATION_CTRLR, "Enabled", "true", Characteristics(DataType.BOOLEAN))
    b.setting(RESERVATION_CTRLR, "NonEvseSpecific", "reserve_connector_zero_supported")


def _device_data(b: _Builder) -> None:
    for instance in ("GetReport", "GetVariables", "SetVariables"):
        b.setting(
            DEVICE_DATA_CTRLR,
            "ItemsPerMessage",
            "device_model_items_per_message",
            instance=instance,
        )
        # What the WebSocket accepts in one frame (agent.ocpp.connection).
        b.constant(
            DEVICE_DATA_CTRLR,
            "BytesPerMessage",
            str(MAX_FRAME_BYTES),
            _integer(MAX_FRAME_BYTES),
            instance=instance,
        )


def _security(b: _Builder, station: StationFacts, live: LiveValues) -> None:
    c = SECURITY_CTRLR
    # Identity and SecurityProfile come from the config file (changing them over OCPP,
    # B09/A05, is not supported yet): read-only, but not constant.
    b.constant(
        c,
        "Identity",
        station.charge_point_id,
        Characteristics(DataType.STRING, max_limit=48),
        constant=False,
    )
    b.setting(c, "OrganizationName", "organization_name")
    b.constant(
        c,
        "SecurityProfile",
        str(station.security_profile),
        Characteristics(DataType.INTEGER, min_limit=0, max_limit=3),
        constant=False,
    )
    b.computed(
        c,
        "CertificateEntries",
        lambda: str(live.certificate_entries()),
        Characteristics(DataType.INTEGER, min_limit=0),
    )
    b.setting(c, "BasicAuthPassword", "authorization_key")  # WriteOnly: secret setting
    b.setting(c, "CertSigningWaitMinimum", "cert_signing_wait_minimum_s", unit="s")
    b.setting(c, "CertSigningRepeatTimes", "cert_signing_repeat_times")


def _clock(b: _Builder, clock: WallClock) -> None:
    b.computed(CLOCK_CTRLR, "DateTime", clock.iso_now, Characteristics(DataType.DATE_TIME))
    # The agent keeps the CSMS's time (BootNotification / Heartbeat currentTime) as an
    # offset over the system clock (agent.clock.Clock).
    b.constant(
        CLOCK_CTRLR,
        "TimeSource",
        "Heartbeat",
        Characteristics(DataType.SEQUENCE_LIST, values_list=("Heartbeat",)),
    )


def _smart_charging(b: _Builder, live: LiveValues) -> None:
    c = SMART_CHARGING_CTRLR
    b.computed(
        c,
        "Entries",
        lambda: str(live.charging_profile_entries()),
        Characteristics(DataType.INTEGER, min_limit=0, max_limit=MAX_PROFILES_INSTALLED),
        instance="ChargingProfiles",
    )
    # 2.0.1 declares a decimal percentage; the setting holds whole percent.
    b.setting(
        c,
        "LimitChangeSignificance",
        "limit_change_significance_pct",
        unit="Percent",
        max_limit=100,
    )
    b.constant(c, "PeriodsPerSchedule", str(MAX_PERIODS), _integer(MAX_PERIODS))
    b.constant(c, "ProfileStackLevel", str(MAX_STACK_LEVEL), _integer(MAX_STACK_LEVEL))
    units, unit_characteristics = _member_list(*(_UNIT_NAMES[u] for u in SUPPORTED_UNITS))
    b.constant(c, "RateUnit", units, unit_characteristics)

    c = LOCAL_AUTH_LIST_CTRLR
    b.setting(c, "Enabled", "local_auth_list_enabled")
    b.computed(
        c,
        "Entries",
        lambda: str(live.local_list_entries()),
        Characteristics(DataType.INTEGER, min_limit=0, max_limit=LOCAL_LIST_MAX_LENGTH),
    )
    b.constant(
        c,
        "ItemsPerMessage",
        str(SEND_LOCAL_LIST_MAX_LENGTH),
        _integer(SEND_LOCAL_LIST_MAX_LENGTH),
    )
    b.constant(c, "BytesPerMessage", str(MAX_FRAME_BYTES), _integer(MAX_FRAME_BYTES))


def _topology(b: _Builder, station: StationFacts, live: LiveValues) -> None:
    ids = [e.id for e in station.evses]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate EVSE id in {ids}")
    availability = Characteristics(DataType.OPTION_LIST, values_list=AVAILABILITY_STATES)
    boolean = Characteristics(DataType.BOOLEAN)
    phases = max((e.phases for e in station.evses), default=0)

    def state_of(evse_id: int) -> Callable[[], str]:
        return lambda: live.availability_state(evse_id)

    b.computed(CHARGING_STATION, "AvailabilityState", state_of(0), availability)
    b.constant(CHARGING_STATION, "Available", "true", boolean)
    b.constant(CHARGING_STATION, "SupplyPhases", str(phases), _integer(phases))
    for evse in station.evses:
        rated_w = evse.phases * evse.max_current_a * station.nominal_voltage_v
        component = Component("EVSE", evse_id=evse.id)
        connector = Component("Connector", evse_id=evse.id, connector_id=1)
        for c in (component, connector):
            b.computed(c, "AvailabilityState", state_of(evse.id), availability)
            b.constant(c, "Available", "true", boolean)
            b.constant(c, "SupplyPhases", str(evse.phases), _integer(evse.phases))
        b.computed(
            component,
            "Power",
            _power_of(live, evse.id),
            Characteristics(DataType.DECIMAL, unit="W", max_limit=rated_w),
            other_attributes=((Attribute.MAX_SET, Constant(_decimal_text(rated_w))),),
        )
        b.constant(
            connector,
            "ConnectorType",
            evse.connector_type,
            Characteristics(DataType.OPTION_LIST, values_list=(evse.connector_type,)),
        )


def _power_of(live: LiveValues, evse_id: int) -> Callable[[], str]:
    return lambda: _decimal_text(live.active_power_w(evse_id))
