"""Collector-side errors: the agent's typed user-facing errors, re-exported, plus the collector's own."""

from __future__ import annotations

from gpucensus.common.errors import ConfigError, GpucensusError, StateError

__all__ = ["ConfigError", "GpucensusError", "StateError", "StoreError"]


class StoreError(GpucensusError):
    """The store cannot be opened or used (unreachable, newer schema, corrupted)."""

    exit_code = 6
