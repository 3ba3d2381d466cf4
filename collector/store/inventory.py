"""Pure aggregation of the live device set into the policy scenario shape (site status and country totals are
summed from current state: `collector.store.sqlcurrent`).

Input: the devices of each node's latest attestation (decommissioned GPUs already left out). A device whose
TPP is not established counts in `gpus` and in `unaccounted`, never as zero TPP.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gpucensus.collector.store.base import Entity, Site


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


def device_key(d: CurrentDevice) -> tuple[Any, ...] | None:
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
        key = device_key(d)
        if key is None:
            unaccounted[d.site] += 1
        else:
            groups[d.site][key] += 1
    return inventory_document(as_of, entities, sites, groups, unaccounted)


def inventory_document(
    as_of: datetime,
    entities: Iterable[Entity],
    sites: Iterable[Site],
    groups: dict[str, Counter[tuple[Any, ...]]],
    unaccounted: Counter[str],
) -> dict[str, Any]:
    """The scenario document from device counts per site and `device_key` (and unaccounted counts per site)."""
    out_sites = []
    for s in sorted(sites, key=lambda s: s.id):
        rows = []
        for key, count in sorted(groups.get(s.id, {}).items(), key=lambda kv: tuple(str(x) for x in kv[0])):
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
        if unaccounted.get(s.id):
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
