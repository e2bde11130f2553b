"""evse-agent: the firmware agent of an EV charging station."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("evse-agent")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
