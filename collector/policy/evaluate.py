"""The policy evaluation: a pure function of (scenario, pack, catalogue, 3A090 rules) -> `Evaluation`.

The seven steps of issue 5, in order: (1) only classes in `counted_classes` count; (2) Tier 3 prohibition (or,
in a pack with `limits.licensing`, the licence each Tier 3 device needs and how it is reviewed, and the licences
that follow an entity's headquarters: `rules_licensing`, issue 11);
(3) LPP per entity, country and calendar year; (4) Tier 2 country allocation; (5) UVEU; (6) NVEU; (7) devices of
unknown TPP are listed with a warning. Steps 2-4 live in `rules_tiers`, 5-6 in `rules_veu`. Every comparison
against a cap or share is exact (integers and `Fraction`s); nothing here reads a file or a clock.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from fractions import Fraction
from typing import Any

from gpucensus.collector.policy import rules_licensing, rules_tiers, rules_veu
from gpucensus.collector.policy.pack import Pack
from gpucensus.collector.policy.result import (
    INFO,
    WARNING,
    CountryResult,
    EntityResult,
    Evaluation,
    Finding,
    ResolvedDevice,
    SiteResult,
    sort_findings,
    worst,
)
from gpucensus.collector.policy.scenario import DeviceGroup, Scenario, Site
from gpucensus.common.accounting import Classification, Rules, classify
from gpucensus.common.catalogue import Catalogue


def evaluate(scenario: Scenario, pack: Pack, catalogue: Catalogue, rules: Rules) -> Evaluation:
    pack = pack.on(scenario.as_of)  # tier lists as they stood on the evaluation date
    findings: list[Finding] = []
    devices: list[ResolvedDevice] = []
    classified: dict[tuple[Any, ...], Classification] = {}  # one classification per distinct chip, not per group
    for site in scenario.sites:
        devices.extend(_resolve_site(site, scenario.as_of, pack, catalogue, rules, findings, classified))
    findings.extend(_policy_dates(pack, scenario.as_of))
    findings.extend(rules_tiers.tier3(scenario, pack, devices))
    findings.extend(rules_licensing.destinations(scenario, pack, devices))
    findings.extend(rules_licensing.headquarters(scenario, pack, devices))
    findings.extend(rules_licensing.notes(pack, scenario.as_of))
    used = rules_tiers.lpp_and_allocation(scenario, pack, devices, findings)
    findings.extend(rules_veu.uveu(scenario, pack, devices))
    findings.extend(rules_veu.nveu(scenario, pack, devices))
    findings = list(sort_findings(findings))
    return Evaluation(
        policy=pack.summary(),
        as_of=scenario.as_of,
        h100_reference_tpp=pack.h100_reference_tpp,
        countries=_countries(scenario, pack, devices, used, findings),
        entities=_entities(scenario, devices, findings),
        sites=_sites(scenario, pack, devices, findings),
        findings=tuple(findings),
    )


def _resolve_site(
    site: Site, as_of: date, pack: Pack, catalogue: Catalogue, rules: Rules, findings: list[Finding],
    classified: dict[tuple[Any, ...], Classification],
) -> list[ResolvedDevice]:  # fmt: skip
    """The site's devices with class and TPP; warnings for unknown ones, info for later or flagged ones."""
    out: list[ResolvedDevice] = []
    unknown = [f"{site.unaccounted} reported without an established TPP"] if site.unaccounted else []
    unknown_count = site.unaccounted
    later = 0
    for group in site.devices:
        if group.acquired is not None and group.acquired > as_of:
            later += group.count
            continue
        device = _resolve(site, group, as_of, pack, catalogue, rules, classified)
        out.append(device)
        if device.basis == "unknown":
            named = catalogue.by_id(group.model) is not None
            why = "figures not published: give 'tpp'" if named else "not in the catalogue, no figures given"
            unknown.append(f"{group.count} × {group.model!r} ({why})")
            unknown_count += group.count
        elif device.review:
            findings.append(Finding(INFO, "device.review", f"site:{site.id}",
                                    f"{group.count} × {device.model or 'device'} at TPP {device.tpp}: "
                                    f"{device.review}"))  # fmt: skip
    if unknown:
        findings.append(Finding(WARNING, "device.unknown", f"site:{site.id}",
                                f"site {site.id}: {unknown_count} device(s) of unknown class and TPP, listed and "
                                f"not counted: {'; '.join(unknown)}", unknown_count, None))  # fmt: skip
    if later:
        findings.append(Finding(INFO, "device.after-as-of", f"site:{site.id}",
                                f"site {site.id}: {later} device(s) acquired after {as_of.isoformat()} left out",
                                later, None))  # fmt: skip
    return out


def _resolve(
    site: Site, group: DeviceGroup, as_of: date, pack: Pack, catalogue: Catalogue, rules: Rules,
    classified: dict[tuple[Any, ...], Classification],
) -> ResolvedDevice:  # fmt: skip
    tier = pack.tier(site.country)
    acquired = group.acquired or as_of

    def made(model: str, tpp: int | None, eccn: str, basis: str, review: str = "", datacenter: bool = True,
             bandwidth: int | None = None) -> ResolvedDevice:  # fmt: skip
        return ResolvedDevice(site.id, site.country, site.entity, tier, model, group.count, tpp, eccn, basis,
                              eccn in pack.counted_classes, group.acquired, acquired, review, datacenter,
                              bandwidth)  # fmt: skip

    if group.tpp is not None:
        c = _classify(group.tpp, group.die_area_mm2, group.datacenter, rules, classified)
        return made(group.model, c.tpp, c.eccn, "given", c.review, group.datacenter, group.dram_bandwidth_gbs)
    entry = catalogue.by_id(group.model)
    if entry is None or entry.tpp is None:  # unknown, or named without published figures: give `tpp`
        return made(group.model, None, "unknown", "unknown")
    c = _classify(entry.tpp, entry.die_area_mm2, entry.datacenter, rules, classified)
    return made(entry.id, c.tpp, c.eccn, "catalogue", c.review, entry.datacenter, entry.dram_bandwidth_gbs)


def _classify(
    tpp: int, die_area_mm2: Fraction | None, datacenter: bool, rules: Rules, seen: dict[tuple[Any, ...], Classification]
) -> Classification:
    """`classify`, pure: computed once per (tpp, die area, data-centre flag) in one evaluation."""
    key = (tpp, die_area_mm2, datacenter)
    found = seen.get(key)
    if found is None:
        found = seen[key] = classify(tpp, die_area_mm2, datacenter, rules)
    return found


def _policy_dates(pack: Pack, as_of: date) -> list[Finding]:
    if pack.status == "not-enforced" and (pack.status_since is None or as_of >= pack.status_since):
        since = f" since {pack.status_since.isoformat()}" if pack.status_since else ""
        return [Finding(INFO, "policy.not-enforced", f"policy:{pack.name}",
                        f"{pack.name} is not enforced{since} [{pack.status_source or 'see the pack'}]; "
                        "evaluated as a what-if")]  # fmt: skip
    if pack.status == "proposal":
        return [Finding(INFO, "policy.not-effective", f"policy:{pack.name}",
                        f"{pack.name} is a proposal, never in effect; evaluated as a what-if")]  # fmt: skip
    until = pack.effective_until
    if as_of < pack.effective_from or (until is not None and as_of >= until):
        span = f"{pack.effective_from.isoformat()} to {until.isoformat() if until else 'open'}"
        return [Finding(INFO, "policy.not-effective", f"policy:{pack.name}",
                        f"{pack.name} ({pack.status}) is not in effect on {as_of.isoformat()} (effective {span}); "
                        "evaluated as a what-if")]  # fmt: skip
    return []


def _countries(
    scenario: Scenario, pack: Pack, devices: list[ResolvedDevice], used: dict[str, int], findings: list[Finding]
) -> tuple[CountryResult, ...]:
    tpp: dict[str, int] = defaultdict(int)
    for d in devices:
        if d.counted:
            tpp[d.country] += d.total_tpp
    sites_in: dict[str, set[str]] = defaultdict(set)
    for s in scenario.sites:
        sites_in[s.country].add(f"site:{s.id}")
    out = []
    for country in sorted(sites_in):
        subjects = sites_in[country] | {f"country:{country}"}
        allocation = rules_tiers.allocation_for(pack, country, scenario.government_agreements)
        out.append(CountryResult(
            country=country,
            tier=pack.tier(country),
            tpp=tpp[country],
            allocation_tpp=allocation,
            allocation_used_tpp=used.get(country, 0) if allocation is not None else None,
            status=worst(f for f in findings if f.subject in subjects),
        ))  # fmt: skip
    return tuple(out)


def _entities(scenario: Scenario, devices: list[ResolvedDevice], findings: list[Finding]) -> tuple[EntityResult, ...]:
    out = []
    for e in sorted(scenario.entities, key=lambda e: e.id):
        subjects = {f"entity:{e.id}"} | {f"site:{s.id}" for s in scenario.sites if s.entity == e.id}
        out.append(EntityResult(e.id, e.authorization, e.headquarters, *rules_veu.shares(e.id, devices),
                                worst(f for f in findings if f.subject in subjects)))  # fmt: skip
    return tuple(out)


def _sites(
    scenario: Scenario, pack: Pack, devices: list[ResolvedDevice], findings: list[Finding]
) -> tuple[SiteResult, ...]:
    by_site: dict[str, list[ResolvedDevice]] = defaultdict(list)  # one pass each, not one per site
    for d in devices:
        by_site[d.site].append(d)
    by_subject: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_subject[f.subject].append(f)
    out = []
    for s in sorted(scenario.sites, key=lambda s: s.id):
        mine = tuple(by_site.get(s.id, ()))
        out.append(SiteResult(
            id=s.id, country=s.country, entity=s.entity, tier=pack.tier(s.country),
            gpus=sum(d.count for d in mine) + s.unaccounted,
            tpp=sum(d.total_tpp for d in mine if d.counted),
            unknown=sum(d.count for d in mine if d.tpp is None) + s.unaccounted,
            devices=mine,
            status=worst(by_subject.get(f"site:{s.id}", ())),
        ))  # fmt: skip
    return tuple(out)
