"""Authorizer precedence: local list over cache and CSMS, list tags never cached, offline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.authorization.authorizer import Authorizer, IdTagInfo
from agent.authorization.cache import AuthCache
from agent.authorization.local_list import ListEntry, LocalAuthList, UpdateStatus, UpdateType
from agent.clock import Clock
from agent.events import AuthorizationStatus
from agent.persistence.store import Store
from agent.settings import Settings

NOW = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)
ACCEPTED = AuthorizationStatus.ACCEPTED
BLOCKED = AuthorizationStatus.BLOCKED
EXPIRED = AuthorizationStatus.EXPIRED
INVALID = AuthorizationStatus.INVALID


class FixedClock(Clock):
    def __init__(self, now: datetime) -> None:
        super().__init__()
        self.moment = now

    def now(self) -> datetime:
        return self.moment


class NullBackend:
    async def set(self, key: str, value: Any) -> None:
        pass


@dataclass
class FakeCsms:
    """An OnlineAuthorizer that answers from a table and records what it was asked."""

    online: bool = True
    verdicts: dict[str, AuthorizationStatus] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def authorize_online(self, id_tag: str) -> IdTagInfo | None:
        self.asked.append(id_tag)
        if not self.online:
            return None
        return IdTagInfo(self.verdicts.get(id_tag.upper(), INVALID))


@dataclass
class Rig:
    authorizer: Authorizer
    cache: AuthCache
    local_list: LocalAuthList
    csms: FakeCsms
    clock: FixedClock
    enabled: list[bool]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path)
    yield opened
    await opened.close()


def make_rig(store: Store, **settings: object) -> Rig:
    clock = FixedClock(NOW)
    cache = AuthCache(store)
    local_list = LocalAuthList(store)
    authorizer = Authorizer(Settings(NullBackend(), {}, settings), cache, clock)
    csms = FakeCsms()
    authorizer.attach(csms)
    enabled = [True]
    authorizer.attach_local_list(local_list, lambda: enabled[0])
    return Rig(authorizer, cache, local_list, csms, clock, enabled)


async def install(rig: Rig, *entries: tuple[str, AuthorizationStatus, datetime | None]) -> None:
    batch = [ListEntry(tag, IdTagInfo(status, expiry)) for tag, status, expiry in entries]
    assert await rig.local_list.update(1, UpdateType.FULL, batch) is UpdateStatus.ACCEPTED


async def test_list_entry_beats_the_cache(store: Store) -> None:
    rig = make_rig(store, local_pre_authorize=True)
    rig.csms.online = False
    await rig.cache.put("LISTED-OK", BLOCKED, None, None, NOW)
    await rig.cache.put("LISTED-BAD", ACCEPTED, None, None, NOW)
    await install(rig, ("LISTED-OK", ACCEPTED, None), ("LISTED-BAD", BLOCKED, None))

    assert await rig.authorizer.authorize("listed-ok") is ACCEPTED
    # A cached Accepted with LocalPreAuthorize would start at once: the list wins.
    assert await rig.authorizer.authorize("listed-bad") is BLOCKED


@pytest.mark.parametrize("status", [ACCEPTED, BLOCKED, INVALID])
async def test_list_entry_beats_the_csms_without_a_round_trip(
    store: Store, status: AuthorizationStatus
) -> None:
    # online, LocalPreAuthorize: the list decides (1.6 9.1); without it the CSMS
    # is asked (tests/unit/test_authorizer_local_list.py)
    rig = make_rig(store, local_pre_authorize=True)
    rig.csms.verdicts = {"TAG": BLOCKED if status is ACCEPTED else ACCEPTED}
    await install(rig, ("TAG", status, None))

    assert await rig.authorizer.authorize("Tag") is status
    assert rig.csms.asked == []


async def test_tags_not_in_the_list_still_go_to_the_csms_and_the_cache(store: Store) -> None:
    rig = make_rig(store)
    rig.csms.verdicts = {"OTHER": ACCEPTED}
    await install(rig, ("TAG", BLOCKED, None))

    assert await rig.authorizer.authorize("OTHER") is ACCEPTED
    assert rig.csms.asked == ["OTHER"]
    assert await rig.cache.get("OTHER", NOW) is ACCEPTED


async def test_list_tags_are_never_put_into_the_cache(store: Store) -> None:
    rig = make_rig(store)
    await install(rig, ("TAG", ACCEPTED, None))

    # Start/StopTransaction answers reach the cache through remember().
    await rig.authorizer.remember("tag", IdTagInfo(BLOCKED))
    await rig.authorizer.remember("OTHER", IdTagInfo(BLOCKED))
    assert await rig.cache.get("TAG", NOW) is None
    assert await rig.cache.get("OTHER", NOW) is BLOCKED
    assert await rig.cache.size() == 1


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        pytest.param((ACCEPTED, None), ACCEPTED, id="accepted"),
        pytest.param((BLOCKED, None), BLOCKED, id="blocked"),
        pytest.param((INVALID, None), INVALID, id="invalid"),
        pytest.param((ACCEPTED, NOW - timedelta(seconds=1)), EXPIRED, id="accepted-but-expired"),
        pytest.param((ACCEPTED, NOW + timedelta(days=1)), ACCEPTED, id="accepted-until-later"),
    ],
)
async def test_offline_the_list_decides_even_against_offline_settings(
    store: Store,
    entry: tuple[AuthorizationStatus, datetime | None],
    expected: AuthorizationStatus,
) -> None:
    # AllowOfflineTxForUnknownId must not rescue a listed, refused tag; a listed
    # Accepted tag charges although neither the CSMS nor the cache can vouch for it.
    rig = make_rig(store, allow_offline_tx_for_unknown_id=True)
    rig.csms.online = False
    await install(rig, ("TAG", *entry))

    assert await rig.authorizer.authorize("TAG") is expected
    assert rig.csms.asked == []


async def test_offline_an_unlisted_unknown_tag_is_refused(store: Store) -> None:
    rig = make_rig(store)
    rig.csms.online = False
    await install(rig, ("TAG", ACCEPTED, None))

    assert await rig.authorizer.authorize("STRANGER") is INVALID


async def test_a_disabled_list_is_ignored_and_its_tags_are_cached(store: Store) -> None:
    rig = make_rig(store, local_pre_authorize=True)
    rig.csms.verdicts = {"TAG": BLOCKED}
    await install(rig, ("TAG", ACCEPTED, None))
    rig.enabled[0] = False

    assert await rig.authorizer.authorize("TAG") is BLOCKED
    assert rig.csms.asked == ["TAG"]
    assert await rig.cache.get("TAG", NOW) is BLOCKED

    # Enabled again (read on every decision): the list beats the stale cache entry.
    rig.enabled[0] = True
    assert await rig.authorizer.authorize("TAG") is ACCEPTED
    assert rig.csms.asked == ["TAG"]


async def test_detaching_the_list_restores_plain_cache_and_csms(store: Store) -> None:
    rig = make_rig(store)
    rig.csms.verdicts = {"TAG": BLOCKED}
    await install(rig, ("TAG", ACCEPTED, None))
    rig.authorizer.attach_local_list(None, lambda: True)

    assert await rig.authorizer.authorize("TAG") is BLOCKED
    assert rig.csms.asked == ["TAG"]


async def test_expiry_follows_the_station_clock(store: Store) -> None:
    rig = make_rig(store)
    rig.csms.online = False
    await install(rig, ("TAG", ACCEPTED, NOW + timedelta(hours=1)))

    assert await rig.authorizer.authorize("TAG") is ACCEPTED
    rig.clock.moment = NOW + timedelta(hours=1)
    assert await rig.authorizer.authorize("TAG") is EXPIRED


# ------------------------------------------------ local-list strictness (1.6 3.5, 9.1)


@dataclass
class SilentCsms(FakeCsms):
    """Online, but every Authorize goes unanswered (timeout, link dropped)."""

    async def authorize_online(self, id_tag: str) -> IdTagInfo | None:
        self.asked.append(id_tag)
        return None


@pytest.mark.parametrize("status", [ACCEPTED, BLOCKED])
async def test_online_without_pre_authorize_the_csms_decides_a_listed_tag(
    store: Store, status: AuthorizationStatus
) -> None:
    rig = make_rig(store)  # LocalPreAuthorize false (default)
    other = BLOCKED if status is ACCEPTED else ACCEPTED
    rig.csms.verdicts = {"TAG": other}
    await install(rig, ("TAG", status, None))

    assert await rig.authorizer.authorize("tag") is other
    assert rig.csms.asked == ["tag"]
    assert await rig.cache.size() == 0, "list identifiers never enter the cache"


async def test_unanswered_authorize_of_a_listed_tag_falls_back_to_the_entry(
    store: Store,
) -> None:
    rig = make_rig(store, allow_offline_tx_for_unknown_id=True)
    rig.authorizer.attach(SilentCsms())
    await rig.cache.put("TAG", ACCEPTED, None, None, NOW)  # stale: must not decide
    await install(rig, ("TAG", BLOCKED, None), ("OK", ACCEPTED, None))

    assert await rig.authorizer.authorize("TAG") is BLOCKED
    assert await rig.authorizer.authorize("OK") is ACCEPTED


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        pytest.param((ACCEPTED, None), ACCEPTED, id="accepted"),
        pytest.param((BLOCKED, None), BLOCKED, id="blocked"),
        pytest.param((ACCEPTED, NOW), EXPIRED, id="expired-by-date"),
    ],
)
async def test_offline_the_entry_decides_never_the_cache(
    store: Store, entry: tuple[AuthorizationStatus, datetime | None], expected: AuthorizationStatus
) -> None:
    rig = make_rig(store, allow_offline_tx_for_unknown_id=True)
    rig.csms.online = False
    cached = BLOCKED if entry[0] is ACCEPTED and entry[1] is None else ACCEPTED
    await rig.cache.put("TAG", cached, None, None, NOW)
    await install(rig, ("TAG", *entry))

    assert await rig.authorizer.authorize("TAG") is expected


async def test_offline_local_authorize_offline_false_refuses_even_listed_tags(
    store: Store,
) -> None:
    rig = make_rig(store, local_authorize_offline=False, allow_offline_tx_for_unknown_id=True)
    rig.csms.online = False
    await install(rig, ("TAG", ACCEPTED, None), ("BAD", BLOCKED, None))

    assert await rig.authorizer.authorize("TAG") is INVALID  # listed: not "unknown"
    assert await rig.authorizer.authorize("BAD") is BLOCKED
    assert await rig.authorizer.authorize("STRANGER") is ACCEPTED  # unknown: allowed


async def test_verdicts_carry_the_parent_from_list_cache_and_csms(store: Store) -> None:
    rig = make_rig(store, local_pre_authorize=True)
    batch = [ListEntry("LISTED", IdTagInfo(ACCEPTED, None, "FLEET-L"))]
    assert await rig.local_list.update(1, UpdateType.FULL, batch) is UpdateStatus.ACCEPTED
    await rig.cache.put("CACHED", ACCEPTED, None, "FLEET-C", NOW)

    assert (await rig.authorizer.authorize_info("LISTED")).parent_id_tag == "FLEET-L"
    assert (await rig.authorizer.authorize_info("CACHED")).parent_id_tag == "FLEET-C"
    rig.authorizer.attach(FleetCsms())
    assert (await rig.authorizer.authorize_info("NEW")).parent_id_tag == "FLEET-N"
    assert (await rig.authorizer.authorize_info("LISTED")).parent_id_tag == "FLEET-L"
    rig.csms.online = False
    rig.authorizer.attach(rig.csms)
    assert (await rig.authorizer.authorize_info("NEW")).parent_id_tag == "FLEET-N"  # cached


@dataclass
class FleetCsms(FakeCsms):
    """Accepts every tag as a member of FLEET-N."""

    async def authorize_online(self, id_tag: str) -> IdTagInfo | None:
        self.asked.append(id_tag)
        return IdTagInfo(ACCEPTED, None, "FLEET-N")
