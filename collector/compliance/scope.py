"""Which part of the fleet a change at some sites can move, and how a partial evaluation is merged into a full one.

A finding's subject says what it depends on (see `collector.policy.evaluate`):

- `site:S` findings (unknown devices, Tier 3, a UVEU's Tier 3 site) depend on the site's devices, its country and
  its entity's registry record only;
- `country:C` findings (the Tier 2 allocation) depend on every device in C, of every entity;
- `entity:E` findings (LPP per country and year, UVEU shares, NVEU installed base, headquarters) depend on every
  device of E, in every country;
- `policy:P` findings depend on the pack and the date only.

So after a change at site S (country C, entity E), evaluating the sites in C and the sites of E (and every entity
of the registry) settles exactly: the findings and results of those sites, of C, of E, and of the policy. The
merge keeps everything else from the previous full evaluation. `tests/unit/test_compliance_scope.py` checks on
random fleets (Hypothesis) that the merge equals a full evaluation of the changed fleet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from gpucensus.collector.policy.result import Evaluation, sort_findings
from gpucensus.collector.policy.scenario import Scenario


@dataclass(frozen=True)
class Scope:
    sites: frozenset[str]  # the sites whose devices the partial evaluation reads
    countries: frozenset[str]  # results settled by it
    entities: frozenset[str]

    @property
    def subjects(self) -> frozenset[str]:
        """The finding subjects the partial evaluation settles (policy subjects are always settled)."""
        return frozenset(
            {f"site:{s}" for s in self.sites}
            | {f"country:{c}" for c in self.countries}
            | {f"entity:{e}" for e in self.entities}
        )

    def settles(self, subject: str) -> bool:
        return subject.startswith("policy:") or subject in self.subjects


def scope_of(sites: Iterable[tuple[str, str, str]], changed: Iterable[str]) -> Scope:
    """The scope of a change at the sites `changed`, given the registry's sites as (id, country, entity)."""
    registry = list(sites)
    wanted = set(changed)
    countries = frozenset(c for s, c, _ in registry if s in wanted)
    entities = frozenset(e for s, _, e in registry if s in wanted)
    reads = frozenset(s for s, c, e in registry if c in countries or e in entities)
    return Scope(reads, countries, entities)


def partial_scenario(scenario: Scenario, scope: Scope) -> Scenario:
    """`scenario` cut down to the scope's sites (every entity kept: entity-only rules need no devices)."""
    return replace(scenario, sites=tuple(s for s in scenario.sites if s.id in scope.sites))


def merge(full: Evaluation, partial: Evaluation, scope: Scope) -> Evaluation:
    """`full` with everything the scope settles taken from `partial` (an evaluation of the scope's sites)."""
    findings = [f for f in full.findings if not scope.settles(f.subject)]
    findings += [f for f in partial.findings if scope.settles(f.subject)]
    countries = {c.country: c for c in full.countries}
    countries.update((c.country, c) for c in partial.countries if c.country in scope.countries)
    entities = {e.id: e for e in full.entities}
    entities.update((e.id, e) for e in partial.entities if e.id in scope.entities)
    sites = {s.id: s for s in full.sites}
    sites.update((s.id, s) for s in partial.sites)
    return replace(
        partial,
        countries=tuple(countries[c] for c in sorted(countries)),
        entities=tuple(entities[e] for e in sorted(entities)),
        sites=tuple(sites[s] for s in sorted(sites)),
        findings=sort_findings(findings),
    )
