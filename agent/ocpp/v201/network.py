"""OCPP 2.0.1 SetNetworkProfile (B09) onto the neutral network profile store.

Pure: ``endpoint_of`` checks a request against what this station can do and returns
the neutral ``Endpoint`` or the reason to refuse it; the adapter stores an accepted
one (``NetworkProfileStore.save``) before answering. The switch itself happens in the
connection supervisor after the CSMS changed NetworkConfigurationPriority and reset
the station (B10).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Collection
from typing import Any

from agent.network_profiles import Endpoint, NetworkProfileStore
from agent.persistence.store import StoreError

log = logging.getLogger(__name__)

OCPP_VERSIONS: dict[str, str] = {"OCPP16": "1.6", "OCPP20": "2.0.1"}
"""OCPPVersionEnumType -> the agent's version name (1.2 and 1.5 are not spoken)."""


def endpoint_of(
    configuration_slot: int,
    connection_data: dict[str, Any],
    *,
    slots: Collection[str],
    active_slot: str | None,
    active_security_profile: int,
) -> tuple[Endpoint | None, str | None]:
    """The endpoint a SetNetworkProfile describes, or why it is refused.

    Args:
        configuration_slot: The slot to write.
        connection_data: NetworkConnectionProfileType, snake_case keys.
        slots: Slots that exist (NetworkConfigurationPriority's value list).
        active_slot: The slot of the current connection (never overwritten under it).
        active_security_profile: Security profile of the current connection; a
            lower one is refused (A05/B09: no downgrade).

    Returns:
        (endpoint, None) to accept; (None, reason) to answer Rejected.
    """
    slot = str(configuration_slot)
    if slot not in slots:
        return None, f"no configuration slot {slot}"
    if slot == active_slot:
        return None, f"slot {slot} is in use"
    if connection_data.get("ocpp_transport") != "JSON":
        return None, "only OCPP-J (JSON) is supported"
    version = OCPP_VERSIONS.get(str(connection_data.get("ocpp_version")))
    if version is None:
        return None, f"OCPP version {connection_data.get('ocpp_version')} not supported"
    url = str(connection_data.get("ocpp_csms_url", ""))
    try:
        security_profile = int(connection_data["security_profile"])
        timeout_s = float(connection_data["message_timeout"])
    except (KeyError, TypeError, ValueError):
        return None, "securityProfile and messageTimeout are required"
    if security_profile not in (1, 2, 3):
        return None, f"security profile {security_profile} not supported"
    if security_profile < active_security_profile:
        return None, "security profile lower than the current one"
    scheme = "wss://" if security_profile >= 2 else "ws://"
    if not url.startswith(scheme) or len(url) <= len(scheme):
        return None, f"security profile {security_profile} needs a {scheme} URL"
    if timeout_s <= 0:
        return None, "messageTimeout must be positive"
    return Endpoint(slot, url, security_profile, version, timeout_s), None


def answer(reason: str | None) -> dict[str, Any]:
    """SetNetworkProfileResponse fields: Accepted, or Rejected with the reason."""
    if reason is None:
        return {"status": "Accepted"}
    return {
        "status": "Rejected",
        "status_info": {"reason_code": "InvalidNetworkConf", "additional_info": reason[:512]},
    }


async def set_network_profile(
    store: NetworkProfileStore | None,
    slots: Collection[str],
    configuration_slot: int,
    connection_data: dict[str, Any],
) -> dict[str, Any]:
    """B09: check, store (durable before the answer) and answer a SetNetworkProfile.

    Returns:
        SetNetworkProfileResponse fields: Accepted, Rejected (no store, or refused
        as ``endpoint_of`` says), or Failed when the profile could not be stored.
    """
    if store is None:
        return answer("network profiles are not configurable")
    active = store.last_working
    current = store.profiles.get(active) if active is not None else None
    endpoint, reason = endpoint_of(
        configuration_slot,
        connection_data,
        slots=slots,
        active_slot=active,
        active_security_profile=current.security_profile if current is not None else 0,
    )
    if endpoint is not None and endpoint.ocpp_version not in store.versions:
        reason = f"this station does not run OCPP {endpoint.ocpp_version}"
        endpoint = None
    if endpoint is None:
        log.warning("SetNetworkProfile slot %s rejected: %s", configuration_slot, reason)
        return answer(reason)
    try:
        await store.save(endpoint)
    except (sqlite3.Error, StoreError) as e:
        log.error("SetNetworkProfile slot %s not stored: %s", configuration_slot, e)
        return {"status": "Failed"}
    log.info("network profile slot %s stored: %s", endpoint.slot, endpoint.url)
    return answer(None)
