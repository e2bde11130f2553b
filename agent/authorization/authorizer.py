"""Deciding whether an id token may charge (version-neutral).

Order (OCPP 1.6 3.5): with LocalPreAuthorize a cached Accepted starts at once;
online, the CSMS decides and the answer is cached; offline, LocalAuthorizeOffline
lets a cached Accepted charge, and AllowOfflineTxForUnknownId lets an unknown
token charge. Everything else is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from agent.authorization.cache import AuthCache
from agent.clock import Clock
from agent.events import AuthorizationStatus
from agent.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IdTagInfo:
    """The CSMS's verdict on an id token."""

    status: AuthorizationStatus
    expiry: datetime | None = None
    parent_id_tag: str | None = None


class OnlineAuthorizer(Protocol):
    """The CSMS side of authorization, provided by the OCPP adapter."""

    @property
    def online(self) -> bool:
        """True when a recent round trip proved the CSMS reachable and registered."""
        ...

    async def authorize_online(self, id_tag: str) -> IdTagInfo | None:
        """Ask the CSMS. None when it could not be asked (offline, timeout)."""
        ...


class Authorizer:
    """Authorizes id tokens using the CSMS when online and the cache otherwise."""

    def __init__(self, settings: Settings, cache: AuthCache, clock: Clock) -> None:
        self._settings = settings
        self._cache = cache
        self._clock = clock
        self._online: OnlineAuthorizer | None = None

    def attach(self, online: OnlineAuthorizer | None) -> None:
        """Set (or with None, remove) the CSMS link used for online checks."""
        self._online = online

    async def authorize(self, id_tag: str) -> AuthorizationStatus:
        """The verdict for ``id_tag``; never raises for network problems."""
        cache_on = self._settings.get_bool("authorization_cache_enabled")
        cached = await self._cache.get(id_tag, self._clock.now()) if cache_on else None
        if cached == AuthorizationStatus.ACCEPTED and self._settings.get_bool(
            "local_pre_authorize"
        ):
            return AuthorizationStatus.ACCEPTED
        link = self._online
        if link is not None and link.online:
            info = await link.authorize_online(id_tag)
            if info is not None:
                await self.remember(id_tag, info)
                return info.status
        return self._offline_verdict(id_tag, cached)

    def _offline_verdict(
        self, id_tag: str, cached: AuthorizationStatus | None
    ) -> AuthorizationStatus:
        if cached is not None and self._settings.get_bool("local_authorize_offline"):
            log.info("offline: %s from the cache: %s", id_tag, cached)
            return cached
        if cached is None and self._settings.get_bool("allow_offline_tx_for_unknown_id"):
            log.info("offline: unknown %s allowed (AllowOfflineTxForUnknownId)", id_tag)
            return AuthorizationStatus.ACCEPTED
        return AuthorizationStatus.INVALID

    async def remember(self, id_tag: str, info: IdTagInfo) -> None:
        """Update the cache with a verdict from the CSMS (Authorize, Start/Stop answers)."""
        if self._settings.get_bool("authorization_cache_enabled"):
            await self._cache.put(
                id_tag, info.status, info.expiry, info.parent_id_tag, self._clock.now()
            )

    async def clear_cache(self) -> None:
        await self._cache.clear()
