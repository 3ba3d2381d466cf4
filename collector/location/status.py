"""Each site's location status, for reports, the live inventory and the per-country totals; and the policy option
that counts the GPUs of implausibly located nodes in "unknown". Pure.

A site's status is the worst of its nodes' last verdicts (`RANK`, worst first); a site without coordinates is
`unlocated`, a node without a verdict `unmeasured`. No landmark registered: location evidence is not in use and
every status is "" (nothing to show).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from gpucensus.collector.location.records import (
    IMPLAUSIBLE,
    IN_COUNTRY,
    STALE,
    UNLOCATED,
    UNMEASURED,
    UNPROVEN,
    NodeLocation,
    SiteLocation,
)
from gpucensus.collector.policy.result import WARNING, Evaluation, Finding, sort_findings
from gpucensus.collector.policy.scenario import Scenario

RANK = (IMPLAUSIBLE, UNLOCATED, STALE, UNMEASURED, UNPROVEN, IN_COUNTRY)  # worst first
UNKNOWN_COUNTRY = "unknown"
UNKNOWN_SUFFIX = "@location-unknown"  # the part of a site whose nodes are implausibly located


def site_statuses(
    sites: Iterable[str],
    located: Mapping[str, SiteLocation],
    verdicts: Mapping[str, NodeLocation],
    nodes_of: Mapping[str, Iterable[str]],
    in_use: bool,
) -> dict[str, str]:
    """site id -> its location status ("" for every site while no landmark is registered)."""
    out: dict[str, str] = {}
    for site in sites:
        if not in_use:
            out[site] = ""
        elif site not in located:
            out[site] = UNLOCATED
        else:
            nodes = list(nodes_of.get(site, ()))
            statuses = [verdicts[n].status if n in verdicts else UNMEASURED for n in nodes] or [UNMEASURED]
            out[site] = min(statuses, key=lambda s: RANK.index(s) if s in RANK else 0)
    return out


def implausible_nodes(verdicts: Mapping[str, NodeLocation]) -> frozenset[str]:
    return frozenset(n for n, v in verdicts.items() if v.status == IMPLAUSIBLE)


def unknown_site(site: str) -> str:
    return site + UNKNOWN_SUFFIX


def count_in_unknown(scenario: Scenario, evaluate_scenario: Callable[[Scenario], Evaluation]) -> Evaluation:
    """Evaluate with the sites split off for implausibly located nodes (`unknown_site`) placed in "unknown"."""
    moved = [s for s in scenario.sites if s.id.endswith(UNKNOWN_SUFFIX)]
    sites = tuple(replace(s, country=UNKNOWN_COUNTRY) if s in moved else s for s in scenario.sites)
    result = evaluate_scenario(replace(scenario, sites=sites))
    notes = [
        Finding(WARNING, "location.unknown", f"site:{s.id}",
                f"{sum(d.count for d in s.devices) + s.unaccounted} GPU(s) of implausibly located nodes enrolled at "
                f"site {s.id.removesuffix(UNKNOWN_SUFFIX)} ({s.country}) are counted in '{UNKNOWN_COUNTRY}' "
                "(policy pack option [location] implausible_as_unknown)")
        for s in moved
    ]  # fmt: skip
    return replace(result, findings=tuple(sort_findings([*result.findings, *notes])))


def location_rows(store: Any, site_ids: Iterable[str]) -> list[dict[str, Any]] | None:  # a LocationStore and Store
    """Each site's location status with its nodes', for reports; None while no landmark is registered."""
    if not store.list_landmarks():
        return None
    located, verdicts = store.site_locations(), store.node_locations()
    nodes_of: dict[str, list[str]] = {}
    for node in store.list_nodes():
        nodes_of.setdefault(node.site, []).append(node.node_id)
    statuses = site_statuses(site_ids, located, verdicts, nodes_of, in_use=True)
    rows = []
    for site, status in sorted(statuses.items()):
        where = located.get(site)
        nodes = [
            {"node_id": n, "status": verdicts[n].status if n in verdicts else UNMEASURED,
             "message": verdicts[n].message if n in verdicts else ""}
            for n in sorted(nodes_of.get(site, []))
        ]  # fmt: skip
        rows.append({"site": site, "status": status, "latitude": where.latitude if where else None,
                     "longitude": where.longitude if where else None, "nodes": nodes})  # fmt: skip
    return rows


def current_statuses(store: Any) -> dict[str, str]:
    """site id -> location status for the live inventory queries ({} while no landmark is registered)."""
    rows = location_rows(store, [s.id for s in store.list_sites()])
    return {row["site"]: row["status"] for row in rows or []}


def sites_by_location(store: Any) -> dict[str, dict[str, int]]:
    """country -> location status -> number of sites ({} while no landmark is registered)."""
    statuses = current_statuses(store)
    out: dict[str, dict[str, int]] = {}
    for site in store.list_sites():
        if site.id in statuses:
            counts = out.setdefault(site.country, {})
            counts[statuses[site.id]] = counts.get(statuses[site.id], 0) + 1
    return out
