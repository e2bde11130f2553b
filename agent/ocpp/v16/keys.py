"""OCPP 1.6 configuration keys (1.6 §9, REFERENCE 2.4) over the neutral settings.

Each key maps onto one ``agent.settings`` name (one source of truth), or is a
read-only value computed from the station. Values travel as strings: booleans
``true``/``false``, integers in decimal, lists comma-separated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from agent.authorization.local_list import DEFAULT_MAX_LENGTH as LOCAL_LIST_MAX_LENGTH
from agent.authorization.local_list import DEFAULT_SEND_MAX_LENGTH as SEND_LOCAL_LIST_MAX_LENGTH
from agent.settings import SettingError, Settings, SettingValue, definition, from_text, to_text
from agent.smart_charging import RateUnit
from agent.smart_charging.service import (
    MAX_PERIODS,
    MAX_PROFILES_INSTALLED,
    MAX_STACK_LEVEL,
    SUPPORTED_UNITS,
)

GET_CONFIGURATION_MAX_KEYS = 100
CSL_MAX_LENGTH = 10
FEATURE_PROFILES = (
    "Core",
    "LocalAuthListManagement",
    "Reservation",
    "RemoteTrigger",
    "SmartCharging",
)


_UNIT_NAMES = {RateUnit.A: "Current", RateUnit.W: "Power"}
"""1.6 ChargingScheduleAllowedChargingRateUnit spelling of each rate unit."""


class ChangeResult(StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    REBOOT_REQUIRED = "RebootRequired"
    NOT_SUPPORTED = "NotSupported"


@dataclass(frozen=True, slots=True)
class Key:
    """A 1.6 key: either a setting (``setting``) or a computed read-only value."""

    name: str
    setting: str | None = None
    computed: Callable[[KeyContext], str] | None = None

    @property
    def readonly(self) -> bool:
        return self.setting is None or not definition(self.setting).mutable


@dataclass(frozen=True, slots=True)
class KeyContext:
    """Station facts that read-only keys report."""

    number_of_connectors: int


KEYS: tuple[Key, ...] = (
    Key("AllowOfflineTxForUnknownId", "allow_offline_tx_for_unknown_id"),
    Key("AuthorizationCacheEnabled", "authorization_cache_enabled"),
    Key("AuthorizeRemoteTxRequests", "authorize_remote_tx_requests"),
    Key("ChargeProfileMaxStackLevel", computed=lambda _: str(MAX_STACK_LEVEL)),
    Key(
        "ChargingScheduleAllowedChargingRateUnit",
        computed=lambda _: ",".join(_UNIT_NAMES[u] for u in SUPPORTED_UNITS),
    ),
    Key("ChargingScheduleMaxPeriods", computed=lambda _: str(MAX_PERIODS)),
    Key("ClockAlignedDataInterval", "clock_aligned_data_interval_s"),
    Key("ConnectionTimeOut", "connection_timeout_s"),
    Key("ConnectorPhaseRotation", "connector_phase_rotation"),
    Key("GetConfigurationMaxKeys", computed=lambda _: str(GET_CONFIGURATION_MAX_KEYS)),
    Key("HeartbeatInterval", "heartbeat_interval_s"),
    Key("LocalAuthorizeOffline", "local_authorize_offline"),
    Key("LocalPreAuthorize", "local_pre_authorize"),
    Key("MaxChargingProfilesInstalled", computed=lambda _: str(MAX_PROFILES_INSTALLED)),
    Key("LocalAuthListEnabled", "local_auth_list_enabled"),
    Key("LocalAuthListMaxLength", computed=lambda _: str(LOCAL_LIST_MAX_LENGTH)),
    Key("SendLocalListMaxLength", computed=lambda _: str(SEND_LOCAL_LIST_MAX_LENGTH)),
    Key("ReserveConnectorZeroSupported", "reserve_connector_zero_supported"),
    Key("MeterValuesAlignedData", "meter_values_aligned_data"),
    Key("MeterValuesAlignedDataMaxLength", computed=lambda _: str(CSL_MAX_LENGTH)),
    Key("MeterValuesSampledData", "meter_values_sampled_data"),
    Key("MeterValuesSampledDataMaxLength", computed=lambda _: str(CSL_MAX_LENGTH)),
    Key("MeterValueSampleInterval", "meter_value_sample_interval_s"),
    Key("MinimumStatusDuration", "minimum_status_duration_s"),
    Key("NumberOfConnectors", computed=lambda ctx: str(ctx.number_of_connectors)),
    Key("ResetRetries", "reset_retries"),
    Key("StopTransactionOnEVSideDisconnect", "stop_transaction_on_ev_side_disconnect"),
    Key("StopTransactionOnInvalidId", "stop_transaction_on_invalid_id"),
    Key("StopTxnAlignedData", "stop_txn_aligned_data"),
    Key("StopTxnAlignedDataMaxLength", computed=lambda _: str(CSL_MAX_LENGTH)),
    Key("StopTxnSampledData", "stop_txn_sampled_data"),
    Key("StopTxnSampledDataMaxLength", computed=lambda _: str(CSL_MAX_LENGTH)),
    Key("SupportedFeatureProfiles", computed=lambda _: ",".join(FEATURE_PROFILES)),
    Key("TransactionMessageAttempts", "transaction_message_attempts"),
    Key("TransactionMessageRetryInterval", "transaction_message_retry_interval_s"),
    Key("UnlockConnectorOnEVSideDisconnect", "unlock_connector_on_ev_side_disconnect"),
    Key("WebSocketPingInterval", "websocket_ping_interval_s"),
    Key("AuthorizationKey", "authorization_key"),  # security whitepaper: write-only
)

_BY_NAME = {k.name.lower(): k for k in KEYS}


def find(name: str) -> Key | None:
    """The key called ``name`` (key names are case-insensitive: CiString50)."""
    return _BY_NAME.get(name.lower())


def encode(value: SettingValue) -> str:
    """A setting value as a 1.6 configuration string."""
    return to_text(value)


def decode(setting: str, text: str) -> SettingValue:
    """Parse a 1.6 configuration string for ``setting``.

    Raises:
        SettingError: the text is not a valid value (a list: at most
            ``CSL_MAX_LENGTH`` entries).
    """
    entries = [item for item in text.split(",") if item.strip()]
    if isinstance(definition(setting).default, tuple) and len(entries) > CSL_MAX_LENGTH:
        raise SettingError(f"{setting}: at most {CSL_MAX_LENGTH} entries")
    return from_text(setting, text)


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    readonly: bool
    value: str | None


def read(key: Key, settings: Settings, ctx: KeyContext) -> KeyValue:
    """The key's value for GetConfiguration; secrets are reported without a value."""
    if key.computed is not None:
        return KeyValue(key.name, True, key.computed(ctx))
    assert key.setting is not None
    if definition(key.setting).secret:
        return KeyValue(key.name, False, None)
    return KeyValue(key.name, key.readonly, encode(settings.get(key.setting)))


async def change(settings: Settings, name: str, text: str) -> ChangeResult:
    """Apply ChangeConfiguration: NotSupported for unknown keys, Rejected for
    read-only keys and bad values; accepted values are persisted before the answer."""
    key = find(name)
    if key is None:
        return ChangeResult.NOT_SUPPORTED
    if key.readonly or key.setting is None:
        return ChangeResult.REJECTED
    try:
        value = decode(key.setting, text)
        await settings.set(key.setting, value)
    except SettingError:
        return ChangeResult.REJECTED
    return ChangeResult.ACCEPTED
