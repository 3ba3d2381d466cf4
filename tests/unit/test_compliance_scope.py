"""The incremental evaluation equals a full one: after a change at some sites, evaluating only the sites of their
countries and entities and merging (`collector.compliance.scope`) gives exactly the `Evaluation` a full `report`
gives of the changed fleet — findings, country, entity and site results — on random fleets under every shipped
pack (Hypothesis), and on hand-picked cases where a country crosses its allocation or an entity's share moves."""

from __future__ import annotations

from datetime import date
from functools import cache

import pytest
from gpucensus.collector.compliance.scope import merge, partial_scenario, scope_of
from gpucensus.collector.policy import builtin_names, evaluate, load_pack
from gpucensus.collector.policy.pack import Pack
from gpucensus.collector.policy.result import Evaluation
from gpucensus.collector.policy.scenario import DeviceGroup, Entity, Scenario, Site
from gpucensus.common.accounting import load_rules
from gpucensus.common.catalogue import load_catalogue
from hypothesis import given, settings
from hypothesis import strategies as st

# Tier 1 (US, DE), Tier 2 (AE, IN, PL), Tier 3 (CN) under ai-diffusion-2025; other packs tier them differently.
COUNTRIES = ("US", "DE", "AE", "IN", "PL", "CN")
MODELS = ("h100-sxm5", "a100-sxm4-80gb", "l40", "h20", "rtx-4090", "not-in-catalogue")
DATES = (None, date(2024, 6, 1), date(2025, 3, 1), date(2026, 2, 1), date(2026, 12, 1), date(2027, 6, 1))


@cache
def pack(name: str) -> Pack:
    return load_pack(name)


def full(scenario: Scenario, p: Pack) -> Evaluation:
    return evaluate(scenario, p, load_catalogue(), load_rules())


def incremental(before: Scenario, after: Scenario, changed: set[str], p: Pack) -> Evaluation:
    scope = scope_of(((s.id, s.country, s.entity) for s in after.sites), changed)
    return merge(full(before, p), full(partial_scenario(after, scope), p), scope)


groups = st.builds(
    DeviceGroup,
    count=st.sampled_from((1, 8, 500, 6_000, 30_000, 52_000)),  # up to ~823M TPP of H100s: across the allocation
    model=st.sampled_from(MODELS),
    acquired=st.sampled_from(DATES),
)


@st.composite
def fleets(draw: st.DrawFn) -> tuple[Scenario, Scenario, set[str]]:
    n_entities = draw(st.integers(1, 4))
    entities = tuple(
        Entity(f"e{i}", draw(st.sampled_from(COUNTRIES)), draw(st.sampled_from(("none", "none", "uveu", "nveu"))))
        for i in range(n_entities)
    )
    sites = tuple(
        Site(f"s{i}", draw(st.sampled_from(COUNTRIES)), f"e{draw(st.integers(0, n_entities - 1))}",
             tuple(draw(st.lists(groups, max_size=3))), draw(st.sampled_from((0, 0, 3))))
        for i in range(draw(st.integers(1, 8)))
    )  # fmt: skip
    as_of = draw(st.sampled_from((date(2025, 6, 30), date(2026, 11, 30), date(2028, 1, 15))))
    agreements = frozenset(draw(st.lists(st.sampled_from(("AE", "IN")), max_size=1)))
    before = Scenario(as_of, entities, sites, agreements)
    changed = set(draw(st.lists(st.sampled_from([s.id for s in sites]), min_size=1, max_size=2)))
    after_sites = tuple(
        Site(s.id, s.country, s.entity, tuple(draw(st.lists(groups, max_size=3))), draw(st.sampled_from((0, 2))))
        if s.id in changed else s
        for s in sites
    )  # fmt: skip
    return before, Scenario(as_of, entities, after_sites, agreements), changed


@settings(max_examples=150, deadline=None)
@given(fleet=fleets(), name=st.sampled_from(sorted(builtin_names())))
def test_incremental_equals_full_on_random_fleets(fleet: tuple[Scenario, Scenario, set[str]], name: str) -> None:
    before, after, changed = fleet
    assert incremental(before, after, changed, pack(name)) == full(after, pack(name))


def test_a_country_crossing_its_allocation_is_found_by_the_incremental_path() -> None:
    """Two entities in Tier 2 country AE: the second one's new GPUs push AE over 790,000,000 TPP (49,899 H100)."""
    p = pack("ai-diffusion-2025")
    entities = (Entity("a", "US"), Entity("b", "US"), Entity("u", "US", "uveu"))
    site = [Site("ae1", "AE", "a", (DeviceGroup(30_000, "h100-sxm5", acquired=date(2026, 2, 1)),)),
            Site("ae2", "AE", "b", (DeviceGroup(19_000, "h100-sxm5", acquired=date(2026, 2, 1)),)),
            Site("us1", "US", "u", (DeviceGroup(100, "h100-sxm5"),))]  # fmt: skip
    before = Scenario(date(2026, 11, 30), entities, tuple(site))
    site[1] = Site("ae2", "AE", "b", (DeviceGroup(20_000, "h100-sxm5", acquired=date(2026, 2, 1)),))
    after = Scenario(date(2026, 11, 30), entities, tuple(site))
    assert "violation" not in {f.severity for f in full(before, p).findings if f.rule == "country.allocation"}
    got = incremental(before, after, {"ae2"}, p)
    assert got == full(after, p)
    assert [(f.severity, f.subject) for f in got.findings if f.rule == "country.allocation"] == [
        ("violation", "country:AE")
    ]
    assert scope_of(((s.id, s.country, s.entity) for s in after.sites), {"ae2"}).sites == {"ae1", "ae2"}


@pytest.mark.parametrize("changed", [{"s0"}, {"s1"}, {"s0", "s2"}])
def test_the_scope_is_the_sites_of_the_countries_and_entities_touched(changed: set[str]) -> None:
    registry = [("s0", "AE", "a"), ("s1", "AE", "b"), ("s2", "DE", "b"), ("s3", "US", "c")]
    scope = scope_of(registry, changed)
    countries = {c for s, c, _ in registry if s in changed}
    entities = {e for s, _, e in registry if s in changed}
    assert scope.sites == {s for s, c, e in registry if c in countries or e in entities}
    assert "s3" not in scope.sites
    assert scope.settles("policy:ai-diffusion-2025") and not scope.settles("country:US")
