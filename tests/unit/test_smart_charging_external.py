"""External constraints (2.0.1 ChargingStationExternalConstraints) in the neutral engine:
they cap the composite like the station max (evse 0) or the EVSE's own limit (evse N),
and no CSMS clear request removes them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.smart_charging import (
    ChargingProfile,
    ChargingSchedule,
    ClearCriteria,
    CompositePeriod,
    Kind,
    ProfileStore,
    Purpose,
    RateUnit,
    SchedulePeriod,
    composite_schedule,
    limit_at,
    validate,
)

START = datetime(2024, 6, 3, 7, 30, tzinfo=UTC)
EXT, CPMAX, TXDEF = Purpose.EXTERNAL, Purpose.CHARGE_POINT_MAX, Purpose.TX_DEFAULT


def absolute(
    profile_id: int,
    purpose: Purpose,
    *rows: tuple[int, float],
    evse_id: int = 0,
    stack_level: int = 0,
) -> ChargingProfile:
    return ChargingProfile(
        profile_id=profile_id,
        stack_level=stack_level,
        purpose=purpose,
        kind=Kind.ABSOLUTE,
        schedule=ChargingSchedule(
            RateUnit.A, tuple(SchedulePeriod(s, limit) for s, limit in rows), START
        ),
        evse_id=evse_id,
    )


STATION_EXT = absolute(1, EXT, (0, 20.0), (600, 12.0))
EVSE_EXT = absolute(2, EXT, (0, 14.0), evse_id=1)
STATION_MAX = absolute(3, CPMAX, (0, 16.0))
TX_DEFAULT = absolute(4, TXDEF, (0, 30.0), (1200, 10.0))


@pytest.mark.parametrize(
    ("profiles", "evse_id", "include_station_max", "expected"),
    [
        # station-wide external constraint caps like the station max
        ((STATION_EXT, TX_DEFAULT), 1, True, [(0, 20.0), (600, 12.0), (1200, 10.0)]),
        ((STATION_EXT, STATION_MAX, TX_DEFAULT), 1, True, [(0, 16.0), (600, 12.0), (1200, 10.0)]),
        # ... and is left out with it when the caller shares the station limit itself
        ((STATION_EXT, TX_DEFAULT), 1, False, [(0, 30.0), (1200, 10.0)]),
        # an EVSE's own external constraint stays in its own limit
        ((EVSE_EXT, TX_DEFAULT), 1, False, [(0, 14.0), (1200, 10.0)]),
        ((EVSE_EXT, TX_DEFAULT), 2, True, [(0, 30.0), (1200, 10.0)]),  # another EVSE
        # the station limit (evse 0) is the station max and station-wide constraints
        ((STATION_EXT, STATION_MAX, EVSE_EXT), 0, True, [(0, 16.0), (600, 12.0)]),
    ],
)
def test_external_constraints_cap_the_composite(
    profiles: tuple[ChargingProfile, ...],
    evse_id: int,
    include_station_max: bool,
    expected: list[tuple[int, float]],
) -> None:
    schedule = composite_schedule(
        profiles,
        evse_id=evse_id,
        start=START,
        duration_s=3600,
        rate_unit=RateUnit.A,
        tx_start=START,
        nominal_voltage_v=230,
        include_station_max=include_station_max,
    )
    assert schedule.periods == tuple(CompositePeriod(s, limit, 3) for s, limit in expected)


def test_highest_external_stack_level_wins() -> None:
    higher = absolute(5, EXT, (0, 25.0), stack_level=1)
    found = limit_at(
        (STATION_EXT, higher), evse_id=1, at=START, tx_start=None, nominal_voltage_v=230
    )
    assert found is not None and found.limit == 25.0


@pytest.mark.parametrize(
    "criteria",
    [
        ClearCriteria(),
        ClearCriteria(profile_id=1),
        ClearCriteria(purpose=EXT),
        ClearCriteria(evse_id=0),
    ],
)
def test_csms_clear_requests_never_remove_external_constraints(criteria: ClearCriteria) -> None:
    store, removed = ProfileStore((STATION_EXT, STATION_MAX)).clear(criteria)
    assert STATION_EXT in store.profiles
    assert 1 not in removed


def test_the_station_clears_its_own_constraints() -> None:
    store, removed = ProfileStore((STATION_EXT, STATION_MAX)).clear(
        ClearCriteria(purpose=EXT, external=True)
    )
    assert (store.profiles, removed) == ((STATION_MAX,), (1,))


def test_external_constraints_validate_on_the_station_and_on_evses() -> None:
    def problems(profile: ChargingProfile) -> list[str]:
        return validate(
            profile,
            evse_count=2,
            has_transaction_on=lambda _: False,
            supported_units=(RateUnit.A, RateUnit.W),
            max_periods=24,
            max_stack_level=10,
        )

    assert problems(STATION_EXT) == []
    assert problems(EVSE_EXT) == []
    assert problems(absolute(6, EXT, (0, 10.0), evse_id=3))  # unknown EVSE
