"""firmware_update.verify: signing certificate chain and file signature checks."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from firmware_update.verify import (
    InvalidCertificate,
    InvalidSignature,
    VerificationError,
    verify_signature,
    verify_signing_certificate,
)
from hil.fw_pki import KeyType, Pki, make_cert, make_pki, make_release_tarball, new_key, pem

KEY_TYPES: list[KeyType] = ["rsa", "ec-p256", "ec-p384"]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def pkis(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pki]:
    base = tmp_path_factory.mktemp("pki")
    return {k: make_pki(base / k, k) for k in KEY_TYPES}


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return make_release_tarball(tmp_path / "fw.tar.gz", "2.0.0", 0, extra_files={"a": b"x" * 70000})


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_good_chain_returns_the_signing_certificate(pkis: dict[str, Pki], key_type: str) -> None:
    pki = pkis[key_type]
    leaf = verify_signing_certificate(pki.signing_cert_pem, [pki.root], now=now())
    assert leaf == x509.load_pem_x509_certificate(pki.leaf_pem.encode())


def test_one_of_several_roots_is_enough(pkis: dict[str, Pki]) -> None:
    pki, other = pkis["rsa"], pkis["ec-p256"]
    verify_signing_certificate(pki.signing_cert_pem, [other.root, pki.root], now=now())


@pytest.mark.parametrize("key_type", KEY_TYPES)
@pytest.mark.parametrize(
    ("which", "reason"),
    [
        ("expired_cert_pem", "not valid at validation time"),
        ("not_yet_valid_cert_pem", "not valid at validation time"),
        ("foreign_cert_pem", "rejected"),
        ("leaf_pem", "rejected"),  # intermediate missing: no chain
    ],
)
def test_bad_certificates_are_rejected(
    pkis: dict[str, Pki], key_type: str, which: str, reason: str
) -> None:
    pki = pkis[key_type]
    with pytest.raises(InvalidCertificate, match=reason):
        verify_signing_certificate(getattr(pki, which), [pki.root], now=now())


def test_validity_is_checked_at_the_given_time(pkis: dict[str, Pki]) -> None:
    pki = pkis["ec-p256"]
    later = now() + dt.timedelta(days=2 * 365)
    with pytest.raises(InvalidCertificate):
        verify_signing_certificate(pki.signing_cert_pem, [pki.root], now=later)
    verify_signing_certificate(pki.signing_cert_pem, [pki.root], now=now() + dt.timedelta(days=300))


def test_foreign_root_installed_does_not_help(pkis: dict[str, Pki]) -> None:
    pki = pkis["rsa"]
    foreign = x509.load_pem_x509_certificate(pki.foreign_root_pem)
    with pytest.raises(InvalidCertificate):
        verify_signing_certificate(pki.signing_cert_pem, [foreign], now=now())


def test_expired_intermediate_is_rejected() -> None:
    t = now()
    inter_key, leaf_key = new_key("ec-p256"), new_key("ec-p256")
    root_key = new_key("ec-p256")
    root = make_cert(
        "R", root_key, issuer=None, issuer_key=root_key, ca=True,
        not_before=t - dt.timedelta(days=10), not_after=t + dt.timedelta(days=3650),
    )  # fmt: skip
    inter = make_cert(
        "I", inter_key, issuer=root, issuer_key=root_key, ca=True,
        not_before=t - dt.timedelta(days=10), not_after=t - dt.timedelta(days=1),
    )  # fmt: skip
    leaf = make_cert(
        "L", leaf_key, issuer=inter, issuer_key=inter_key, ca=False,
        not_before=t - dt.timedelta(days=5), not_after=t + dt.timedelta(days=300),
    )  # fmt: skip
    with pytest.raises(InvalidCertificate, match="not valid"):
        verify_signing_certificate(pem(leaf, inter), [root], now=t)


def test_a_ca_certificate_is_not_a_signing_certificate(pkis: dict[str, Pki]) -> None:
    pki = pkis["rsa"]
    with pytest.raises(InvalidCertificate, match="CA"):
        verify_signing_certificate(pki.root_pem.decode(), [pki.root], now=now())
    with pytest.raises(InvalidCertificate, match="CA"):
        verify_signing_certificate(pki.intermediate_pem, [pki.root], now=now())


@pytest.mark.parametrize("text", ["", "not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_malformed_pem(pkis: dict[str, Pki], text: str) -> None:
    with pytest.raises(InvalidCertificate, match="malformed"):
        verify_signing_certificate(text, [pkis["rsa"].root], now=now())


def test_no_roots_installed(pkis: dict[str, Pki]) -> None:
    with pytest.raises(InvalidCertificate, match="no ManufacturerRootCertificate"):
        verify_signing_certificate(pkis["rsa"].signing_cert_pem, [], now=now())


@pytest.mark.parametrize(
    ("key_type", "scheme"),
    [("rsa", "pss"), ("rsa", "pkcs1"), ("ec-p256", "pss"), ("ec-p384", "pss")],
)
def test_signature_of_every_algorithm_is_accepted(
    pkis: dict[str, Pki], image: Path, key_type: str, scheme: str
) -> None:
    pki = pkis[key_type]
    cert = verify_signing_certificate(pki.signing_cert_pem, [pki.root], now=now())
    verify_signature(image, cert, pki.sign(image, scheme))  # type: ignore[arg-type]


def test_pss_with_maximum_salt_length_is_accepted(pkis: dict[str, Pki], image: Path) -> None:
    pki = pkis["rsa"]
    key = pki.signing_key
    assert isinstance(key, rsa.RSAPrivateKey)
    signature = key.sign(
        image.read_bytes(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH),
        hashes.SHA256(),
    )
    cert = x509.load_pem_x509_certificate(pki.leaf_pem.encode())
    verify_signature(image, cert, base64.b64encode(signature).decode())


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_tampered_file_is_rejected(pkis: dict[str, Pki], image: Path, key_type: str) -> None:
    pki = pkis[key_type]
    signature = pki.sign(image)
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0x01
    image.write_bytes(bytes(data))
    cert = x509.load_pem_x509_certificate(pki.leaf_pem.encode())
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_signature(image, cert, signature)


def test_signature_by_another_key_is_rejected(pkis: dict[str, Pki], image: Path) -> None:
    pki = pkis["ec-p256"]
    cert = x509.load_pem_x509_certificate(pki.leaf_pem.encode())
    with pytest.raises(InvalidSignature):
        verify_signature(image, cert, pki.sign_foreign(image))


def test_signature_over_sha1_is_rejected(pkis: dict[str, Pki], image: Path) -> None:
    key = pkis["ec-p256"].signing_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signature = key.sign(image.read_bytes(), ec.ECDSA(hashes.SHA1()))
    cert = x509.load_pem_x509_certificate(pkis["ec-p256"].leaf_pem.encode())
    with pytest.raises(InvalidSignature):
        verify_signature(image, cert, base64.b64encode(signature).decode())


@pytest.mark.parametrize("signature", ["", "   ", "not base64!", "QUJD="])
def test_malformed_signature(pkis: dict[str, Pki], image: Path, signature: str) -> None:
    cert = x509.load_pem_x509_certificate(pkis["rsa"].leaf_pem.encode())
    with pytest.raises(InvalidSignature):
        verify_signature(image, cert, signature)


def test_signature_with_line_breaks_is_accepted(pkis: dict[str, Pki], image: Path) -> None:
    pki = pkis["rsa"]
    signature = pki.sign(image)
    wrapped = "\n".join(signature[i : i + 64] for i in range(0, len(signature), 64))
    verify_signature(image, x509.load_pem_x509_certificate(pki.leaf_pem.encode()), wrapped)


def test_errors_share_a_base_class() -> None:
    assert issubclass(InvalidCertificate, VerificationError)
    assert issubclass(InvalidSignature, VerificationError)
