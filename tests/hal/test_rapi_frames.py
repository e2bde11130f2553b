"""RAPI framing, checksums, sequence ids and the state tables (pure, no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hal.pilot import PilotOutput
from hal.rapi.frames import Frame, FrameParser, Garbage, encode, parse_frame, xor_checksum
from hal.rapi.states import EvseMode, amps_for_duty, cp_state_for, fault_for, wanted_mode
from hal.types import CpState, FaultCode


@pytest.mark.parametrize(
    ("tokens", "wire"),
    [
        # checksums as printed in rapi_proc.h (REFERENCE 6.1)
        (("GS",), b"$GS^30\r"),
        (("GG",), b"$GG^24\r"),
        (("GE",), b"$GE^26\r"),
        (("GC",), b"$GC^20\r"),
        (("GV",), b"$GV^35\r"),
        (("SC", "16"), b"$SC 16^13\r"),
        (("ST", "0", "0", "0", "0"), b"$ST 0 0 0 0^23\r"),
    ],
)
def test_encode_matches_the_documented_checksums(tokens: tuple[str, ...], wire: bytes) -> None:
    assert encode(tokens) == wire


def test_sequence_id_is_a_token_before_the_checksum() -> None:
    wire = encode(("SC", "16", "V"), seq_id=0x1A)
    assert wire.startswith(b"$SC 16 V :1A^")
    assert parse_frame(wire[:-1]) == Frame(("SC", "16", "V"), 0x1A)


@pytest.mark.parametrize("seq_id", [0, 256, -1])
def test_sequence_id_out_of_range_is_refused(seq_id: int) -> None:
    with pytest.raises(ValueError, match="sequence id"):
        encode(("GS",), seq_id=seq_id)


@pytest.mark.parametrize("token", ["", "a b", "x^", "1\r", ":01"])
def test_tokens_with_separators_are_refused(token: str) -> None:
    with pytest.raises(ValueError):
        encode(("SC", token))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"$FE*AF", Frame(("FE",))),  # legacy additive checksum (rapi_proc.h example)
        (b"$FS*BD", Frame(("FS",))),
    ],
)
def test_additive_checksum_is_accepted(raw: bytes, expected: Frame) -> None:
    assert parse_frame(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"$GS^31", "bad checksum"),
        (b"$GS", "no checksum"),
        (b"$GS^3", "malformed"),
        (b"$GS^ZZ", "malformed"),
        (b"$G^63", "malformed"),  # one-letter command, good checksum
        (b"$GS :00^%02X" % xor_checksum(b"$GS :00"), "malformed"),  # 00 is reserved
    ],
)
def test_bad_frames_are_garbage(raw: bytes, reason: str) -> None:
    result = parse_frame(raw)
    assert isinstance(result, Garbage)
    assert result.reason == reason
    assert result.nbytes == len(raw) + 1


def test_parser_splits_a_stream_and_reports_garbage_in_order() -> None:
    parser = FrameParser(max_len=20)
    good = encode(("OK", "1"), seq_id=2)
    stream = (
        b"xx"  # noise
        + b"$AT 03"  # truncated by the next '$'
        + good
        + b"$"
        + b"A" * 30
        + b"\r"  # oversized
        + b"$GS^31\r"  # bad checksum
        + b"\r\n"  # line ends between frames are not noise
        + encode(("AT", "02", "02", "16", "0000"))
    )
    out: list[Frame | Garbage] = []
    for i in range(0, len(stream), 7):  # arbitrary chunking must not matter
        out += parser.feed(stream[i : i + 7])
    assert [o.reason if isinstance(o, Garbage) else o.command for o in out] == [
        "noise",
        "truncated",
        "OK",
        "oversized",
        "bad checksum",
        "AT",
    ]
    assert out[2] == Frame(("OK", "1"), 2)


@given(st.binary(max_size=200))
def test_parser_never_raises_and_accounts_for_what_it_drops(data: bytes) -> None:
    parser = FrameParser()
    out = parser.feed(data) + parser.feed(b"$")  # flush a pending frame as truncated
    dropped = sum(o.nbytes for o in out if isinstance(o, Garbage))
    assert dropped <= len(data) + 1


@given(
    st.lists(st.from_regex(r"[0-9A-Za-z]{1,6}", fullmatch=True), min_size=0, max_size=5),
    st.one_of(st.none(), st.integers(1, 255)),
)
def test_encode_parse_round_trip(args: list[str], seq_id: int | None) -> None:
    wire = encode(("OK", *args), seq_id)
    assert FrameParser().feed(wire) == [Frame(("OK", *args), seq_id)]


@pytest.mark.parametrize(
    ("duty", "amps"),
    [
        (10.0, 6),
        (16.6, 10),  # what agent.evse.iec61851 sends for 10 A (rounded down to 0.1 %)
        (26.6, 16),
        (53.3, 32),
        (85.0, 51),
        (89.2, 63),
        (96.0, 80),
        (9.0, 6),
        (26.5, 15),  # 15.9 A: never rounded up to 16 A
        (5.0, None),  # digital communication: RAPI cannot signal it
        (100.0, None),
        (0.0, None),
    ],
)
def test_amps_for_duty(duty: float, amps: int | None) -> None:
    assert amps_for_duty(duty) == amps


@given(st.integers(6, 80))
def test_amps_for_duty_inverts_the_core_duty(amps: int) -> None:
    from agent.evse.iec61851 import duty_for_current

    duty = duty_for_current(float(amps))
    assert duty is not None
    assert amps_for_duty(duty) == (min(amps, 51) if amps < 52.5 else amps)


@pytest.mark.parametrize(
    ("evse", "pilot", "previous", "cp"),
    [
        (0x01, 0x01, CpState.F, CpState.A),
        (0x02, 0x02, CpState.A, CpState.B),
        (0x03, 0x03, CpState.B, CpState.C),
        (0x04, 0x04, CpState.B, CpState.D),
        (0xFE, 0x02, CpState.C, CpState.B),  # sleeping: the EV is still sensed
        (0xFF, 0x00, CpState.B, CpState.F),  # disabled: -12 V
        (0x05, 0x02, CpState.B, CpState.F),  # diode check failed
        (0x06, 0x03, CpState.C, CpState.C),  # GFCI trip: CP as sensed
        (0x00, 0x00, CpState.B, CpState.B),  # unknown: keep
    ],
)
def test_cp_state_for(evse: int, pilot: int, previous: CpState, cp: CpState) -> None:
    assert cp_state_for(evse, pilot, previous) == cp


@pytest.mark.parametrize(
    ("evse", "code"),
    [
        (0x01, None),
        (0x04, None),
        (0xFE, None),
        (0xFF, None),
        (0x05, FaultCode.OTHER_ERROR),
        (0x06, FaultCode.GROUND_FAILURE),
        (0x07, FaultCode.GROUND_FAILURE),
        (0x08, FaultCode.POWER_SWITCH_FAILURE),
        (0x09, FaultCode.GROUND_FAILURE),
        (0x0A, FaultCode.HIGH_TEMPERATURE),
        (0x0B, FaultCode.OVER_CURRENT_FAILURE),
        (0x0E, FaultCode.POWER_SWITCH_FAILURE),
        (0x0C, FaultCode.OTHER_ERROR),  # an unknown fault state is still a fault
    ],
)
def test_fault_for(evse: int, code: FaultCode | None) -> None:
    fault = fault_for(evse)
    assert (fault[0] if fault else None) == code


@pytest.mark.parametrize(
    ("output", "hold", "mode"),
    [
        (PilotOutput.pwm(26.6), False, EvseMode.ENABLED),
        (PilotOutput.pwm(26.6), True, EvseMode.SLEEPING),
        (PilotOutput.pwm(5.0), False, EvseMode.SLEEPING),
        (PilotOutput.steady(), False, EvseMode.SLEEPING),
        (PilotOutput.error(), False, EvseMode.DISABLED),
        (PilotOutput.error(), True, EvseMode.DISABLED),
    ],
)
def test_wanted_mode(output: PilotOutput, hold: bool, mode: EvseMode) -> None:
    assert wanted_mode(output, hold_open=hold) == mode
