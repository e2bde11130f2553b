"""The firmware update as a pure state machine: ``step(state, event) -> (state, step)``.

No I/O and no clock: the manager (``firmware_update/manager.py``) persists the new
state and the reports of a step in one durable commit, then performs the actions
in order, and feeds what happened back in as events (a download finished, the
install time came, the agent booted again...). So one status sequence survives
a reboot: the journal holds the phase, the outbox the reports not yet delivered.

Phases and the statuses they report (whitepaper 4 / 2.0.1 L01)::

    IDLE --Requested--> DOWNLOAD_SCHEDULED (DownloadScheduled) | DOWNLOADING (Downloading)
    DOWNLOADING --DownloadOk--> VERIFYING (Downloaded)            [signed]
                             -> INSTALL_SCHEDULED | WAITING_IDLE  [plain] (Downloaded)
                --DownloadFailed--> DOWNLOAD_RETRY_WAIT | IDLE (DownloadFailed)
    VERIFYING --SignatureOk--> INSTALL_SCHEDULED (SignatureVerified, InstallScheduled)
                            -> WAITING_IDLE (SignatureVerified)
              --SignatureInvalid--> IDLE (InvalidSignature + InvalidFirmwareSignature)
    WAITING_IDLE --NoTransactionRunning--> INSTALLING (Installing)
    INSTALLING --InstallSucceeded--> REBOOTING (InstallRebooting)
               --InstallFailed--> IDLE (InstallationFailed)
    REBOOTING --Rebooted(new slot)--> CONFIRMING ; (old slot) --> IDLE (InstallationFailed)
    CONFIRMING --HealthOk--> IDLE (FirmwareUpdated event, Installed)
               --HealthFailed / CrashLoopDetected--> REVERTING
    REVERTING --Rebooted(old slot)--> IDLE (InstallVerificationFailed | InstallationFailed)
    VERIFYING | INSTALL_SCHEDULED | WAITING_IDLE | INSTALLING
              --ImageLost--> DOWNLOADING (Downloading)  [torn by a power cut: again]

Slot backend failures end the update instead of leaving it (and the station's
maintenance hold) behind::

    REBOOTING --ArmFailed--> IDLE (InstallationFailed)          [no reboot]
    REBOOTING | CONFIRMING --BootUnknown--> REVERTING (failure InstallationFailed)
    REVERTING --BootUnknown | RevertFailed--> IDLE (the revert's failure status)
    any but IDLE --Aborted--> IDLE (DownloadFailed while downloading, else
                                    InstallationFailed / the revert's failure status)

An event that does not apply to the phase changes nothing and has no outputs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum

from firmware_update.status import FirmwareStatus, SecurityEvent, UpdateKind

Report = FirmwareStatus | SecurityEvent
"""Something to tell the CSMS, in order: a status or a security event."""


class Phase(StrEnum):
    """Where an update is. Persisted by name in the journal."""

    IDLE = "idle"
    DOWNLOAD_SCHEDULED = "download_scheduled"
    DOWNLOADING = "downloading"
    DOWNLOAD_RETRY_WAIT = "download_retry_wait"
    VERIFYING = "verifying"
    INSTALL_SCHEDULED = "install_scheduled"
    WAITING_IDLE = "waiting_idle"
    INSTALLING = "installing"
    REBOOTING = "rebooting"
    CONFIRMING = "confirming"
    REVERTING = "reverting"


class Action(StrEnum):
    """What the manager does after committing a step, in order."""

    WAIT_RETRIEVE_TIME = "wait_retrieve_time"  # sleep until retrieveDateTime
    DOWNLOAD = "download"
    WAIT_RETRY = "wait_retry"  # sleep retryInterval, then RetrieveTimeReached
    VERIFY_SIGNATURE = "verify_signature"
    WAIT_INSTALL_TIME = "wait_install_time"  # sleep until installDateTime
    HOLD_AND_WAIT_IDLE = "hold_and_wait_idle"  # idle EVSEs Unavailable, wait for no tx
    INSTALL = "install"  # into the inactive slot
    REBOOT = "reboot"  # arm the trial boot of the new slot and restart
    CONFIRM = "confirm"  # health checks of the new slot
    REVERT = "revert"  # mark the trial slot bad and restart into the old one
    RELEASE_HOLD = "release_hold"
    CLEANUP = "cleanup"  # delete the downloaded file


# ----------------------------------------------------------------- events


@dataclass(frozen=True)
class Requested:
    """An update was accepted. ``retrieve_due``: retrieveDateTime is now or past."""

    retrieve_due: bool


@dataclass(frozen=True)
class RetrieveTimeReached:
    """retrieveDateTime (or the retry interval) has passed."""


@dataclass(frozen=True)
class DownloadOk:
    """The file is complete. ``install_due``: no installDateTime in the future."""

    install_due: bool


@dataclass(frozen=True)
class ImageLost:
    """After a restart the downloaded image is missing or its SHA-256 differs from the
    one recorded with Downloaded (not fsynced, torn by a power cut): download it again
    (the download retries are not consumed)."""


@dataclass(frozen=True)
class DownloadFailed:
    """One download attempt failed (the machine counts the retries)."""


@dataclass(frozen=True)
class CertificateInvalid:
    """The signing certificate of a request failed verification (request refused)."""


@dataclass(frozen=True)
class SignatureOk:
    """The signature over the file verified. ``install_due`` as in ``DownloadOk``."""

    install_due: bool


@dataclass(frozen=True)
class SignatureInvalid:
    """The signature over the downloaded file did not verify."""


@dataclass(frozen=True)
class InstallTimeReached:
    """installDateTime has passed."""


@dataclass(frozen=True)
class NoTransactionRunning:
    """No transaction runs and idle EVSEs are held Unavailable: safe to install."""


@dataclass(frozen=True)
class InstallSucceeded:
    """The image is in the inactive slot."""


@dataclass(frozen=True)
class InstallFailed:
    """The slot backend refused the image (bad archive, no space, RAUC error)."""


@dataclass(frozen=True)
class Rebooted:
    """The agent started again. ``booted_new``: it runs from the updated slot."""

    booted_new: bool


@dataclass(frozen=True)
class HealthOk:
    """Booted, registered with the CSMS, health check passed, slot marked good."""


@dataclass(frozen=True)
class HealthFailed:
    """The post-boot checks failed (timeout, health-check script, HAL fault)."""


@dataclass(frozen=True)
class CrashLoopDetected:
    """The trial slot used up its boot attempts without being confirmed."""


@dataclass(frozen=True)
class ArmFailed:
    """The slot backend could not arm the new slot for its trial boot (no reboot)."""


@dataclass(frozen=True)
class BootUnknown:
    """After the restart the slot backend could not tell which slot booted, or could
    not count the trial boot."""


@dataclass(frozen=True)
class RevertFailed:
    """The slot backend could not mark the trial slot bad (no revert reboot)."""


@dataclass(frozen=True)
class Aborted:
    """The update task failed unexpectedly: end the update with a failure status."""


@dataclass(frozen=True)
class Cancelled:
    """A new request replaces this one (AcceptedCanceled); only before installing."""


Event = (
    Requested
    | RetrieveTimeReached
    | DownloadOk
    | DownloadFailed
    | ImageLost
    | CertificateInvalid
    | SignatureOk
    | SignatureInvalid
    | InstallTimeReached
    | NoTransactionRunning
    | InstallSucceeded
    | InstallFailed
    | Rebooted
    | HealthOk
    | HealthFailed
    | CrashLoopDetected
    | ArmFailed
    | BootUnknown
    | RevertFailed
    | Aborted
    | Cancelled
)

# ------------------------------------------------------------------ state


@dataclass(frozen=True)
class UpdateState:
    """The machine's state.

    Attributes:
        phase: Where the update is.
        kind: Plain or signed (plain skips signature verification).
        retries_left: Download retries still allowed after a failed attempt.
        failure: The status a revert ends with (InstallVerificationFailed or
            InstallationFailed); None while nothing failed.
    """

    phase: Phase = Phase.IDLE
    kind: UpdateKind = UpdateKind.SIGNED
    retries_left: int = 0
    failure: FirmwareStatus | None = None


@dataclass(frozen=True)
class Step:
    """The outputs of one transition: reports to send, then actions to perform."""

    reports: tuple[Report, ...] = ()
    actions: tuple[Action, ...] = ()


IDLE_STEP = Step()

CANCELLABLE = frozenset(
    {
        Phase.DOWNLOAD_SCHEDULED,
        Phase.DOWNLOADING,
        Phase.DOWNLOAD_RETRY_WAIT,
        Phase.VERIFYING,
        Phase.INSTALL_SCHEDULED,
        Phase.WAITING_IDLE,
    }
)
"""Phases a new request may cancel (AcceptedCanceled). From INSTALLING on, the
slot is being written or the agent is rebooting: a new request is Rejected."""


def _to(state: UpdateState, phase: Phase, **changes: object) -> UpdateState:
    return dataclasses.replace(state, phase=phase, **changes)  # type: ignore[arg-type]


def _after_verified(
    state: UpdateState, install_due: bool, *first: Report
) -> tuple[UpdateState, Step]:
    if install_due:
        return _to(state, Phase.WAITING_IDLE), Step(first, (Action.HOLD_AND_WAIT_IDLE,))
    return (
        _to(state, Phase.INSTALL_SCHEDULED),
        Step((*first, FirmwareStatus.INSTALL_SCHEDULED), (Action.WAIT_INSTALL_TIME,)),
    )


def _failed(state: UpdateState, status: FirmwareStatus, *extra: Report) -> tuple[UpdateState, Step]:
    return (
        _to(state, Phase.IDLE, failure=None),
        Step((*extra, status), (Action.RELEASE_HOLD, Action.CLEANUP)),
    )


DOWNLOAD_PHASES = frozenset(
    {Phase.DOWNLOAD_SCHEDULED, Phase.DOWNLOADING, Phase.DOWNLOAD_RETRY_WAIT}
)
"""Phases before the image is complete: an abort there is DownloadFailed."""

IMAGE_PHASES = frozenset(
    {Phase.VERIFYING, Phase.INSTALL_SCHEDULED, Phase.WAITING_IDLE, Phase.INSTALLING}
)
"""Phases that need the downloaded image (it was complete when Downloaded was committed)."""


def _abort_status(state: UpdateState) -> FirmwareStatus:
    if state.phase in DOWNLOAD_PHASES:
        return FirmwareStatus.DOWNLOAD_FAILED
    return state.failure or FirmwareStatus.INSTALLATION_FAILED


def step(state: UpdateState, event: Event) -> tuple[UpdateState, Step]:
    """Apply ``event`` to ``state``.

    Args:
        state: Current state (``UpdateState()`` when no update runs).
        event: What happened.

    Returns:
        The new state and the outputs of the transition. An event that does not
        apply to the current phase returns ``state`` unchanged and no outputs.
    """
    phase = state.phase
    match event:
        case Requested(retrieve_due=due) if phase is Phase.IDLE:
            if due:
                return _to(state, Phase.DOWNLOADING), Step(
                    (FirmwareStatus.DOWNLOADING,), (Action.DOWNLOAD,)
                )
            return _to(state, Phase.DOWNLOAD_SCHEDULED), Step(
                (FirmwareStatus.DOWNLOAD_SCHEDULED,), (Action.WAIT_RETRIEVE_TIME,)
            )
        case CertificateInvalid() if phase is Phase.IDLE:
            return state, Step((SecurityEvent.INVALID_FIRMWARE_SIGNING_CERTIFICATE,))
        case RetrieveTimeReached() if phase is Phase.DOWNLOAD_SCHEDULED:
            return _to(state, Phase.DOWNLOADING), Step(
                (FirmwareStatus.DOWNLOADING,), (Action.DOWNLOAD,)
            )
        case RetrieveTimeReached() if phase is Phase.DOWNLOAD_RETRY_WAIT:
            return _to(state, Phase.DOWNLOADING), Step(actions=(Action.DOWNLOAD,))
        case DownloadFailed() if phase is Phase.DOWNLOADING:
            if state.retries_left > 0:
                retry = _to(state, Phase.DOWNLOAD_RETRY_WAIT, retries_left=state.retries_left - 1)
                return retry, Step(actions=(Action.WAIT_RETRY,))
            return _failed(state, FirmwareStatus.DOWNLOAD_FAILED)
        case DownloadOk(install_due=due) if phase is Phase.DOWNLOADING:
            if state.kind is UpdateKind.SIGNED:
                return _to(state, Phase.VERIFYING), Step(
                    (FirmwareStatus.DOWNLOADED,), (Action.VERIFY_SIGNATURE,)
                )
            return _after_verified(state, due, FirmwareStatus.DOWNLOADED)
        case ImageLost() if phase in IMAGE_PHASES:
            return _to(state, Phase.DOWNLOADING), Step(
                (FirmwareStatus.DOWNLOADING,), (Action.DOWNLOAD,)
            )
        case SignatureOk(install_due=due) if phase is Phase.VERIFYING:
            return _after_verified(state, due, FirmwareStatus.SIGNATURE_VERIFIED)
        case SignatureInvalid() if phase is Phase.VERIFYING:
            return _failed(
                state, FirmwareStatus.INVALID_SIGNATURE, SecurityEvent.INVALID_FIRMWARE_SIGNATURE
            )
        case InstallTimeReached() if phase is Phase.INSTALL_SCHEDULED:
            return _to(state, Phase.WAITING_IDLE), Step(actions=(Action.HOLD_AND_WAIT_IDLE,))
        case NoTransactionRunning() if phase is Phase.WAITING_IDLE:
            return _to(state, Phase.INSTALLING), Step(
                (FirmwareStatus.INSTALLING,), (Action.INSTALL,)
            )
        case InstallSucceeded() if phase is Phase.INSTALLING:
            return _to(state, Phase.REBOOTING), Step(
                (FirmwareStatus.INSTALL_REBOOTING,), (Action.CLEANUP, Action.REBOOT)
            )
        case InstallFailed() if phase is Phase.INSTALLING:
            return _failed(state, FirmwareStatus.INSTALLATION_FAILED)
        case Rebooted(booted_new=True) if phase in (Phase.REBOOTING, Phase.CONFIRMING):
            return _to(state, Phase.CONFIRMING), Step(actions=(Action.CONFIRM,))
        case Rebooted(booted_new=False) if phase in (Phase.REBOOTING, Phase.CONFIRMING):
            # the bootloader (or the dir backend's attempt counter) fell back by itself
            return _failed(state, FirmwareStatus.INSTALLATION_FAILED)
        case Rebooted(booted_new=True) if phase is Phase.REVERTING:
            return state, Step(actions=(Action.REVERT,))  # the revert did not happen yet
        case Rebooted(booted_new=False) if phase is Phase.REVERTING:
            return _failed(state, state.failure or FirmwareStatus.INSTALLATION_FAILED)
        case HealthOk() if phase is Phase.CONFIRMING:
            return _to(state, Phase.IDLE, failure=None), Step(
                (SecurityEvent.FIRMWARE_UPDATED, FirmwareStatus.INSTALLED),
                (Action.RELEASE_HOLD,),
            )
        case HealthFailed() if phase is Phase.CONFIRMING:
            revert = _to(state, Phase.REVERTING, failure=FirmwareStatus.INSTALL_VERIFICATION_FAILED)
            return revert, Step(actions=(Action.REVERT,))
        case CrashLoopDetected() if phase is Phase.CONFIRMING:
            revert = _to(state, Phase.REVERTING, failure=FirmwareStatus.INSTALLATION_FAILED)
            return revert, Step(actions=(Action.REVERT,))
        case ArmFailed() if phase is Phase.REBOOTING:
            return _failed(state, FirmwareStatus.INSTALLATION_FAILED)
        case BootUnknown() if phase in (Phase.REBOOTING, Phase.CONFIRMING):
            # an unconfirmed trial must not stay: revert (bounded, see REVERTING)
            revert = _to(state, Phase.REVERTING, failure=FirmwareStatus.INSTALLATION_FAILED)
            return revert, Step(actions=(Action.REVERT,))
        case BootUnknown() | RevertFailed() if phase is Phase.REVERTING:
            return _failed(state, state.failure or FirmwareStatus.INSTALLATION_FAILED)
        case Aborted() if phase is not Phase.IDLE:
            return _failed(state, _abort_status(state))
        case Cancelled() if phase in CANCELLABLE:
            return _to(state, Phase.IDLE), Step(actions=(Action.RELEASE_HOLD, Action.CLEANUP))
    return state, IDLE_STEP
