"""Reconnect back-off (equal jitter), the OCPP-J endpoint URL and HTTP Basic credentials."""

from __future__ import annotations

import asyncio
import base64
import random
import socket
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import CsmsConfig
from agent.ocpp.connection import (
    ConnectionSupervisor,
    backoff_delay_s,
    basic_auth_header,
    endpoint_url,
)
from agent.settings import Settings

# ------------------------------------------------------------------ backoff


@pytest.mark.parametrize(
    ("attempt", "min_s", "max_s", "ceiling_s"),
    [
        pytest.param(0, 1.0, 60.0, 1.0, id="first"),
        pytest.param(1, 1.0, 60.0, 2.0, id="doubles"),
        pytest.param(2, 1.0, 60.0, 4.0, id="doubles-again"),
        pytest.param(5, 1.0, 60.0, 32.0, id="last-below-max"),
        pytest.param(6, 1.0, 60.0, 60.0, id="capped"),
        pytest.param(10_000, 1.0, 60.0, 60.0, id="huge-attempt-capped"),
        pytest.param(3, 0.5, 300.0, 4.0, id="fractional-min"),
        pytest.param(0, 5.0, 5.0, 5.0, id="min-equals-max"),
    ],
)
def test_delay_lies_between_half_the_ceiling_and_the_ceiling(
    attempt: int, min_s: float, max_s: float, ceiling_s: float
) -> None:
    rng = random.Random(1234)
    delays = [backoff_delay_s(attempt, min_s, max_s, rng) for _ in range(500)]
    assert all(ceiling_s / 2 <= d <= ceiling_s for d in delays)
    # jitter really spreads the delays over the upper half (not a constant)
    assert min(delays) < ceiling_s * 0.6
    assert max(delays) > ceiling_s * 0.9


@given(
    attempt=st.integers(min_value=0, max_value=100_000),
    min_s=st.floats(min_value=0.01, max_value=100.0),
    span=st.floats(min_value=1.0, max_value=1000.0),
    seed=st.integers(),
)
def test_delay_bounds_property(attempt: int, min_s: float, span: float, seed: int) -> None:
    max_s = min_s * span
    ceiling_s = min(max_s, min_s * 2.0 ** min(attempt, 1000))
    delay_s = backoff_delay_s(attempt, min_s, max_s, random.Random(seed))
    assert ceiling_s / 2 <= delay_s <= ceiling_s


def test_same_seed_same_delays() -> None:
    a, b = random.Random(7), random.Random(7)
    assert [backoff_delay_s(n, 1.0, 60.0, a) for n in range(10)] == [
        backoff_delay_s(n, 1.0, 60.0, b) for n in range(10)
    ]


def test_different_seeds_spread_a_fleet() -> None:
    # Chargers that lost the CSMS together must not come back together.
    delays = {round(backoff_delay_s(4, 1.0, 60.0, random.Random(seed)), 6) for seed in range(50)}
    assert len(delays) > 45


# ------------------------------------------------------------------ supervisor wiring


class _NullBackend:
    async def set(self, key: str, value: Any) -> None:
        del key, value


class _NeverRunner:
    subprotocol = "ocpp1.6"

    async def run_session(self, ws: Any, charge_point_id: str) -> None:  # pragma: no cover
        raise AssertionError("no CSMS listens: a session must never start")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens there now: connecting is refused at once


async def test_supervisor_waits_growing_jittered_delays_between_failures() -> None:
    csms = CsmsConfig(
        url=f"ws://127.0.0.1:{_closed_port()}/ocpp", reconnect_min_s=1.0, reconnect_max_s=8.0
    )
    waits_s: list[float] = []
    enough = asyncio.Event()

    async def fake_sleep(delay_s: float) -> None:
        waits_s.append(delay_s)
        if len(waits_s) == 6:
            enough.set()
            await asyncio.Future()  # park here until cancelled

    supervisor = ConnectionSupervisor(
        csms=csms,
        charge_point_id="CP-1",
        runner=_NeverRunner(),
        settings=Settings(_NullBackend(), {}),
        rng=random.Random(99),
        sleep=fake_sleep,
    )
    task = asyncio.create_task(supervisor.run())
    try:
        await asyncio.wait_for(enough.wait(), timeout=15)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    reference = random.Random(99)
    assert waits_s == [backoff_delay_s(n, 1.0, 8.0, reference) for n in range(6)]
    assert supervisor.failures == 6
    assert supervisor.connects == 0


# ------------------------------------------------------------------ endpoint URL


@pytest.mark.parametrize(
    ("base", "cp_id", "url"),
    [
        pytest.param("ws://127.0.0.1:9000/ocpp", "CP1", "ws://127.0.0.1:9000/ocpp/CP1", id="plain"),
        pytest.param("ws://h/ocpp/", "CP1", "ws://h/ocpp/CP1", id="trailing-slash"),
        pytest.param("ws://h/ocpp//", "CP1", "ws://h/ocpp/CP1", id="trailing-slashes"),
        pytest.param("wss://h", "CP1", "wss://h/CP1", id="no-path"),
        pytest.param("ws://h/ocpp", "CP 1", "ws://h/ocpp/CP%201", id="space"),
        pytest.param("ws://h/ocpp", "site/CP1", "ws://h/ocpp/site%2FCP1", id="slash"),
        pytest.param("ws://h/ocpp", "CP#1?x", "ws://h/ocpp/CP%231%3Fx", id="hash-query"),
        pytest.param("ws://h/ocpp", "100%", "ws://h/ocpp/100%25", id="percent"),
        pytest.param("ws://h/ocpp", "Säule-1", "ws://h/ocpp/S%C3%A4ule-1", id="utf8"),
        pytest.param("ws://h/ocpp", "CP-1_a.b~c", "ws://h/ocpp/CP-1_a.b~c", id="unreserved"),
    ],
)
def test_endpoint_url(base: str, cp_id: str, url: str) -> None:
    assert endpoint_url(base, cp_id) == url


@given(cp_id=st.text(min_size=1, max_size=48))
def test_identity_is_exactly_the_last_path_segment(cp_id: str) -> None:
    url = endpoint_url("wss://csms.example.com/ocpp", cp_id)
    parts = urlsplit(url)
    assert parts.query == ""
    assert parts.fragment == ""
    prefix, _, segment = parts.path.rpartition("/")
    assert prefix == "/ocpp"
    assert unquote(segment) == cp_id


# ------------------------------------------------------------------ basic auth


@pytest.mark.parametrize(
    ("cp_id", "password", "header"),
    [
        pytest.param("CP1", "secret", "Basic Q1AxOnNlY3JldA==", id="known-vector"),
        pytest.param("CP1", "", "Basic Q1AxOg==", id="empty-password"),
    ],
)
def test_basic_auth_header_known_values(cp_id: str, password: str, header: str) -> None:
    assert basic_auth_header(cp_id, password) == header


@pytest.mark.parametrize(
    ("cp_id", "password"),
    [
        pytest.param("CP-0001", "0123456789abcdef0123", id="hex-key"),
        pytest.param("CP-1", "pa:ss:word", id="colons-in-password"),
        pytest.param("Säule", "pässwörd", id="utf8"),
    ],
)
def test_basic_auth_header_decodes_to_identity_and_password(cp_id: str, password: str) -> None:
    header = basic_auth_header(cp_id, password)
    scheme, _, token = header.partition(" ")
    assert scheme == "Basic"
    user, _, secret = base64.b64decode(token, validate=True).decode().partition(":")
    assert (user, secret) == (cp_id, password)
