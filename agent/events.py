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
    "TxChargingState",
    "TxPoint",
    "TxUpdateTrigger",
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
    STOPPED_BY_EV = "StoppedByEV"
    """The EV stopped drawing energy and the transaction ends with the energy transfer
    (stop point ``TxPoint.ENERGY_TRANSFER``); not a 1.6 reason (1.6 sends Other)."""
    TIMEOUT = "Timeout"
    """The EV was not plugged in within the connection timeout after a transaction began
    at authorization (stop of an incipient transaction); not a 1.6 reason (Other)."""
    MASTER_PASS = "MasterPass"
    """A token of the MasterPass group (setting ``master_pass_group_id``, 2.0.1 C16)
    stopped every transaction; not a 1.6 reason (Other)."""


class TxPoint(StrEnum):
    """A moment of a charging session a transaction may begin or end at.

    A transaction begins as soon as any configured start point is reached and ends as
    soon as any configured stop point that was reached during it is no longer true
    (OCPP 2.0.1 TxStartPoint / TxStopPoint spelling; OCPP 1.6 behaves as start
    ``POWER_PATH_CLOSED``, stop ``AUTHORIZED``).

    EV_CONNECTED: the cable is plugged in (CP B/C/D).
    AUTHORIZED: an id token (local or remote) was accepted for this EVSE.
    POWER_PATH_CLOSED: plugged in *and* authorized, every precondition to close the
        contactor met (it closes as soon as the EV asks for power).
    ENERGY_TRANSFER: plugged in, authorized, the EV asks for power and energy is
        offered (the contactor closes).
    """

    EV_CONNECTED = "EVConnected"
    AUTHORIZED = "Authorized"
    POWER_PATH_CLOSED = "PowerPathClosed"
    ENERGY_TRANSFER = "EnergyTransfer"


class TxChargingState(StrEnum):
    """The charging state of a running transaction (OCPP 2.0.1 ChargingStateEnumType)."""

    CHARGING = "Charging"
    EV_CONNECTED = "EVConnected"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    IDLE = "Idle"


class TxUpdateTrigger(StrEnum):
    """Why a running transaction was updated (an "update" journal row)."""

    CHARGING_STATE_CHANGED = "ChargingStateChanged"
    AUTHORIZED = "Authorized"
    REMOTE_START = "RemoteStart"
    """A remote start authorized a transaction that began without an id (cable first)."""


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
