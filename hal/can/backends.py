"""The CAN backend a config can name: the "chademo-can" pilot.

Its option class (the config keys, with checks) and factory. ``hal.registry``
imports this module when a config names it; python-can itself is imported when
the interface name is checked or the pilot is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hal.options import check, positive
from hal.registry import BackendContext, BackendSpec


def _can_interface(value: Any) -> str | None:
    from can.interfaces import VALID_INTERFACES

    known = ", ".join(sorted(VALID_INTERFACES))
    return None if value in VALID_INTERFACES else f"unknown python-can interface (known: {known})"


def _can_channel(value: Any) -> str | None:
    return None if value else "must name a CAN channel (e.g. can0)"


def _byte_current(value: Any) -> str | None:
    return None if 1 <= value <= 255 else "must be 1..255 A (one CHAdeMO byte)"


def _word_voltage(value: Any) -> str | None:
    return None if 1 <= value <= 65535 else "must be 1..65535 V"


@dataclass(frozen=True)
class ChademoCanPilotOptions:
    """Config of the "chademo-can" pilot (see ``hal.can.chademo_pilot``): the CHAdeMO
    vehicle link on a CAN interface, driven by the core like a CP line."""

    interface: str = field(default="socketcan", metadata=check(_can_interface))
    channel: str = field(default="can0", metadata=check(_can_channel))
    bitrate: int = field(default=500_000, metadata=check(positive))
    max_voltage_v: int = field(default=500, metadata=check(_word_voltage))
    max_current_a: int = field(default=125, metadata=check(_byte_current))
    timeout_s: float = field(default=1.0, metadata=check(positive))


def _build_chademo_can_pilot(options: ChademoCanPilotOptions, ctx: BackendContext) -> object:
    del ctx
    from hal.can.chademo_pilot import ChademoCanPilot
    from hal.can.endpoint import open_bus

    return ChademoCanPilot(
        open_bus=lambda: open_bus(options.interface, options.channel, options.bitrate),
        max_voltage_v=options.max_voltage_v,
        max_current_a=options.max_current_a,
        timeout_s=options.timeout_s,
        name=f"chademo-{options.channel}",
    )


CHADEMO_CAN_PILOT = BackendSpec(
    "pilot", "chademo-can", _build_chademo_can_pilot, ChademoCanPilotOptions
)
