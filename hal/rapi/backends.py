"""The OpenEVSE backends a config can name ("openevse-rapi"): pilot, contactor, meter.

Their option classes (the config keys, with checks) and factories. ``hal.registry``
imports this module when a config names one of them; pyserial and the RAPI driver
are imported when a role is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hal.options import check, positive, serial_port
from hal.registry import BackendContext, BackendError, BackendSpec


def _whole_amps(value: Any) -> str | None:
    return None if isinstance(value, int) and 6 <= value <= 80 else "must be whole amps, 6..80"


def _heartbeat_timeout(value: Any) -> str | None:
    ok = isinstance(value, int) and 1 <= value <= 65535
    return None if ok else "must be whole seconds, 1..65535"


@dataclass(frozen=True)
class RapiOptions:
    """Config of the "openevse-rapi" pilot and contactor (see ``hal.rapi``): an
    OpenEVSE controller on a serial port. Every role on one port must give the
    same values (the port has one owner, ``hal.rapi.controller.RapiLinks``)."""

    port: str = field(metadata=check(serial_port))
    baudrate: int = field(default=115200, metadata=check(positive))
    timeout_s: float = field(default=0.5, metadata=check(positive))
    heartbeat_interval_s: float = field(default=2.0, metadata=check(positive))
    heartbeat_timeout_s: int = field(default=10, metadata=check(_heartbeat_timeout))
    safe_current_a: int = field(default=6, metadata=check(_whole_amps))
    fault_after_s: float = field(default=3.0, metadata=check(positive))


@dataclass(frozen=True)
class RapiMeterOptions(RapiOptions):
    """Config of the "openevse-rapi" meter: the link keys plus polling."""

    phases: int = field(
        default=1, metadata=check(lambda v: None if v in (1, 2, 3) else "must be 1, 2 or 3")
    )
    poll_interval_s: float = field(default=1.0, metadata=check(positive))
    meter_fault_after_s: float = field(default=5.0, metadata=check(positive))


def _rapi_controller(role: str, options: RapiOptions, ctx: BackendContext) -> Any:
    from hal.rapi.controller import RapiController, RapiSettings

    if options.heartbeat_interval_s >= options.heartbeat_timeout_s:
        raise BackendError(
            f"{role} backend 'openevse-rapi': heartbeat_interval_s must be below "
            "heartbeat_timeout_s, or the controller falls back between pulses"
        )
    settings = RapiSettings(
        port=options.port,
        baudrate=options.baudrate,
        timeout_s=options.timeout_s,
        heartbeat_interval_s=options.heartbeat_interval_s,
        heartbeat_timeout_s=options.heartbeat_timeout_s,
        safe_current_a=options.safe_current_a,
        fault_after_s=options.fault_after_s,
    )
    if ctx.rapi_links is None:
        return RapiController(settings)
    try:
        return ctx.rapi_links.controller(settings)
    except ValueError as exc:
        raise BackendError(f"{role} backend 'openevse-rapi': {exc}") from exc


def _build_rapi_pilot(options: RapiOptions, ctx: BackendContext) -> object:
    from hal.rapi.roles import RapiControlPilot

    return RapiControlPilot(_rapi_controller("pilot", options, ctx))


def _build_rapi_contactor(options: RapiOptions, ctx: BackendContext) -> object:
    from hal.rapi.roles import RapiContactor

    return RapiContactor(_rapi_controller("contactor", options, ctx))


def _build_rapi_meter(options: RapiMeterOptions, ctx: BackendContext) -> object:
    from hal.rapi.roles import RapiPowerMeter

    return RapiPowerMeter(
        _rapi_controller("meter", options, ctx),
        phases=options.phases,
        poll_interval_s=options.poll_interval_s,
        fault_after_s=options.meter_fault_after_s,
    )


RAPI_PILOT = BackendSpec("pilot", "openevse-rapi", _build_rapi_pilot, RapiOptions)
RAPI_CONTACTOR = BackendSpec("contactor", "openevse-rapi", _build_rapi_contactor, RapiOptions)
RAPI_METER = BackendSpec("meter", "openevse-rapi", _build_rapi_meter, RapiMeterOptions)
