"""A pack as data for `policy show`: a JSON-ready dict and readable lines (display only)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from gpucensus.collector.policy.pack import Pack
from gpucensus.collector.policy.result import percent, points


def _share(value: Fraction | None) -> str | None:
    return None if value is None else str(float(value))


def pack_dict(p: Pack) -> dict[str, Any]:
    a, u, n, lic, hq = p.allocation, p.uveu, p.nveu, p.licensing, p.headquarters
    return {
        **p.summary(),
        "status_source": p.status_source or None,
        "sources": list(p.sources),
        "tier_changes": [{"effective": c.effective.isoformat(), "country": c.country, "before": c.before,
                          "after": c.after, "source": c.source} for c in p.tier_changes],
        "notes": [{"date": x.date.isoformat(), "text": x.text, "source": x.source} for x in p.notes],
        "effective": {"from": p.effective_from.isoformat(),
                      "until": p.effective_until.isoformat() if p.effective_until else None},
        "h100_reference_tpp": p.h100_reference_tpp,
        "counted_classes": list(p.counted_classes),
        "government_agreements": sorted(p.government_agreements),
        "tiers": {"as_of": p.tiers_as_of.isoformat(), "default": p.default_tier, "tier1": sorted(p.tier1),
                  "tier3": sorted(p.tier3)},
        "limits": {
            "tier3": {"prohibited": p.tier3_prohibited},
            "licensing": None if lic is None else {
                "review": lic.review, "source": lic.source,
                "case_by_case": [{"countries": sorted(c.countries), "effective": c.effective.isoformat(),
                                  "tpp_below": c.tpp_below, "dram_bandwidth_gbs_below": c.dram_bandwidth_gbs_below,
                                  "source": c.source} for c in lic.case_by_case]},
            "headquarters": None if hq is None else {"licence_required_tiers": list(hq.tiers), "source": hq.source},
            "nac_aca": {"non_datacenter_exempt": p.nac_aca_non_datacenter_exempt},
            "lpp": None if p.lpp is None else [{"from_year": s.from_year, "tpp": s.tpp} for s in p.lpp],
            "allocation": None if a is None else {
                "tpp": a.tpp, "window_from": a.window_from.isoformat(),
                "window_through": a.window_through.isoformat(),
                "government_agreement_multiplier": a.government_agreement_multiplier,
                "country_multipliers": a.country_multipliers},
            "uveu": None if u is None else {
                "headquarters_tiers": list(u.headquarters_tiers), "tier1_min_share": _share(u.tier1_min_share),
                "country_max_share": _share(u.country_max_share),
                "headquarters_country_min_share": {k: _share(v) for k, v in u.headquarters_country_min_share.items()},
                "tier3_sites_prohibited": u.tier3_sites_prohibited},
            "nveu": None if n is None else {
                "headquarters_excluded_tiers": list(n.headquarters_excluded_tiers),
                "installed_base": [{"through": s.through.isoformat(), "tpp": s.tpp} for s in n.installed_base]},
        },
        "warnings": {"cap_fraction": _share(p.warn_cap_fraction),
                     "min_share_margin": _share(p.warn_min_share_margin)},
    }  # fmt: skip


def pack_lines(p: Pack) -> list[str]:
    until = p.effective_until.isoformat() if p.effective_until else "open"
    since = f" since {p.status_since.isoformat()}" if p.status_since else ""
    cited = f" [{p.status_source}]" if p.status_source else ""
    lines = [
        f"{p.name} {p.version} ({p.status}): {p.title}",
        f"status: {p.status}{since}{cited}",
        f"effective {p.effective_from.isoformat()} to {until}; source: {p.source}",
        f"counted classes: {', '.join(p.counted_classes)}; H100 reference: {p.h100_reference_tpp:,} TPP",
        f"tiers as of {p.tiers_as_of.isoformat()}; every other country is Tier {p.default_tier}",
        f"  tier 1 ({len(p.tier1)}): {' '.join(sorted(p.tier1)) or '-'}",
        f"  tier 3 ({len(p.tier3)}): {' '.join(sorted(p.tier3)) or '-'}",
    ]
    lines += [f"  from {c.effective.isoformat()}: {c.country} tier {c.before} -> {c.after} [{c.source}]"
              for c in p.tier_changes]  # fmt: skip
    if (lic := p.licensing) is not None:
        lines.append(f"tier 3: a licence for every 3A090 item, {lic.review} [{lic.source}]")
        lines += [f"  case-by-case from {c.effective.isoformat()} in {' '.join(sorted(c.countries))} for TPP < "
                  f"{c.tpp_below:,} and DRAM bandwidth < {c.dram_bandwidth_gbs_below:,} GB/s [{c.source}]"
                  for c in lic.case_by_case]  # fmt: skip
    else:
        lines.append(f"tier 3: {'3A090 items prohibited' if p.tier3_prohibited else 'no prohibition'}")
    if (hq := p.headquarters) is not None:
        tiers = "/".join(map(str, hq.tiers))
        lines.append(f"headquarters: an entity headquartered (or with its ultimate parent) in tier {tiers} needs a "
                     f"licence for its 3A090 items anywhere [{hq.source}]")  # fmt: skip
    if p.nac_aca_non_datacenter_exempt:
        lines.append("NAC/ACA: non-data-centre 3A090.a parts count against neither LPP nor allocation")
    if p.lpp is not None:
        steps = ", ".join(f"{s.tpp:,} TPP from {s.from_year}" for s in p.lpp)
        lines.append(f"LPP per consignee, country and calendar year: {steps}")
    if (a := p.allocation) is not None:
        extra = "".join(f", {cc} ×{m}" for cc, m in sorted(a.country_multipliers.items()))
        lines.append(f"Tier 2 allocation: {a.tpp:,} TPP per country for acquisitions {a.window_from.isoformat()}"
                     f"..{a.window_through.isoformat()}; ×{a.government_agreement_multiplier} with a government "
                     f"agreement{extra}")  # fmt: skip
    if (u := p.uveu) is not None:
        parts = [f"headquarters in tier {'/'.join(map(str, u.headquarters_tiers))}"]
        if u.tier1_min_share is not None:
            parts.append(f"≥ {percent(u.tier1_min_share)} in Tier 1")
        if u.country_max_share is not None:
            parts.append(f"≤ {percent(u.country_max_share)} in any one Tier 2 country")
        parts += [f"≥ {percent(v)} in {cc} if headquartered there"
                  for cc, v in sorted(u.headquarters_country_min_share.items())]  # fmt: skip
        if u.tier3_sites_prohibited:
            parts.append("no Tier 3 sites")
        lines.append(f"UVEU: {'; '.join(parts)}")
    if (n := p.nveu) is not None:
        steps = ", ".join(f"{s.tpp:,} TPP through {s.through.isoformat()}" for s in n.installed_base)
        excluded = "/".join(map(str, n.headquarters_excluded_tiers)) or "-"
        lines.append(f"NVEU: headquarters not in tier {excluded}; per-country installed base {steps} "
                     "(the last holds after)")  # fmt: skip
    lines.append(f"warnings at ≥ {percent(p.warn_cap_fraction)} of a cap, < "
                 f"{points(p.warn_min_share_margin)} above a minimum share")  # fmt: skip
    if p.notes:
        lines.append("notes (event-style measures: listed, not enforced):")
        lines += [f"  {x.date.isoformat()}: {x.text} [{x.source}]" for x in p.notes]
    lines.append("sources:")
    lines += [f"  [{s['id']}] {s['citation']}" + (f" <{s['url']}>" if "url" in s else "") for s in p.sources]
    return lines
