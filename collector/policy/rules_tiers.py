"""Steps 2-4 of the evaluation: Tier 3 prohibition, LPP per consignee and year, Tier 2 country allocation."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from gpucensus.collector.policy.pack import Pack
from gpucensus.collector.policy.result import (
    HOW,
    VIOLATION,
    WARNING,
    Finding,
    ResolvedDevice,
    check_cap,
    percent,
    tpp_text,
)
from gpucensus.collector.policy.scenario import Scenario
from gpucensus.common.accounting import ECCN_A, ECCN_B


def tier3(scenario: Scenario, pack: Pack, devices: list[ResolvedDevice]) -> list[Finding]:
    """Any 3A090 device (either class, counted or not) at a site in a Tier 3 country: a violation per site."""
    if not pack.tier3_prohibited:
        return []
    by_site: dict[str, list[ResolvedDevice]] = defaultdict(list)
    for d in devices:
        if d.tier == 3 and d.eccn in (ECCN_A, ECCN_B):
            by_site[d.site].append(d)
    out = []
    for site, found in sorted(by_site.items()):
        gpus = sum(d.count for d in found)
        tpp = sum(d.total_tpp for d in found)
        out.append(Finding(VIOLATION, "tier3.prohibited", f"site:{site}",
                           f"site {site} in Tier 3 country {found[0].country} holds {gpus} 3A090 device(s), "
                           f"{tpp_text(tpp, pack.h100_reference_tpp)}; none are allowed", tpp, 0))  # fmt: skip
    return out


def allocation_for(pack: Pack, country: str, agreements: Iterable[str] = ()) -> int | None:
    """The country's allocation in TPP, or None when the country is not Tier 2 or the pack has none."""
    a = pack.allocation
    if a is None or pack.tier(country) != 2:
        return None
    tpp = a.tpp * a.country_multipliers.get(country, 1)
    if country in pack.government_agreements or country in set(agreements):
        tpp *= a.government_agreement_multiplier
    return tpp


def lpp_and_allocation(
    scenario: Scenario, pack: Pack, devices: list[ResolvedDevice], findings: list[Finding]
) -> dict[str, int]:
    """Steps 3 and 4; appends findings and returns the allocation used per Tier 2 country (TPP).

    Only acquisitions on or after the pack's `effective.from` are subject to its LPP and licensing rules: a rule
    does not reach back to exports made before it existed (they still count in installed bases and shares)."""
    plain = {e.id for e in scenario.entities if e.authorization == "none"}
    # A non-data-centre 3A090.a part goes under License Exception NAC/ACA when the pack says so: neither an LPP
    # shipment nor a licence, it counts against neither (docs/regulation.md §2).
    nac_aca = pack.nac_aca_non_datacenter_exempt
    candidates = [d for d in devices if d.counted and d.tier == 2 and d.entity in plain
                  and d.acquired_effective >= pack.effective_from and not (nac_aca and not d.datacenter)]  # fmt: skip
    licensed = _licensed(candidates, pack, findings)
    a = pack.allocation
    if a is None:
        return {}
    used: dict[str, int] = {d.country: 0 for d in devices if d.tier == 2}
    for d in licensed:
        if a.window_from <= d.acquired_effective <= a.window_through:
            used[d.country] += d.total_tpp
    for country, value in sorted(used.items()):
        limit = allocation_for(pack, country, scenario.government_agreements)
        assert limit is not None
        entities = sorted({d.entity for d in licensed if d.country == country})
        if value == 0:
            continue
        ref = pack.h100_reference_tpp
        finding = check_cap(
            value, limit, pack.warn_cap_fraction, "country.allocation", f"country:{country}",
            f"country {country}: licensed acquisitions {a.window_from.isoformat()}..{a.window_through.isoformat()} "
            f"of {', '.join(entities)}: {tpp_text(value, ref)}, {HOW} the allocation {tpp_text(limit, ref)}",
        )  # fmt: skip
        if finding:
            findings.append(finding)
    return used


def _licensed(candidates: list[ResolvedDevice], pack: Pack, findings: list[Finding]) -> list[ResolvedDevice]:
    """Devices that need licences (and so count against the allocation): all of them when the pack has no LPP;
    otherwise those of every (entity, country, year) whose acquisitions exceed that year's LPP limit."""
    if pack.lpp is None:
        return candidates
    groups: dict[tuple[str, str, int], list[ResolvedDevice]] = defaultdict(list)
    for d in candidates:
        groups[(d.entity, d.country, d.acquired_effective.year)].append(d)
    licensed = []
    for (entity, country, year), found in sorted(groups.items()):
        total = sum(d.total_tpp for d in found)
        limit = pack.lpp_limit(year)
        ref = pack.h100_reference_tpp
        if total <= (limit or 0):
            if limit and total >= pack.warn_cap_fraction * limit:
                findings.append(Finding(WARNING, "lpp.near-limit", f"entity:{entity}",
                                        f"entity {entity} in {country}: acquisitions in {year} total "
                                        f"{tpp_text(total, ref)}, at ≥ {percent(pack.warn_cap_fraction)} of the LPP "
                                        f"limit {tpp_text(limit, ref)}; going over it would make all of that year's "
                                        f"acquisitions there need licences", total, limit))  # fmt: skip
            continue
        licensed.extend(found)
        what = (
            f"over the LPP limit {tpp_text(limit, ref)}"
            if limit is not None
            else f"and this pack has no LPP exception for {year}"
        )
        findings.append(Finding(WARNING, "lpp.exceeded", f"entity:{entity}",
                                f"entity {entity} in {country}: acquisitions in {year} total {tpp_text(total, ref)}, "
                                f"{what}; all of them need licences and count against the country allocation",
                                total, limit or 0))  # fmt: skip
    return licensed
