"""From a round-trip time to the farthest a node can be: nothing travels faster than light in fibre.

The landmark measured the time from sending a challenge to receiving its signed answer: twice the one-way
propagation, plus the node's signing and both hosts' network stacks. Everything but propagation only makes the
time longer, so `(rtt - allowance) / 2 * v` bounds the distance from above, as long as `allowance` is no more
than the smallest processing time any node can have (the collector's `[location] processing_allowance_us`,
kept below the loopback overhead measured by tests/bench/bench_location.py) and `v` is no less than the
fastest path's speed (`[location] fibre_speed_km_per_s`: 2/3 c by default, light in glass of refractive index
1.5; a path over microwave or free-space links is faster, up to c).
"""

from __future__ import annotations

SPEED_OF_LIGHT_KM_PER_S = 299_792.458  # exact, by the SI definition of the metre
DEFAULT_FIBRE_SPEED_KM_PER_S = SPEED_OF_LIGHT_KM_PER_S * 2 / 3


def max_distance_m(rtt_us: int, fibre_speed_km_per_s: float, allowance_us: int = 0) -> float:
    """The largest distance (metres) compatible with a round-trip time of `rtt_us` microseconds."""
    one_way_s = max(0, rtt_us - allowance_us) / 2 / 1_000_000
    return one_way_s * fibre_speed_km_per_s * 1000.0


def rtt_us_for(distance_m: float, fibre_speed_km_per_s: float = DEFAULT_FIBRE_SPEED_KM_PER_S) -> float:
    """The shortest possible round-trip time over `distance_m` (the inverse of `max_distance_m`)."""
    return 2 * distance_m / (fibre_speed_km_per_s * 1000.0) * 1_000_000
