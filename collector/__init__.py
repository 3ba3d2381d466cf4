"""gpucensus collector: verification, ingest, stores, policy evaluation, reports."""

__version__ = "0.1.0"
