"""OCPP 2.0.1 authorization and local list (blocks C and D) over the neutral core.

Pure projections between 2.0.1 payloads and the version-neutral authorization
vocabulary (``agent.authorization``), plus the two local-list operations, which
only read and write the shared ``LocalAuthList``:

* ``IdTokenInfoType`` -> ``IdTagInfo``: ``status`` (2.0.1 statuses without a
  neutral counterpart read Invalid), ``cacheExpiryDateTime`` -> expiry,
  ``groupIdToken.idToken`` -> the parent (the 1.6 parentIdTag concept: the
  reservation book and MasterPass match on it).
* SendLocalList (D01): Full / Differential with ``versionNumber``; the list rules
  (VersionMismatch for a Differential update that is not newer, Failed for an
  entry that cannot be stored, a Full entry without ``idTokenInfo``, a duplicate
  idToken, too many entries, or a list that is not enabled) are the neutral
  list's. 2.0.1 has no NotSupported answer: a disabled list answers Failed.
* GetLocalListVersion (D02): the installed version, 0 when there is none or the
  list is not enabled (LocalAuthListCtrlr.Enabled false).
* MasterPass (C16) is neutral (``agent.authorization.master_pass``, setting behind
  AuthCtrlr.MasterPassGroupId): the group projected here is what it matches.

The idToken ``type`` is not part of the list key: the neutral list (shared with
1.6) keys tokens by their value, compared case-insensitively.

Handler payloads arrive from the ``ocpp`` library with snake_case keys at every
level (``id_token_info``, ``cache_expiry_date_time``), and answers are built the
same way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.authorization.authorizer import IdTagInfo
from agent.authorization.local_list import ListEntry, LocalAuthList, UpdateStatus, UpdateType
from agent.clock import parse_iso
from agent.ocpp.v201 import mapping

__all__ = [
    "LocalListAnswer",
    "authorize_answer",
    "get_local_list_version",
    "id_token_info",
    "id_token_value",
    "list_entries",
    "send_local_list",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LocalListAnswer:
    """SendLocalListResponse: ``status`` and, for a refusal, a reason (``statusInfo``)."""

    status: str
    reason: str | None = None

    def fields(self) -> dict[str, Any]:
        """The response's snake_case fields (``status``, ``status_info``)."""
        out: dict[str, Any] = {"status": self.status}
        if self.reason is not None:
            out["status_info"] = {"reason_code": self.reason[:20]}
        return out


def id_token_value(raw: Mapping[str, Any] | None) -> str | None:
    """``IdTokenType.idToken`` of ``raw``; None when ``raw`` is None or has none."""
    if not isinstance(raw, Mapping):
        return None
    value = raw.get("id_token")
    return None if value is None or str(value) == "" else str(value)


def id_token_info(raw: Mapping[str, Any]) -> IdTagInfo:
    """``IdTokenInfoType`` (snake_case keys) -> the neutral verdict.

    Raises:
        ValueError: ``cacheExpiryDateTime`` is not an ISO 8601 timestamp.
    """
    expiry_text = raw.get("cache_expiry_date_time")
    expiry = parse_iso(str(expiry_text)) if expiry_text else None
    return IdTagInfo(
        status=mapping.authorization_status(str(raw.get("status", "Invalid"))),
        expiry=expiry,
        parent_id_tag=id_token_value(raw.get("group_id_token")),
    )


def list_entries(raw: Sequence[Mapping[str, Any]]) -> list[ListEntry]:
    """``localAuthorizationList`` (AuthorizationData items) -> neutral list entries.

    An item without ``idTokenInfo`` is a removal (Differential only; the list
    refuses it in a Full update).

    Raises:
        ValueError: an item has no idToken value or an unreadable expiry.
    """
    entries = []
    for item in raw:
        token = id_token_value(item.get("id_token"))
        if token is None:
            raise ValueError("AuthorizationData without an idToken")
        info = item.get("id_token_info")
        entries.append(ListEntry(token, id_token_info(info) if isinstance(info, Mapping) else None))
    return entries


async def send_local_list(
    local_list: LocalAuthList | None,
    *,
    enabled: bool,
    version_number: int,
    update_type: str,
    local_authorization_list: Sequence[Mapping[str, Any]] | None,
) -> LocalListAnswer:
    """D01: apply one SendLocalList to the neutral list (durable before the answer).

    Args:
        local_list: The station's list; None = the station has none.
        enabled: LocalAuthListCtrlr.Enabled.
        version_number: ``versionNumber``: the list's version after the update.
        update_type: ``updateType``: "Full" or "Differential".
        local_authorization_list: The AuthorizationData items (snake_case keys).

    Returns:
        Accepted, VersionMismatch or Failed (with a reason code).

    Raises:
        StoreError: the agent database is closed (the session ends; nothing changed).
    """
    if local_list is None or not enabled:
        return LocalListAnswer("Failed", "NotEnabled")
    try:
        kind = UpdateType(update_type)
        entries = list_entries(local_authorization_list or [])
    except ValueError as e:
        log.warning("SendLocalList v%d refused: %s", version_number, e)
        return LocalListAnswer("Failed", "InvalidValue")
    status = await local_list.update(version_number, kind, entries)
    log.info(
        "SendLocalList %s v%d (%d entries): %s", update_type, version_number, len(entries), status
    )
    return _SEND_ANSWERS[status]


_SEND_ANSWERS: Mapping[UpdateStatus, LocalListAnswer] = {
    UpdateStatus.ACCEPTED: LocalListAnswer("Accepted"),
    UpdateStatus.VERSION_MISMATCH: LocalListAnswer("VersionMismatch"),
    UpdateStatus.FAILED: LocalListAnswer("Failed", "InvalidValue"),
    UpdateStatus.NOT_SUPPORTED: LocalListAnswer("Failed", "NotEnabled"),
}


async def get_local_list_version(local_list: LocalAuthList | None, *, enabled: bool) -> int:
    """D02: the installed version; 0 without a list or while it is not enabled."""
    if local_list is None or not enabled:
        return 0
    return await local_list.version()


def authorize_answer(raw: Mapping[str, Any]) -> IdTagInfo:
    """AuthorizeResponse ``idTokenInfo`` -> the neutral verdict; an unreadable
    ``cacheExpiryDateTime`` is dropped (the verdict itself still counts)."""
    try:
        return id_token_info(raw)
    except ValueError:
        log.warning(
            "Authorize: unreadable cacheExpiryDateTime %r", raw.get("cache_expiry_date_time")
        )
        return id_token_info({k: v for k, v in raw.items() if k != "cache_expiry_date_time"})
