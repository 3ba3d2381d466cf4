"""The dashboard's charts draw what the numbers say (geometry read back from the SVG), and escape every label."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from gpucensus.collector.dashboard import svg


def _bar(markup: str, name: str) -> dict[str, float]:
    group = re.search(rf'<g class="bar" data-id="{name}".*?</g>', markup).group(0)
    value = float(re.search(r'width="([\d.]+)" height="\d+" class="value', group).group(1))
    marker = re.search(r'<line x1="([\d.]+)"', group)
    return {"value": value, "marker": float(marker.group(1)) - svg.LABEL if marker else -1}


def test_bars_against_an_allocation_a_prohibition_and_no_limit() -> None:
    full = svg.BAR_WIDTH / 1.25
    rows = [
        {"country": "IN", "used_tpp": 395, "limit_tpp": 790, "status": "compliant"},  # half the allocation
        {"country": "MY", "used_tpp": 2000, "limit_tpp": 790, "status": "violation"},  # far over: capped at 125 %
        {"country": "CN", "used_tpp": 100, "limit_tpp": 0, "status": "violation"},  # prohibited
        {"country": "US", "used_tpp": 400, "limit_tpp": None, "status": "compliant"},  # no limit: vs the largest
    ]
    markup = svg.bars(rows, "country", "t")
    assert _bar(markup, "IN") == {"value": round(full / 2, 1), "marker": round(full, 1)}
    assert _bar(markup, "MY") == {"value": svg.BAR_WIDTH, "marker": round(full, 1)}
    assert _bar(markup, "CN") == {"value": round(full * 100 / 2000, 1), "marker": 0.0}
    assert _bar(markup, "US") == {"value": round(full * 400 / 2000, 1), "marker": -1}
    assert 'class="value status-violation"' in markup


def test_a_step_chart_has_a_point_per_instant_and_escapes_its_name() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    instants = [start + timedelta(weeks=k) for k in range(4)]
    markup = svg.step_chart(instants, "<IN>", [0, 10, 10, 30], 35, 0)
    assert markup.count("<circle") == 4 and "<IN>" not in markup and "&lt;IN&gt;" in markup
    assert re.findall(r'data-tpp="(\d+)"', markup) == ["0", "10", "10", "30"]
    assert 'class="cap on-scale" data-cap="35"' in markup
    far = svg.step_chart(instants, "AE", [1, 2, 3, 4], 790_000_000, 1)
    assert 'class="cap off-scale"' in far and "off the scale" in far
