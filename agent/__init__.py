"""gpucensus agent: GPU discovery, accounting, signed attestations, uplink."""

__version__ = "0.1.0"
