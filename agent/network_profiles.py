"""CSMS endpoints the station may connect to, by configuration slot (version-neutral).

Slot "1" is the config file's ``[csms]`` table; other slots are written by the CSMS
(2.0.1 SetNetworkProfile, B09) and persisted in the settings table under one key, so
they survive reboots and upgrades. The order in which slots are tried is the setting
``network_configuration_priority``; the connection supervisor walks it
(``endpoints_in_priority``) and remembers the slot that last worked, which is tried
last when every other one failed (B10 fallback).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from agent.config import CsmsConfig
from agent.persistence.settings_store import JSONValue, SettingsStore

PROFILES_KEY = "network_profiles"
LAST_WORKING_KEY = "network_last_working_slot"
CONFIG_SLOT = "1"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One way to reach a CSMS.

    Attributes:
        slot: The configuration slot ("1": the config file).
        url: Base URL (ws:// or wss://); the charge point id is appended.
        security_profile: 0-3 (1: basic auth, 2: TLS + basic auth, 3: mutual TLS).
        ocpp_version: "1.6", "2.0.1" or "auto" (which version adapters to offer).
        message_timeout_s: CALL timeout the CSMS asked for, s (None: configured).
    """

    slot: str
    url: str
    security_profile: int
    ocpp_version: str
    message_timeout_s: float | None = None

    def to_json(self) -> dict[str, JSONValue]:
        return dict(asdict(self))

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Endpoint:
        timeout = raw.get("message_timeout_s")
        return cls(
            slot=str(raw["slot"]),
            url=str(raw["url"]),
            security_profile=int(raw["security_profile"]),
            ocpp_version=str(raw["ocpp_version"]),
            message_timeout_s=float(timeout) if timeout is not None else None,
        )


def config_endpoint(csms: CsmsConfig) -> Endpoint:
    """Slot 1: the ``[csms]`` table of the config file."""
    return Endpoint(CONFIG_SLOT, csms.url, csms.security_profile, csms.ocpp_version)


def endpoints_in_priority(
    profiles: dict[str, Endpoint], priority: Sequence[str], last_working: str | None
) -> list[Endpoint]:
    """The endpoints to try, in order: the priority list (slots without a profile are
    skipped), then the last working slot if it is not in the list (pure)."""
    order: list[Endpoint] = []
    for slot in priority:
        endpoint = profiles.get(slot)
        if endpoint is not None and endpoint not in order:
            order.append(endpoint)
    fallback = profiles.get(last_working) if last_working is not None else None
    if fallback is not None and fallback not in order:
        order.append(fallback)
    if not order and CONFIG_SLOT in profiles:
        order.append(profiles[CONFIG_SLOT])
    return order


class NetworkProfileStore:
    """The persisted network profiles plus slot 1 from the config.

    Args:
        settings_store: Where profiles and the last working slot are kept.
        config: Slot 1.
        persisted: What ``SettingsStore.load`` returned at start.

    Failure: a corrupt stored profile is ignored (slot 1 always remains).
    """

    def __init__(
        self, settings_store: SettingsStore, config: Endpoint, persisted: dict[str, JSONValue]
    ) -> None:
        self._store = settings_store
        self._saved: dict[str, Endpoint] = {}  # written by the CSMS (a stored slot 1 wins)
        raw = persisted.get(PROFILES_KEY)
        if isinstance(raw, dict):
            for slot, value in raw.items():
                if isinstance(value, dict):
                    try:
                        self._saved[slot] = Endpoint.from_json(value)
                    except (KeyError, TypeError, ValueError):
                        continue
        self._profiles: dict[str, Endpoint] = {CONFIG_SLOT: config, **self._saved}
        both = frozenset({"1.6", "2.0.1"})
        self.versions = both if config.ocpp_version == "auto" else frozenset({config.ocpp_version})
        """OCPP versions this agent has adapters for (a profile of another is useless)."""
        last = persisted.get(LAST_WORKING_KEY)
        self._last_working = str(last) if last is not None else None

    @property
    def profiles(self) -> dict[str, Endpoint]:
        """Slot -> endpoint (a copy)."""
        return dict(self._profiles)

    @property
    def last_working(self) -> str | None:
        """The slot of the last connection that came up, if any."""
        return self._last_working

    async def save(self, endpoint: Endpoint) -> None:
        """Store ``endpoint`` in its slot (durable when this returns)."""
        saved = {**self._saved, endpoint.slot: endpoint}
        await self._store.set(PROFILES_KEY, {s: e.to_json() for s, e in saved.items()})
        self._saved = saved
        self._profiles[endpoint.slot] = endpoint

    async def mark_working(self, slot: str) -> None:
        """Remember ``slot`` as the last one that connected (persisted on change)."""
        if slot == self._last_working:
            return
        self._last_working = slot
        await self._store.set(LAST_WORKING_KEY, slot)

    def endpoints(self, priority: Sequence[str]) -> list[Endpoint]:
        """The endpoints to try now (``endpoints_in_priority``)."""
        return endpoints_in_priority(self._profiles, priority, self._last_working)
