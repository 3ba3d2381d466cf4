"""Steps 5-6 of the evaluation: Universal and National Verified End User limits. Shares are exact `Fraction`s."""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from typing import Any

from gpucensus.collector.policy.pack import Pack
from gpucensus.collector.policy.result import (
    HOW,
    VIOLATION,
    Finding,
    ResolvedDevice,
    check_cap,
    check_max_share,
    check_min_share,
    percent,
    percent_near,
    tpp_text,
)
from gpucensus.collector.policy.scenario import Scenario


def shares(entity: str, devices: list[ResolvedDevice]) -> tuple[int, dict[str, Any]]:
    """The entity's worldwide counted TPP and its shares: {"tier1": f, "by_country": {CC: f}} ({} when 0 TPP)."""
    by_country: dict[str, int] = defaultdict(int)
    tier1 = 0
    for d in devices:
        if d.entity == entity and d.counted:
            by_country[d.country] += d.total_tpp
            tier1 += d.total_tpp if d.tier == 1 else 0
    total = sum(by_country.values())
    if total == 0:
        return 0, {}
    return total, {
        "tier1": Fraction(tier1, total),
        "by_country": {c: Fraction(v, total) for c, v in sorted(by_country.items())},
    }


def uveu(scenario: Scenario, pack: Pack, devices: list[ResolvedDevice]) -> list[Finding]:
    u = pack.uveu
    if u is None:
        return []
    out: list[Finding] = []
    for e in (e for e in scenario.entities if e.authorization == "uveu"):
        subject = f"entity:{e.id}"
        hq_tier = pack.tier(e.headquarters)
        if hq_tier not in u.headquarters_tiers:
            allowed = " or ".join(map(str, u.headquarters_tiers))
            out.append(Finding(VIOLATION, "uveu.headquarters", subject,
                               f"UVEU {e.id} is headquartered in {e.headquarters} (Tier {hq_tier}); "
                               f"a UVEU must be headquartered in Tier {allowed}"))  # fmt: skip
        if u.tier3_sites_prohibited:
            for s in scenario.sites:
                if s.entity == e.id and pack.tier(s.country) == 3:
                    out.append(Finding(VIOLATION, "uveu.tier3-site", f"site:{s.id}",
                                       f"UVEU {e.id} has site {s.id} in Tier 3 country {s.country}"))  # fmt: skip
        total, sh = shares(e.id, devices)
        if total == 0:
            continue
        head = f"UVEU {e.id} (worldwide {tpp_text(total, pack.h100_reference_tpp)})"
        margin, band = pack.warn_min_share_margin, pack.warn_cap_fraction
        if (lim := u.tier1_min_share) is not None:
            t1 = sh["tier1"]
            text = f"{head}: Tier 1 share {percent_near(t1, lim, lim + margin)} is {HOW} {percent(lim)}"
            out.append(check_min_share(t1, lim, margin, "uveu.tier1-share", subject, text))
        if (lim := u.country_max_share) is not None:
            for country, share in sh["by_country"].items():
                if pack.tier(country) != 2:
                    continue
                shown = percent_near(share, lim, band * lim)
                text = f"{head}: share in Tier 2 country {country} {shown} is {HOW} {percent(lim)}"
                out.append(check_max_share(share, lim, band, "uveu.country-share", subject, text))
        if (home := u.headquarters_country_min_share.get(e.headquarters)) is not None:
            hq = e.headquarters
            share = sh["by_country"].get(hq, Fraction(0))
            shown = percent_near(share, home, home + margin)
            text = f"{head}, headquartered in {hq}: share in {hq} {shown} is {HOW} {percent(home)}"
            out.append(check_min_share(share, home, margin, f"uveu.{hq.lower()}-share", subject, text))
    return [f for f in out if f is not None]


def nveu(scenario: Scenario, pack: Pack, devices: list[ResolvedDevice]) -> list[Finding]:
    n = pack.nveu
    if n is None:
        return []
    limit = pack.nveu_limit(scenario.as_of)
    ref = pack.h100_reference_tpp
    out: list[Finding | None] = []
    for e in (e for e in scenario.entities if e.authorization == "nveu"):
        subject = f"entity:{e.id}"
        # The headquarters, and the ultimate parent's where the scenario gives one (docs/regulation.md §2)
        for whose, country in (("is headquartered", e.headquarters), ("has its ultimate parent", e.parent_country)):
            if pack.tier(country) in n.headquarters_excluded_tiers:
                out.append(Finding(VIOLATION, "nveu.headquarters", subject,
                                   f"NVEU {e.id} {whose} in {country} (Tier {pack.tier(country)}); "
                                   f"not allowed for an NVEU"))  # fmt: skip
                break
        if limit is None:
            continue
        base: dict[str, int] = defaultdict(int)
        for d in devices:
            if d.entity == e.id and d.counted and d.tier == 2:
                base[d.country] += d.total_tpp
        for country, value in sorted(base.items()):
            out.append(check_cap(value, limit, pack.warn_cap_fraction, "nveu.installed-base", subject,
                                 f"NVEU {e.id} in {country}: installed base {tpp_text(value, ref)} is {HOW} "
                                 f"the cap for {scenario.as_of.isoformat()}, {tpp_text(limit, ref)}"))  # fmt: skip
    return [f for f in out if f is not None]
