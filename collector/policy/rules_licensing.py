"""Licence requirements as the 2026 rules state them (issue 11), for packs with `limits.licensing` / `.headquarters`.

A Tier 3 destination (Country Group D:5 and Macau) needs a licence for every 3A090 device. How it is reviewed
decides the finding: `licence.presumption-of-denial` (a violation: such licences are, as a rule, refused) or
`licence.case-by-case` (a warning: a licence is required and may be granted; gpucensus cannot see licences). The
January 2026 rule (91 FR 1684) moved parts below a TPP and a DRAM-bandwidth threshold to case-by-case review for
China and Macau; a part whose bandwidth is unknown cannot be shown to be below it and stays under the presumption.
An entity headquartered in, or whose ultimate parent is headquartered in, a listed tier needs a licence wherever its
3A090 devices (.a and .b) are (`licence.headquarters`, a warning; BIS guidance of 2026-05-31 confirms the
requirement still applies to both paragraphs). Event-style measures are listed (`policy.note`), never
enforced.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from gpucensus.collector.policy.pack import CaseByCase, Pack
from gpucensus.collector.policy.result import INFO, VIOLATION, WARNING, Finding, ResolvedDevice, tpp_text
from gpucensus.collector.policy.scenario import Scenario
from gpucensus.common.accounting import ECCN_A, ECCN_B

PRESUMPTION_OF_DENIAL = "licence.presumption-of-denial"
CASE_BY_CASE = "licence.case-by-case"


def _case_by_case(pack: Pack, d: ResolvedDevice) -> CaseByCase | None:
    """The case-by-case policy that covers this device, if any (by country, acquisition date and figures)."""
    assert pack.licensing is not None
    for rule in pack.licensing.case_by_case:
        if d.country not in rule.countries or d.acquired_effective < rule.effective or d.tpp is None:
            continue
        bandwidth = d.dram_bandwidth_gbs
        if d.tpp < rule.tpp_below and bandwidth is not None and bandwidth < rule.dram_bandwidth_gbs_below:
            return rule
    return None


def destinations(scenario: Scenario, pack: Pack, devices: list[ResolvedDevice]) -> list[Finding]:
    """Per site in a Tier 3 country: one finding per review policy for its 3A090 devices."""
    if pack.licensing is None:
        return []
    groups: dict[tuple[str, str], list[tuple[ResolvedDevice, CaseByCase | None]]] = defaultdict(list)
    for d in devices:
        if d.tier == 3 and d.eccn in (ECCN_A, ECCN_B):
            rule = _case_by_case(pack, d)
            groups[(d.site, CASE_BY_CASE if rule else PRESUMPTION_OF_DENIAL)].append((d, rule))
    out = []
    ref = pack.h100_reference_tpp
    for (site, kind), found in sorted(groups.items()):
        first = found[0][0]
        gpus, tpp = sum(d.count for d, _ in found), sum(d.total_tpp for d, _ in found)
        models = ", ".join(sorted({f"{d.count} × {d.model}" for d, _ in found}))
        head = f"site {site} in Tier 3 country {first.country}: {gpus} 3A090 device(s) ({models}), {tpp_text(tpp, ref)}"
        if kind == CASE_BY_CASE:
            rule = found[0][1]
            assert rule is not None
            message = (
                f"{head}: a licence is required, reviewed case by case (TPP < {rule.tpp_below:,} and DRAM "
                f"bandwidth < {rule.dram_bandwidth_gbs_below:,} GB/s, from {rule.effective.isoformat()} "
                f"[{rule.source}]); record the licence"
            )
            out.append(Finding(WARNING, CASE_BY_CASE, f"site:{site}", message, tpp, None))
        else:
            unknown = sum(d.count for d, _ in found if d.dram_bandwidth_gbs is None)
            why = f"; {unknown} of them with DRAM bandwidth unknown" if unknown else ""
            message = (
                f"{head}: a licence is required and reviewed with a presumption of denial "
                f"[{pack.licensing.source}]{why}"
            )
            out.append(Finding(VIOLATION, PRESUMPTION_OF_DENIAL, f"site:{site}", message, tpp, 0))
    return out


def headquarters(scenario: Scenario, pack: Pack, devices: list[ResolvedDevice]) -> list[Finding]:
    """Entities headquartered (or with their ultimate parent) in a listed tier: a licence for every 3A090 device,
    wherever it is. Devices in Tier 3 sites already have their own finding; these are the others."""
    h = pack.headquarters
    if h is None:
        return []
    out = []
    ref = pack.h100_reference_tpp
    for e in sorted(scenario.entities, key=lambda e: e.id):
        where = [c for c in (e.headquarters, e.parent_country) if pack.tier(c) in h.tiers]
        if not where:
            continue
        found = [d for d in devices if d.entity == e.id and d.eccn in (ECCN_A, ECCN_B) and d.tier not in h.tiers]
        if not found:
            continue
        gpus, tpp = sum(d.count for d in found), sum(d.total_tpp for d in found)
        whose = "is headquartered" if where[0] == e.headquarters else "has its ultimate parent headquartered"
        out.append(Finding(WARNING, "licence.headquarters", f"entity:{e.id}",
                           f"entity {e.id} {whose} in {where[0]} (Tier {pack.tier(where[0])}): its {gpus} "
                           f"3A090 device(s) outside Tier 3, {tpp_text(tpp, ref)}, need a licence wherever they "
                           f"are [{h.source}]; record the licences", tpp, None))  # fmt: skip
    return out


def notes(pack: Pack, as_of: date) -> list[Finding]:
    """The pack's event-style measures up to `as_of`, as information: listed with their source, not enforced."""
    return [Finding(INFO, "policy.note", f"policy:{pack.name}",
                    f"{n.date.isoformat()}: {n.text} [{n.source}] (listed, not enforced as a rule)")
            for n in pack.notes if n.date <= as_of]  # fmt: skip
