"""Pure aggregation of the live device set into site status, country totals and the policy scenario shape.

Input: the devices of each node's latest attestation (decommissioned GPUs already left out). A device whose
TPP is not established counts in `gpus` and in `unaccounted`, never as zero TPP.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from collector.store.base import CountryTotals, EccnTotals, Entity, NodeStatus, Site, SiteStatus


@dataclass(frozen=True)
class CurrentDevice:
    site: str
    node_id: str
    uuid: str
    model: str
    basis: str
    tpp: int | None
    die_area_mm2: str | None
    eccn: str
    datacenter: bool
    acquired: datetime | None


def build_site_status(
    sites: Iterable[Site],
    nodes: Iterable[NodeStatus],
    devices: Iterable[CurrentDevice],
    last_attested: dict[str, datetime],
) -> list[SiteStatus]:
    node_count: Counter[str] = Counter()
    last: dict[str, datetime] = {}
    for node in nodes:
        node_count[node.site] += 1
        when = last_attested.get(node.node_id)
        if when is not None and (node.site not in last or when > last[node.site]):
            last[node.site] = when
    gpus: Counter[str] = Counter()
    tpp: Counter[str] = Counter()
    unaccounted: Counter[str] = Counter()
    for d in devices:
        gpus[d.site] += 1
        if d.tpp is None:
            unaccounted[d.site] += 1
        else:
            tpp[d.site] += d.tpp
    return [
        SiteStatus(s.id, s.country, s.entity, node_count[s.id], gpus[s.id], tpp[s.id], unaccounted[s.id],
                   last.get(s.id))
        for s in sorted(sites, key=lambda s: s.id)
    ]  # fmt: skip


def build_country_totals(sites: Iterable[Site], devices: Iterable[CurrentDevice]) -> list[CountryTotals]:
    country_of = {s.id: s.country for s in sites}
    gpus: Counter[str] = Counter()
    tpp: Counter[str] = Counter()
    unaccounted: Counter[str] = Counter()
    eccn: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for d in devices:
        country = country_of.get(d.site, "")
        gpus[country] += 1
        if d.tpp is None:
            unaccounted[country] += 1
            continue
        tpp[country] += d.tpp
        if d.eccn:
            eccn[country][d.eccn][0] += 1
            eccn[country][d.eccn][1] += d.tpp
    return [
        CountryTotals(c, gpus[c], tpp[c], unaccounted[c],
                      {k: EccnTotals(v[0], v[1]) for k, v in sorted(eccn[c].items())})
        for c in sorted(gpus)
    ]  # fmt: skip


def _device_key(d: CurrentDevice) -> tuple[Any, ...] | None:
    acquired = d.acquired.astimezone(UTC).date().isoformat() if d.acquired else ""
    if d.basis == "catalogue" and d.model:
        return ("model", d.model, acquired)
    if d.tpp is not None:
        return ("tpp", d.tpp, d.die_area_mm2, d.datacenter, acquired)
    return None


def build_inventory(
    as_of: datetime, entities: Iterable[Entity], sites: Iterable[Site], devices: Iterable[CurrentDevice]
) -> dict[str, Any]:
    """`{"as_of", "entities": [...], "sites": [{"id","country","entity","devices": [...]}]}`.

    Devices are grouped per site by model (catalogue) or by (tpp, die area, datacenter) (derived), and by
    acquisition date. A site with devices of unknown TPP carries `"unaccounted": N`.
    """
    groups: dict[str, Counter[tuple[Any, ...]]] = defaultdict(Counter)
    unaccounted: Counter[str] = Counter()
    for d in devices:
        key = _device_key(d)
        if key is None:
            unaccounted[d.site] += 1
        else:
            groups[d.site][key] += 1
    out_sites = []
    for s in sorted(sites, key=lambda s: s.id):
        rows = []
        for key, count in sorted(groups[s.id].items(), key=lambda kv: tuple(str(x) for x in kv[0])):
            if key[0] == "model":
                row: dict[str, Any] = {"model": key[1]}
            else:
                row = {"tpp": key[1], "datacenter": key[3]}
                if key[2] is not None:
                    row["die_area_mm2"] = key[2]
            row["count"] = count
            row["acquired"] = key[-1]
            rows.append(row)
        site: dict[str, Any] = {"id": s.id, "country": s.country, "entity": s.entity, "devices": rows}
        if unaccounted[s.id]:
            site["unaccounted"] = unaccounted[s.id]
        out_sites.append(site)
    return {
        "as_of": as_of.astimezone(UTC).date().isoformat(),
        "entities": [
            {"id": e.id, "headquarters": e.headquarters, "authorization": e.authorization}
            for e in sorted(entities, key=lambda e: e.id)
        ],
        "sites": out_sites,
    }
