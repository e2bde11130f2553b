"""OCPP 1.6 configuration keys: string encoding, ChangeConfiguration, GetConfiguration."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.ocpp.v16.keys import (
    CSL_MAX_LENGTH,
    GET_CONFIGURATION_MAX_KEYS,
    KEYS,
    ChangeResult,
    KeyContext,
    KeyValue,
    change,
    decode,
    encode,
    find,
    read,
)
from agent.settings import (
    DEFINITIONS,
    SUPPORTED_MEASURANDS,
    SettingError,
    Settings,
    SettingValue,
    definition,
)

CTX = KeyContext(number_of_connectors=2)
SECRET = "0123456789abcdef0123"


class FakeBackend:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def set(self, key: str, value: Any) -> None:
        self.calls.append((key, value))


def make() -> tuple[Settings, FakeBackend]:
    backend = FakeBackend()
    return Settings(backend, {}), backend


def key(name: str) -> Any:
    found = find(name)
    assert found is not None, name
    return found


# ------------------------------------------------------------------ encode / decode


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(True, "true", id="true"),
        pytest.param(False, "false", id="false"),
        pytest.param(300, "300", id="int"),
        pytest.param(0, "0", id="zero"),
        pytest.param(("Voltage", "Current.Import"), "Voltage,Current.Import", id="csl"),
        pytest.param((), "", id="empty-csl"),
        pytest.param("0.RST,1.RST", "0.RST,1.RST", id="str"),
    ],
)
def test_encode(value: SettingValue, text: str) -> None:
    assert encode(value) == text


@pytest.mark.parametrize(
    ("setting", "text", "value"),
    [
        pytest.param("local_pre_authorize", "true", True, id="true"),
        pytest.param("local_pre_authorize", "TRUE", True, id="TRUE"),
        pytest.param("local_pre_authorize", "False", False, id="False"),
        pytest.param("local_pre_authorize", " true ", True, id="padded-bool"),
        pytest.param("heartbeat_interval_s", "60", 60, id="int"),
        pytest.param("heartbeat_interval_s", " 60 ", 60, id="padded-int"),
        pytest.param("heartbeat_interval_s", "007", 7, id="leading-zeros"),
        pytest.param("meter_value_sample_interval_s", "0", 0, id="zero"),
        pytest.param(
            "meter_values_sampled_data",
            "Energy.Active.Import.Register, Power.Active.Import",
            ("Energy.Active.Import.Register", "Power.Active.Import"),
            id="csl-with-space",
        ),
        pytest.param(
            "meter_values_sampled_data", " Voltage ,,Frequency,", ("Voltage", "Frequency"), id="sp"
        ),
        pytest.param("stop_txn_sampled_data", "", (), id="empty-csl"),
        pytest.param(
            "meter_values_sampled_data",
            ",".join(["Voltage"] * CSL_MAX_LENGTH),
            ("Voltage",) * CSL_MAX_LENGTH,
            id="csl-at-max-length",
        ),
        pytest.param("connector_phase_rotation", "1.RTS", "1.RTS", id="str"),
        pytest.param("authorization_key", SECRET, SECRET, id="secret"),
    ],
)
def test_decode(setting: str, text: str, value: SettingValue) -> None:
    assert decode(setting, text) == value


@pytest.mark.parametrize(
    ("setting", "text", "fragment"),
    [
        pytest.param("local_pre_authorize", "yes", "true or false", id="yes"),
        pytest.param("local_pre_authorize", "1", "true or false", id="one"),
        pytest.param("local_pre_authorize", "", "true or false", id="empty-bool"),
        pytest.param("heartbeat_interval_s", "abc", "integer", id="text"),
        pytest.param("heartbeat_interval_s", "1.5", "integer", id="decimal"),
        pytest.param("heartbeat_interval_s", "", "integer", id="empty-int"),
        pytest.param("heartbeat_interval_s", "1e3", "integer", id="exponent"),
        pytest.param("heartbeat_interval_s", "0", ">= 1", id="below-min"),
        pytest.param("heartbeat_interval_s", "-5", ">= 1", id="negative"),
        pytest.param(
            "meter_values_sampled_data", "Temperature", "Temperature", id="unsupported-measurand"
        ),
        pytest.param(
            "meter_values_sampled_data",
            ",".join(["Voltage"] * (CSL_MAX_LENGTH + 1)),
            f"at most {CSL_MAX_LENGTH}",
            id="csl-too-long",
        ),
    ],
)
def test_decode_refuses(setting: str, text: str, fragment: str) -> None:
    with pytest.raises(SettingError, match=fragment):
        decode(setting, text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("\N{SUPERSCRIPT TWO}", id="superscript-digit"),
        pytest.param("--5", id="double-minus"),
    ],
)
def test_decode_odd_digits_are_a_setting_error(text: str) -> None:
    with pytest.raises(SettingError):
        decode("heartbeat_interval_s", text)


@given(
    setting=st.sampled_from([d.name for d in DEFINITIONS]),
    data=st.data(),
)
def test_encode_decode_round_trip(setting: str, data: st.DataObject) -> None:
    d = definition(setting)
    value: SettingValue
    if isinstance(d.default, bool):
        value = data.draw(st.booleans())
    elif isinstance(d.default, int):
        value = data.draw(st.integers(min_value=d.min_value or 0, max_value=10**9))
    elif isinstance(d.default, tuple):
        value = tuple(
            data.draw(
                st.lists(
                    st.sampled_from(d.allowed or SUPPORTED_MEASURANDS), max_size=CSL_MAX_LENGTH
                )
            )
        )
    else:
        value = data.draw(st.text(max_size=40))  # plain strings travel unchanged
    assert decode(setting, encode(value)) == value


# ------------------------------------------------------------------ key table


def test_key_table_is_consistent() -> None:
    lowered = [k.name.lower() for k in KEYS]
    assert len(lowered) == len(set(lowered)), "key names must be unique ignoring case"
    for k in KEYS:
        assert (k.setting is None) != (k.computed is None), k.name
        if k.setting is not None:
            definition(k.setting)  # exists
            # every setting-backed key is writable, except the read-only ones the
            # vendor sets in the config (1.6 9.4 ReserveConnectorZeroSupported: R)
            assert k.readonly == (k.name == "ReserveConnectorZeroSupported"), k.name
        else:
            assert k.readonly, k.name


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        pytest.param("HeartbeatInterval", "HeartbeatInterval", id="exact"),
        pytest.param("heartbeatinterval", "HeartbeatInterval", id="lower"),
        pytest.param("HEARTBEATINTERVAL", "HeartbeatInterval", id="upper"),
        pytest.param("stoptransactiononevsidedisconnect", "StopTransactionOnEVSideDisconnect"),
        pytest.param("authorizationKEY", "AuthorizationKey", id="secret"),
    ],
)
def test_find_is_case_insensitive(name: str, canonical: str) -> None:
    assert key(name).name == canonical


@pytest.mark.parametrize("name", ["", "Heartbeat", "HeartbeatInterval ", "SecurityProfile"])
def test_find_unknown(name: str) -> None:
    assert find(name) is None


# ------------------------------------------------------------------ read (GetConfiguration)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("HeartbeatInterval", KeyValue("HeartbeatInterval", False, "300"), id="int"),
        pytest.param(
            "localpreauthorize", KeyValue("LocalPreAuthorize", False, "false"), id="bool-lower"
        ),
        pytest.param(
            "MeterValuesSampledData",
            KeyValue(
                "MeterValuesSampledData",
                False,
                "Energy.Active.Import.Register,Power.Active.Import",
            ),
            id="csl",
        ),
        pytest.param("StopTxnSampledData", KeyValue("StopTxnSampledData", False, ""), id="empty"),
        # computed, read-only
        pytest.param("NumberOfConnectors", KeyValue("NumberOfConnectors", True, "2"), id="conn"),
        pytest.param(
            "GetConfigurationMaxKeys",
            KeyValue("GetConfigurationMaxKeys", True, str(GET_CONFIGURATION_MAX_KEYS)),
            id="max-keys",
        ),
        pytest.param(
            "MeterValuesSampledDataMaxLength",
            KeyValue("MeterValuesSampledDataMaxLength", True, str(CSL_MAX_LENGTH)),
            id="csl-max",
        ),
        pytest.param(
            "StopTxnAlignedDataMaxLength",
            KeyValue("StopTxnAlignedDataMaxLength", True, str(CSL_MAX_LENGTH)),
            id="stop-aligned-max",
        ),
        pytest.param(
            "SupportedFeatureProfiles",
            KeyValue(
                "SupportedFeatureProfiles",
                True,
                "Core,LocalAuthListManagement,Reservation,RemoteTrigger,SmartCharging",
            ),
            id="profiles",
        ),
        # write-only secret: no value
        pytest.param("AuthorizationKey", KeyValue("AuthorizationKey", False, None), id="secret"),
    ],
)
def test_read(name: str, expected: KeyValue) -> None:
    settings, _ = make()
    assert read(key(name), settings, CTX) == expected


def test_number_of_connectors_follows_the_station() -> None:
    settings, _ = make()
    assert read(key("NumberOfConnectors"), settings, KeyContext(5)).value == "5"


async def test_secret_never_leaves_through_any_read() -> None:
    settings, _ = make()
    assert await change(settings, "AuthorizationKey", SECRET) == ChangeResult.ACCEPTED
    assert settings.get("authorization_key") == SECRET  # it is stored ...
    values = [read(k, settings, CTX) for k in KEYS]
    assert all(SECRET not in (kv.value or "") for kv in values)  # ... and never read back
    assert read(key("AuthorizationKey"), settings, CTX).value is None


# ------------------------------------------------------------------ change (ChangeConfiguration)


@pytest.mark.parametrize(
    ("name", "text", "result", "setting", "value"),
    [
        pytest.param(
            "HeartbeatInterval", "60", "Accepted", "heartbeat_interval_s", 60, id="accepted"
        ),
        pytest.param(
            "heartbeatINTERVAL", "60", "Accepted", "heartbeat_interval_s", 60, id="any-case"
        ),
        pytest.param(
            "LocalPreAuthorize", "TRUE", "Accepted", "local_pre_authorize", True, id="bool-case"
        ),
        pytest.param(
            "MeterValuesSampledData",
            "Voltage, Current.Import",
            "Accepted",
            "meter_values_sampled_data",
            ("Voltage", "Current.Import"),
            id="csl",
        ),
        pytest.param(
            "MeterValueSampleInterval",
            "0",
            "Accepted",
            "meter_value_sample_interval_s",
            0,
            id="zero-disables-sampling",
        ),
        pytest.param(
            "AuthorizationKey", SECRET, "Accepted", "authorization_key", SECRET, id="secret"
        ),
        pytest.param("HeartbeatInterval", "0", "Rejected", None, None, id="below-min"),
        pytest.param("HeartbeatInterval", "sixty", "Rejected", None, None, id="not-int"),
        pytest.param("LocalPreAuthorize", "1", "Rejected", None, None, id="not-bool"),
        pytest.param(
            "MeterValuesSampledData", "Temperature", "Rejected", None, None, id="bad-measurand"
        ),
        pytest.param(
            "MeterValuesSampledData",
            ",".join(["Voltage"] * (CSL_MAX_LENGTH + 1)),
            "Rejected",
            None,
            None,
            id="csl-too-long",
        ),
        pytest.param("NumberOfConnectors", "4", "Rejected", None, None, id="computed-read-only"),
        pytest.param("GetConfigurationMaxKeys", "5", "Rejected", None, None, id="max-keys-ro"),
        pytest.param("SupportedFeatureProfiles", "Core", "Rejected", None, None, id="profiles-ro"),
        pytest.param("NoSuchKey", "1", "NotSupported", None, None, id="unknown"),
        pytest.param("SecurityProfile", "1", "NotSupported", None, None, id="not-implemented"),
    ],
)
async def test_change(
    name: str, text: str, result: str, setting: str | None, value: SettingValue | None
) -> None:
    settings, backend = make()
    before = {d: settings.get(d) for d in (k.setting for k in KEYS) if d is not None}

    got = await change(settings, name, text)

    assert got == ChangeResult(result)
    if setting is None:
        assert backend.calls == []  # nothing persisted for a refused change
        assert {d: settings.get(d) for d in before} == before
    else:
        stored = list(value) if isinstance(value, tuple) else value
        assert backend.calls == [(setting, stored)]  # persisted before the answer
        assert settings.get(setting) == value


async def test_accepted_change_reaches_listeners() -> None:
    settings, _ = make()
    heard: list[tuple[str, SettingValue]] = []
    settings.subscribe(lambda name, value: heard.append((name, value)))
    await change(settings, "HeartbeatInterval", "120")
    assert heard == [("heartbeat_interval_s", 120)]


async def test_changed_value_reads_back_in_1_6_form() -> None:
    settings, _ = make()
    await change(settings, "StopTxnSampledData", "Energy.Active.Import.Register , Voltage")
    kv = read(key("StopTxnSampledData"), settings, CTX)
    assert kv.value == "Energy.Active.Import.Register,Voltage"
