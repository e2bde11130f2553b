"""Sharing the station limit (ChargePointMaxProfile) between EVSEs: tables and hypothesis
properties (the sum never exceeds the cap, nobody gets more than it can use, nobody is
paused while room is left, the split is max-min fair)."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from agent.smart_charging.sharing import (
    MIN_CURRENT_A,
    prospective_share,
    share_station_limit,
)


@pytest.mark.parametrize(
    ("cap_a", "own", "priority", "expected"),
    [
        pytest.param(None, {1: 32.0, 2: 16.0}, [1, 2], {1: 32.0, 2: 16.0}, id="no-cap"),
        pytest.param(32.0, {1: 32.0, 2: 32.0}, [1, 2], {1: 16.0, 2: 16.0}, id="equal-split"),
        pytest.param(32.0, {1: 32.0}, [1], {1: 32.0}, id="alone-gets-all"),
        pytest.param(40.0, {1: 10.0, 2: 32.0}, [1, 2], {1: 10.0, 2: 30.0}, id="unused-given-on"),
        pytest.param(
            16.0,
            {1: 32.0, 2: 32.0, 3: 32.0},
            [1, 2, 3],
            {1: 8.0, 2: 8.0, 3: 0.0},
            id="latest-pauses-below-6a",
        ),
        pytest.param(10.0, {1: 32.0, 2: 32.0}, [2, 1], {2: 10.0, 1: 0.0}, id="first-come"),
        pytest.param(5.0, {1: 32.0}, [1], {1: 0.0}, id="cap-below-6a-pauses-all"),
        pytest.param(32.0, {1: 4.0, 2: 32.0}, [1, 2], {1: 4.0, 2: 32.0}, id="own-below-6a"),
        pytest.param(
            10.0,
            {1: 32.0, 2: 32.0, 3: 32.0},
            [1, 2, 3],
            {1: 10.0, 2: 0.0, 3: 0.0},
            id="only-one-fits",
        ),
        pytest.param(
            20.0,
            {1: 32.0, 2: 32.0, 3: 32.0},
            [1, 2, 3],
            {1: 6.6, 2: 6.6, 3: 6.6},
            id="rounded-down-to-0.1",
        ),
    ],
)
def test_share_table(
    cap_a: float | None,
    own: dict[int, float],
    priority: list[int],
    expected: dict[int, float],
) -> None:
    assert share_station_limit(cap_a, own, priority) == expected


def test_a_newcomer_gets_the_share_it_will_have_once_started() -> None:
    own = {1: 32.0, 2: 32.0}
    assert prospective_share(32.0, own, [1], 2) == 16.0
    assert share_station_limit(32.0, own, [1, 2])[2] == 16.0
    assert prospective_share(10.0, own, [1], 2) == 0.0  # no room: it waits (SuspendedEVSE)
    assert prospective_share(None, own, [1], 2) == 32.0
    assert prospective_share(32.0, {1: 32.0}, [], 1) == 32.0


@pytest.mark.parametrize(
    ("cap_a", "own", "priority"),
    [
        pytest.param(-1.0, {1: 10.0}, [1], id="negative-cap"),
        pytest.param(10.0, {1: 10.0}, [1, 1], id="duplicate"),
        pytest.param(10.0, {1: 10.0}, [1, 2], id="missing-own-limit"),
    ],
)
def test_bad_arguments_are_refused(
    cap_a: float, own: dict[int, float], priority: list[int]
) -> None:
    with pytest.raises(ValueError):
        share_station_limit(cap_a, own, priority)


limits = st.integers(0, 800).map(lambda tenths: tenths / 10)


@settings(max_examples=300, deadline=None)
@given(
    cap_a=limits,
    own_list=st.lists(limits, min_size=1, max_size=6),
    data=st.data(),
)
def test_share_properties(cap_a: float, own_list: list[float], data: st.DataObject) -> None:
    own = {i + 1: v for i, v in enumerate(own_list)}
    priority = data.draw(st.permutations(list(own)))
    shares = share_station_limit(cap_a, own, priority)
    assert list(shares) == priority
    charging = {i: a for i, a in shares.items() if a >= MIN_CURRENT_A}
    # the EVSEs that can charge never exceed the cap together, nor their own limits
    assert sum(charging.values()) <= cap_a + 1e-9
    assert all(shares[i] <= own[i] for i in priority)
    # an EVSE that cannot charge on its own never takes anything
    for i in priority:
        if own[i] < MIN_CURRENT_A:
            assert shares[i] == own[i]
    paused = [i for i in priority if own[i] >= MIN_CURRENT_A and shares[i] < MIN_CURRENT_A]
    assert all(shares[i] == 0.0 for i in paused)
    # pausing goes by priority: nobody paused before someone charging of lower priority
    if paused:
        first_paused = min(priority.index(i) for i in paused)
        assert all(priority.index(i) < first_paused for i in charging)
        # and only because 6 A for one more did not fit
        assert cap_a < MIN_CURRENT_A * (len(charging) + 1)
    # max-min fair: an EVSE below its own limit gets at least as much as any other
    # (up to the 0.1 A rounding)
    for i, a in charging.items():
        if a < own[i] - 1e-9:
            assert all(a >= b - 0.1 - 1e-9 for b in charging.values())
    # no cap left unused while someone charging wants more (up to the rounding)
    if any(a < own[i] - 1e-9 for i, a in charging.items()):
        assert cap_a - sum(charging.values()) < 0.1 * len(charging) + 1e-9
