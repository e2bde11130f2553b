"""WebSocket connection supervision for OCPP-J.

Connects to ``<base url>/<charge point id>`` offering the subprotocols of the
version adapters it was given (e.g. ``ocpp2.0.1, ocpp1.6`` for "auto"),
authenticates per the security profile, and hands the socket to the adapter of the
subprotocol the CSMS selected (OCPP-J 2.0.1 Part 4 3.1: the server picks one; a CSMS
that selects none is refused). When the connection fails or ends, it waits an exponentially growing,
jittered delay and tries again, forever. Charging never waits for it.

Liveness: WebSocket pings (``websocket_ping_interval_s``; no pong within the same
time closes the socket) catch half-open TCP connections; the adapter's CALL
timeout and heartbeat catch a CSMS that stopped answering at the OCPP level.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol
from urllib.parse import quote

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException

from agent.authorization.authorizer import IdTagInfo, OnlineAuthorizer
from agent.config import CsmsConfig
from agent.network_profiles import Endpoint
from agent.settings import Settings

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 1 << 20
VERSION_SUBPROTOCOLS = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}
"""An endpoint's OCPP version -> the subprotocol of its adapter ("auto": all)."""


class SessionRunner(Protocol):
    subprotocol: str
    call_timeout_s: float
    """Longest wait for the answer to one CALL in the next session, s."""

    async def run_session(self, ws: Any, charge_point_id: str) -> None: ...


class EndpointSource(Protocol):
    """Where the supervisor gets the endpoints to try (``NetworkProfileStore``)."""

    def endpoints(self, priority: Sequence[str]) -> Sequence[Endpoint]: ...

    async def mark_working(self, slot: str) -> None: ...


class FirstOnline:
    """The CSMS side of authorization with several version adapters ("auto"): at most
    one has a session, so the one that is online answers.

    Args:
        links: The adapters, each an ``OnlineAuthorizer``.
    """

    def __init__(self, links: Sequence[OnlineAuthorizer]) -> None:
        self._links = tuple(links)

    @property
    def online(self) -> bool:
        return any(link.online for link in self._links)

    async def authorize_online(self, id_tag: str) -> IdTagInfo | None:
        for link in self._links:
            if link.online:
                return await link.authorize_online(id_tag)
        return None


def backoff_delay_s(attempt: int, min_s: float, max_s: float, rng: random.Random) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based): "equal jitter".

    The ceiling doubles from ``min_s`` up to ``max_s``; the delay is half the
    ceiling plus a uniform random part of the other half, so chargers that lost
    the CSMS together do not reconnect together.
    """
    ceiling_s = min(max_s, min_s * (2 ** min(attempt, 30)))
    return float(ceiling_s / 2 + rng.uniform(0, ceiling_s / 2))


def endpoint_url(base_url: str, charge_point_id: str) -> str:
    """OCPP-J: the charge point identity is the last path segment."""
    return f"{base_url.rstrip('/')}/{quote(charge_point_id, safe='')}"


def basic_auth_header(charge_point_id: str, password: str) -> str:
    """HTTP Basic credentials: user = identity, password = AuthorizationKey (WP 2.1)."""
    token = base64.b64encode(f"{charge_point_id}:{password}".encode()).decode()
    return f"Basic {token}"


def tls_context(csms: CsmsConfig) -> ssl.SSLContext:
    """TLS >= 1.2 with server verification; client certificate for profile 3."""
    ctx = ssl.create_default_context(cafile=str(csms.ca_file) if csms.ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if csms.security_profile == 3 and csms.client_cert_file and csms.client_key_file:
        ctx.load_cert_chain(str(csms.client_cert_file), str(csms.client_key_file))
    return ctx


class ConnectionSupervisor:
    """Keeps one OCPP-J connection alive.

    Args:
        csms: URL, security profile and timing.
        charge_point_id: Identity appended to the URL.
        runner: The version adapter (offers its subprotocol, runs sessions); or
        runners: Several, offered in this order of preference (version "auto").
        settings: For ``websocket_ping_interval_s`` and ``authorization_key``.
        on_connection: Optional hook called with True on connect, False on loss.
        profiles: Network profiles (2.0.1 B09/B10): with them the endpoints are
            tried in ``network_configuration_priority`` order with fallback; without
            (1.6), always ``csms``.
        rng: Jitter source (seeded in tests).
    """

    def __init__(
        self,
        *,
        csms: CsmsConfig,
        charge_point_id: str,
        runner: SessionRunner | None = None,
        runners: Sequence[SessionRunner] = (),
        settings: Settings,
        on_connection: Callable[[bool], None] | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        profiles: EndpointSource | None = None,
        on_runner: Callable[[SessionRunner], None] | None = None,
    ) -> None:
        self._csms = csms
        self._profiles = profiles
        self._id = charge_point_id
        self._runners = {r.subprotocol: r for r in ([runner] if runner else []) + list(runners)}
        if not self._runners:
            raise ValueError("ConnectionSupervisor needs at least one runner")
        self._settings = settings
        self._on_connection = on_connection
        self._on_runner = on_runner  # told which version the CSMS selected, per session
        self._rng = rng or random.Random()
        self._sleep = sleep
        self.connects = 0
        self.failures = 0

    def _headers(self, csms: CsmsConfig) -> dict[str, str]:
        if csms.security_profile not in (1, 2):
            return {}
        # A key set by the CSMS (AuthorizationKey) wins over the configured password.
        password = str(self._settings.get("authorization_key")) or self._csms.basic_auth_password
        return {"Authorization": basic_auth_header(self._id, password)}

    async def run(self) -> None:
        """Connect, run sessions, reconnect; returns only when cancelled."""
        if self._profiles is not None:
            await self._run_profiles(self._profiles)
            return
        attempt = 0
        while True:
            if await self._attempt(self._csms, self._runners):
                attempt = 0
            await self._back_off(attempt)
            attempt += 1

    async def _back_off(self, attempt: int) -> None:
        delay_s = backoff_delay_s(
            attempt, self._csms.reconnect_min_s, self._csms.reconnect_max_s, self._rng
        )
        log.info("reconnecting in %.1f s", delay_s)
        await self._sleep(delay_s)

    def _runners_for(self, version: str) -> dict[str, SessionRunner]:
        wanted = VERSION_SUBPROTOCOLS.get(version)
        if wanted is None:  # "auto": every version adapter we have
            return dict(self._runners)
        return {p: r for p, r in self._runners.items() if p == wanted}

    async def _run_profiles(self, profiles: EndpointSource) -> None:
        """B10: try the endpoints in priority order, each up to
        ``network_profile_connection_attempts`` failed connects in a row, then the
        next; the last working one comes last (``NetworkProfileStore.endpoints``).
        A changed priority list is picked up whenever a connection attempt ends."""
        attempt = 0
        while True:
            priority = self._settings.get_list("network_configuration_priority")
            tries = max(1, self._settings.get_int("network_profile_connection_attempts"))
            usable = 0
            for endpoint in profiles.endpoints(priority):
                runners = self._runners_for(endpoint.ocpp_version)
                if not runners:
                    log.warning(
                        "network profile %s: no adapter for OCPP %s; skipped",
                        endpoint.slot,
                        endpoint.ocpp_version,
                    )
                    continue
                usable += 1
                csms = dataclasses.replace(
                    self._csms, url=endpoint.url, security_profile=endpoint.security_profile
                )
                failed = 0
                while failed < tries:
                    up = functools.partial(profiles.mark_working, endpoint.slot)
                    if await self._attempt(
                        csms, runners, on_up=up, message_timeout_s=endpoint.message_timeout_s
                    ):
                        attempt, failed = 0, 0
                    else:
                        failed += 1
                    await self._back_off(attempt)
                    attempt += 1
                    if self._settings.get_list("network_configuration_priority") != priority:
                        break  # the CSMS changed the order: start over with the new one
                else:
                    log.warning(
                        "network profile %s failed %d times; trying the next", endpoint.slot, tries
                    )
                    continue
                break
            if usable == 0:
                log.error("no usable network profile in priority %s", ",".join(priority))
                await self._back_off(attempt)
                attempt += 1

    async def _attempt(
        self,
        csms: CsmsConfig,
        runners: dict[str, SessionRunner],
        on_up: Callable[[], Awaitable[None]] | None = None,
        message_timeout_s: float | None = None,
    ) -> bool:
        """One connection: True if it came up (a session ran), False if it failed.

        ``message_timeout_s``: the CALL timeout of the network profile in use (2.0.1
        messageTimeout, s); None: the configured ``call_timeout_s``.
        """
        url = endpoint_url(csms.url, self._id)
        ping_s = self._settings.get_int("websocket_ping_interval_s") or None
        connected = False
        try:
            async with connect(
                url,
                subprotocols=list(runners),  # type: ignore[arg-type]
                additional_headers=self._headers(csms),
                ssl=tls_context(csms) if url.startswith("wss://") else None,
                open_timeout=csms.connect_timeout_s,
                ping_interval=ping_s,
                ping_timeout=ping_s,
                close_timeout=2,
                max_size=MAX_FRAME_BYTES,
            ) as ws:
                runner = runners.get(str(ws.subprotocol))
                if ws.subprotocol is None or runner is None:
                    log.error("CSMS accepted none of %s", ", ".join(runners))
                    await ws.close(1002, "subprotocol required")
                    return False
                self.connects += 1
                connected = True
                log.info("connected to %s (%s)", url, ws.subprotocol)
                if on_up is not None:
                    await on_up()
                if self._on_runner is not None:
                    self._on_runner(runner)
                runner.call_timeout_s = message_timeout_s or csms.call_timeout_s
                self._notify(True)
                try:
                    await runner.run_session(ws, self._id)
                finally:
                    self._notify(False)
        except asyncio.CancelledError:
            raise
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI, WebSocketException) as e:
            self.failures += 1
            log.warning("CSMS connection failed: %s", _reason(e))
        except Exception:
            self.failures += 1
            log.exception("OCPP session ended with an error")
        return connected

    def _notify(self, connected: bool) -> None:
        if self._on_connection is not None:
            self._on_connection(connected)


def _reason(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text.splitlines()[0][:200]
