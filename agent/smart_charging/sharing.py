"""Dividing the station-wide limit (ChargePointMaxProfile) between EVSEs. Pure.

ChargePointMaxProfile bounds the *sum* of the currents of all EVSEs (OCPP 1.6 §3.13.1,
REFERENCE 3.2). The split implemented here, in amperes per phase:

* **Who shares.** The EVSEs that draw from the cap, in priority order: the caller
  passes the EVSEs with a running transaction, earliest transaction first.
* **Max-min fair ("water filling").** Every sharing EVSE gets an equal share of the
  cap, but never more than its own limit (hardware rating, its own composite); what
  an EVSE cannot use is redistributed equally among the others.
* **6 A floor.** Below 6 A no PWM can be signalled (IEC 61851-1 A.8; the EVSE pauses
  instead: SuspendedEVSE). An EVSE whose own limit is below 6 A takes nothing from the
  cap. When the cap cannot give every sharing EVSE 6 A, the *latest* one in priority
  order is paused (share 0) and the split is made again among the rest: first come,
  first served, so a running session is never paused by a newcomer unless it could not
  get 6 A anyway.
* **Rounding.** Shares are rounded down to 0.1 A (the resolution of an OCPP limit), so
  the sum never exceeds the cap.

An EVSE without a transaction gets the share it *would* get if its transaction started
now (``prospective_share``): that is the limit its first PWM signals, so a new session
never starts above its share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction

MIN_CURRENT_A = 6.0
"""The lowest current a PWM duty can signal (IEC 61851-1 Table A.8)."""


def share_station_limit(
    cap_a: float | None,
    own_limits_a: Mapping[int, float],
    priority: Sequence[int],
    *,
    min_current_a: float = MIN_CURRENT_A,
) -> dict[int, float]:
    """Split ``cap_a`` between the EVSEs in ``priority`` (rules: module docstring).

    Args:
        cap_a: The station limit in force, A per phase; None = no station limit.
        own_limits_a: Each EVSE's own limit, A per phase (must hold every id of
            ``priority``).
        priority: The sharing EVSE ids, highest priority first (no duplicates).
        min_current_a: Below this an EVSE cannot charge and is paused.

    Returns:
        The limit of every EVSE in ``priority``, A per phase: never above its own limit,
        0.0 for an EVSE paused to make room, its own limit (< ``min_current_a``) for an
        EVSE that cannot charge anyway. The shares of the EVSEs that can charge sum to
        at most ``cap_a``.

    Raises:
        ValueError: ``cap_a`` is negative, or an id of ``priority`` has no own limit or
            appears twice.
    """
    if len(set(priority)) != len(priority):
        raise ValueError(f"duplicate EVSE ids in {priority}")
    missing = [i for i in priority if i not in own_limits_a]
    if missing:
        raise ValueError(f"no own limit for EVSE {missing}")
    if cap_a is None:
        return {i: own_limits_a[i] for i in priority}
    if cap_a < 0:
        raise ValueError(f"cap_a must be >= 0, got {cap_a}")
    result = {i: own_limits_a[i] for i in priority if own_limits_a[i] < min_current_a}
    candidates = [i for i in priority if i not in result]
    while candidates:
        shares = _water_fill(Fraction(str(cap_a)), {i: own_limits_a[i] for i in candidates})
        if all(shares[i] >= min_current_a for i in candidates):
            result.update(shares)
            break
        result[candidates.pop()] = 0.0  # the latest pauses; the rest share again
    return {i: result[i] for i in priority}


def prospective_share(
    cap_a: float | None,
    own_limits_a: Mapping[int, float],
    priority: Sequence[int],
    newcomer: int,
    *,
    min_current_a: float = MIN_CURRENT_A,
) -> float:
    """The share ``newcomer`` would get if its transaction started now (last in priority).

    Args:
        cap_a: As ``share_station_limit``.
        own_limits_a: As ``share_station_limit``; must hold ``newcomer`` too.
        priority: The EVSEs sharing now (``newcomer`` is not one of them).
        newcomer: The EVSE without a transaction.
        min_current_a: As ``share_station_limit``.

    Returns:
        Its limit, A per phase (0.0 when it would have to wait for room).

    Raises:
        ValueError: As ``share_station_limit``.
    """
    others = [i for i in priority if i != newcomer]
    shares = share_station_limit(
        cap_a, own_limits_a, [*others, newcomer], min_current_a=min_current_a
    )
    return shares[newcomer]


def _water_fill(cap: Fraction, demands_a: Mapping[int, float]) -> dict[int, float]:
    """Max-min fair split of ``cap`` among ``demands_a``, each rounded down to 0.1."""
    remaining = cap
    out: dict[int, float] = {}
    pending = sorted(demands_a, key=lambda i: (demands_a[i], i))
    while pending:
        level = remaining / len(pending)
        smallest = pending[0]
        demand = Fraction(str(demands_a[smallest]))
        if demand <= level:
            out[smallest] = demands_a[smallest]
            remaining -= demand
            pending.pop(0)
            continue
        for i in pending:  # all the rest are limited by the level
            out[i] = _floor_tenth(level)
        break
    return out


def _floor_tenth(value: Fraction) -> float:
    return float(Fraction(math.floor(value * 10), 10))


__all__ = ["MIN_CURRENT_A", "prospective_share", "share_station_limit"]
