"""firmware_update.certs: the on-disk root certificate store."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from firmware_update.certs import CERT_TYPES, CertificateStore
from hil.fw_pki import make_pki, pem

MANUFACTURER = "ManufacturerRootCertificate"
CSMS = "CentralSystemRootCertificate"


def test_empty_store_has_no_certificates(tmp_path: Path) -> None:
    store = CertificateStore(tmp_path / "certs")
    assert store.certificates(MANUFACTURER) == []
    assert CERT_TYPES == (MANUFACTURER, CSMS)


def test_install_writes_one_file_per_certificate_into_its_type_folder(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, "ec-p256")
    store = CertificateStore(tmp_path / "certs")
    path = store.install(MANUFACTURER, pki.root_pem)
    assert path.parent == tmp_path / "certs" / MANUFACTURER
    assert path.name == pki.root.fingerprint(hashes.SHA256()).hex() + ".pem"
    assert store.certificates(MANUFACTURER) == [pki.root]
    assert store.certificates(CSMS) == []
    assert store.install(MANUFACTURER, pki.root_pem) == path  # idempotent
    assert len(list(path.parent.iterdir())) == 1


def test_a_file_dropped_in_by_the_vendor_is_seen_without_a_restart(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, "ec-p256")
    store = CertificateStore(tmp_path / "certs")
    assert store.certificates(MANUFACTURER) == []
    pki.install_root(tmp_path / "certs")
    assert store.certificates(MANUFACTURER) == [pki.root]
    # a second root appended to the same file (same name, new size/mtime) is picked up
    other = make_pki(tmp_path / "other", "ec-p256")
    target = tmp_path / "certs" / MANUFACTURER / "test-root.pem"
    target.write_bytes(pki.root_pem + other.root_pem)
    os.utime(target, ns=(1, 1))
    assert store.certificates(MANUFACTURER) == [pki.root, other.root]
    target.unlink()
    assert store.certificates(MANUFACTURER) == []


def test_invalid_files_are_logged_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pki = make_pki(tmp_path, "ec-p256")
    folder = tmp_path / "certs" / MANUFACTURER
    folder.mkdir(parents=True)
    (folder / "a-broken.pem").write_text("-----BEGIN CERTIFICATE-----\nnope\n")
    (folder / "b-good.pem").write_bytes(pki.root_pem)
    (folder / "c-notes.txt").write_text("not a pem file, ignored")
    (folder / "d-dir.pem").mkdir()
    store = CertificateStore(tmp_path / "certs")
    with caplog.at_level(logging.WARNING, logger="firmware_update.certs"):
        assert store.certificates(MANUFACTURER) == [pki.root]
    assert "a-broken.pem" in caplog.text


def test_duplicates_across_files_are_returned_once(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, "ec-p256")
    store = CertificateStore(tmp_path / "certs")
    store.install(MANUFACTURER, pki.root_pem)
    pki.install_root(tmp_path / "certs")
    assert store.certificates(MANUFACTURER) == [pki.root]


def test_install_rejects_garbage_and_unknown_types(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, "ec-p256")
    store = CertificateStore(tmp_path / "certs")
    with pytest.raises(ValueError, match="not a PEM"):
        store.install(MANUFACTURER, b"hello")
    with pytest.raises(ValueError, match="unknown certificate type"):
        store.install("V2GRootCertificate", pki.root_pem)
    with pytest.raises(ValueError, match="unknown certificate type"):
        store.certificates("../etc")
    assert not (tmp_path / "certs" / MANUFACTURER).exists() or not any(
        (tmp_path / "certs" / MANUFACTURER).iterdir()
    )


def test_delete_by_fingerprint(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, "ec-p256")
    store = CertificateStore(tmp_path / "certs")
    store.install(CSMS, pki.root_pem)
    kept = store.install(CSMS, pki.foreign_root_pem)
    fingerprint = pki.root.fingerprint(hashes.SHA256()).hex()
    assert store.delete(CSMS, fingerprint.upper())
    assert not store.delete(CSMS, fingerprint)
    assert [pem(c).encode() for c in store.certificates(CSMS)] == [pki.foreign_root_pem]
    assert kept.exists()
