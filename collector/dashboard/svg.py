"""Inline SVG charts for the dashboard: bars against a limit, and a step chart of a country's TPP over time against
its cap.

No style attributes (the CSP allows only the stylesheet): colours come from classes (`status-violation`,
`series-3`); every text is escaped. Each mark carries `data-*` attributes with its value, so a test (or a
reader of the page source) can check what is drawn.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

BAR_WIDTH = 520
ROW = 26
LABEL = 70


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def bars(rows: list[dict[str, Any]], label: str, title: str) -> str:
    """One bar per row: `used_tpp` against `limit_tpp`. A limit is a marker at 80 % of the track (a bar over it runs
    on, up to 125 % of it); a limit of 0 (prohibited) is a marker at the start; with no limit the bar is measured
    against the largest value on the chart. Coloured by `status`."""
    top = max([r["used_tpp"] or 0 for r in rows] + [1])
    full = BAR_WIDTH / 1.25  # where a limit sits
    height = ROW * len(rows) + 8
    out = [f'<svg class="bars" viewBox="0 0 {LABEL + BAR_WIDTH + 170} {height}" role="img" aria-label="{_e(title)}">']
    for i, r in enumerate(rows):
        y = 4 + i * ROW
        used, limit = r["used_tpp"] or 0, r["limit_tpp"]
        if limit:
            width, marker, note = full * min(used / limit, 1.25), full, f"{used / limit:.0%} of {limit:,}"
        else:
            width, marker = full * used / top, (0.0 if limit == 0 else None)
            note = "prohibited" if limit == 0 else "no limit"
        out.append(f'<g class="bar" data-id="{_e(r[label])}" data-used="{used}" data-limit="{_e(limit)}">')
        out.append(f'<text x="0" y="{y + 17}" class="label">{_e(r[label])}</text>')
        out.append(f'<rect x="{LABEL}" y="{y}" width="{BAR_WIDTH}" height="{ROW - 6}" class="track"/>')
        out.append(f'<rect x="{LABEL}" y="{y}" width="{width:.1f}" height="{ROW - 6}" '
                   f'class="value status-{_e(r["status"])}"/>')  # fmt: skip
        if marker is not None:
            out.append(f'<line x1="{LABEL + marker:.1f}" x2="{LABEL + marker:.1f}" y1="{y - 2}" y2="{y + ROW - 4}" '
                       'class="limit"/>')  # fmt: skip
        out.append(f'<text x="{LABEL + BAR_WIDTH + 8}" y="{y + 17}" class="figure">{used:,} TPP · {_e(note)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def step_chart(instants: list[datetime], name: str, values: list[int], cap: int | None, colour: int) -> str:
    """One country's TPP at each instant, as steps, with its cap dashed: on the chart when it is within reach of
    the values (at most 4 times the peak), else named at the top edge as off the scale."""
    width, height, left, bottom = 760, 180, 90, 30
    peak = max(values, default=0)
    top = max(peak * 1.25, 1)
    on_scale = bool(cap) and (peak == 0 or cap <= 4 * peak)
    if cap and on_scale:
        top = max(top, cap * 1.1)
    n = len(instants)

    def x(i: int) -> float:
        return left + (width - left - 20) * (i / (n - 1) if n > 1 else 0.5)

    def y(v: float) -> float:
        return 10 + (height - bottom - 10) * (1 - v / top)

    css = f"series-{colour % 8}"
    out = [f'<svg class="history" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(name)}: TPP over time">']
    out.append(f'<line x1="{left}" x2="{width - 20}" y1="{y(0):.1f}" y2="{y(0):.1f}" class="axis"/>')
    out.append(f'<text x="{left - 6}" y="{y(0) + 4:.1f}" class="tick end">0</text>')
    out.append(f'<text x="{left - 6}" y="{y(peak) + 4:.1f}" class="tick end">{peak:,}</text>')
    if instants:
        out.append(f'<text x="{x(0):.1f}" y="{height - 8}" class="tick">{instants[0]:%Y-%m-%d}</text>')
        out.append(f'<text x="{x(n - 1):.1f}" y="{height - 8}" class="tick end">{instants[-1]:%Y-%m-%d}</text>')
    steps: list[str] = []
    for i, v in enumerate(values):
        if i:
            steps.append(f"{x(i):.1f},{y(values[i - 1]):.1f}")
        steps.append(f"{x(i):.1f},{y(v):.1f}")
    out.append(f'<g class="series" data-country="{_e(name)}">')
    out.append(f'<polyline points="{" ".join(steps)}" class="line {css}"/>')
    for i, v in enumerate(values):
        out.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3.5" class="point {css}" '
                   f'data-at="{instants[i]:%Y-%m-%dT%H:%M:%SZ}" data-tpp="{v}"><title>{_e(name)} '
                   f'{instants[i]:%Y-%m-%d}: {v:,} TPP</title></circle>')  # fmt: skip
    if cap:
        at = y(cap) if on_scale else 10
        label = f"cap {cap:,} TPP" if on_scale else f"cap {cap:,} TPP (off the scale: peak {peak / cap:.2%})"
        out.append(f'<line x1="{left}" x2="{width - 20}" y1="{at:.1f}" y2="{at:.1f}" '
                   f'class="cap {"on-scale" if on_scale else "off-scale"}" data-cap="{cap}"/>')  # fmt: skip
        out.append(f'<text x="{width - 22}" y="{at + 14:.1f}" class="tick end">{_e(label)}</text>')
    out.append("</g></svg>")
    return "".join(out)
