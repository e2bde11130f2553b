"""Root certificate store on disk: one folder of PEM files per certificate type.

Layout (in the agent's data directory)::

    <data-dir>/certs/ManufacturerRootCertificate/*.pem
    <data-dir>/certs/CentralSystemRootCertificate/*.pem

A vendor pre-installs its firmware signing root by dropping a PEM file into the
ManufacturerRootCertificate folder; the folder is read again on every lookup (a per-file
mtime cache avoids re-parsing), so a file added while the agent runs is used without a
restart. Certificates installed through OCPP (InstallCertificate) are written to the same
folders, named by their SHA-256 fingerprint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from firmware_update.durable import write_atomic

if TYPE_CHECKING:
    from cryptography import x509

# cryptography (~25 ms to import) is loaded on the first certificate operation, not
# when the agent starts: most boots never touch a certificate.

CERT_TYPES = ("ManufacturerRootCertificate", "CentralSystemRootCertificate")

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Cached:
    mtime_ns: int
    size: int
    certs: tuple[x509.Certificate, ...]


class CertificateStore:
    """Folders of PEM certificates under ``root`` (``<data-dir>/certs``).

    Not thread-safe; cheap enough to call from the event loop (a directory listing and a
    ``stat`` per file; files are parsed only when they changed).
    """

    def __init__(self, root: Path) -> None:
        """Args:
        root: The store's directory, ``<data-dir>/certs`` (created on first install).
        """
        self._root = root
        self._cache: dict[Path, _Cached] = {}

    @property
    def root(self) -> Path:
        """The store's directory."""
        return self._root

    def folder(self, cert_type: str) -> Path:
        """The folder holding ``cert_type`` certificates.

        Raises:
            ValueError: ``cert_type`` is not one of ``CERT_TYPES``.
        """
        if cert_type not in CERT_TYPES:
            raise ValueError(f"unknown certificate type {cert_type!r} (known: {CERT_TYPES})")
        return self._root / cert_type

    def certificates(self, cert_type: str) -> list[x509.Certificate]:
        """All certificates of ``cert_type`` currently in its folder.

        Every ``*.pem`` file may hold one or more certificates. Unreadable files and
        files without a valid PEM certificate are logged (warning) and skipped. Files are
        taken in name order; a certificate present in two files is returned once.

        Raises:
            ValueError: ``cert_type`` is not one of ``CERT_TYPES``.
        """
        folder = self.folder(cert_type)
        try:
            paths = sorted(p for p in folder.iterdir() if p.suffix == ".pem" and p.is_file())
        except FileNotFoundError:
            paths = []
        result: list[x509.Certificate] = []
        seen: set[bytes] = set()
        live: set[Path] = set()
        for path in paths:
            live.add(path)
            for cert in self._load(path):
                fingerprint = _sha256(cert)
                if fingerprint not in seen:
                    seen.add(fingerprint)
                    result.append(cert)
        for gone in [p for p in self._cache if p.parent == folder and p not in live]:
            del self._cache[gone]
        return result

    def install(self, cert_type: str, pem: bytes) -> Path:
        """Store PEM certificate(s) as ``<folder>/<sha256 of the first cert>.pem``.

        The file is written atomically (temporary file, fsync, rename, directory fsync).
        Installing the same certificate again returns the existing path.

        Returns:
            The file's path.

        Raises:
            ValueError: Unknown ``cert_type`` or ``pem`` holds no valid certificate.
            OSError: The file cannot be written.
        """
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        folder = self.folder(cert_type)
        try:
            certs = x509.load_pem_x509_certificates(pem)
        except ValueError as e:
            raise ValueError(f"not a PEM certificate: {e}") from None
        target = folder / f"{_sha256(certs[0]).hex()}.pem"
        if target.exists():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        data = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
        write_atomic(target, data)
        _log.info("installed %s %s", cert_type, certs[0].subject.rfc4514_string())
        return target

    def delete(self, cert_type: str, sha256_hex: str) -> bool:
        """Remove the files that contain the certificate with this SHA-256 fingerprint.

        Returns:
            Whether a file was removed.

        Raises:
            ValueError: Unknown ``cert_type``.
        """
        wanted = sha256_hex.lower()
        removed = False
        self.certificates(cert_type)  # refresh the cache
        for path, cached in list(self._cache.items()):
            if path.parent != self.folder(cert_type):
                continue
            if any(_sha256(c).hex() == wanted for c in cached.certs):
                path.unlink(missing_ok=True)
                del self._cache[path]
                removed = True
        return removed

    def _load(self, path: Path) -> tuple[x509.Certificate, ...]:
        from cryptography import x509

        try:
            stat = path.stat()
            cached = self._cache.get(path)
            if cached is not None and (cached.mtime_ns, cached.size) == (
                stat.st_mtime_ns,
                stat.st_size,
            ):
                return cached.certs
            certs = tuple(x509.load_pem_x509_certificates(path.read_bytes()))
        except (OSError, ValueError) as e:
            _log.warning("skipping certificate file %s: %s", path, e)
            self._cache.pop(path, None)
            return ()
        self._cache[path] = _Cached(stat.st_mtime_ns, stat.st_size, certs)
        return certs


def _sha256(cert: x509.Certificate) -> bytes:
    """The SHA-256 fingerprint of ``cert``."""
    from cryptography.hazmat.primitives import hashes

    return cert.fingerprint(hashes.SHA256())
