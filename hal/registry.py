"""A registry of HAL backends by role and name, so the config can name them.

Built-in backends are registered by ``default_registry()``; vendors add board
drivers through the ``evse_agent.backends`` entry point group without forking.
A built-in backend's module (its options and factory) is imported when a config
names it, and its hardware library when a factory runs, so a config loads the code
of the backends it uses and no other.

A backend factory has the signature ``factory(options, ctx) -> backend`` where
``options`` is an instance of the spec's ``options`` dataclass (built by the
config loader from the backend's config table) and ``ctx`` a ``BackendContext``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hal.modbus.lines import ModbusRtuLines
    from hal.rapi.links import RapiLinks

ENTRY_POINT_GROUP = "evse_agent.backends"


class BackendError(Exception):
    """A backend could not be registered, found or built."""


class UnknownBackendError(BackendError, LookupError):
    """No backend of that role and name; the message lists the known names."""

    def __init__(self, role: str, name: str, known: Iterable[str]) -> None:
        self.role = role
        self.name = name
        self.known = sorted(known)
        listing = ", ".join(self.known) or "none"
        super().__init__(f"unknown {role} backend {name!r} (known {role} backends: {listing})")


@dataclass(frozen=True)
class BackendContext:
    """What factories may need besides their own options.

    Attributes:
        pin_factory: The gpiozero pin factory for GPIO backends, or None where
            the board has no GPIO (GPIO backends then refuse to build).
        modbus_rtu_lines: The owner of every RS-485 line of the station, shared
            by all "modbus-rtu" meters so that meters on one port share one bus.
            None: each such meter opens its port for itself (one meter per line).
        rapi_links: One OpenEVSE controller per serial port, shared by the
            "openevse-rapi" pilot, contactor and meter of one board. None: each
            role gets a controller of its own (only sensible for a single role).
    """

    pin_factory: Any | None = None
    modbus_rtu_lines: ModbusRtuLines | None = None
    rapi_links: RapiLinks | None = None


@dataclass(frozen=True)
class BackendSpec:
    """One backend a config can name.

    Attributes:
        role: HAL role: "meter", "contactor", "pilot", "lock", "token_reader", ...
        name: Name used in the config (``backend = "modbus-tcp"``).
        factory: ``factory(options, ctx) -> backend``.
        options: A frozen dataclass type whose fields are the backend's config
            keys (fields without defaults are required); the config loader
            validates against it.
    """

    role: str
    name: str
    factory: Callable[..., object]
    options: type


class Registry:
    """Backends by (role, name). Build one with ``default_registry()``."""

    def __init__(self) -> None:
        # a spec, or the "module:attribute" that holds it (imported by ``get``)
        self._specs: dict[tuple[str, str], BackendSpec | str] = {}

    def register(self, spec: BackendSpec, *, replace: bool = False) -> None:
        """Add a backend.

        Raises:
            BackendError: That role and name exist already (unless ``replace``).
        """
        self._add(spec.role, spec.name, spec, replace=replace)

    def register_lazy(self, role: str, name: str, target: str, *, replace: bool = False) -> None:
        """Add a backend by where its spec is: ``"package.module:ATTRIBUTE"``.

        The module is imported by the first ``get`` of that role and name.

        Raises:
            BackendError: That role and name exist already (unless ``replace``).
        """
        self._add(role, name, target, replace=replace)

    def _add(self, role: str, name: str, spec: BackendSpec | str, *, replace: bool) -> None:
        if (role, name) in self._specs and not replace:
            raise BackendError(f"{role} backend {name!r} is already registered")
        self._specs[(role, name)] = spec

    def get(self, role: str, name: str) -> BackendSpec:
        """The backend of ``role`` called ``name``.

        Raises:
            UnknownBackendError: None registered; lists the known names for the role.
            BackendError: A lazily registered spec cannot be imported or is not
                the spec of that role and name.
        """
        try:
            spec = self._specs[(role, name)]
        except KeyError:
            raise UnknownBackendError(role, name, self.names(role)) from None
        if isinstance(spec, str):
            spec = self._specs[(role, name)] = _load_spec(role, name, spec)
        return spec

    def names(self, role: str) -> list[str]:
        """Sorted names of the backends registered for ``role``."""
        return sorted(name for r, name in self._specs if r == role)

    def roles(self) -> list[str]:
        """Sorted roles that have at least one backend."""
        return sorted({role for role, _ in self._specs})

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> int:
        """Import the installed plug-ins of ``group`` and register their backends.

        Each entry point refers to a ``BackendSpec``, a list/tuple of them, or a
        callable without arguments returning either.

        Returns:
            Number of backends registered.

        Raises:
            BackendError: An entry point fails to load or yields something else;
                the message names the entry point.
        """
        count = 0
        for entry_point in importlib.metadata.entry_points(group=group):
            label = f"entry point {entry_point.name!r} ({entry_point.value}) in {group}"
            try:
                loaded = entry_point.load()
                if callable(loaded) and not isinstance(loaded, BackendSpec):
                    loaded = loaded()
            except Exception as exc:
                raise BackendError(f"{label}: failed to load: {exc}") from exc
            specs = loaded if isinstance(loaded, list | tuple) else [loaded]
            for spec in specs:
                if not isinstance(spec, BackendSpec):
                    raise BackendError(f"{label}: expected BackendSpec, got {spec!r}")
                try:
                    self.register(spec)
                except BackendError as exc:
                    raise BackendError(f"{label}: {exc}") from exc
                count += 1
        return count


def _load_spec(role: str, name: str, target: str) -> BackendSpec:
    """Import the ``BackendSpec`` at ``"module:attribute"`` and check it is ``role``/``name``.

    Raises:
        BackendError: It cannot be imported or is something else.
    """
    module, _, attribute = target.partition(":")
    label = f"{role} backend {name!r} ({target})"
    try:
        spec = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise BackendError(f"{label}: failed to load: {exc}") from exc
    if not isinstance(spec, BackendSpec) or (spec.role, spec.name) != (role, name):
        raise BackendError(f"{label}: expected its BackendSpec, got {spec!r}")
    return spec


# --- built-in backends ---------------------------------------------------------------

# (role, name, "module:attribute" of its BackendSpec). A backend's module (its options,
# checks and factory) is imported when a config names it, so the names are known (and
# a wrong one refused) without loading the code of every board.
_BUILTINS = (
    ("meter", "modbus-tcp", "hal.modbus.backends:MODBUS_TCP_METER"),
    ("meter", "modbus-rtu", "hal.modbus.backends:MODBUS_RTU_METER"),
    ("contactor", "gpio", "hal.gpio.backends:GPIO_CONTACTOR"),
    ("pilot", "gpio", "hal.gpio.backends:GPIO_PILOT"),
    ("lock", "gpio", "hal.gpio.backends:GPIO_LOCK"),
    ("indicator", "gpio", "hal.gpio.backends:GPIO_INDICATOR"),
    ("pilot", "chademo-can", "hal.can.backends:CHADEMO_CAN_PILOT"),
    ("pilot", "openevse-rapi", "hal.rapi.backends:RAPI_PILOT"),
    ("contactor", "openevse-rapi", "hal.rapi.backends:RAPI_CONTACTOR"),
    ("meter", "openevse-rapi", "hal.rapi.backends:RAPI_METER"),
)

# The option classes' old address (``from hal.registry import ModbusTcpMeterOptions``):
# class name -> the module that defines it, imported on first use (``__getattr__``).
_OPTIONS_MODULES = {
    "ModbusTcpMeterOptions": "hal.modbus.backends",
    "ModbusRtuMeterOptions": "hal.modbus.backends",
    "GpioContactorOptions": "hal.gpio.backends",
    "GpioControlPilotOptions": "hal.gpio.backends",
    "GpioConnectorLockOptions": "hal.gpio.backends",
    "GpioStatusIndicatorOptions": "hal.gpio.backends",
    "ChademoCanPilotOptions": "hal.can.backends",
    "RapiOptions": "hal.rapi.backends",
    "RapiMeterOptions": "hal.rapi.backends",
}


def __getattr__(name: str) -> Any:
    """A built-in backend's option class, by its name (imports its module)."""
    module = _OPTIONS_MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def builtin_backends() -> list[BackendSpec]:
    """The backends shipped with the agent ("sim" ones are built by SimEvseRig).

    Imports every backend module; ``default_registry()`` imports them only on use.
    """
    return [_load_spec(role, name, target) for role, name, target in _BUILTINS]


def installed_registry(group: str = ENTRY_POINT_GROUP) -> Registry:
    """The built-in backends plus every installed plug-in (entry points of ``group``):
    what the ``evse-agent`` commands use, so a vendor's backend package works once
    it is installed.

    Raises:
        BackendError: A plug-in fails to load or clashes with a backend already
            registered (the message names the entry point).
    """
    registry = default_registry()
    registry.load_entry_points(group)
    return registry


def default_registry() -> Registry:
    """A new registry holding the built-in backends (entry points not loaded yet)."""
    registry = Registry()
    for role, name, target in _BUILTINS:
        registry.register_lazy(role, name, target)
    return registry
