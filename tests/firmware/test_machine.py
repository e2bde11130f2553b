"""The firmware update machine as tables: (state, event) -> (state, reports, actions),
and its projection onto OCPP 1.6 messages (agent/ocpp/v16/firmware.py)."""

from __future__ import annotations

import pytest
from ocpp.v16 import call

from agent.ocpp.v16 import firmware as fw16
from firmware_update.journal import MessageKind, OutboxMessage
from firmware_update.machine import (
    CANCELLABLE,
    Aborted,
    Action,
    ArmFailed,
    BootUnknown,
    Cancelled,
    CertificateInvalid,
    CrashLoopDetected,
    DownloadFailed,
    DownloadOk,
    Event,
    HealthFailed,
    HealthOk,
    ImageLost,
    InstallFailed,
    InstallSucceeded,
    InstallTimeReached,
    NoTransactionRunning,
    Phase,
    Rebooted,
    Requested,
    RetrieveTimeReached,
    RevertFailed,
    SignatureInvalid,
    SignatureOk,
    UpdateState,
    step,
)
from firmware_update.status import FirmwareStatus as S
from firmware_update.status import SecurityEvent as E
from firmware_update.status import UpdateKind, UploadStatus

A = Action
P = Phase
SIGNED = UpdateKind.SIGNED
PLAIN = UpdateKind.PLAIN


def st(
    phase: Phase, kind: UpdateKind = SIGNED, retries: int = 0, failure: S | None = None
) -> UpdateState:
    return UpdateState(phase=phase, kind=kind, retries_left=retries, failure=failure)


TABLE: list[tuple[str, UpdateState, Event, UpdateState, tuple[object, ...], tuple[Action, ...]]] = [
    (
        "request now",
        st(P.IDLE),
        Requested(True),
        st(P.DOWNLOADING),
        (S.DOWNLOADING,),
        (A.DOWNLOAD,),
    ),
    (
        "request later",
        st(P.IDLE),
        Requested(False),
        st(P.DOWNLOAD_SCHEDULED),
        (S.DOWNLOAD_SCHEDULED,),
        (A.WAIT_RETRIEVE_TIME,),
    ),
    (
        "invalid certificate",
        st(P.IDLE),
        CertificateInvalid(),
        st(P.IDLE),
        (E.INVALID_FIRMWARE_SIGNING_CERTIFICATE,),
        (),
    ),
    (
        "retrieve time",
        st(P.DOWNLOAD_SCHEDULED),
        RetrieveTimeReached(),
        st(P.DOWNLOADING),
        (S.DOWNLOADING,),
        (A.DOWNLOAD,),
    ),
    (
        "retry: no second Downloading",
        st(P.DOWNLOAD_RETRY_WAIT),
        RetrieveTimeReached(),
        st(P.DOWNLOADING),
        (),
        (A.DOWNLOAD,),
    ),
    (
        "download failed, retries left",
        st(P.DOWNLOADING, retries=2),
        DownloadFailed(),
        st(P.DOWNLOAD_RETRY_WAIT, retries=1),
        (),
        (A.WAIT_RETRY,),
    ),
    (
        "download failed, no retries left",
        st(P.DOWNLOADING),
        DownloadFailed(),
        st(P.IDLE),
        (S.DOWNLOAD_FAILED,),
        (A.RELEASE_HOLD, A.CLEANUP),
    ),
    (
        "signed download ok",
        st(P.DOWNLOADING),
        DownloadOk(True),
        st(P.VERIFYING),
        (S.DOWNLOADED,),
        (A.VERIFY_SIGNATURE,),
    ),
    (
        "plain download ok: no signature step",
        st(P.DOWNLOADING, PLAIN),
        DownloadOk(True),
        st(P.WAITING_IDLE, PLAIN),
        (S.DOWNLOADED,),
        (A.HOLD_AND_WAIT_IDLE,),
    ),
    (
        "plain download ok, install later",
        st(P.DOWNLOADING, PLAIN),
        DownloadOk(False),
        st(P.INSTALL_SCHEDULED, PLAIN),
        (S.DOWNLOADED, S.INSTALL_SCHEDULED),
        (A.WAIT_INSTALL_TIME,),
    ),
    (
        "signature ok",
        st(P.VERIFYING),
        SignatureOk(True),
        st(P.WAITING_IDLE),
        (S.SIGNATURE_VERIFIED,),
        (A.HOLD_AND_WAIT_IDLE,),
    ),
    (
        "signature ok, install later",
        st(P.VERIFYING),
        SignatureOk(False),
        st(P.INSTALL_SCHEDULED),
        (S.SIGNATURE_VERIFIED, S.INSTALL_SCHEDULED),
        (A.WAIT_INSTALL_TIME,),
    ),
    (
        "signature invalid",
        st(P.VERIFYING),
        SignatureInvalid(),
        st(P.IDLE),
        (E.INVALID_FIRMWARE_SIGNATURE, S.INVALID_SIGNATURE),
        (A.RELEASE_HOLD, A.CLEANUP),
    ),
    (
        "install time",
        st(P.INSTALL_SCHEDULED),
        InstallTimeReached(),
        st(P.WAITING_IDLE),
        (),
        (A.HOLD_AND_WAIT_IDLE,),
    ),
    (
        "idle: install",
        st(P.WAITING_IDLE),
        NoTransactionRunning(),
        st(P.INSTALLING),
        (S.INSTALLING,),
        (A.INSTALL,),
    ),
    (
        "installed: reboot",
        st(P.INSTALLING),
        InstallSucceeded(),
        st(P.REBOOTING),
        (S.INSTALL_REBOOTING,),
        (A.CLEANUP, A.REBOOT),
    ),
    (
        "install failed",
        st(P.INSTALLING),
        InstallFailed(),
        st(P.IDLE),
        (S.INSTALLATION_FAILED,),
        (A.RELEASE_HOLD, A.CLEANUP),
    ),
    ("booted new slot", st(P.REBOOTING), Rebooted(True), st(P.CONFIRMING), (), (A.CONFIRM,)),
    (
        "crashed while confirming, still the trial",
        st(P.CONFIRMING),
        Rebooted(True),
        st(P.CONFIRMING),
        (),
        (A.CONFIRM,),
    ),
    (
        "bootloader fell back (crash loop used up the attempts)",
        st(P.CONFIRMING),
        Rebooted(False),
        st(P.IDLE),
        (S.INSTALLATION_FAILED,),
        (A.RELEASE_HOLD, A.CLEANUP),
    ),
    (
        "new slot never booted",
        st(P.REBOOTING),
        Rebooted(False),
        st(P.IDLE),
        (S.INSTALLATION_FAILED,),
        (A.RELEASE_HOLD, A.CLEANUP),
    ),
    (
        "healthy: event before Installed",
        st(P.CONFIRMING),
        HealthOk(),
        st(P.IDLE),
        (E.FIRMWARE_UPDATED, S.INSTALLED),
        (A.RELEASE_HOLD,),
    ),
    (
        "unhealthy: revert",
        st(P.CONFIRMING),
        HealthFailed(),
        st(P.REVERTING, failure=S.INSTALL_VERIFICATION_FAILED),
        (),
        (A.REVERT,),
    ),
    (
        "crash loop: revert",
        st(P.CONFIRMING),
        CrashLoopDetected(),
        st(P.REVERTING, failure=S.INSTALLATION_FAILED),
        (),
        (A.REVERT,),
    ),
    (
        "revert took effect: failure reported from the old version",
        st(P.REVERTING, failure=S.INSTALL_VERIFICATION_FAILED),
        Rebooted(False),
        st(P.IDLE),
        (S.INSTALL_VERIFICATION_FAILED,),
        (A.RELEASE_HOLD, A.CLEANUP),
    ),
    (
        "revert interrupted: do it again",
        st(P.REVERTING, failure=S.INSTALLATION_FAILED),
        Rebooted(True),
        st(P.REVERTING, failure=S.INSTALLATION_FAILED),
        (),
        (A.REVERT,),
    ),
    (
        "trial could not be armed: no reboot, old slot stays",
        st(P.REBOOTING),
        ArmFailed(),
        st(P.IDLE),
        (S.INSTALLATION_FAILED,),
        (A.RELEASE_HOLD, A.CLEANUP),
    ),
    (
        "boot unknown after the restart: revert",
        st(P.REBOOTING),
        BootUnknown(),
        st(P.REVERTING, failure=S.INSTALLATION_FAILED),
        (),
        (A.REVERT,),
    ),
    (
        "boot unknown while confirming: revert",
        st(P.CONFIRMING),
        BootUnknown(),
        st(P.REVERTING, failure=S.INSTALLATION_FAILED),
        (),
        (A.REVERT,),
    ),
    (
        "boot unknown after the revert: end, no second revert reboot",
        st(P.REVERTING, failure=S.INSTALL_VERIFICATION_FAILED),
        BootUnknown(),
        st(P.IDLE),
        (S.INSTALL_VERIFICATION_FAILED,),
        (A.RELEASE_HOLD, A.CLEANUP),
    ),
    (
        "revert failed: the failure is still reported",
        st(P.REVERTING, failure=S.INSTALL_VERIFICATION_FAILED),
        RevertFailed(),
        st(P.IDLE),
        (S.INSTALL_VERIFICATION_FAILED,),
        (A.RELEASE_HOLD, A.CLEANUP),
    ),
    (
        "cancelled while waiting",
        st(P.INSTALL_SCHEDULED),
        Cancelled(),
        st(P.IDLE),
        (),
        (A.RELEASE_HOLD, A.CLEANUP),
    ),
    *(
        (
            f"image torn by a power cut ({phase}): download again, retries kept",
            st(phase, retries=2),
            ImageLost(),
            st(P.DOWNLOADING, retries=2),
            (S.DOWNLOADING,),
            (A.DOWNLOAD,),
        )
        for phase in (P.VERIFYING, P.INSTALL_SCHEDULED, P.WAITING_IDLE, P.INSTALLING)
    ),
]


@pytest.mark.parametrize(
    ("state", "event", "expected", "reports", "actions"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_transition(
    state: UpdateState,
    event: Event,
    expected: UpdateState,
    reports: tuple[object, ...],
    actions: tuple[Action, ...],
) -> None:
    new, out = step(state, event)
    assert new == expected
    assert out.reports == reports
    assert out.actions == actions


ALL_EVENTS: list[Event] = [
    Requested(True),
    RetrieveTimeReached(),
    DownloadOk(True),
    DownloadFailed(),
    ImageLost(),
    CertificateInvalid(),
    SignatureOk(True),
    SignatureInvalid(),
    InstallTimeReached(),
    NoTransactionRunning(),
    InstallSucceeded(),
    InstallFailed(),
    Rebooted(True),
    Rebooted(False),
    HealthOk(),
    HealthFailed(),
    CrashLoopDetected(),
    ArmFailed(),
    BootUnknown(),
    RevertFailed(),
    Cancelled(),
]


@pytest.mark.parametrize("phase", list(Phase))
def test_events_that_do_not_apply_change_nothing(phase: Phase) -> None:
    listed = {(row[1].phase, type(row[2]), getattr(row[2], "booted_new", None)) for row in TABLE}
    state = st(phase, retries=1)
    for event in ALL_EVENTS:
        key = (phase, type(event), getattr(event, "booted_new", None))
        if key in listed or (isinstance(event, Cancelled) and phase in CANCELLABLE):
            continue
        if isinstance(event, DownloadOk | SignatureOk | Requested) and phase in (
            P.DOWNLOADING,
            P.VERIFYING,
            P.IDLE,
        ):
            continue  # the other flag value of a listed transition
        if isinstance(event, DownloadFailed) and phase is P.DOWNLOADING:
            continue
        new, out = step(state, event)
        assert (new, out.reports, out.actions) == (state, (), ()), (phase, event)


ABORT_STATUS = {
    P.DOWNLOAD_SCHEDULED: S.DOWNLOAD_FAILED,
    P.DOWNLOADING: S.DOWNLOAD_FAILED,
    P.DOWNLOAD_RETRY_WAIT: S.DOWNLOAD_FAILED,
    P.VERIFYING: S.INSTALLATION_FAILED,
    P.INSTALL_SCHEDULED: S.INSTALLATION_FAILED,
    P.WAITING_IDLE: S.INSTALLATION_FAILED,
    P.INSTALLING: S.INSTALLATION_FAILED,
    P.REBOOTING: S.INSTALLATION_FAILED,
    P.CONFIRMING: S.INSTALLATION_FAILED,
    P.REVERTING: S.INSTALL_VERIFICATION_FAILED,  # the failure the revert carries
}


@pytest.mark.parametrize("phase", list(Phase))
def test_abort_ends_every_update_with_a_failure_status(phase: Phase) -> None:
    state = st(phase, retries=2)
    if phase is P.REVERTING:
        state = st(phase, failure=S.INSTALL_VERIFICATION_FAILED)
    new, out = step(state, Aborted())
    if phase is P.IDLE:
        assert (new, out.reports, out.actions) == (state, (), ())
        return
    assert new.phase is P.IDLE and new.failure is None
    assert out.reports == (ABORT_STATUS[phase],)
    assert out.actions == (A.RELEASE_HOLD, A.CLEANUP)


def test_cancel_never_interrupts_an_install() -> None:
    for phase in (P.INSTALLING, P.REBOOTING, P.CONFIRMING, P.REVERTING):
        assert phase not in CANCELLABLE
        new, out = step(st(phase), Cancelled())
        assert new.phase is phase and out.actions == ()


def test_every_update_ends_with_exactly_one_final_status() -> None:
    # Walk the happy path and each failure branch: one terminal status each.
    finals = {S.INSTALLED, S.DOWNLOAD_FAILED, S.INVALID_SIGNATURE, S.INSTALLATION_FAILED}
    finals |= {S.INSTALL_VERIFICATION_FAILED}
    to_install: list[Event] = [
        Requested(True),
        DownloadOk(True),
        SignatureOk(True),
        NoTransactionRunning(),
    ]
    paths: list[list[Event]] = [
        [*to_install, InstallSucceeded(), Rebooted(True), HealthOk()],
        [Requested(True), DownloadFailed()],
        [Requested(True), DownloadOk(True), SignatureInvalid()],
        [*to_install, InstallFailed()],
        [*to_install, InstallSucceeded(), Rebooted(True), HealthFailed(), Rebooted(False)],
        [*to_install, InstallSucceeded(), ArmFailed()],
        [*to_install, InstallSucceeded(), BootUnknown(), Rebooted(False)],
        [*to_install, InstallSucceeded(), BootUnknown(), BootUnknown()],
        [*to_install, InstallSucceeded(), Rebooted(True), HealthFailed(), RevertFailed()],
        [*to_install, Aborted()],
        [Requested(True), Aborted()],
    ]
    for events in paths:
        state = UpdateState()
        reported: list[object] = []
        for event in events:
            state, out = step(state, event)
            reported.extend(out.reports)
        assert state.phase is P.IDLE
        assert [r for r in reported if r in finals] == [reported[-1]], reported


# ------------------------------------------ the OCPP 1.6 projection of the reports


@pytest.mark.parametrize(
    ("status", "plain"),
    [
        (S.DOWNLOADING, "Downloading"),
        (S.DOWNLOADED, "Downloaded"),
        (S.DOWNLOAD_FAILED, "DownloadFailed"),
        (S.INSTALLING, "Installing"),
        (S.INSTALLED, "Installed"),
        (S.INSTALLATION_FAILED, "InstallationFailed"),
        (S.INSTALL_VERIFICATION_FAILED, "InstallationFailed"),
        (S.INVALID_SIGNATURE, "InstallationFailed"),
        (S.IDLE, "Idle"),
        (S.DOWNLOAD_SCHEDULED, None),
        (S.DOWNLOAD_PAUSED, None),
        (S.SIGNATURE_VERIFIED, None),
        (S.INSTALL_SCHEDULED, None),
        (S.INSTALL_REBOOTING, None),  # Installing was sent already
    ],
)
def test_plain_16_status(status: S, plain: str | None) -> None:
    assert fw16.PLAIN_STATUS[status] == plain
    msg = OutboxMessage(
        1, MessageKind.FIRMWARE_STATUS, {"status": status.value, "update_kind": "plain"}
    )
    payload = fw16.outbox_call(msg)
    assert (payload.status if payload is not None else None) == plain


def test_every_status_has_a_16_spelling() -> None:
    for status in S:
        assert fw16.SIGNED_STATUS[status] == status.value  # whitepaper: same names
        assert fw16.trigger_status(status) in {
            "Downloaded",
            "DownloadFailed",
            "Downloading",
            "Idle",
            "InstallationFailed",
            "Installing",
            "Installed",
        }


def test_outbox_rows_become_16_messages() -> None:
    signed = fw16.outbox_call(
        OutboxMessage(
            1,
            MessageKind.FIRMWARE_STATUS,
            {"status": "InstallRebooting", "request_id": 7, "update_kind": "signed"},
        )
    )
    assert signed == call.SignedFirmwareStatusNotification(status="InstallRebooting", request_id=7)
    event = fw16.outbox_call(
        OutboxMessage(
            2,
            MessageKind.SECURITY_EVENT,
            {"type": "FirmwareUpdated", "timestamp": "2026-01-01T00:00:00Z", "tech_info": None},
        )
    )
    assert event == call.SecurityEventNotification(
        type="FirmwareUpdated", timestamp="2026-01-01T00:00:00Z", tech_info=None
    )
    log_status = {"status": UploadStatus.UPLOAD_FAILED.value, "request_id": 3}
    diagnostics = fw16.outbox_call(
        OutboxMessage(3, MessageKind.LOG_STATUS, {**log_status, "log_kind": "Diagnostics"})
    )
    assert diagnostics == call.DiagnosticsStatusNotification(status="UploadFailed")
    security_log = fw16.outbox_call(
        OutboxMessage(4, MessageKind.LOG_STATUS, {**log_status, "log_kind": "SecurityLog"})
    )
    # the whitepaper spells the failure UploadFailure
    assert security_log == call.LogStatusNotification(status="UploadFailure", request_id=3)


def test_signed_request_parses_times_and_defaults() -> None:
    request = fw16.signed_request(
        5,
        {
            "location": "https://x/fw.tar.gz",
            "retrieve_date_time": "2026-01-01T00:00:00Z",
            "install_date_time": "2026-01-02T00:00:00+01:00",
            "signing_certificate": "PEM",
            "signature": "c2ln",
        },
        None,
        None,
    )
    assert request.retrieve_at.tzinfo is not None
    assert request.install_at is not None and request.install_at.utcoffset() is not None
    assert (request.retries, request.retry_interval_s) == (
        fw16.DEFAULT_RETRIES,
        fw16.DEFAULT_RETRY_INTERVAL_S,
    )
    with pytest.raises(ValueError, match="retrieveDateTime"):
        fw16.signed_request(
            5,
            {
                "location": "x",
                "retrieve_date_time": "tomorrow",
                "signing_certificate": "",
                "signature": "",
            },
            None,
            None,
        )
