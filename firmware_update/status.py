"""The version-neutral firmware vocabulary: statuses, security events, answers.

``FirmwareStatus`` is the union of OCPP 1.6 (``FirmwareStatusNotification``), the 1.6
security whitepaper (``SignedFirmwareStatusNotification``) and 2.0.1 (L01/L02), spelled
as the specs spell them. Each OCPP adapter projects it onto its version with pure
mapping functions (``agent/ocpp/v16/firmware.py``); nothing here knows a message.
"""

from __future__ import annotations

from enum import StrEnum


class FirmwareStatus(StrEnum):
    """Progress of a firmware update (1.6 4.5 + whitepaper 4 + 2.0.1 FirmwareStatusEnum)."""

    DOWNLOADED = "Downloaded"
    DOWNLOAD_FAILED = "DownloadFailed"
    DOWNLOADING = "Downloading"
    DOWNLOAD_SCHEDULED = "DownloadScheduled"
    DOWNLOAD_PAUSED = "DownloadPaused"
    IDLE = "Idle"
    INSTALLATION_FAILED = "InstallationFailed"
    INSTALLING = "Installing"
    INSTALLED = "Installed"
    INSTALL_REBOOTING = "InstallRebooting"
    INSTALL_SCHEDULED = "InstallScheduled"
    INSTALL_VERIFICATION_FAILED = "InstallVerificationFailed"
    INVALID_SIGNATURE = "InvalidSignature"
    SIGNATURE_VERIFIED = "SignatureVerified"


class UpdateKind(StrEnum):
    """Plain (1.6 UpdateFirmware: no signature) or signed (whitepaper / 2.0.1)."""

    PLAIN = "plain"
    SIGNED = "signed"


class UpdateResponse(StrEnum):
    """The answer to an update request (whitepaper UpdateFirmwareStatusEnumType)."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    ACCEPTED_CANCELED = "AcceptedCanceled"
    INVALID_CERTIFICATE = "InvalidCertificate"
    REVOKED_CERTIFICATE = "RevokedCertificate"


class SecurityEvent(StrEnum):
    """Security events the firmware path raises (whitepaper appendix 1, 2.0.1 appendix)."""

    FIRMWARE_UPDATED = "FirmwareUpdated"
    INVALID_FIRMWARE_SIGNATURE = "InvalidFirmwareSignature"
    INVALID_FIRMWARE_SIGNING_CERTIFICATE = "InvalidFirmwareSigningCertificate"


class UploadStatus(StrEnum):
    """Progress of a diagnostics/log upload (union of 1.6 DiagnosticsStatus and the
    whitepaper UploadLogStatusEnumType)."""

    IDLE = "Idle"
    UPLOADING = "Uploading"
    UPLOADED = "Uploaded"
    UPLOAD_FAILED = "UploadFailed"  # 1.6 DiagnosticsStatus; whitepaper says UploadFailure
    BAD_MESSAGE = "BadMessage"
    NOT_SUPPORTED_OPERATION = "NotSupportedOperation"
    PERMISSION_DENIED = "PermissionDenied"


class LogKind(StrEnum):
    """Which bundle an upload carries: 1.6 GetDiagnostics or whitepaper GetLog types."""

    DIAGNOSTICS = "Diagnostics"  # 1.6 GetDiagnostics (DiagnosticsStatusNotification)
    DIAGNOSTICS_LOG = "DiagnosticsLog"  # GetLog (LogStatusNotification with requestId)
    SECURITY_LOG = "SecurityLog"


FAILURE_STATUSES = frozenset(
    {
        FirmwareStatus.DOWNLOAD_FAILED,
        FirmwareStatus.INSTALLATION_FAILED,
        FirmwareStatus.INSTALL_VERIFICATION_FAILED,
        FirmwareStatus.INVALID_SIGNATURE,
    }
)
"""End states of an update that did not install."""
