"""Fatal start-up errors: one typed exception with a hint, caught once in each CLI's main()."""

from __future__ import annotations


class GpucensusError(Exception):
    """A user-facing error: printed as one message (plus a hint), never as a traceback."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(GpucensusError):
    """Bad configuration, flags, profile or input file."""

    exit_code = 2


class DriverError(GpucensusError):
    """The NVIDIA driver or its NVML library cannot be used on this node."""

    exit_code = 3


class KeyError_(GpucensusError):  # trailing underscore: not the builtin KeyError
    """A node or collector key is missing, malformed, of the wrong type or unsafely readable."""

    exit_code = 4


class StateError(GpucensusError):
    """Persistent state (chain state, spool) is corrupted or unusable."""

    exit_code = 5
