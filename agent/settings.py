"""Runtime settings that a CSMS may read and change, version-neutral.

One source of truth: the OCPP 1.6 configuration keys (``agent/ocpp/v16/keys.py``)
and, later, the 2.0.1 device-model variables map onto these names. Values are
persisted through ``SettingsStore`` so a CSMS change survives reboot and upgrade.

Names carry units (``_s``); lists are lists of strings (OCPP comma-separated
lists are split by the adapter).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

SettingValue = int | bool | str | tuple[str, ...]

# Measurands this station can sample (OCPP 1.6 spelling). "SoC" comes from a
# pilot that knows the EV's state of charge (hal.pilot.StateOfChargeSource).
SUPPORTED_MEASURANDS: tuple[str, ...] = (
    "Energy.Active.Import.Register",
    "Energy.Active.Export.Register",
    "Power.Active.Import",
    "Power.Offered",
    "Current.Import",
    "Current.Offered",
    "Voltage",
    "Frequency",
    "SoC",
)

# OCPP 1.6 9.1 (MeterValuesSampledData): "Where applicable, the Measurand is combined
# with the optional phase; for instance: Voltage.L1". The phases each measurand can
# be narrowed to, as the meter measures them (voltages are line-to-neutral).
MEASURAND_PHASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Current.Import", ("L1", "L2", "L3")),
    ("Voltage", ("L1", "L2", "L3", "L1-N", "L2-N", "L3-N")),
    ("Power.Active.Import", ("L1", "L2", "L3")),
)

# Every entry the measurand-list settings accept: a measurand, or one with a phase.
MEASURAND_CHOICES: tuple[str, ...] = SUPPORTED_MEASURANDS + tuple(
    f"{measurand}.{phase}" for measurand, phases in MEASURAND_PHASES for phase in phases
)


class SettingError(ValueError):
    """A value that a setting refuses, with the reason."""


@dataclass(frozen=True, slots=True)
class SettingDef:
    """Definition of one setting.

    Attributes:
        name: Neutral name, unit in the name.
        default: Default value; its type is the setting's type.
        mutable: False for values the CSMS may only read.
        min_value: Lowest allowed integer (ints only).
        allowed: For list settings, the allowed members.
        secret: Never returned in a read and never logged.
    """

    name: str
    default: SettingValue
    mutable: bool = True
    min_value: int | None = None
    allowed: tuple[str, ...] | None = None
    secret: bool = False

    def coerce(self, value: object) -> SettingValue:
        """Validate ``value`` for this setting and return it in canonical form.

        Raises:
            SettingError: wrong type, out of range or not an allowed member.
        """
        kind = type(self.default)
        if kind is bool:
            if not isinstance(value, bool):
                raise SettingError(f"{self.name}: expected true/false")
            return value
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise SettingError(f"{self.name}: expected an integer")
            if self.min_value is not None and value < self.min_value:
                raise SettingError(f"{self.name}: must be >= {self.min_value}")
            return value
        if kind is tuple:
            if isinstance(value, str) or not isinstance(value, list | tuple):
                raise SettingError(f"{self.name}: expected a list of strings")
            items = tuple(str(v).strip() for v in value if str(v).strip())
            if self.allowed is not None:
                bad = [v for v in items if v not in self.allowed]
                if bad:
                    raise SettingError(f"{self.name}: unsupported value(s) {', '.join(bad)}")
            return items
        if not isinstance(value, str):
            raise SettingError(f"{self.name}: expected a string")
        return value


# OCPP 2.0.1 TxCtrlr.TxStartPoint / TxStopPoint members this station can detect
# (REFERENCE 4.4): EVConnected (CP state B/C/D), Authorized (an accepted idToken or
# remote start), PowerPathClosed (plugged in and authorized: the contactor closes as
# soon as the EV asks), EnergyTransfer (the EV asks for power and the contactor closes);
# the core's agent.events.TxPoint. Applied with ocpp_version "2.0.1" only.
# Not: ParkingBayOccupancy (no bay sensor), DataSigned (no signed meter values).
TX_POINTS: tuple[str, ...] = ("EVConnected", "Authorized", "PowerPathClosed", "EnergyTransfer")

# OCPP 2.0.1 network configuration slots. Slot 1 is the config file's [csms] table;
# the others are written by SetNetworkProfile (B09, agent/network_profiles.py). A slot
# in the priority list without a profile is skipped by the connection supervisor.
NETWORK_PROFILE_SLOTS: tuple[str, ...] = ("1", "2", "3", "4")

DEFINITIONS: tuple[SettingDef, ...] = (
    SettingDef("heartbeat_interval_s", 300, min_value=1),
    SettingDef("connection_timeout_s", 60, min_value=1),
    SettingDef("meter_value_sample_interval_s", 60, min_value=0),
    SettingDef(
        "meter_values_sampled_data",
        ("Energy.Active.Import.Register", "Power.Active.Import"),
        allowed=MEASURAND_CHOICES,
    ),
    SettingDef("stop_txn_sampled_data", (), allowed=MEASURAND_CHOICES),
    SettingDef("clock_aligned_data_interval_s", 0, min_value=0),
    SettingDef(
        "meter_values_aligned_data",
        ("Energy.Active.Import.Register",),
        allowed=MEASURAND_CHOICES,
    ),
    SettingDef("stop_txn_aligned_data", (), allowed=MEASURAND_CHOICES),
    SettingDef("reset_retries", 1, min_value=0),
    SettingDef("stop_transaction_on_ev_side_disconnect", True),
    SettingDef("stop_transaction_on_invalid_id", True),
    SettingDef("unlock_connector_on_ev_side_disconnect", True),
    SettingDef("transaction_message_attempts", 3, min_value=1),
    SettingDef("transaction_message_retry_interval_s", 60, min_value=0),
    SettingDef("local_authorize_offline", True),
    SettingDef("local_pre_authorize", False),
    SettingDef("authorize_remote_tx_requests", False),
    SettingDef("allow_offline_tx_for_unknown_id", False),
    SettingDef("authorization_cache_enabled", True),
    SettingDef("local_auth_list_enabled", True),
    # ReserveConnectorZeroSupported (1.6 Reservation profile): read-only for the CSMS,
    # a vendor may turn it off in the config's [ocpp] table
    SettingDef("reserve_connector_zero_supported", True, mutable=False),
    SettingDef("websocket_ping_interval_s", 30, min_value=0),
    SettingDef("connector_phase_rotation", "0.RST,1.RST"),
    SettingDef("minimum_status_duration_s", 0, min_value=0),
    SettingDef("authorization_key", "", secret=True),
    # OCPP 2.0.1-only concepts (agent/ocpp/v201/variables.py); 2.0.1 variables with a
    # 1.6 counterpart use the 1.6 settings above.
    SettingDef("tx_start_point", ("PowerPathClosed",), allowed=TX_POINTS),
    SettingDef("tx_stop_point", ("EVConnected", "Authorized"), allowed=TX_POINTS),
    SettingDef(
        "tx_started_measurands", ("Energy.Active.Import.Register",), allowed=MEASURAND_CHOICES
    ),
    # TxEndedInterval of SampledDataCtrlr / AlignedDataCtrlr; the defaults sample the
    # Ended data as 1.6 samples StopTxnSampledData / StopTxnAlignedData
    SettingDef("sampled_data_tx_ended_interval_s", 60, min_value=0),
    SettingDef("aligned_data_tx_ended_interval_s", 0, min_value=0),
    SettingDef("message_timeout_s", 30, min_value=1),
    SettingDef("offline_threshold_s", 60, min_value=0),
    SettingDef("network_configuration_priority", ("1",), allowed=NETWORK_PROFILE_SLOTS),
    SettingDef("network_profile_connection_attempts", 3, min_value=1),
    SettingDef("retry_back_off_wait_minimum_s", 1, min_value=0),
    SettingDef("retry_back_off_repeat_times", 6, min_value=0),
    SettingDef("retry_back_off_random_range_s", 2, min_value=0),
    SettingDef("organization_name", ""),
    SettingDef("cert_signing_wait_minimum_s", 30, min_value=0),
    SettingDef("cert_signing_repeat_times", 3, min_value=0),
    SettingDef("limit_change_significance_pct", 10, min_value=0),
    # DeviceDataCtrlr.ItemsPerMessage: read-only for the CSMS, a vendor may lower it
    SettingDef("device_model_items_per_message", 50, mutable=False, min_value=1),
    # AuthCtrlr.MasterPassGroupId (2.0.1 C16): a token of this group stops every
    # transaction and starts none; "" = no MasterPass group
    SettingDef("master_pass_group_id", ""),
)

_BY_NAME: Mapping[str, SettingDef] = {d.name: d for d in DEFINITIONS}


def definition(name: str) -> SettingDef:
    """The definition of ``name``; KeyError for an unknown setting."""
    return _BY_NAME[name]


_INTEGER = re.compile(r"-?[0-9]{1,18}")  # ASCII digits only: "²" or "٣" are not 2 or 3


def to_text(value: SettingValue) -> str:
    """A setting value as OCPP writes it (1.6 keys and 2.0.1 variables alike):
    booleans "true"/"false", lists comma-separated, integers in decimal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def from_text(name: str, text: str) -> SettingValue:
    """Parse the OCPP text form of setting ``name`` and validate it (``coerce``).

    Raises:
        KeyError: unknown setting.
        SettingError: not a value of the setting's type, or refused by it.
    """
    d = _BY_NAME[name]
    if isinstance(d.default, bool):
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            raise SettingError(f"{name}: expected true or false")
        return d.coerce(lowered == "true")
    if isinstance(d.default, int):
        stripped = text.strip()
        if not _INTEGER.fullmatch(stripped):
            raise SettingError(f"{name}: expected an integer")
        return d.coerce(int(stripped))
    if isinstance(d.default, tuple):
        return d.coerce([item.strip() for item in text.split(",") if item.strip()])
    return d.coerce(text)


class SettingsBackend(Protocol):
    """Where settings are persisted (``agent.persistence.settings_store.SettingsStore``)."""

    async def set(self, key: str, value: Any) -> None: ...


Listener = Callable[[str, SettingValue], None]


class Settings:
    """Live setting values: defaults, overridden by config, overridden by the CSMS.

    Reads are synchronous (the values live in memory); ``set`` persists first and
    then updates memory and notifies listeners, so a value the CSMS was told is
    accepted is durable.
    """

    def __init__(
        self,
        backend: SettingsBackend,
        persisted: Mapping[str, Any],
        config_values: Mapping[str, Any] | None = None,
    ) -> None:
        """Layer the values: defaults < ``config_values`` (the config file's [ocpp]
        table) < ``persisted`` (values the CSMS set, which survive reboot).

        Raises:
            SettingError: the config names an unknown setting or a bad value.
        """
        self._backend = backend
        self._values: dict[str, SettingValue] = {d.name: d.default for d in DEFINITIONS}
        for name, raw in (config_values or {}).items():
            if name not in _BY_NAME:
                raise SettingError(f"{name}: unknown setting")
            self._values[name] = _BY_NAME[name].coerce(raw)
        for name, raw in persisted.items():
            if name in _BY_NAME:
                try:
                    self._values[name] = _BY_NAME[name].coerce(raw)
                except SettingError:
                    continue  # a value from an older version that no longer fits: default
        self._listeners: list[Listener] = []

    def get(self, name: str) -> SettingValue:
        return self._values[name]

    def get_int(self, name: str) -> int:
        value = self._values[name]
        assert isinstance(value, int)
        return value

    def get_bool(self, name: str) -> bool:
        value = self._values[name]
        assert isinstance(value, bool)
        return value

    def get_list(self, name: str) -> tuple[str, ...]:
        value = self._values[name]
        assert isinstance(value, tuple)
        return value

    async def set(self, name: str, value: object) -> None:
        """Validate, persist, then apply and notify.

        Raises:
            KeyError: unknown setting.
            SettingError: read-only setting or invalid value.
        """
        d = _BY_NAME[name]
        if not d.mutable:
            raise SettingError(f"{name}: read-only")
        canonical = d.coerce(value)
        stored: Any = list(canonical) if isinstance(canonical, tuple) else canonical
        await self._backend.set(name, stored)
        self._values[name] = canonical
        for listener in list(self._listeners):
            listener(name, canonical)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(name, value)`` after every successful ``set``.

        Returns:
            A function that removes the listener again.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)
