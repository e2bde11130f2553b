"""The firmware update I/O: runs the pure machine (``machine.py``) against the world.

One ``FirmwareManager`` lives as long as the agent. It accepts requests from an OCPP
adapter (version-neutral ``UpdateRequest``), drives download -> verify -> wait ->
install -> reboot with one task, and after the reboot continues from the journal
(``confirm.py`` decides what the boot means). Each step is committed to the
journal with its reports before its actions run, so a power cut at any point
resumes the same requestId sequence.

Durability of the image by verification, not fsync: the download is not fsynced
(it runs at page-cache speed). When it completes, the file's SHA-256 and size are
computed in a worker thread and committed with the Downloaded phase. After a restart
in a phase that needs the image (``IMAGE_PHASES``: verifying up to installing) the
digest is computed again; a missing, short or changed file was torn by the power cut
(or the row predates the record): it is deleted and downloaded again (``ImageLost``,
the CSMS sees Downloading again, same requestId). After a restart while downloading
the ``.part`` may end in garbage, so it is discarded and the download starts from
zero; a connection that breaks within one run still resumes from the ``.part``.

Timing: waits for retrieveDateTime/installDateTime use the station clock (which
the CSMS may correct); retry intervals are plain durations. Nothing here blocks
the event loop (it also carries the CP -> contactor interlock of GPIO boards):
downloads, hashing, unpacking, every synchronous slot backend call and the cleanup
run in worker threads or subprocesses.

Failure: a slot backend error while arming, confirming or reverting becomes the
machine's failure event (``ArmFailed``, ``HealthFailed``, ``BootUnknown``,
``RevertFailed``), so the failure status is queued, the maintenance hold released and
the journal row ended. Anything else that escapes the update task is caught last:
logged, reported (``Aborted``: DownloadFailed or InstallationFailed) and released.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from firmware_update import confirm
from firmware_update.blocking import run_blocking
from firmware_update.certs import CertificateStore
from firmware_update.download import DownloadError, discard_partial, download
from firmware_update.journal import FirmwareJournal, ImageRecord, UpdateRequest
from firmware_update.machine import (
    CANCELLABLE,
    DOWNLOAD_PHASES,
    IMAGE_PHASES,
    Aborted,
    Action,
    ArmFailed,
    BootUnknown,
    Cancelled,
    CertificateInvalid,
    DownloadFailed,
    DownloadOk,
    Event,
    ImageLost,
    InstallFailed,
    InstallSucceeded,
    InstallTimeReached,
    NoTransactionRunning,
    Phase,
    Requested,
    RetrieveTimeReached,
    RevertFailed,
    SignatureInvalid,
    SignatureOk,
    UpdateState,
    step,
)
from firmware_update.slots import InstallError, SlotBackend
from firmware_update.status import FirmwareStatus, UpdateKind, UpdateResponse
from firmware_update.verify import (
    VerificationError,
    sha256_file,
    verify_signature,
    verify_signing_certificate,
)

log = logging.getLogger(__name__)

MANUFACTURER_ROOT = "ManufacturerRootCertificate"
IMAGE_NAME = "image"

BUSY_PHASES = frozenset({Phase.INSTALLING, Phase.REBOOTING, Phase.CONFIRMING, Phase.REVERTING})
"""Phases in which a Reset or a new request must not interfere (never half-applied)."""


class MaintenanceHold(Protocol):
    """What the manager needs from the station core (``agent.station.Station``)."""

    async def hold_for_maintenance(self) -> None:
        """Make idle EVSEs Unavailable and refuse new sessions (not persisted)."""

    async def wait_no_transaction(self) -> None:
        """Return once no transaction runs on any EVSE."""

    def release_maintenance(self) -> None:
        """Undo ``hold_for_maintenance``."""

    def hal_ok(self) -> bool:
        """True when no EVSE reports an active hardware fault."""


@dataclass(frozen=True)
class ManagerOptions:
    """Limits and timing of the firmware path.

    Attributes:
        work_dir: Where images are downloaded (``<data-dir>/firmware``).
        max_download_bytes: Refuse larger images, bytes.
        download_timeout_s: Connect / stall timeout of a download, s.
        health_timeout_s: After the reboot, time for BootNotification to be
            Accepted and the health check to pass, s.
        trial_boot_attempts: Boots the new slot gets before falling back.
        delivery_timeout_s: How long a reboot waits for queued reports to reach
            the CSMS before restarting anyway, s.
    """

    work_dir: Path
    max_download_bytes: int = 512 * 1024 * 1024
    download_timeout_s: float = 30.0
    health_timeout_s: float = 300.0
    trial_boot_attempts: int = 2
    delivery_timeout_s: float = 10.0


Downloader = Callable[..., Awaitable[Path]]


class FirmwareManager:
    """Runs firmware updates and reports their progress through the journal's outbox.

    Args:
        journal: Persisted update row and report outbox.
        slots: The slot backend (dir or rauc).
        certificates: The certificate store (ManufacturerRootCertificate roots).
        station: Maintenance hold and HAL health of the station core.
        now: The station's UTC time.
        options: Limits and timing.
        restart: Called to reboot (into the armed trial slot, or back after a revert);
            the process ends soon after.
        wait_registered: Returns once the CSMS accepted our BootNotification.
        downloader: ``firmware_update.download.download`` (tests inject a fake).
    """

    def __init__(
        self,
        *,
        journal: FirmwareJournal,
        slots: SlotBackend,
        certificates: CertificateStore,
        station: MaintenanceHold,
        now: Callable[[], datetime],
        options: ManagerOptions,
        restart: Callable[[], None],
        wait_registered: Callable[[], Awaitable[object]],
        downloader: Downloader = download,
    ) -> None:
        self.journal = journal
        self.slots = slots
        self._certs = certificates
        self._station = station
        self._now = now
        self._options = options
        self._restart = restart
        self._wait_registered = wait_registered
        self.downloader = downloader
        self._state = UpdateState()
        self._request: UpdateRequest | None = None
        self._target_slot: str | None = None
        self._last_status = FirmwareStatus.IDLE
        self._task: asyncio.Task[None] | None = None
        self._outbox_changed = asyncio.Event()
        self._outbox_changed.set()  # reports may be queued from before the restart
        self._delivered = asyncio.Event()
        self._rebooting = False

    # ------------------------------------------------------------ queries

    @property
    def phase(self) -> Phase:
        return self._state.phase

    @property
    def busy(self) -> bool:
        """True from installing until confirmed: a Reset must be refused meanwhile."""
        return self._state.phase in BUSY_PHASES or self._rebooting

    def status_now(self) -> FirmwareStatus:
        """The last status of the update in progress, or Idle (TriggerMessage)."""
        if self._state.phase is Phase.IDLE:
            return FirmwareStatus.IDLE
        return self._last_status

    @property
    def request_id(self) -> int | None:
        return self._request.request_id if self._request is not None else None

    @property
    def kind(self) -> UpdateKind | None:
        return self._request.kind if self._request is not None else None

    # ---------------------------------------------------- outbox delivery

    async def wait_reports(self) -> None:
        """Return when reports may be queued (the adapter then reads ``journal.pending``)."""
        await self._outbox_changed.wait()
        self._outbox_changed.clear()

    def reports_queued(self) -> None:
        """Wake the delivering adapter (also used by the diagnostics service)."""
        self._delivered.clear()
        self._outbox_changed.set()

    async def acknowledge(self, seq: int) -> None:
        """A report reached the CSMS (or was refused for good): forget it."""
        await self.journal.acknowledge(seq)
        if not await self.journal.pending(limit=1):
            self._delivered.set()

    async def wait_delivered(self, timeout_s: float) -> bool:
        """Wait (bounded) until every queued report was delivered; True if so."""
        if not await self.journal.pending(limit=1):
            return True
        try:
            await asyncio.wait_for(self._delivered.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load the journal and resume an update in progress (after a reboot too).

        Must run before the OCPP connection starts: a trial boot is counted here (in a
        worker thread; a slot backend failure there becomes ``BootUnknown``).
        """
        entry = await self.journal.load()
        if entry is None:
            return
        self._request = entry.request
        self._state = entry.state
        self._target_slot = entry.target_slot
        self._last_status = _RESUMED_STATUS.get(entry.state.phase, FirmwareStatus.IDLE)
        log.info("resuming firmware update %d in phase %s", entry.request.request_id, self.phase)
        if entry.state.phase in (Phase.REBOOTING, Phase.CONFIRMING, Phase.REVERTING):
            event: Event
            try:
                event = await confirm.boot_event(self.slots, entry.target_slot)
            except Exception:
                log.exception("firmware: the slot backend cannot tell which slot booted")
                event = BootUnknown()
            self._spawn(self._apply(event))
        elif entry.state.phase in IMAGE_PHASES:
            self._spawn(self._resume_with_image(entry.image, _RESUME_ACTIONS[entry.state.phase]))
        elif entry.state.phase in _RESUME_ACTIONS:
            if entry.state.phase in DOWNLOAD_PHASES:
                # written without fsync: after a power cut its end may be garbage
                await run_blocking(discard_partial, self._image_path())
            self._spawn(self._perform_all(_RESUME_ACTIONS[entry.state.phase]))

    async def _resume_with_image(
        self, recorded: ImageRecord | None, actions: tuple[Action, ...]
    ) -> None:
        """Check the image against the journal's record, then resume with ``actions``;
        a torn or missing image is deleted and downloaded again (``ImageLost``)."""
        problem = await run_blocking(_image_problem, self._image_path(), recorded)
        if problem is None:
            await self._perform_all(actions)
            return
        log.warning(
            "firmware %s: the downloaded image is unusable after the restart (%s):"
            " downloading it again",
            self.request_id,
            problem,
        )
        await run_blocking(self._image_path().unlink, missing_ok=True)
        await run_blocking(discard_partial, self._image_path())
        await self._apply(ImageLost())

    async def stop(self) -> None:
        """Cancel the running update task (its journal state stays as committed).

        A slot backend call or cleanup in progress in a worker thread is waited for
        (bounded by the backend's own timeout), so it never overlaps the next one.
        """
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def join(self) -> None:
        """Wait until the current update task ends: the update reached IDLE (its hold
        released, its files removed), a restart was requested, or the task was
        cancelled. A scheduled update's task ends only after its wait. Returns at once
        when no task runs; never raises."""
        task = self._task
        if task is not None:
            await asyncio.wait({task})

    def evaluate(self, request: UpdateRequest) -> UpdateResponse:
        """The answer ``request`` would get now, without side effects.

        An adapter answers the CSMS with this and then calls :meth:`request`, so
        no status of the new update can overtake the answer.
        """
        if request.kind is UpdateKind.SIGNED and self._certificate_problem(request):
            return UpdateResponse.INVALID_CERTIFICATE
        if self.busy:
            return UpdateResponse.REJECTED
        if self._state.phase in CANCELLABLE:
            return UpdateResponse.ACCEPTED_CANCELED
        return UpdateResponse.ACCEPTED

    def _certificate_problem(self, request: UpdateRequest) -> str | None:
        try:
            verify_signing_certificate(
                request.signing_certificate or "",
                self._certs.certificates(MANUFACTURER_ROOT),
                now=self._now(),
            )
        except VerificationError as e:
            return str(e)
        return None

    async def request(self, request: UpdateRequest) -> UpdateResponse:
        """Accept (or refuse) a new update and start it; returns the answer.

        A signed request's certificate is checked first: InvalidCertificate queues
        the security event InvalidFirmwareSigningCertificate and changes nothing else.
        An update that is installing or rebooting is never interrupted (Rejected);
        an earlier one still downloading or waiting is cancelled (AcceptedCanceled).
        """
        if request.kind is UpdateKind.SIGNED:
            problem = self._certificate_problem(request)
            if problem is not None:
                log.warning("firmware request %d: %s", request.request_id, problem)
                _, out = step(UpdateState(), CertificateInvalid())
                await self.journal.queue_reports(request, out.reports, self._ts())
                self.reports_queued()
                return UpdateResponse.INVALID_CERTIFICATE
        if self.busy:
            return UpdateResponse.REJECTED
        answer = UpdateResponse.ACCEPTED
        if self._state.phase in CANCELLABLE:
            log.warning(
                "firmware update %s cancelled by request %d", self.request_id, request.request_id
            )
            await self.stop()
            _, out = step(self._state, Cancelled())
            await self._perform_all(out.actions)
            answer = UpdateResponse.ACCEPTED_CANCELED
        self._request = request
        self._target_slot = None
        self._state = UpdateState(kind=request.kind, retries_left=max(0, request.retries))
        new, out = step(self._state, Requested(retrieve_due=request.retrieve_at <= self._now()))
        await self.journal.replace(request, new, out.reports, self._ts())
        self._committed(new, out.reports)
        self._spawn(self._perform_all(out.actions))
        return answer

    # ------------------------------------------------------------ the run

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                log.exception("firmware update task failed")
                await self._abort()

        self._task = asyncio.create_task(run(), name="firmware-update")
        # cancelled before it ran: the inner coroutine was never started
        self._task.add_done_callback(lambda _: coro.close())

    def _ts(self) -> str:
        return self._now().isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _committed(self, state: UpdateState, reports: tuple[object, ...]) -> None:
        self._state = state
        for report in reports:
            if isinstance(report, FirmwareStatus):
                self._last_status = report
        if reports:
            self.reports_queued()

    async def _apply(
        self,
        event: Event,
        *,
        target_version: str | None = None,
        image: ImageRecord | None = None,
    ) -> None:
        """Step the machine, commit state + reports durably, then perform the actions."""
        assert self._request is not None
        new, out = step(self._state, event)
        if new == self._state and not out.reports and not out.actions:
            log.debug("firmware: %s ignored in phase %s", type(event).__name__, self.phase)
            return
        log.info("firmware %d: %s -> %s", self._request.request_id, self.phase, new.phase)
        await self.journal.commit(
            self._request,
            new,
            out.reports,
            self._ts(),
            target_slot=self._target_slot,
            target_version=target_version,
            image=image,
        )
        self._committed(new, out.reports)
        if new.phase is Phase.IDLE:
            self._request_done()
        await self._perform_all(out.actions)

    def _request_done(self) -> None:
        self._target_slot = None

    async def _abort(self) -> None:
        """Last resort after the update task failed: end the update, release the hold.

        Queues the failure status through the journal when the journal still works;
        when it does not, the update is dropped in memory (the journal row resumes on
        the next start). Never raises.
        """
        self._rebooting = False
        try:
            await self._apply(Aborted())
        except Exception:
            log.exception("firmware: could not record the failed update")
            self._state = UpdateState()
            self._request_done()
        finally:
            try:
                self._station.release_maintenance()
            except Exception:
                log.exception("firmware: could not release the maintenance hold")

    async def _perform_all(self, actions: tuple[Action, ...]) -> None:
        for action in actions:
            await self._perform(action)

    async def _perform(self, action: Action) -> None:
        request = self._request
        match action:
            case Action.WAIT_RETRIEVE_TIME:
                assert request is not None
                await self._sleep_until(request.retrieve_at)
                await self._apply(RetrieveTimeReached())
            case Action.WAIT_RETRY:
                assert request is not None
                await asyncio.sleep(request.retry_interval_s)
                await self._apply(RetrieveTimeReached())
            case Action.DOWNLOAD:
                event, image = await self._download_image()
                await self._apply(event, image=image)
            case Action.VERIFY_SIGNATURE:
                await self._apply(await self._verify())
            case Action.WAIT_INSTALL_TIME:
                assert request is not None and request.install_at is not None
                await self._sleep_until(request.install_at)
                await self._apply(InstallTimeReached())
            case Action.HOLD_AND_WAIT_IDLE:
                await self._station.hold_for_maintenance()
                await self._station.wait_no_transaction()
                await self._apply(NoTransactionRunning())
            case Action.INSTALL:
                await self._install()
            case Action.REBOOT:
                await self._arm_and_reboot()
            case Action.CONFIRM:
                event = await confirm.check_health(
                    self.slots,
                    self._station,
                    self._wait_registered,
                    timeout_s=self._options.health_timeout_s,
                )
                await self._apply(event)
            case Action.REVERT:
                await self._revert()
            case Action.RELEASE_HOLD:
                self._station.release_maintenance()
            case Action.CLEANUP:
                await run_blocking(shutil.rmtree, self._options.work_dir, ignore_errors=True)

    async def _sleep_until(self, moment: datetime) -> None:
        delay_s = (moment - self._now()).total_seconds()
        if delay_s > 0:
            await asyncio.sleep(delay_s)

    def _image_path(self) -> Path:
        return self._options.work_dir / IMAGE_NAME

    async def _download_image(self) -> tuple[Event, ImageRecord | None]:
        """Download the image and record its digest (the journal keeps it with
        Downloaded); ``DownloadFailed`` and no record on any error."""
        assert self._request is not None
        request = self._request
        install_due = request.install_at is None or request.install_at <= self._now()
        try:
            self._options.work_dir.mkdir(parents=True, exist_ok=True)
            await self.downloader(
                request.location,
                self._image_path(),
                max_bytes=self._options.max_download_bytes,
                timeout_s=self._options.download_timeout_s,
            )
            image = await run_blocking(_image_record, self._image_path())
        except (DownloadError, OSError) as e:
            log.warning("firmware download from %s failed: %s", request.location, e)
            return DownloadFailed(), None
        return DownloadOk(install_due=install_due), image

    async def _verify(self) -> Event:
        assert self._request is not None
        request = self._request
        install_due = request.install_at is None or request.install_at <= self._now()
        try:
            cert = verify_signing_certificate(
                request.signing_certificate or "",
                self._certs.certificates(MANUFACTURER_ROOT),
                now=self._now(),
            )
            await asyncio.to_thread(
                verify_signature, self._image_path(), cert, request.signature or ""
            )
        except (VerificationError, OSError) as e:
            log.warning("firmware %d: signature not verified: %s", request.request_id, e)
            return SignatureInvalid()
        return SignatureOk(install_due=install_due)

    async def _install(self) -> None:
        try:
            slot = await self.slots.install(self._image_path())
        except (InstallError, OSError) as e:
            log.warning("firmware install failed: %s", e)
            await self._apply(InstallFailed())
            return
        self._target_slot = slot
        version = await run_blocking(self.slots.slot_version, slot)
        log.info("firmware %s installed into slot %s", version, slot)
        await self._apply(InstallSucceeded(), target_version=version)

    async def _arm_and_reboot(self) -> None:
        """Arm the installed slot for its trial boot and restart; ``ArmFailed`` if the
        slot backend refuses (no reboot now; with ``dir`` the old slot stays primary,
        with RAUC ``rauc install`` already made the new slot primary)."""
        slot = self._target_slot
        try:
            if slot is None:
                raise InstallError("no installed slot to arm")
            await run_blocking(
                self.slots.activate_trial, slot, attempts=self._options.trial_boot_attempts
            )
        except Exception:
            log.exception("firmware: cannot arm slot %s for its trial boot", slot)
            await self._apply(ArmFailed())
            return
        await self._reboot()

    async def _revert(self) -> None:
        """Mark the trial slot bad and restart into the other one; ``RevertFailed`` if the
        slot backend refuses (the failure is reported from the running slot, no reboot)."""
        try:
            await run_blocking(self.slots.mark_bad)
        except Exception:
            log.exception("firmware: cannot mark the trial slot bad")
            await self._apply(RevertFailed())
            return
        await self._reboot()

    async def _reboot(self) -> None:
        """Let the reports reach the CSMS (bounded), then restart."""
        self._rebooting = True
        if not await self.wait_delivered(self._options.delivery_timeout_s):
            log.warning("rebooting with firmware reports still queued")
        log.warning("firmware update: rebooting")
        self._restart()


def _image_record(path: Path) -> ImageRecord:
    """SHA-256 and size of the file at ``path`` (blocking; raises OSError)."""
    size_bytes = path.stat().st_size
    return ImageRecord(sha256_file(path).hex(), size_bytes)


def _image_problem(path: Path, recorded: ImageRecord | None) -> str | None:
    """Why the image at ``path`` does not match ``recorded`` (None: it matches).

    Blocking: reads the whole file unless its size already differs.
    """
    if recorded is None:
        return "no digest was recorded with Downloaded"
    try:
        size_bytes = path.stat().st_size
        if size_bytes != recorded.size_bytes:
            return f"{size_bytes} bytes instead of {recorded.size_bytes}"
        if sha256_file(path).hex() != recorded.sha256_hex:
            return "SHA-256 differs from the one recorded with Downloaded"
    except FileNotFoundError:
        return "the file is missing"
    except OSError as e:
        return f"cannot read it: {e}"
    return None


_RESUME_ACTIONS: dict[Phase, tuple[Action, ...]] = {
    Phase.DOWNLOAD_SCHEDULED: (Action.WAIT_RETRIEVE_TIME,),
    Phase.DOWNLOADING: (Action.DOWNLOAD,),
    Phase.DOWNLOAD_RETRY_WAIT: (Action.WAIT_RETRY,),
    Phase.VERIFYING: (Action.VERIFY_SIGNATURE,),
    Phase.INSTALL_SCHEDULED: (Action.WAIT_INSTALL_TIME,),
    Phase.WAITING_IDLE: (Action.HOLD_AND_WAIT_IDLE,),
    # the hold again first (its NoTransactionRunning is ignored while INSTALLING)
    Phase.INSTALLING: (Action.HOLD_AND_WAIT_IDLE, Action.INSTALL),
}
"""What to do again when the agent starts in a phase (a power cut interrupted it)."""

_RESUMED_STATUS: dict[Phase, FirmwareStatus] = {
    Phase.DOWNLOAD_SCHEDULED: FirmwareStatus.DOWNLOAD_SCHEDULED,
    Phase.DOWNLOADING: FirmwareStatus.DOWNLOADING,
    Phase.DOWNLOAD_RETRY_WAIT: FirmwareStatus.DOWNLOADING,
    Phase.VERIFYING: FirmwareStatus.DOWNLOADED,
    Phase.INSTALL_SCHEDULED: FirmwareStatus.INSTALL_SCHEDULED,
    Phase.WAITING_IDLE: FirmwareStatus.SIGNATURE_VERIFIED,
    Phase.INSTALLING: FirmwareStatus.INSTALLING,
    Phase.REBOOTING: FirmwareStatus.INSTALL_REBOOTING,
    Phase.CONFIRMING: FirmwareStatus.INSTALL_REBOOTING,
    Phase.REVERTING: FirmwareStatus.INSTALL_REBOOTING,
}
"""The status TriggerMessage reports for a phase resumed from the journal."""
