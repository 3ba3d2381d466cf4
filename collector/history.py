"""The inventory at any past instant, and series of it over time, rebuilt from the stored attestations.

The inventory at an instant T: for each node, its last attestation *stated* at or before T (the node's own signed
timestamp, which the collector bounds at ingest: not in the future, not long before enrolment), at the site that
attestation names, less the GPUs decommissioned at or before T (a decommissioned GPU counts until its
decommission time). Sites' countries and entities' authorizations are the registry's current ones. The store
answers it with one index seek per node (`attestations_node_stated`), so the cost of an instant grows with the
number of nodes, not with the number of attestations kept.

A history is that, evaluated under a pack at each instant of a range (`--every 1d|1w|1mo`): per country and per
entity TPP, H100e, counted TPP, allocation used and status. Instants given as a date mean the END of that day
(UTC): "at 2026-09-30" counts everything stated on the 30th.
"""

from __future__ import annotations

import calendar
import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from gpucensus.collector.errors import ConfigError
from gpucensus.collector.policy import Evaluation, Pack, evaluate, parse_scenario
from gpucensus.collector.policy.render import grid, int_text
from gpucensus.collector.store.base import Store
from gpucensus.common.accounting import Rules
from gpucensus.common.catalogue import Catalogue
from gpucensus.common.safe_text import csv_cell

STEPS = ("1d", "1w", "1mo")
MAX_POINTS = 1000  # a series longer than this is refused: ask for a coarser step


def parse_instant(value: str, what: str = "--at") -> datetime:
    """An RFC 3339 time (`2026-09-30T23:59:59Z`) or a date, meaning the end of that day (UTC)."""
    text = value.strip()
    try:
        if len(text) == 10:
            return end_of_day(date.fromisoformat(text))
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{what}: expected a date (YYYY-MM-DD) or a time (YYYY-MM-DDTHH:MM:SSZ), got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        raise ConfigError(f"{what}: {value!r} has no time zone", hint="add Z for UTC, e.g. 2026-09-30T23:59:59Z")
    return parsed.astimezone(UTC)


def end_of_day(day: date) -> datetime:
    """The day's last second (statements are stamped to the second, so nothing stated that day comes later)."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)


def instants(start: datetime, end: datetime, every: str) -> list[datetime]:
    """`start`, `start` + every, ... up to `end` inclusive; months keep `start`'s day (clamped to a month's end)."""
    if every not in STEPS:
        raise ConfigError(f"--every: expected one of {', '.join(STEPS)}, got {every!r}")
    if end < start:
        raise ConfigError(f"--to {iso(end)} is before --from {iso(start)}")
    out: list[datetime] = []
    k = 0
    while True:
        if every == "1mo":
            month = start.month - 1 + k
            year, month = start.year + month // 12, month % 12 + 1
            point = start.replace(year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1]))
        else:
            point = start + timedelta(days=k * (1 if every == "1d" else 7))
        if point > end:
            return out
        if len(out) == MAX_POINTS:
            raise ConfigError(f"the history has more than {MAX_POINTS} points", hint="use a coarser --every")
        out.append(point)
        k += 1


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def evaluate_at(
    store: Store, at: datetime, pack: Pack, catalogue: Catalogue, rules: Rules, as_of: date | None = None
) -> Evaluation:
    """The pack's evaluation of the inventory at `at`, its date rules applied at `as_of` (default: `at`'s date)."""
    inventory = store.inventory_at(at)
    return evaluate(parse_scenario(inventory, f"inventory at {iso(at)}", as_of or at.date()), pack, catalogue, rules)


@dataclass(frozen=True)
class Point:
    at: datetime
    countries: tuple[dict[str, Any], ...]
    entities: tuple[dict[str, Any], ...]
    violations: int
    warnings: int


def point(at: datetime, ev: Evaluation) -> Point:
    """Per country and entity: all TPP, counted TPP, H100e (of the counted TPP), allocation and status."""
    ref = ev.h100_reference_tpp
    all_tpp: dict[str, int] = defaultdict(int)
    entity_tpp: dict[str, int] = defaultdict(int)
    for site in ev.sites:
        for d in site.devices:
            all_tpp[site.country] += d.total_tpp
            entity_tpp[site.entity] += d.total_tpp
    countries = tuple(
        {"country": c.country, "tier": c.tier, "tpp": all_tpp[c.country], "counted_tpp": c.tpp,
         "h100e": round(c.tpp / ref, 2), "allocation_tpp": c.allocation_tpp,
         "allocation_used_tpp": c.allocation_used_tpp, "status": c.status}
        for c in ev.countries
    )  # fmt: skip
    entities = tuple(
        {"entity": e.id, "authorization": e.authorization, "tpp": entity_tpp[e.id], "counted_tpp": e.tpp,
         "h100e": round(e.tpp / ref, 2), "status": e.status}
        for e in ev.entities
    )  # fmt: skip
    return Point(at, countries, entities, ev.count("violation"), ev.count("warning"))


def history(store: Store, points: list[datetime], pack: Pack, catalogue: Catalogue, rules: Rules) -> list[Point]:
    """Each instant as `evaluate_at` evaluates it; the inventories read together (`Store.inventories_at`)."""
    return [
        point(at, evaluate(parse_scenario(inventory, f"inventory at {iso(at)}", at.date()), pack, catalogue, rules))
        for at, inventory in zip(points, store.inventories_at(points), strict=True)
    ]


# --- output ---------------------------------------------------------------------------------------------------

COUNTRY_COLUMNS = ("at", "record", "id", "tier", "authorization", "tpp", "counted_tpp", "h100e", "allocation_tpp",
                   "allocation_used_tpp", "status")  # fmt: skip


def rows(series: list[Point]) -> list[dict[str, Any]]:
    """One flat row per (instant, country) and (instant, entity); `record` tells which."""
    out: list[dict[str, Any]] = []
    for p in series:
        when = iso(p.at)
        out += [{"at": when, "record": "country", "id": c["country"], **c} for c in p.countries]
        out += [{"at": when, "record": "entity", "id": e["entity"], **e} for e in p.entities]
    return out


def to_dict(pack: Pack, series: list[Point], every: str) -> dict[str, Any]:
    return {
        "policy": pack.summary(),
        "every": every,
        "points": [
            {"at": iso(p.at), "countries": list(p.countries), "entities": list(p.entities),
             "summary": {"violations": p.violations, "warnings": p.warnings}}
            for p in series
        ],
    }  # fmt: skip


def render_history(pack: Pack, series: list[Point], every: str, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(to_dict(pack, series, every), indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        w = csv.DictWriter(out, fieldnames=COUNTRY_COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for row in rows(series):
            w.writerow({k: csv_cell(v) for k, v in row.items()})
        return out.getvalue()
    lines = [f"policy {pack.name} ({pack.status}), every {every}", ""]
    lines += grid(
        ["AT", "RECORD", "ID", "TPP", "COUNTED TPP", "H100E", "ALLOCATION", "USED", "STATUS"],
        [[r["at"], r["record"], r["id"], int_text(r["tpp"]), int_text(r["counted_tpp"]), f"{r['h100e']:,.2f}",
          int_text(r.get("allocation_tpp")), int_text(r.get("allocation_used_tpp")), r["status"]]
         for r in rows(series)],
    )  # fmt: skip
    return "\n".join(lines) + "\n"
