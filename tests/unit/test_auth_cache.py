"""Authorization cache: case-insensitive tags, expiry, eviction, persistence."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.authorization.cache import AuthCache
from agent.events import AuthorizationStatus
from agent.persistence.store import Store

NOW = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path)
    yield opened
    await opened.close()


@pytest.fixture
def cache(store: Store) -> AuthCache:
    return AuthCache(store)


async def test_absent_tag_is_none(cache: AuthCache) -> None:
    assert await cache.get("04A2B3C4", NOW) is None
    assert await cache.size() == 0


async def test_tags_match_case_insensitively(cache: AuthCache) -> None:
    await cache.put("04a2b3c4", AuthorizationStatus.ACCEPTED, None, "parent", NOW)
    assert await cache.get("04A2B3C4", NOW) is AuthorizationStatus.ACCEPTED
    assert await cache.get("04a2B3c4", NOW) is AuthorizationStatus.ACCEPTED
    await cache.put("04A2B3C4", AuthorizationStatus.BLOCKED, None, None, NOW)
    assert await cache.get("04a2b3c4", NOW) is AuthorizationStatus.BLOCKED
    assert await cache.size() == 1


async def test_entry_is_expired_once_its_expiry_has_passed(cache: AuthCache) -> None:
    expiry = NOW + timedelta(hours=1)
    await cache.put("TAG", AuthorizationStatus.ACCEPTED, expiry, None, NOW)
    assert await cache.get("TAG", expiry - timedelta(microseconds=1)) is (
        AuthorizationStatus.ACCEPTED
    )
    assert await cache.get("TAG", expiry) is AuthorizationStatus.EXPIRED
    assert await cache.get("TAG", expiry + timedelta(days=1)) is AuthorizationStatus.EXPIRED


async def test_expiry_in_another_zone_is_compared_as_an_instant(cache: AuthCache) -> None:
    plus_two = timezone(timedelta(hours=2))
    expiry = datetime(2026, 11, 24, 20, 30, tzinfo=plus_two)  # 18:30 UTC, before NOW
    await cache.put("TAG", AuthorizationStatus.ACCEPTED, expiry, None, NOW)
    assert await cache.get("TAG", NOW) is AuthorizationStatus.EXPIRED
    assert await cache.get("TAG", NOW - timedelta(hours=1)) is AuthorizationStatus.ACCEPTED


async def test_entry_without_expiry_keeps_its_status(cache: AuthCache) -> None:
    await cache.put("TAG", AuthorizationStatus.INVALID, None, None, NOW)
    assert await cache.get("TAG", NOW + timedelta(days=3650)) is AuthorizationStatus.INVALID


async def test_naive_datetimes_are_refused(cache: AuthCache) -> None:
    naive = datetime(2026, 11, 24, 19, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        await cache.get("TAG", naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        await cache.put("TAG", AuthorizationStatus.ACCEPTED, naive, None, NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        await cache.put("TAG", AuthorizationStatus.ACCEPTED, None, None, naive)
    assert await cache.size() == 0


async def test_clear_empties_the_cache(cache: AuthCache) -> None:
    for tag in ("A", "B", "C"):
        await cache.put(tag, AuthorizationStatus.ACCEPTED, None, None, NOW)
    assert await cache.size() == 3
    await cache.clear()
    assert await cache.size() == 0
    assert await cache.get("A", NOW) is None


async def test_full_cache_evicts_the_least_recently_updated(store: Store) -> None:
    cache = AuthCache(store, max_entries=3)
    for minute, tag in enumerate(["A", "B", "C"]):
        await cache.put(
            tag, AuthorizationStatus.ACCEPTED, None, None, NOW + timedelta(minutes=minute)
        )
    await cache.put("A", AuthorizationStatus.ACCEPTED, None, None, NOW + timedelta(minutes=5))
    await cache.put("D", AuthorizationStatus.ACCEPTED, None, None, NOW + timedelta(minutes=6))
    assert await cache.size() == 3
    assert await cache.get("B", NOW) is None  # oldest update went
    for tag in ("A", "C", "D"):
        assert await cache.get(tag, NOW) is AuthorizationStatus.ACCEPTED
    with pytest.raises(ValueError):
        AuthCache(store, max_entries=0)


async def test_entries_survive_reopen(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    await AuthCache(store).put(
        "TAG", AuthorizationStatus.BLOCKED, NOW + timedelta(days=1), None, NOW
    )
    await store.close()
    store = await Store.open(tmp_path)
    try:
        assert await AuthCache(store).get("tag", NOW) is AuthorizationStatus.BLOCKED
    finally:
        await store.close()
