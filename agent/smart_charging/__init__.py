"""Smart charging, version-neutral and pure: profiles, their store, validation, composite.

The OCPP adapters map their messages onto ``profiles`` (1.6 spelling; 2.0.1 names map
with ``Purpose.from_spec``), check them with ``validation.validate``, keep them in a
``ProfileStore`` and ask ``composite`` for the limit in force or a composite schedule;
``sharing`` divides the station limit between EVSEs. ``service`` applies it all at run
time.
"""

from agent.smart_charging.composite import (
    CompositePeriod,
    CompositeSchedule,
    Limit,
    composite_schedule,
    limit_at,
    period_in_force,
)
from agent.smart_charging.profiles import (
    ChargingProfile,
    ChargingSchedule,
    ClearCriteria,
    Kind,
    ProfileStore,
    Purpose,
    RateUnit,
    Recurrency,
    SchedulePeriod,
    from_json,
    to_json,
)
from agent.smart_charging.sharing import prospective_share, share_station_limit
from agent.smart_charging.validation import validate

__all__ = [
    "ChargingProfile",
    "ChargingSchedule",
    "ClearCriteria",
    "CompositePeriod",
    "CompositeSchedule",
    "Kind",
    "Limit",
    "ProfileStore",
    "Purpose",
    "RateUnit",
    "Recurrency",
    "SchedulePeriod",
    "composite_schedule",
    "from_json",
    "limit_at",
    "period_in_force",
    "prospective_share",
    "share_station_limit",
    "to_json",
    "validate",
]
