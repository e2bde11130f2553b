"""The release site of the firmware end-to-end tests, for both OCPP versions.

`site`: a manufacturer PKI whose root the station trusts, the station's data
directory and a loopback HTTP server for release images; used by
``tests/firmware/test_e2e_update.py`` (1.6) and ``tests/ocpp/test_v201_firmware.py``
(2.0.1), which import the fixture. Plus the status helpers both use.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import agent
from hil.csms import CsmsEmulator, ReceivedCall
from hil.fw_pki import FileServer, Pki, make_release_tarball
from hil.fw_release import signed_firmware, station_pki
from tests.conftest import GUARD_S

OLD_VERSION = agent.__version__
HAPPY_SEQUENCE = [
    "Downloading",
    "Downloaded",
    "SignatureVerified",
    "Installing",
    "InstallRebooting",
    "Installed",
]
"""The firmware statuses of an update that installs and is confirmed."""


@dataclass(frozen=True)
class ReleaseSite:
    """Where the tests' releases come from.

    Attributes:
        pki: The manufacturer PKI; its root is installed in `data_dir`.
        data_dir: The station's data directory (``<tmp>/agent``).
        www: The directory `server` serves.
        url: Base URL of `server`, without a trailing slash.
        server: The loopback HTTP server (records requests, injects faults).
    """

    pki: Pki
    data_dir: Path
    www: Path
    url: str
    server: FileServer

    def release(self, name: str, version: str, **kwargs: Any) -> Path:
        """Write a release tarball ``name`` of ``version`` into `www` (see
        `make_release_tarball` for ``kwargs``) and return its path."""
        return make_release_tarball(self.www / name, version, **kwargs)

    def tampered_release(self, name: str, version: str) -> tuple[Path, str]:
        """Write a release like `release`, sign it, then append a byte string to it;
        return the image and its signature from before the change."""
        image = self.release(name, version)
        signature = self.pki.sign(image)
        with image.open("ab") as f:
            f.write(b"\0tampered")
        return image, signature

    def firmware(self, image: Path, signature: str | None = None) -> dict[str, Any]:
        """The signed ``firmware`` object for ``image`` served here: the PKI's signing
        certificate and ``signature`` (default: a valid PSS signature of the image)."""
        if signature is None:
            signature = self.pki.sign(image)
        return signed_firmware(f"{self.url}/{image.name}", self.pki.signing_cert_pem, signature)

    def foreign_firmware(self, image: Path) -> dict[str, Any]:
        """The ``firmware`` object for ``image`` served here, signed by the PKI's foreign
        signing key under a root the station does not trust."""
        location = f"{self.url}/{image.name}"
        return signed_firmware(location, self.pki.foreign_cert_pem, self.pki.sign_foreign(image))


@pytest.fixture
def site(tmp_path: Path) -> Iterator[ReleaseSite]:
    """A `ReleaseSite` in ``tmp_path``; the server stops after the test."""
    data_dir = tmp_path / "agent"
    pki = station_pki(tmp_path, data_dir)
    www = tmp_path / "www"
    www.mkdir()
    with FileServer(www) as server:
        yield ReleaseSite(pki, data_dir, www, server.url("").rstrip("/"), server)


def firmware_statuses(csms: CsmsEmulator, action: str, cp_id: str, request_id: int) -> list[str]:
    """The statuses of every ``action`` (a firmware status notification) so far, after
    checking that each carries ``request_id``."""
    calls = csms.calls(action, cp_id)
    assert all(c.payload["requestId"] == request_id for c in calls), calls
    return [c.payload["status"] for c in calls]


async def wait_firmware_status(
    csms: CsmsEmulator, action: str, status: str, cp_id: str, count: int = 1
) -> ReceivedCall:
    """Wait for the ``count``-th ``action`` with ``status`` from ``cp_id``."""
    return await csms.wait_for(
        action,
        predicate=lambda c: c.payload["status"] == status,
        count=count,
        cp_id=cp_id,
        timeout_s=GUARD_S,
    )
