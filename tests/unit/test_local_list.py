"""Local Authorization List: Full/Differential updates, versions, limits, expiry, durability."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.authorization.authorizer import IdTagInfo
from agent.authorization.cache import AuthCache
from agent.authorization.local_list import (
    ListEntry,
    LocalAuthList,
    UpdateStatus,
    UpdateType,
)
from agent.events import AuthorizationStatus
from agent.persistence.migrations import MIGRATIONS
from agent.persistence.store import Store

NOW = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)
FULL = UpdateType.FULL
DIFF = UpdateType.DIFFERENTIAL
ACCEPTED = AuthorizationStatus.ACCEPTED
BLOCKED = AuthorizationStatus.BLOCKED
EXPIRED = AuthorizationStatus.EXPIRED
INVALID = AuthorizationStatus.INVALID


def put(
    tag: str,
    status: AuthorizationStatus = ACCEPTED,
    expiry: datetime | None = None,
    parent_id_tag: str | None = None,
) -> ListEntry:
    return ListEntry(tag, IdTagInfo(status, expiry, parent_id_tag))


def remove(tag: str) -> ListEntry:
    return ListEntry(tag, None)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path)
    yield opened
    await opened.close()


@pytest.fixture
def local_list(store: Store) -> LocalAuthList:
    return LocalAuthList(store, max_length=5, send_max_length=4)


async def contents(local_list: LocalAuthList) -> dict[str, AuthorizationStatus]:
    """Every listed tag (upper case) with its status, read through the public API."""
    found = {}
    for tag in ("A", "B", "C", "D", "E", "F", "G"):
        info = await local_list.get(tag, NOW)
        if info is not None:
            found[tag] = info.status
    assert len(found) == await local_list.size()
    return found


async def test_a_new_list_is_empty_at_version_zero(local_list: LocalAuthList) -> None:
    assert await local_list.version() == 0
    assert await local_list.size() == 0
    assert await local_list.get("A", NOW) is None


# Each case: (initial Full update or None, the update, expected status, version after,
# contents after).
UPDATE_CASES = [
    pytest.param(
        None,
        (1, FULL, [put("A"), put("B", BLOCKED)]),
        UpdateStatus.ACCEPTED,
        1,
        {"A": ACCEPTED, "B": BLOCKED},
        id="full-installs",
    ),
    pytest.param(
        (3, [put("A"), put("B")]),
        (2, FULL, [put("C", INVALID)]),
        UpdateStatus.ACCEPTED,
        2,
        {"C": INVALID},
        id="full-replaces-at-any-version",
    ),
    pytest.param(
        (3, [put("A"), put("B")]),
        (0, FULL, []),
        UpdateStatus.ACCEPTED,
        0,
        {},
        id="empty-full-clears",
    ),
    pytest.param(
        (3, [put("A"), put("B")]),
        (4, DIFF, [put("B", BLOCKED), put("C")]),
        UpdateStatus.ACCEPTED,
        4,
        {"A": ACCEPTED, "B": BLOCKED, "C": ACCEPTED},
        id="differential-adds-and-replaces",
    ),
    pytest.param(
        (3, [put("A"), put("B")]),
        (4, DIFF, [remove("A"), remove("Z")]),
        UpdateStatus.ACCEPTED,
        4,
        {"B": ACCEPTED},
        id="differential-entry-without-info-removes",
    ),
    pytest.param(
        None,
        (1, DIFF, [put("A")]),
        UpdateStatus.ACCEPTED,
        1,
        {"A": ACCEPTED},
        id="differential-onto-no-list",
    ),
    pytest.param(
        (3, [put("A")]),
        (3, DIFF, [put("B")]),
        UpdateStatus.VERSION_MISMATCH,
        3,
        {"A": ACCEPTED},
        id="differential-equal-version-mismatch",
    ),
    pytest.param(
        (3, [put("A")]),
        (2, DIFF, [remove("A")]),
        UpdateStatus.VERSION_MISMATCH,
        3,
        {"A": ACCEPTED},
        id="differential-lower-version-mismatch",
    ),
    pytest.param(
        None,
        (0, FULL, [put("A")]),
        UpdateStatus.FAILED,
        0,
        {},
        id="non-empty-full-needs-positive-version",
    ),
    pytest.param(
        (3, [put("A")]),
        (-1, FULL, []),
        UpdateStatus.FAILED,
        3,
        {"A": ACCEPTED},
        id="negative-version",
    ),
    pytest.param(
        (3, [put("A")]),
        (4, FULL, [put("B"), remove("C")]),
        UpdateStatus.FAILED,
        3,
        {"A": ACCEPTED},
        id="full-entry-without-info",
    ),
    pytest.param(
        (3, [put("A")]),
        (4, DIFF, [put("b"), remove("B")]),
        UpdateStatus.FAILED,
        3,
        {"A": ACCEPTED},
        id="tag-named-twice-any-case",
    ),
    pytest.param(
        (3, [put("A")]),
        (4, DIFF, [put("")]),
        UpdateStatus.FAILED,
        3,
        {"A": ACCEPTED},
        id="empty-tag",
    ),
    pytest.param(
        (3, [put("A")]),
        (4, FULL, [put("A"), put("B"), put("C"), put("D"), put("E")]),
        UpdateStatus.FAILED,
        3,
        {"A": ACCEPTED},
        id="more-than-send-max-length",
    ),
    pytest.param(
        (3, [put("A"), put("B"), put("C"), put("D")]),
        (4, DIFF, [put("E"), put("F")]),
        UpdateStatus.FAILED,
        3,
        {"A": ACCEPTED, "B": ACCEPTED, "C": ACCEPTED, "D": ACCEPTED},
        id="list-would-exceed-max-length",
    ),
    pytest.param(
        (3, [put("A"), put("B"), put("C"), put("D")]),
        (4, DIFF, [remove("A"), put("E"), put("F")]),
        UpdateStatus.ACCEPTED,
        4,
        {"B": ACCEPTED, "C": ACCEPTED, "D": ACCEPTED, "E": ACCEPTED, "F": ACCEPTED},
        id="max-length-counts-removals",
    ),
    pytest.param(
        (3, [put("A")]),
        (4, DIFF, [put("B", expiry=datetime(2027, 1, 1))]),
        UpdateStatus.FAILED,
        3,
        {"A": ACCEPTED},
        id="naive-expiry",
    ),
]


@pytest.mark.parametrize(("initial", "update", "status", "version", "after"), UPDATE_CASES)
async def test_update_rules(
    local_list: LocalAuthList,
    initial: tuple[int, list[ListEntry]] | None,
    update: tuple[int, UpdateType, list[ListEntry]],
    status: UpdateStatus,
    version: int,
    after: dict[str, AuthorizationStatus],
) -> None:
    if initial is not None:
        assert await local_list.update(initial[0], FULL, initial[1]) is UpdateStatus.ACCEPTED
    assert await local_list.update(*update) is status
    assert await local_list.version() == version
    assert await contents(local_list) == after


async def test_tags_match_case_insensitively(local_list: LocalAuthList) -> None:
    assert await local_list.update(1, FULL, [put("04a2b3c4", BLOCKED)]) is UpdateStatus.ACCEPTED
    for spelling in ("04A2B3C4", "04a2b3c4", "04A2b3C4"):
        info = await local_list.get(spelling, NOW)
        assert info is not None
        assert info.status is BLOCKED
    assert await local_list.update(2, DIFF, [remove("04A2B3C4")]) is UpdateStatus.ACCEPTED
    assert await local_list.get("04a2b3c4", NOW) is None


async def test_an_entry_past_its_expiry_reads_expired(local_list: LocalAuthList) -> None:
    expiry = NOW + timedelta(hours=1)
    entry = put("A", expiry=expiry, parent_id_tag="P1")
    assert await local_list.update(1, FULL, [entry]) is UpdateStatus.ACCEPTED

    before = await local_list.get("A", expiry - timedelta(microseconds=1))
    assert before == IdTagInfo(ACCEPTED, expiry, "P1")
    at = await local_list.get("a", expiry)
    assert at == IdTagInfo(EXPIRED, expiry, "P1")
    later = await local_list.get("A", expiry + timedelta(days=1))
    assert later is not None
    assert later.status is EXPIRED


async def test_naive_now_is_refused(local_list: LocalAuthList) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await local_list.get("A", datetime(2026, 11, 24, 19, 0))


async def test_limits_must_be_positive(store: Store) -> None:
    with pytest.raises(ValueError, match="max_length"):
        LocalAuthList(store, max_length=0)
    with pytest.raises(ValueError, match="send_max_length"):
        LocalAuthList(store, send_max_length=0)
    defaults = LocalAuthList(store)
    assert (defaults.max_length, defaults.send_max_length) == (42, 42)


async def test_the_list_survives_reopening_the_store(tmp_path: Path) -> None:
    expiry = datetime(2027, 1, 1, tzinfo=UTC)
    store = await Store.open(tmp_path)
    try:
        local_list = LocalAuthList(store)
        assert await local_list.update(7, FULL, [put("A", expiry=expiry), put("B", BLOCKED)]) is (
            UpdateStatus.ACCEPTED
        )
        assert await local_list.update(8, DIFF, [remove("B")]) is UpdateStatus.ACCEPTED
    finally:
        await store.close()

    store = await Store.open(tmp_path)
    try:
        local_list = LocalAuthList(store)
        assert await local_list.version() == 8
        assert await local_list.size() == 1
        assert await local_list.get("a", NOW) == IdTagInfo(ACCEPTED, expiry, None)
    finally:
        await store.close()


async def test_a_failing_write_leaves_the_old_list_whole(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    local_list = LocalAuthList(store)
    assert await local_list.update(1, FULL, [put("A"), put("B")]) is UpdateStatus.ACCEPTED

    # Make the very last statement of the update (the version bump) fail, after the
    # entries were already deleted and rewritten inside the transaction.
    def arm(conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TRIGGER boom BEFORE UPDATE ON local_auth_list_version "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )

    await store.run(arm)
    assert await local_list.update(2, FULL, [put("C")]) is UpdateStatus.FAILED
    assert "disk on fire" in caplog.text
    assert await local_list.version() == 1
    assert await contents(local_list) == {"A": ACCEPTED, "B": ACCEPTED}


async def test_a_v1_database_is_upgraded_to_an_empty_list_keeping_its_data(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path, migrations=MIGRATIONS[:1])
    try:
        await AuthCache(store).put("CACHED", ACCEPTED, None, None, NOW)
    finally:
        await store.close()

    store = await Store.open(tmp_path)
    try:
        local_list = LocalAuthList(store)
        assert await local_list.version() == 0
        assert await local_list.size() == 0
        assert await AuthCache(store).get("CACHED", NOW) is ACCEPTED
        assert await local_list.update(1, DIFF, [put("A")]) is UpdateStatus.ACCEPTED
    finally:
        await store.close()
