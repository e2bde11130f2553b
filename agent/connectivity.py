"""Whether the station is connected to its CSMS right now (version-neutral).

The OCPP adapter that owns the connection sets it (online when the CSMS accepted
the boot, offline when the session ends); the transaction journal reads it when it
records an event, so a 2.0.1 TransactionEvent can say ``offline`` for events that
happened while the station was not connected (OCPP 2.0.1 E04/E12, REFERENCE 4.4).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ConnectivityListener", "ConnectivityState"]

ConnectivityListener = Callable[[bool], None]


class ConnectivityState:
    """A flag: is a CSMS session registered (boot Accepted) and not yet ended.

    Starts offline: at boot nothing is connected yet. Only the event loop thread
    reads and writes it (adapters and the journal's callers live there).
    """

    def __init__(self) -> None:
        self._online = False
        self._listeners: list[ConnectivityListener] = []

    @property
    def online(self) -> bool:
        """True while a CSMS session is registered."""
        return self._online

    def set_online(self, online: bool) -> None:
        """Record that the CSMS session became registered (True) or ended (False).

        Listeners are called synchronously, only when the value changes.
        """
        if online == self._online:
            return
        self._online = online
        for listener in list(self._listeners):
            listener(online)

    def subscribe(self, listener: ConnectivityListener) -> Callable[[], None]:
        """Be called with the new value on every change; returns an unsubscriber."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)
