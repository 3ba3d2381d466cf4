"""gpucensus collector: verification, ingest, stores, policy evaluation, reports."""

from gpucensus.common import __version__

__all__ = ["__version__"]
