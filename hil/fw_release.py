"""A signed firmware release for the station, as the CSMS emulators send it.

Test equipment shared by the firmware demo (`hil.demo`) and the firmware tests: the
station's data directory with the manufacturer root pre-installed, and the
``firmware`` object of 1.6 SignedUpdateFirmware / 2.0.1 UpdateFirmware.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hil.fw_pki import Pki, make_pki

RETRIEVE_SLACK = timedelta(minutes=1)
"""A retrieve time this far back is due at once: the agent's clock, set from the
CSMS's, may run a little behind the caller's."""


def retrieve_due_now() -> str:
    """An ISO 8601 retrieve time that the agent takes as due at once (`RETRIEVE_SLACK` ago)."""
    return (datetime.now(UTC) - RETRIEVE_SLACK).isoformat()


def signed_firmware(location: str, cert_pem: str, signature: str, **extra: Any) -> dict[str, Any]:
    """The ``firmware`` object of a signed update, due at once (snake_case, as `ocpp` takes it).

    Args:
        location: URL of the image.
        cert_pem: Signing certificate (PEM, with its intermediate).
        signature: Base64 signature of the image.
        **extra: More fields, e.g. ``install_date_time``.
    """
    return {
        "location": location,
        "retrieve_date_time": retrieve_due_now(),
        "signing_certificate": cert_pem,
        "signature": signature,
        **extra,
    }


def station_pki(workdir: Path, data_dir: Path) -> Pki:
    """Make an EC P-256 manufacturer PKI in ``workdir`` and pre-install its root in the
    station's ``data_dir`` (``certs/``), as the vendor does; return the PKI."""
    pki = make_pki(workdir, "ec-p256")
    pki.install_root(data_dir / "certs")
    return pki
