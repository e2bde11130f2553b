"""Malformed frames from the CSMS: the agent answers with the OCPP-J 1.6 CALLERROR
(section 4.2.3 spelling) and keeps running on the same connection.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from ocpp.v16 import call

from hil.csms import CsmsEmulator
from tests.conftest import GUARD_S, OCPP_J_16_ERROR_CODES, RunningApp, StartApp, registered

CP = "CP1"

# OCPP-J 1.6 4.2.3 error codes (note the spellings FormationViolation and
# OccurenceConstraintViolation, unlike OCPP 2.0.1).
ERROR_CODES_16 = OCPP_J_16_ERROR_CODES


@pytest.fixture
async def agent(csms: CsmsEmulator, start_app: StartApp) -> RunningApp:
    """A registered agent (boot answered, connectors reported)."""
    running = await start_app(csms)
    await registered(csms)
    return running


async def call_error(csms: CsmsEmulator, frame: str) -> list[Any]:
    """Send ``frame`` and return the agent's answer, which must be a well-formed CALLERROR."""
    answer = json.loads(await csms.send_raw(CP, frame, timeout_s=GUARD_S))
    assert isinstance(answer, list) and len(answer) == 5, answer
    message_type, _, code, description, details = answer
    assert message_type == 4
    assert code in ERROR_CODES_16
    assert isinstance(description, str)
    assert isinstance(details, dict)
    return answer


async def assert_still_serving(csms: CsmsEmulator, agent: RunningApp) -> None:
    """The same connection still works: a CALL is answered, nothing reconnected."""
    result = await csms.call(CP, call.GetConfiguration(key=["HeartbeatInterval"]))
    assert result is not None and result.configuration_key[0]["key"] == "HeartbeatInterval"
    assert not agent.task.done()
    assert csms.connections[CP] == 1
    assert len(csms.calls("BootNotification")) == 1


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "FormationViolation"),  # the library's FormatViolation, 1.6 spelling
        ('{"a": 1}', "ProtocolError"),  # JSON, but not an array
        ("[]", "ProtocolError"),  # no MessageTypeId
    ],
)
async def test_unreadable_frame_is_answered_with_id_minus_one(
    csms: CsmsEmulator, agent: RunningApp, frame: str, code: str
) -> None:
    answer = await call_error(csms, frame)
    assert answer[1:3] == ["-1", code]
    await assert_still_serving(csms, agent)


async def test_call_with_missing_elements_keeps_its_message_id(
    csms: CsmsEmulator, agent: RunningApp
) -> None:
    answer = await call_error(csms, '[2, "m-1", "Heartbeat"]')
    assert answer[1:3] == ["m-1", "ProtocolError"]
    await assert_still_serving(csms, agent)


async def test_unknown_action_is_not_implemented(csms: CsmsEmulator, agent: RunningApp) -> None:
    answer = await call_error(csms, '[2, "m-2", "FooBar", {}]')
    assert answer[1:3] == ["m-2", "NotImplemented"]
    await assert_still_serving(csms, agent)


@pytest.mark.parametrize(
    ("action", "payload"),
    [
        ("CertificateSigned", {"certificateChain": "-----BEGIN CERTIFICATE-----"}),
        # a charger -> CSMS action sent the wrong way: known, not supported here
        ("Heartbeat", {}),
    ],
)
async def test_known_but_unsupported_action_is_not_supported(
    csms: CsmsEmulator, agent: RunningApp, action: str, payload: dict[str, Any]
) -> None:
    answer = await call_error(csms, json.dumps([2, "m-3", action, payload]))
    assert answer[1:3] == ["m-3", "NotSupported"]
    await assert_still_serving(csms, agent)


async def test_wrong_field_type_is_a_type_constraint_violation(
    csms: CsmsEmulator, agent: RunningApp
) -> None:
    frame = '[2, "m-4", "ChangeAvailability", {"connectorId": "x", "type": "Inoperative"}]'
    answer = await call_error(csms, frame)
    assert answer[1:3] == ["m-4", "TypeConstraintViolation"]
    await assert_still_serving(csms, agent)
    assert "Unavailable" not in [c.payload["status"] for c in csms.calls("StatusNotification")]


async def test_missing_required_field(csms: CsmsEmulator, agent: RunningApp) -> None:
    # OCPP-J 1.6 4.2.3: ProtocolError = "Payload for Action is incomplete" (what the
    # agent sends, from the ocpp library); OccurenceConstraintViolation would be the
    # other defensible reading.
    answer = await call_error(csms, '[2, "m-5", "ChangeAvailability", {"connectorId": 1}]')
    assert answer[1:3] == ["m-5", "ProtocolError"]
    await assert_still_serving(csms, agent)
    assert "Unavailable" not in [c.payload["status"] for c in csms.calls("StatusNotification")]


async def test_extra_property_is_a_formation_violation(
    csms: CsmsEmulator, agent: RunningApp
) -> None:
    frame = '[2, "m-6", "ChangeAvailability", {"connectorId": 1, "type": "Inoperative", "x": 1}]'
    answer = await call_error(csms, frame)
    assert answer[1:3] == ["m-6", "FormationViolation"]
    await assert_still_serving(csms, agent)
    assert "Unavailable" not in [c.payload["status"] for c in csms.calls("StatusNotification")]


async def test_enum_value_out_of_range_is_refused(csms: CsmsEmulator, agent: RunningApp) -> None:
    frame = '[2, "m-7", "ChangeAvailability", {"connectorId": 1, "type": "Sideways"}]'
    answer = await call_error(csms, frame)
    assert answer[1] == "m-7"
    assert answer[2] in ("PropertyConstraintViolation", "FormationViolation")
    await assert_still_serving(csms, agent)


async def test_stray_call_result_is_ignored(csms: CsmsEmulator, agent: RunningApp) -> None:
    # A CALLRESULT nobody asked for must not confuse the next exchange.
    await csms.send_frame(CP, '[3, "nobody-asked", {}]')
    await assert_still_serving(csms, agent)


async def test_agent_calls_still_work_after_malformed_frames(
    csms: CsmsEmulator, agent: RunningApp
) -> None:
    for frame in ("{not json", '[2, "m-8", "FooBar", {}]', '[2, "m-9", "Reset", {}]'):
        await call_error(csms, frame)
    # the agent's own CALLs go on too: a session produces Authorize and StartTransaction
    start = await agent.start_charging(csms, "TAG1")
    assert start.payload["idTag"] == "TAG1"
    assert agent.task.done() is False  # the Reset without a type did not reset


async def test_no_answer_to_malformed_frames_while_boot_is_rejected(
    csms: CsmsEmulator, start_app: StartApp
) -> None:
    # OCPP 1.6 4.2: while Rejected the charger does not respond to anything the CSMS sends.
    csms.boot_status = "Rejected"
    csms.heartbeat_interval_s = 1
    await start_app(csms)
    boot = await csms.wait_for("BootNotification", timeout_s=GUARD_S)
    await csms.wait_answer(boot, timeout_s=GUARD_S)
    # The retry proves the agent took the Rejected in; holding its answer keeps it Rejected.
    csms.hold_responses("BootNotification")
    await csms.wait_for("BootNotification", count=2, timeout_s=GUARD_S)

    with pytest.raises(TimeoutError):  # a readable CALL: not answered
        await csms.send_raw(CP, '[2, "r-1", "FooBar", {}]', timeout_s=0.5)
    with pytest.raises(TimeoutError):  # nor an unreadable one
        await csms.send_raw(CP, "{not json", timeout_s=0.5)
