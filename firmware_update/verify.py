"""Firmware signature verification: signing certificate chain and file signature.

OCPP 1.6 security whitepaper §4 / OCPP 2.0.1 L01.FR.04: the signing certificate sent with a
signed update must chain up to an installed ManufacturerRootCertificate, and the signature
is computed over the SHA-256 of the whole firmware file.

Both checks are pure (no network, no clock of their own) and blocking: ``verify_signature``
reads the whole file, so call it through ``asyncio.to_thread`` for large images.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509

# cryptography (~25 ms to import) is loaded by the checks themselves, when a signed
# update arrives, not when the agent starts.

_CHUNK_BYTES = 1 << 20
_MAX_CHAIN_DEPTH = 4


class VerificationError(Exception):
    """A firmware image or its signing certificate was not accepted (str = the reason)."""


class InvalidCertificate(VerificationError):
    """The signing certificate is malformed, outside its validity period, or does not chain
    up to an installed manufacturer root (OCPP: response ``InvalidCertificate`` and security
    event ``InvalidFirmwareSigningCertificate``)."""


class InvalidSignature(VerificationError):
    """The signature does not match the file (OCPP: status ``InvalidSignature`` and security
    event ``InvalidFirmwareSignature``)."""


def verify_signing_certificate(
    cert_pem: str, roots: Sequence[x509.Certificate], *, now: datetime
) -> x509.Certificate:
    """Check a firmware signing certificate against the manufacturer roots.

    The chain is built and checked with cryptography's X.509 path validation (RFC 5280 /
    CA-B web PKI profile for the CA certificates: validity dates of every certificate,
    issuer names and signatures, basicConstraints and keyUsage of the CAs, at least
    2048-bit RSA or P-256/P-384 keys, SHA-256/384/512 signatures). The signing certificate
    itself may carry any extensions (code signing certificates have no TLS usages) but must
    not be a CA.

    Args:
        cert_pem: PEM text: the signing certificate first, optionally followed by
            intermediate CA certificates.
        roots: Installed ManufacturerRootCertificate(s) (trust anchors).
        now: Time to check validity at (timezone-aware; the station clock).

    Returns:
        The signing certificate (use it for ``verify_signature``).

    Raises:
        InvalidCertificate: Malformed PEM, no roots installed, the signing certificate is a
            CA, a certificate is expired or not yet valid, or no chain to a root exists.
    """
    from cryptography import x509
    from cryptography.x509 import verification

    try:
        certs = x509.load_pem_x509_certificates(cert_pem.encode())
    except ValueError as e:
        raise InvalidCertificate(f"malformed signing certificate: {e}") from None
    if not roots:
        raise InvalidCertificate("no ManufacturerRootCertificate installed")
    leaf, intermediates = certs[0], certs[1:]
    try:
        constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        pass
    else:
        if constraints.ca:
            raise InvalidCertificate("signing certificate is a CA certificate")
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(list(roots)))
        .time(now)
        .max_chain_depth(_MAX_CHAIN_DEPTH)
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=verification.ExtensionPolicy.permit_all(),
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except verification.VerificationError as e:
        raise InvalidCertificate(f"signing certificate rejected: {_first_line(e)}") from None
    return leaf


def sha256_file(path: Path) -> bytes:
    """SHA-256 digest of the file at ``path``, read in 1 MiB chunks (memory stays flat).

    Raises:
        OSError: The file cannot be read.
    """
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.digest()


def verify_signature(path: Path, certificate: x509.Certificate, signature_b64: str) -> None:
    """Check ``signature_b64`` over the SHA-256 of the whole file at ``path``.

    Accepted schemes, by the certificate's key: RSA-PSS (MGF1 SHA-256, any salt length,
    including the digest length) or RSA PKCS#1 v1.5; ECDSA on P-256 or P-384 (DER
    signature). The hash is always SHA-256.

    Args:
        path: The downloaded firmware file.
        certificate: The signing certificate returned by ``verify_signing_certificate``.
        signature_b64: Base64 signature as sent by the CSMS (whitespace tolerated).

    Raises:
        InvalidSignature: Signature not base64, unsupported key type/curve, or mismatch.
        OSError: The file cannot be read.
    """
    from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    try:
        signature = base64.b64decode("".join(signature_b64.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSignature("signature is not valid base64") from None
    if not signature:
        raise InvalidSignature("signature is empty")
    key = certificate.public_key()
    digest = sha256_file(path)
    prehashed = Prehashed(hashes.SHA256())
    if isinstance(key, rsa.RSAPublicKey):
        schemes: tuple[padding.AsymmetricPadding, ...] = (
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
            padding.PKCS1v15(),
        )
        for scheme in schemes:
            try:
                key.verify(signature, digest, scheme, prehashed)
            except _CryptoInvalidSignature:
                continue
            return
        raise InvalidSignature("RSA signature (PSS or PKCS#1 v1.5, SHA-256) does not match")
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, (ec.SECP256R1, ec.SECP384R1)):
            raise InvalidSignature(f"unsupported EC curve {key.curve.name}")
        try:
            key.verify(signature, digest, ec.ECDSA(prehashed))
        except _CryptoInvalidSignature:
            raise InvalidSignature("ECDSA signature (SHA-256) does not match") from None
        return
    raise InvalidSignature(f"unsupported signing key type {type(key).__name__}")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
