"""Deciding whether an id token may charge (version-neutral).

Order (OCPP 1.6 3.5):

1. Local Authorization List (when attached and enabled): a tag in the list is
   decided by its entry alone, online or offline, with no CSMS round trip.
   Accepted charges; Blocked, Expired (including an entry past its expiry) and
   Invalid are refused. This is a deliberate simplification of 1.6, which
   would still send Authorize.req for a listed tag when online and
   LocalPreAuthorize is false: the list is the CSMS's own statement about the
   tag, so asking again adds a round trip and no information. List
   identifiers are never put into the cache.
2. With LocalPreAuthorize a cached Accepted starts at once.
3. Online, the CSMS decides and the answer is cached.
4. Offline, LocalAuthorizeOffline lets a cached verdict stand, and
   AllowOfflineTxForUnknownId lets an unknown token charge. Everything else is
   refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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


class LocalList(Protocol):
    """Lookup side of the Local Authorization List (``local_list.LocalAuthList``)."""

    async def get(self, id_tag: str, now_utc: datetime) -> IdTagInfo | None:
        """The entry of ``id_tag`` (any case) at ``now_utc``; None when not listed.

        An entry past its expiry reads ``EXPIRED``.
        """
        ...


class Authorizer:
    """Authorizes id tokens: local list first, then cache and CSMS (see the module doc)."""

    def __init__(self, settings: Settings, cache: AuthCache, clock: Clock) -> None:
        self._settings = settings
        self._cache = cache
        self._clock = clock
        self._online: OnlineAuthorizer | None = None
        self._local_list: LocalList | None = None
        self._local_list_enabled: Callable[[], bool] = lambda: False

    def attach(self, online: OnlineAuthorizer | None) -> None:
        """Set (or with None, remove) the CSMS link used for online checks."""
        self._online = online

    def attach_local_list(self, local_list: LocalList | None, enabled: Callable[[], bool]) -> None:
        """Consult ``local_list`` before the cache and the CSMS (None removes it).

        Args:
            local_list: The Local Authorization List, or None for no list.
            enabled: Read on every decision; False makes the list invisible
                (``LocalAuthListEnabled``), so tags are then decided, and
                cached, as if it were absent.
        """
        self._local_list = local_list
        self._local_list_enabled = enabled

    async def authorize(self, id_tag: str) -> AuthorizationStatus:
        """The verdict for ``id_tag``; never raises for network problems.

        A tag in the enabled local list gets its list status without asking
        the CSMS. Database errors (``StoreError``, ``sqlite3.Error``) propagate.
        """
        listed = await self._listed(id_tag)
        if listed is not None:
            log.info("%s from the local list: %s", id_tag, listed.status)
            return listed.status
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
        """Update the cache with a verdict from the CSMS (Authorize, Start/Stop answers).

        Skipped when the cache is disabled, and for a tag in the enabled local
        list: list identifiers never enter the cache (OCPP 1.6 3.5).
        """
        if not self._settings.get_bool("authorization_cache_enabled"):
            return
        if await self._listed(id_tag) is None:
            await self._cache.put(
                id_tag, info.status, info.expiry, info.parent_id_tag, self._clock.now()
            )

    async def clear_cache(self) -> None:
        """Empty the authorization cache (ClearCache); the local list is untouched."""
        await self._cache.clear()

    async def _listed(self, id_tag: str) -> IdTagInfo | None:
        local_list = self._local_list
        if local_list is None or not self._local_list_enabled():
            return None
        return await local_list.get(id_tag, self._clock.now())
