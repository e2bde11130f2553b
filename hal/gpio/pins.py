"""Building a gpiozero pin factory explicitly (never gpiozero's global default).

The name comes from the config or from ``GPIOZERO_PIN_FACTORY`` (the variable
gpiozero itself reads): ``lgpio`` (all Raspberry Pi models including the Pi 5),
``rpigpio``, ``pigpio``, ``native``, or ``mock`` (tests and machines without
GPIO). Without a name, ``lgpio`` is tried first, then ``rpigpio``.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from hal.faults import HalError

_FACTORIES = {
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
    "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory"),
    "native": ("gpiozero.pins.native", "NativeFactory"),
    "mock": ("gpiozero.pins.mock", "MockFactory"),
}


def make_pin_factory(name: str | None = None) -> Any:
    """A new pin factory called ``name`` (or from the environment, or the best found).

    Raises:
        HalError: unknown name, or no factory could be loaded (one line, naming it).
    """
    name = (name or os.environ.get("GPIOZERO_PIN_FACTORY") or "").strip().lower()
    candidates = [name] if name else ["lgpio", "rpigpio"]
    problems = []
    for candidate in candidates:
        if candidate not in _FACTORIES:
            raise HalError(
                f"unknown GPIO pin factory {candidate!r} (known: {', '.join(_FACTORIES)})"
            )
        module_name, class_name = _FACTORIES[candidate]
        try:
            return getattr(importlib.import_module(module_name), class_name)()
        except Exception as e:  # missing library, no /dev/gpiochip, not a Pi
            problems.append(f"{candidate}: {e}")
    raise HalError("no GPIO pin factory available (" + "; ".join(problems) + ")")
