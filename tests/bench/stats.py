"""Pure helpers for the figures: medians of repeated runs with their spread, percentiles, ratios to limits.

Why medians and spreads: the machine is shared, so the best run flatters and one run is noise; the median of
at least three with its min-max says how much to trust it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """The median of repeated runs and their range."""

    median: float
    low: float
    high: float
    runs: int

    def text(self, digits: int = 0) -> str:
        if self.runs == 1:
            return f"{self.median:,.{digits}f}"
        return f"{self.median:,.{digits}f} ({self.low:,.{digits}f}–{self.high:,.{digits}f})"


def summarize(values: Sequence[float]) -> Figure:
    if not values:
        raise ValueError("no runs to summarize")
    return Figure(statistics.median(values), min(values), max(values), len(values))


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (`fraction` in 0..1) of `values`; nearest rank never invents a value."""
    if not values:
        raise ValueError("no values")
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction {fraction} is not within 0..1")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil(n * fraction), at least the first
    return ordered[int(rank) - 1]


def ratio(value: float, limit: float) -> str:
    """`value / limit` with three significant digits; '—' when the limit could not be measured."""
    if limit <= 0:
        return "—"
    return f"{value / limit:.3g}"
