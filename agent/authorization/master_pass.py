"""MasterPass (OCPP 2.0.1 C16), version-neutral: a token whose group (parentIdTag /
groupIdToken) is the configured MasterPass group may stop every transaction of the
station but never starts one. The group is the setting ``master_pass_group_id``
("" = the station has no MasterPass group, the OCPP 1.6 behaviour)."""

from __future__ import annotations

__all__ = ["SETTING", "is_master_pass"]

SETTING = "master_pass_group_id"
"""The neutral setting behind AuthCtrlr.MasterPassGroupId."""


def is_master_pass(parent_id_tag: str | None, master_pass_group_id: str) -> bool:
    """Whether a token of group ``parent_id_tag`` is a MasterPass.

    Args:
        parent_id_tag: The token's group (from the CSMS, the local list or the cache),
            None when it has none.
        master_pass_group_id: The configured group, "" for none.

    IdTokens compare case-insensitively.
    """
    return (
        bool(master_pass_group_id)
        and parent_id_tag is not None
        and parent_id_tag.upper() == master_pass_group_id.upper()
    )
