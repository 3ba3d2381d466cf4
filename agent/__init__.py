"""gpucensus agent: GPU discovery, accounting, signed attestations, uplink."""

from gpucensus.common import __version__

__all__ = ["__version__"]
