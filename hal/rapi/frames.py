"""OpenEVSE RAPI framing (pure): checksums, sequence ids, a byte-stream parser.

A RAPI frame is ``$`` + two-letter command + space-separated tokens + an
optional sequence id token ``:SS`` + a checksum + ``\\r`` (REFERENCE 6.1;
``lincomatic/open_evse: rapi_proc.h``, RAPI v3+):

* XOR checksum ``^XX``: 8-bit XOR of every character before ``^`` (what this
  agent sends and what the controller answers with);
* additive checksum ``*XX``: 8-bit sum of every character before ``*`` (legacy,
  accepted on receive).

Frames without a checksum are refused: RAPI allows them "for testing only".
Nothing here does I/O; ``hal.rapi.link`` and the simulator feed bytes in.
"""

from __future__ import annotations

from dataclasses import dataclass

START = ord("$")
END = ord("\r")
MAX_FRAME_LEN = 64
"""Longest frame accepted, bytes. The controller's own buffer is 32 characters
(``ESRAPI_BUFLEN``); its longest answers ($GS, $AT, $GV) stay well below 64."""

INVALID_SEQUENCE_ID = 0  # RAPI: ":00" is reserved as "no sequence id"


def xor_checksum(data: bytes) -> int:
    """8-bit XOR of ``data``."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def sum_checksum(data: bytes) -> int:
    """8-bit sum of ``data`` (the legacy ``*`` checksum)."""
    return sum(data) & 0xFF


def encode(tokens: tuple[str, ...] | list[str], seq_id: int | None = None) -> bytes:
    """One frame ready for the wire: ``$`` tokens [``:SS``] ``^XX`` ``\\r``.

    Args:
        tokens: The command (``"SC"``, ``"OK"``...) and its parameters.
        seq_id: Sequence id 1..255 appended as `` :SS``, or None.

    Raises:
        ValueError: No command, a token containing a separator, or a bad id.
    """
    if not tokens or len(tokens[0]) != 2:
        raise ValueError(f"a RAPI frame starts with a two-letter command, got {tokens!r}")
    for token in tokens:
        if not token or any(c in token for c in " $^*\r\n:"):
            raise ValueError(f"bad RAPI token {token!r}")
    body = "$" + " ".join(tokens)
    if seq_id is not None:
        if not 1 <= seq_id <= 255:
            raise ValueError(f"sequence id must be 1..255, got {seq_id}")
        body += f" :{seq_id:02X}"
    raw = body.encode("ascii")
    return raw + f"^{xor_checksum(raw):02X}\r".encode("ascii")


@dataclass(frozen=True, slots=True)
class Frame:
    """A well-formed frame.

    Attributes:
        tokens: Command first (``"OK"``, ``"AT"``, ``"GS"``...), then parameters,
            without the sequence id.
        seq_id: The sequence id it carried, or None.
    """

    tokens: tuple[str, ...]
    seq_id: int | None = None

    @property
    def command(self) -> str:
        return self.tokens[0]

    @property
    def args(self) -> tuple[str, ...]:
        return self.tokens[1:]


@dataclass(frozen=True, slots=True)
class Garbage:
    """Bytes that were not a good frame.

    Attributes:
        reason: "bad checksum", "no checksum", "truncated", "oversized",
            "malformed" or "noise".
        nbytes: How many bytes were thrown away.
    """

    reason: str
    nbytes: int


def parse_frame(raw: bytes) -> Frame | Garbage:
    """Check and split one frame, ``raw`` from ``$`` up to (without) ``\\r``."""
    for mark, checksum in ((b"^", xor_checksum), (b"*", sum_checksum)):
        at = raw.rfind(mark)
        if at < 0:
            continue
        digits = raw[at + 1 :]
        if len(digits) != 2:
            return Garbage("malformed", len(raw) + 1)
        try:
            expected = int(digits, 16)
        except ValueError:
            return Garbage("malformed", len(raw) + 1)
        if checksum(raw[:at]) != expected:
            return Garbage("bad checksum", len(raw) + 1)
        return _split(raw[:at], len(raw) + 1)
    return Garbage("no checksum", len(raw) + 1)


def _split(body: bytes, nbytes: int) -> Frame | Garbage:
    try:
        text = body[1:].decode("ascii")
    except UnicodeDecodeError:
        return Garbage("malformed", nbytes)
    tokens = text.split(" ")
    if any(not t for t in tokens) or len(tokens[0]) != 2 or not tokens[0].isalnum():
        return Garbage("malformed", nbytes)
    seq_id = None
    if len(tokens) > 1 and tokens[-1].startswith(":"):
        try:
            seq_id = int(tokens[-1][1:], 16)
        except ValueError:
            return Garbage("malformed", nbytes)
        if len(tokens[-1]) != 3 or seq_id == INVALID_SEQUENCE_ID:
            return Garbage("malformed", nbytes)
        tokens = tokens[:-1]
    return Frame(tuple(tokens), seq_id)


class FrameParser:
    """Turns a byte stream into frames and garbage, in order.

    A ``$`` always starts a new frame (the controller does the same), so a frame
    cut short by a new one is reported as "truncated". A frame longer than
    ``max_len`` is "oversized" and everything up to the next ``$`` is dropped.
    Bytes between frames other than CR/LF are "noise".
    """

    def __init__(self, max_len: int = MAX_FRAME_LEN) -> None:
        self._max_len = max_len
        self._buffer = bytearray()
        self._skipping = 0  # >0: inside an oversized frame, bytes dropped so far
        self._noise = 0

    def feed(self, data: bytes) -> list[Frame | Garbage]:
        """Parse more bytes; returns what they completed."""
        out: list[Frame | Garbage] = []
        for byte in data:
            if byte == START:
                self._flush_noise(out)
                if self._buffer:
                    out.append(Garbage("truncated", len(self._buffer)))
                if self._skipping:
                    out.append(Garbage("oversized", self._skipping))
                    self._skipping = 0
                self._buffer = bytearray(b"$")
            elif self._skipping:
                self._skipping += 1
                if byte == END:
                    out.append(Garbage("oversized", self._skipping))
                    self._skipping = 0
            elif self._buffer:
                if byte == END:
                    out.append(parse_frame(bytes(self._buffer)))
                    self._buffer = bytearray()
                elif len(self._buffer) >= self._max_len:
                    self._skipping = len(self._buffer) + 1
                    self._buffer = bytearray()
                else:
                    self._buffer.append(byte)
            elif byte not in (END, ord("\n")):
                self._noise += 1
        self._flush_noise(out)
        return out

    def _flush_noise(self, out: list[Frame | Garbage]) -> None:
        if self._noise:
            out.append(Garbage("noise", self._noise))
            self._noise = 0
