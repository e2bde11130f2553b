"""The station's version-neutral vocabulary.

The core speaks only these names; each OCPP adapter maps them onto its version
with pure functions (``agent/ocpp/v16/mapping.py``). Enum values are spelled the
way OCPP 1.6 spells them where a 1.6 name exists, because that is the most
deployed spelling; the 2.0.1 adapter maps them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from hal.types import CpState, FaultCode, MeterReading

__all__ = [
    "AuthorizationStatus",
    "ConnectorStatus",
    "CpState",
    "EvseStatusChanged",
    "FaultCode",
    "MeterReading",
    "ReadingContext",
    "StopReason",
]


class ConnectorStatus(StrEnum):
    """Status of a connector (OCPP 1.6 ChargePointStatus spelling)."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


class StopReason(StrEnum):
    """Why a transaction ended (OCPP 1.6 Reason spelling)."""

    EMERGENCY_STOP = "EmergencyStop"
    EV_DISCONNECTED = "EVDisconnected"
    HARD_RESET = "HardReset"
    LOCAL = "Local"
    OTHER = "Other"
    POWER_LOSS = "PowerLoss"
    REBOOT = "Reboot"
    REMOTE = "Remote"
    SOFT_RESET = "SoftReset"
    UNLOCK_COMMAND = "UnlockCommand"
    DEAUTHORIZED = "DeAuthorized"


class AuthorizationStatus(StrEnum):
    """Result of checking an id token (OCPP 1.6 AuthorizationStatus spelling)."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    CONCURRENT_TX = "ConcurrentTx"


class ReadingContext(StrEnum):
    """Why a meter sample was taken (OCPP 1.6 ReadingContext spelling)."""

    TRANSACTION_BEGIN = "Transaction.Begin"
    TRANSACTION_END = "Transaction.End"
    SAMPLE_PERIODIC = "Sample.Periodic"
    SAMPLE_CLOCK = "Sample.Clock"
    TRIGGER = "Trigger"
    INTERRUPTION_BEGIN = "Interruption.Begin"
    INTERRUPTION_END = "Interruption.End"
    OTHER = "Other"


@dataclass(frozen=True, slots=True)
class EvseStatusChanged:
    """A connector's OCPP-visible status changed (also sent for connector 0).

    ``evse_id`` 0 means the whole station.
    """

    evse_id: int
    status: ConnectorStatus
    error_code: FaultCode | None
    info: str | None
    timestamp: str  # ISO 8601 UTC


@dataclass(frozen=True, slots=True)
class SampledValue:
    """One measured value of a meter sample.

    ``measurand`` uses the OCPP measurand spelling (``Energy.Active.Import.Register``,
    ``Power.Active.Import``, ``Current.Import``, ``Voltage``, ``Current.Offered``, ...),
    ``unit`` the OCPP UnitOfMeasure spelling (``Wh``, ``W``, ``A``, ``V``), ``phase``
    ``L1``/``L2``/``L3``/``L1-N``... or None for a total, ``location`` the OCPP
    Location (``EV`` for a value the vehicle reported, e.g. SoC) or None for the
    default, the outlet's meter.
    """

    measurand: str
    value: float
    unit: str
    phase: str | None = None
    location: str | None = None


@dataclass(frozen=True, slots=True)
class MeterSample:
    """Values taken at one instant for one reason (an OCPP MeterValue)."""

    timestamp: str  # ISO 8601 UTC, e.g. "2026-11-24T19:00:00.000Z"
    context: ReadingContext
    values: tuple[SampledValue, ...]
