"""Deciding whether an id token may charge (version-neutral).

Order (OCPP 1.6 3.5, 9.1):

1. A tag in the Local Authorization List (attached and enabled) is never
   decided by the cache and never enters it. Its entry (status, and expiry:
   an entry past its expiry reads Expired) decides offline and, with
   LocalPreAuthorize, online without a round trip. Online without
   LocalPreAuthorize the CSMS is asked (its answer decides; if it cannot be
   asked, the entry decides as offline). Offline a listed Blocked, Expired or
   Invalid tag is refused whatever AllowOfflineTxForUnknownId says (1.6
   3.5.4: it is not "unknown"), and a listed Accepted tag charges only with
   LocalAuthorizeOffline.
2. With LocalPreAuthorize a cached Accepted starts at once.
3. Online, the CSMS decides and the answer is cached.
4. Offline, LocalAuthorizeOffline lets a cached verdict stand, and
   AllowOfflineTxForUnknownId lets an unknown token charge. Everything else is
   refused.

The verdict comes with the tag's parentIdTag where one is known (CSMS answer,
list entry or cache), for reservations (1.6 5.13).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from agent.authorization.cache import AuthCache, CacheEntry
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
        """The verdict for ``id_tag`` (see :meth:`authorize_info`)."""
        return (await self.authorize_info(id_tag)).status

    async def authorize_info(self, id_tag: str) -> IdTagInfo:
        """The verdict for ``id_tag`` with its parentIdTag when known, in the
        module's order; never raises for network problems.

        Database errors (``StoreError``, ``sqlite3.Error``) propagate.
        """
        pre_authorize = self._settings.get_bool("local_pre_authorize")
        link = self._online
        listed = await self._listed(id_tag)
        if listed is not None:
            if link is not None and link.online and not pre_authorize:
                info = await link.authorize_online(id_tag)
                if info is not None:  # not cached: list identifiers never are
                    return info
            elif link is not None and link.online:
                log.info("%s from the local list: %s", id_tag, listed.status)
                return listed
            return self._offline_listed(id_tag, listed)
        cache_on = self._settings.get_bool("authorization_cache_enabled")
        cached = await self._cache.entry(id_tag, self._clock.now()) if cache_on else None
        if cached is not None and cached.status == AuthorizationStatus.ACCEPTED and pre_authorize:
            return IdTagInfo(cached.status, parent_id_tag=cached.parent_id_tag)
        if link is not None and link.online:
            info = await link.authorize_online(id_tag)
            if info is not None:
                await self.remember(id_tag, info)
                return info
        return self._offline_verdict(id_tag, cached)

    def _offline_listed(self, id_tag: str, listed: IdTagInfo) -> IdTagInfo:
        if listed.status != AuthorizationStatus.ACCEPTED:
            log.info("offline: %s refused by the local list: %s", id_tag, listed.status)
            return listed
        if self._settings.get_bool("local_authorize_offline"):
            log.info("offline: %s from the local list: %s", id_tag, listed.status)
            return listed
        log.info("offline: %s listed but LocalAuthorizeOffline is false", id_tag)
        return IdTagInfo(AuthorizationStatus.INVALID)

    def _offline_verdict(self, id_tag: str, cached: CacheEntry | None) -> IdTagInfo:
        if cached is not None and self._settings.get_bool("local_authorize_offline"):
            log.info("offline: %s from the cache: %s", id_tag, cached.status)
            return IdTagInfo(cached.status, parent_id_tag=cached.parent_id_tag)
        if cached is None and self._settings.get_bool("allow_offline_tx_for_unknown_id"):
            log.info("offline: unknown %s allowed (AllowOfflineTxForUnknownId)", id_tag)
            return IdTagInfo(AuthorizationStatus.ACCEPTED)
        return IdTagInfo(AuthorizationStatus.INVALID)

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
