"""RapiLinks: one ``RapiController`` per serial port, shared by the roles of one board.

Kept apart from ``hal.rapi.controller`` so that the composition root can own the
links of a station without importing pyserial and the RAPI driver: those load when
the first "openevse-rapi" role asks for its controller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hal.rapi.controller import RapiController, RapiSettings


class RapiLinks:
    """One ``RapiController`` per serial port, shared by the roles of one board.

    The composition root makes one and hands it to the factories through
    ``hal.registry.BackendContext``; it closes them all at shutdown.
    """

    def __init__(self) -> None:
        self._controllers: dict[str, RapiController] = {}

    def controller(self, settings: RapiSettings) -> RapiController:
        """The controller on ``settings.port``, made on first use.

        Raises:
            ValueError: The port is already used with different settings (the
                roles of one board must agree on the link and its supervision).
        """
        from hal.rapi.controller import RapiController

        existing = self._controllers.get(settings.port)
        if existing is None:
            existing = self._controllers[settings.port] = RapiController(settings)
        elif existing.settings != settings:
            raise ValueError(
                f"{settings.port} is already used with {existing.settings}, not {settings}: "
                "the roles of one RAPI controller must share its settings"
            )
        return existing

    async def close(self) -> None:
        """Close every controller's port. Idempotent."""
        for controller in self._controllers.values():
            await controller.close()
