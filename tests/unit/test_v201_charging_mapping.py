"""The pure 2.0.1 smart-charging projection (agent.ocpp.v201.charging), as tables."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from agent.ocpp.v201 import charging
from agent.smart_charging import (
    ChargingProfile,
    ChargingSchedule,
    ClearCriteria,
    CompositePeriod,
    CompositeSchedule,
    Kind,
    Purpose,
    RateUnit,
    Recurrency,
    SchedulePeriod,
)

T0 = datetime(2024, 6, 3, 7, 30, tzinfo=UTC)
T1 = datetime(2024, 6, 3, 8, 30, tzinfo=UTC)
T2 = datetime(2024, 6, 3, 18, 0, tzinfo=UTC)


def raw(**overrides: Any) -> dict[str, Any]:
    """A snake_case ChargingProfileType as the ocpp library hands it to a handler."""
    base: dict[str, Any] = {
        "id": 7,
        "stack_level": 1,
        "charging_profile_purpose": "TxDefaultProfile",
        "charging_profile_kind": "Absolute",
        "charging_schedule": [
            {
                "id": 70,
                "charging_rate_unit": "A",
                "start_schedule": "2024-06-03T07:30:00Z",
                "charging_schedule_period": [
                    {"start_period": 0, "limit": Decimal("10.5")},
                    {"start_period": 3600, "limit": 8, "number_phases": 1},
                ],
            }
        ],
    }
    return base | overrides


def neutral(
    profile_id: int = 7,
    *,
    purpose: Purpose = Purpose.TX_DEFAULT,
    evse_id: int = 0,
    stack_level: int = 1,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
    transaction_id: str | None = None,
) -> ChargingProfile:
    return ChargingProfile(
        profile_id=profile_id,
        stack_level=stack_level,
        purpose=purpose,
        kind=Kind.RELATIVE,
        schedule=ChargingSchedule(RateUnit.A, (SchedulePeriod(0, 16.0),)),
        evse_id=evse_id,
        valid_from=valid_from,
        valid_to=valid_to,
        transaction_id=transaction_id,
    )


# ------------------------------------------------------------------ profile_from_201


def test_profile_from_201_maps_every_field() -> None:
    got = charging.profile_from_201(
        1,
        raw(
            charging_profile_purpose="ChargingStationMaxProfile",
            charging_profile_kind="Recurring",
            recurrency_kind="Daily",
            valid_from="2024-06-03T08:30:00Z",
            valid_to="2024-06-03T18:00:00Z",
        ),
    )
    assert got == ChargingProfile(
        profile_id=7,
        stack_level=1,
        purpose=Purpose.CHARGE_POINT_MAX,
        kind=Kind.RECURRING,
        schedule=ChargingSchedule(
            RateUnit.A,
            (SchedulePeriod(0, 10.5), SchedulePeriod(3600, 8.0, 1)),
            start_schedule=T0,
        ),
        evse_id=1,
        recurrency=Recurrency.DAILY,
        valid_from=T1,
        valid_to=T2,
    )


def test_tx_profile_keeps_the_station_transaction_id() -> None:
    got = charging.profile_from_201(
        1, raw(charging_profile_purpose="TxProfile", transaction_id="a-1")
    )
    assert (got.purpose, got.transaction_id) == (Purpose.TX, "a-1")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (raw(charging_profile_purpose="ChargingStationExternalConstraints"), "InvalidProfile"),
        (raw(charging_schedule=[]), "InvalidSchedule"),
        (raw(charging_schedule=[raw()["charging_schedule"][0]] * 2), "TooManyElements"),
        ({k: v for k, v in raw().items() if k != "stack_level"}, "MissingParam"),
        (raw(charging_profile_kind="Sometimes"), "InvalidValue"),
        (raw(charging_profile_purpose="NoSuchPurpose"), "InvalidValue"),
        (raw(id="7"), "InvalidValue"),
        (raw(valid_from="yesterday"), "InvalidValue"),
        (raw(transaction_id=5), "InvalidValue"),
    ],
)
def test_profile_from_201_refusals(body: dict[str, Any], reason: str) -> None:
    with pytest.raises(charging.ProfileRefused) as refused:
        charging.profile_from_201(1, body)
    assert refused.value.reason_code == reason
    assert refused.value.detail


# ------------------------------------------------------------------ rules


@pytest.mark.parametrize(
    ("profile", "running", "problem"),
    [
        (neutral(), None, None),  # not a TxProfile
        (neutral(purpose=Purpose.TX, evse_id=1), "t1", "transaction_id: a TxProfile needs one"),
        (neutral(purpose=Purpose.TX, evse_id=1, transaction_id="t1"), "t1", None),
        (
            neutral(purpose=Purpose.TX, evse_id=1, transaction_id="t0"),
            "t1",
            "transaction_id: t0 is not running on EVSE 1",
        ),
        # no transaction at all: validation reports it (TxNotFound)
        (neutral(purpose=Purpose.TX, evse_id=1, transaction_id="t0"), None, None),
    ],
)
def test_transaction_problem(
    profile: ChargingProfile, running: str | None, problem: str | None
) -> None:
    assert charging.transaction_problem(profile, running) == problem


@pytest.mark.parametrize(
    ("installed", "new", "conflicts"),
    [
        ([neutral(1)], neutral(1), False),  # same id: replaced (K01.FR.05)
        ([neutral(1)], neutral(2), True),  # K01.FR.06
        ([neutral(1)], neutral(2, stack_level=2), False),
        ([neutral(1)], neutral(2, evse_id=1), False),
        ([neutral(1)], neutral(2, purpose=Purpose.CHARGE_POINT_MAX), False),
        ([neutral(1, valid_to=T1)], neutral(2, valid_from=T1), False),  # back to back
        ([neutral(1, valid_to=T2)], neutral(2, valid_from=T1), True),
        ([neutral(1, valid_from=T1)], neutral(2, valid_to=T0), False),
        (  # K01.FR.39: same transaction, same level, another id
            [neutral(1, purpose=Purpose.TX, evse_id=1, transaction_id="t")],
            neutral(2, purpose=Purpose.TX, evse_id=1, transaction_id="t"),
            True,
        ),
        (  # the RequestStart profile (no id yet) is replaced
            [neutral(1, purpose=Purpose.TX, evse_id=1)],
            neutral(2, purpose=Purpose.TX, evse_id=1, transaction_id="t"),
            False,
        ),
    ],
)
def test_conflict(installed: list[ChargingProfile], new: ChargingProfile, conflicts: bool) -> None:
    problem = charging.conflict(new, installed)
    assert (problem is not None) == conflicts
    if problem is not None:
        assert charging.reason_code(problem) == "DuplicateProfile"


@pytest.mark.parametrize(
    ("problem", "code"),
    [
        ("evse_id: unknown EVSE 3 (station has 1..1)", "UnknownEvse"),
        ("evse_id: TxProfile must be on an EVSE > 0", "InvalidProfile"),
        ("purpose: TxProfile without a transaction on EVSE 1", "TxNotFound"),
        ("transaction_id: t0 is not running on EVSE 1", "UnknownTxId"),
        ("transaction_id: a TxProfile needs one", "InvalidProfile"),
        ("stack_level: must be in 0..10, got 99", "InvalidStackLevel"),
        ("schedule.rate_unit: W is not supported", "UnsupportedRateUnit"),
        ("schedule.periods[0].start_period_s: must be 0, got 10", "InvalidSchedule"),
        ("recurrency: required for a Recurring profile", "InvalidSchedule"),
        ("kind: ChargePointMaxProfile may not be Relative", "InvalidProfile"),
        ("profiles: at most 32 installed", "OutOfStorage"),
        ("valid_to: must be after valid_from", "InvalidProfile"),
    ],
)
def test_reason_code(problem: str, code: str) -> None:
    assert charging.reason_code(problem) == code
    assert len(code) <= 20


def test_status_info_respects_the_field_lengths() -> None:
    info = charging.status_info("X" * 30, "y" * 600)
    assert len(info["reason_code"]) == 20 and len(info["additional_info"]) == 512
    assert charging.status_info("NotFound", "") == {"reason_code": "NotFound"}


# ------------------------------------------------------------------ clear


@pytest.mark.parametrize(
    ("profile_id", "criteria", "expected"),
    [
        (None, None, ClearCriteria()),
        (5, {"evse_id": 1}, ClearCriteria(profile_id=5)),  # the id wins
        (
            None,
            {
                "evse_id": 0,
                "charging_profile_purpose": "ChargingStationMaxProfile",
                "stack_level": 2,
            },
            ClearCriteria(evse_id=0, purpose=Purpose.CHARGE_POINT_MAX, stack_level=2),
        ),
        (None, {"charging_profile_purpose": "ChargingStationExternalConstraints"}, None),
    ],
)
def test_clear_criteria(
    profile_id: int | None, criteria: dict[str, Any] | None, expected: ClearCriteria | None
) -> None:
    assert charging.clear_criteria_from_201(profile_id, criteria) == expected


# ------------------------------------------------------------------ reports

STORE = (
    neutral(1, purpose=Purpose.CHARGE_POINT_MAX, stack_level=0),
    neutral(2),
    neutral(3, evse_id=1, stack_level=2),
    neutral(4, purpose=Purpose.TX, evse_id=1, transaction_id="t"),
    neutral(5, purpose=Purpose.EXTERNAL, evse_id=1),
)


@pytest.mark.parametrize(
    ("evse_id", "criterion", "ids"),
    [
        (None, {}, [[1, 2], [3, 4], [5]]),
        (0, {}, [[1, 2]]),
        (1, {}, [[3, 4], [5]]),
        (2, {}, []),
        (None, {"charging_profile_purpose": "TxDefaultProfile"}, [[2], [3]]),
        (None, {"charging_profile_purpose": "ChargingStationMaxProfile"}, [[1]]),
        (None, {"charging_profile_purpose": "ChargingStationExternalConstraints"}, [[5]]),
        (None, {"stack_level": 2}, [[3]]),
        (None, {"charging_profile_id": [4, 1, 9]}, [[1], [4]]),
        (None, {"charging_limit_source": ["CSO"]}, [[1, 2], [3, 4]]),
        (None, {"charging_limit_source": ["EMS", "SO"]}, [[5]]),
        (None, {"charging_limit_source": ["SO"]}, []),
        (1, {"charging_profile_purpose": "TxProfile", "stack_level": 1}, [[4]]),
    ],
)
def test_report_selection(
    evse_id: int | None, criterion: dict[str, Any], ids: list[list[int]]
) -> None:
    criteria = charging.report_criteria_from_201(evse_id, criterion)
    pages = charging.report_pages(STORE, criteria, per_message=10)
    assert [[p.profile_id for p in page.profiles] for page in pages] == ids


def test_report_pages_split_per_evse_and_size() -> None:
    pages = charging.report_pages(reversed(STORE), charging.ReportCriteria(), per_message=1)
    assert [(p.evse_id, p.source, [x.profile_id for x in p.profiles]) for p in pages] == [
        (0, "CSO", [1]),
        (0, "CSO", [2]),
        (1, "CSO", [3]),
        (1, "CSO", [4]),
        (1, "EMS", [5]),
    ]
    assert charging.report_request(12, pages[-1], tbc=False)["charging_limit_source"] == "EMS"
    first = charging.report_request(12, pages[0], tbc=True)
    assert first["request_id"] == 12 and first["tbc"] is True
    assert first["evse_id"] == 0 and first["charging_limit_source"] == "CSO"
    assert first["charging_profile"][0]["charging_profile_purpose"] == "ChargingStationMaxProfile"


def test_profile_to_201_round_trips() -> None:
    body = raw(
        charging_profile_purpose="TxProfile",
        charging_profile_kind="Recurring",
        recurrency_kind="Weekly",
        valid_from="2024-06-03T08:30:00.000Z",
        valid_to="2024-06-03T18:00:00.000Z",
        transaction_id="tx-9",
    )
    profile = charging.profile_from_201(1, body)
    out = charging.profile_to_201(profile)
    assert out["charging_schedule"][0]["start_schedule"] == "2024-06-03T07:30:00.000Z"
    assert out["transaction_id"] == "tx-9"
    assert charging.profile_from_201(1, out) == profile


# ------------------------------------------------------------------ composite


def test_composite_to_201() -> None:
    schedule = CompositeSchedule(
        start=T0,
        duration_s=7200,
        rate_unit=RateUnit.A,
        periods=(CompositePeriod(0, 16.0, 3), CompositePeriod(3600, 8.0, 3)),
    )
    assert charging.composite_to_201(1, schedule) == {
        "evse_id": 1,
        "duration": 7200,
        "schedule_start": "2024-06-03T07:30:00.000Z",
        "charging_rate_unit": "A",
        "charging_schedule_period": [
            {"start_period": 0, "limit": 16.0, "number_phases": 3},
            {"start_period": 3600, "limit": 8.0, "number_phases": 3},
        ],
    }
    gap = CompositeSchedule(T0, 60, RateUnit.A, (CompositePeriod(0, None, None),))
    with pytest.raises(ValueError, match="no limit"):
        charging.composite_to_201(1, gap)


@pytest.mark.parametrize(
    ("unit", "expected"), [(None, RateUnit.A), ("A", RateUnit.A), ("W", RateUnit.W)]
)
def test_rate_unit(unit: str | None, expected: RateUnit) -> None:
    assert charging.rate_unit_from_201(unit) is expected


def test_unknown_rate_unit() -> None:
    with pytest.raises(ValueError):
        charging.rate_unit_from_201("kW")
