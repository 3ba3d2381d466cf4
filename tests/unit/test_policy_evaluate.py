"""The policy evaluation, rule by rule, with hand-computed numbers (issue 5 "Evaluation semantics").

Figures used throughout (shipped data, regulation.md): H100 SXM5 = 15,832 TPP (3A090.a); A100 = 4,992 (a);
L40 = 2,896 TPP / 608.5 mm² = PD 4.76 (3A090.b, not counted); H20 = 2,368 / 814 mm² = PD 2.91 (outside 3A090);
RTX 4090 D = 4,707, not data centre (outside, Note 2); RTX 4090 = 5,285, not data centre (3A090.a).
ai-diffusion-2025: LPP 26,900,000 TPP per entity, country and year; allocation 790,000,000 TPP (×2 with a
government agreement) for 2025-01-13..2027-12-31; UVEU ≥ 75 % Tier 1, ≤ 7 % per Tier 2 country, ≥ 50 % US;
NVEU 1,583,200,000 / 4,274,640,000 / 5,066,240,000 TPP through 2025 / 2026 / 2027 and after.
Warnings: ≥ 80 % of a cap or max share; < 5 percentage points above a min share.
A device given as {"tpp": N} (data centre, no die area) with N ≥ 4,800 is 3A090.a: it lets a case hit a cap
exactly.
"""

from __future__ import annotations

from datetime import date
from fractions import Fraction
from functools import cache
from typing import Any

import pytest
from gpucensus.collector.policy import evaluate, load_pack, parse_scenario
from gpucensus.collector.policy.pack import Pack, pack_text, parse_pack
from gpucensus.collector.policy.result import Evaluation
from gpucensus.common.accounting import load_rules
from gpucensus.common.catalogue import load_catalogue

IFR, CARNEGIE, BASELINE = "ai-diffusion-2025", "carnegie-2025", "baseline-2023"
H100 = 15_832


@cache
def pack(name: str) -> Pack:
    return load_pack(name)


def run(name: str | Pack, doc: dict[str, Any]) -> Evaluation:
    p = pack(name) if isinstance(name, str) else name
    return evaluate(parse_scenario(doc, "test"), p, load_catalogue(), load_rules())


def scenario(sites: list[tuple], entities: dict[str, tuple[str, str]] | None = None,
             as_of: str = "2026-06-30", agreements: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """sites: (site id, country, entity, [device dicts]); entities: id -> (headquarters, authorization)."""
    entities = entities or {s[2]: ("AE", "none") for s in sites}
    doc: dict[str, Any] = {
        "as_of": as_of,
        "entities": [{"id": i, "headquarters": hq, "authorization": a} for i, (hq, a) in entities.items()],
        "sites": [{"id": s, "country": c, "entity": e, "devices": d} for s, c, e, d in sites],
    }
    if agreements:
        doc["government_agreements"] = agreements
    return doc


def h100(count: int, acquired: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"model": "h100-sxm5", "count": count}
    if acquired:
        d["acquired"] = acquired
    return d


def tpp(value: int, acquired: str | None = "2026-03-01", count: int = 1) -> dict[str, Any]:
    d: dict[str, Any] = {"tpp": value, "count": count}
    if acquired:
        d["acquired"] = acquired
    return d


def found(ev: Evaluation, rule: str | None = None) -> set[tuple[str, str, str]]:
    """{(severity, rule, subject)} (info findings left out)."""
    return {(f.severity, f.rule, f.subject) for f in ev.findings
            if f.severity != "info" and (rule is None or f.rule == rule)}  # fmt: skip


def one(ev: Evaluation, rule: str):
    matches = [f for f in ev.findings if f.rule == rule]
    assert len(matches) == 1, matches
    return matches[0]


def country(ev: Evaluation, cc: str):
    return next(c for c in ev.countries if c.country == cc)


# --- step 1 and 2: counted classes, Tier 3 -----------------------------------------------------------------

TIER3_CASES = [
    # (id, pack, country, device, expected findings, value): value = units x unit TPP of the 3A090 devices
    ("h100-in-china", IFR, "CN", h100(1), {("violation", "tier3.prohibited", "site:s")}, 15_832),
    (
        "l40-class-b-still-prohibited",
        IFR,
        "RU",
        {"model": "l40", "count": 2},
        {("violation", "tier3.prohibited", "site:s")},
        2 * 2_896,
    ),
    ("h20-outside-3a090", IFR, "CN", {"model": "h20", "count": 100}, set(), None),
    ("rtx-4090-d-note-2", IFR, "CN", {"model": "rtx-4090-d", "count": 10}, set(), None),
    (
        "rtx-4090-gaming-but-a",
        IFR,
        "CN",
        {"model": "rtx-4090", "count": 3},
        {("violation", "tier3.prohibited", "site:s")},
        3 * 5_285,
    ),
    ("hong-kong-is-china", IFR, "HK", h100(1), {("violation", "tier3.prohibited", "site:s")}, 15_832),
    ("macau", IFR, "MO", h100(1), {("violation", "tier3.prohibited", "site:s")}, 15_832),
    ("cyprus-tier3-under-ifr", IFR, "CY", h100(1), {("violation", "tier3.prohibited", "site:s")}, 15_832),
    ("cyprus-tier1-under-carnegie", CARNEGIE, "CY", h100(1), set(), None),
    ("baseline-prohibits-tier3", BASELINE, "IR", h100(1), {("violation", "tier3.prohibited", "site:s")}, 15_832),
]


@pytest.mark.parametrize(("name", "pack_name", "cc", "device", "expected", "value"), TIER3_CASES,
                         ids=[c[0] for c in TIER3_CASES])  # fmt: skip
def test_tier3(name, pack_name, cc, device, expected, value) -> None:
    ev = run(pack_name, scenario([("s", cc, "e", [device])], {"e": ("SG", "none")}))
    assert found(ev, "tier3.prohibited") == expected
    if value is not None:
        f = one(ev, "tier3.prohibited")
        assert (f.value, f.limit) == (value, 0)
        assert not ev.compliant and ev.sites[0].status == "violation" and ev.countries[0].status == "violation"


def test_class_b_does_not_count_toward_caps() -> None:
    # 300,000 L40 = 868,800,000 TPP (> 790,000,000) but 3A090.b: not counted -> no LPP, no allocation use
    ev = run(IFR, scenario([("s", "AE", "e", [{"model": "l40", "count": 300_000, "acquired": "2026-01-05"}])]))
    assert found(ev) == set()
    assert country(ev, "AE").tpp == 0 and country(ev, "AE").allocation_used_tpp == 0


def test_counted_classes_from_the_pack(tmp_path) -> None:
    # A user pack counting 3A090.b too: 300,000 L40 = 868,800,000 TPP > 790,000,000 -> violation
    text = pack_text(IFR)[0].replace('counted_classes = ["3A090.a"]', 'counted_classes = ["3A090.a", "3A090.b"]')
    user = parse_pack(text, "user.toml", "user.toml")
    ev = run(user, scenario([("s", "AE", "e", [{"model": "l40", "count": 300_000, "acquired": "2026-01-05"}])]))
    assert found(ev) == {("warning", "lpp.exceeded", "entity:e"), ("violation", "country.allocation", "country:AE")}
    assert one(ev, "country.allocation").value == 868_800_000


# --- step 3: LPP --------------------------------------------------------------------------------------------

LPP_CASES = [
    # (id, pack, devices of entity e in AE, as_of, expected lpp.exceeded (value, limit) list, allocation used)
    # exactly at the limit: 26,900,000 <= 26,900,000 -> LPP-covered, nothing against the allocation
    ("at-limit", IFR, [tpp(26_900_000, "2025-06-01")], "2026-06-30", [], 0),
    # one TPP over: the whole year's acquisitions need licences and count
    ("one-over", IFR, [tpp(26_900_001, "2025-06-01")], "2026-06-30", [(26_900_001, 26_900_000)], 26_900_001),
    # year splitting: 1,000 H100 in 2025 and 1,000 in 2026 = 15,832,000 per year, each within the limit
    ("two-years-each-within", IFR, [h100(1000, "2025-06-01"), h100(1000, "2026-02-01")], "2026-06-30", [], 0),
    # the same 2,000 in one year: 31,664,000 > 26,900,000 -> both batches licensed
    (
        "same-year-over",
        IFR,
        [h100(1000, "2025-06-01"), h100(1000, "2025-11-01")],
        "2026-06-30",
        [(31_664_000, 26_900_000)],
        31_664_000,
    ),
    # splitting with one year over: 2025 = 15,832,000 (covered); 2026 = 2,000 x 15,832 = 31,664,000 (licensed)
    (
        "split-one-year-over",
        IFR,
        [h100(1000, "2025-06-01"), h100(2000, "2026-02-01")],
        "2026-06-30",
        [(31_664_000, 26_900_000)],
        31_664_000,
    ),
    # no acquisition date = as_of year (2026): 1,000 undated + 1,000 in 2026 = 31,664,000 > limit
    (
        "undated-is-as-of-year",
        IFR,
        [h100(1000), h100(1000, "2026-01-10")],
        "2026-06-30",
        [(31_664_000, 26_900_000)],
        31_664_000,
    ),
    # carnegie keeps the IFR's 26,900,000 for 2025 (the proposal starts lowering it in 2026): 1,699 H100 =
    # 26,898,368 covered; 1,700 H100 = 26,914,400 over -> licensed
    ("carnegie-2025-inherited-at", CARNEGIE, [h100(1699, "2025-06-01")], "2026-06-30", [], 0),
    (
        "carnegie-2025-inherited-over",
        CARNEGIE,
        [h100(1700, "2025-06-01")],
        "2026-06-30",
        [(26_914_400, 26_900_000)],
        26_914_400,
    ),
    # before the IFR's effective date (2025-01-13) its LPP and licensing do not apply: 2024 and 2025-01-12
    # acquisitions of 26,900,001 are not tested; on 2025-01-13 they are
    ("ifr-2024-not-reached", IFR, [tpp(26_900_001, "2024-06-01")], "2026-06-30", [], 0),
    ("ifr-day-before-effective", IFR, [tpp(26_900_001, "2025-01-12")], "2026-06-30", [], 0),
    (
        "ifr-effective-day",
        IFR,
        [tpp(26_900_001, "2025-01-13")],
        "2026-06-30",
        [(26_900_001, 26_900_000)],
        26_900_001,
    ),
    # 2025 total from the effective date only: 20,000,000 on 2025-01-12 (before) + 20,000,000 on 2025-01-13 -> the
    # year's total under the rule is 20,000,000 <= 26,900,000 -> covered
    (
        "ifr-year-counts-from-effective",
        IFR,
        [tpp(20_000_000, "2025-01-12"), tpp(20_000_000, "2025-01-13")],
        "2026-06-30",
        [],
        0,
    ),
    # carnegie 2026: 300 H100e = 300 x 15,832 = 4,749,600; exactly 300 H100 covered, 301 = 4,765,432 not
    ("carnegie-2026-at", CARNEGIE, [h100(300, "2026-02-01")], "2026-06-30", [], 0),
    ("carnegie-2026-over", CARNEGIE, [h100(301, "2026-02-01")], "2026-06-30", [(4_765_432, 4_749_600)], 4_765_432),
    # 2027: 600 H100e = 9,499,200 -> 600 covered; 2028: 1,200 = 18,998,400; 2029 on: 2,400 = 37,996,800
    ("carnegie-2027-at", CARNEGIE, [h100(600, "2027-02-01")], "2027-06-30", [], 0),
    ("carnegie-2028-over", CARNEGIE, [h100(1201, "2028-02-01")], "2028-06-30", [(19_014_232, 18_998_400)], 0),
    ("carnegie-2030-holds", CARNEGIE, [h100(2400, "2030-02-01")], "2030-06-30", [], 0),
]


@pytest.mark.parametrize(("name", "pack_name", "devices", "as_of", "exceeded", "used"), LPP_CASES,
                         ids=[c[0] for c in LPP_CASES])  # fmt: skip
def test_lpp(name, pack_name, devices, as_of, exceeded, used) -> None:
    # carnegie-2028-over: licensed, but 2028 is after the allocation window (..2027-12-31) -> 0 used
    ev = run(pack_name, scenario([("s", "AE", "e", devices)], as_of=as_of))
    got = [(f.value, f.limit) for f in ev.findings if f.rule == "lpp.exceeded"]
    assert got == exceeded
    assert all(f.severity == "warning" and f.subject == "entity:e" for f in ev.findings if f.rule == "lpp.exceeded")
    assert country(ev, "AE").allocation_used_tpp == used


NEAR_LIMIT_CASES = [
    # (id, TPP acquired by e in AE in 2026, expected lpp.near-limit (value, limit) list, lpp.exceeded count)
    # 80 % of 26,900,000 = 21,520,000: at the band -> warning; one TPP below -> nothing
    ("band", 21_520_000, [(21_520_000, 26_900_000)], 0),
    ("below-band", 21_519_999, [], 0),
    # exactly at the limit: still LPP-covered, so near-limit (not exceeded)
    ("at-limit", 26_900_000, [(26_900_000, 26_900_000)], 0),
    # one over: exceeded only
    ("over", 26_900_001, [], 1),
]


@pytest.mark.parametrize(("name", "total", "near", "exceeded"), NEAR_LIMIT_CASES, ids=[c[0] for c in NEAR_LIMIT_CASES])
def test_lpp_near_limit_warning(name, total, near, exceeded) -> None:
    ev = run(IFR, scenario([("s", "AE", "e", [tpp(total, "2026-03-01")])], as_of="2026-06-30"))
    assert [(f.value, f.limit) for f in ev.findings if f.rule == "lpp.near-limit"] == near
    assert all(f.severity == "warning" and f.subject == "entity:e" for f in ev.findings if f.rule == "lpp.near-limit")
    assert sum(1 for f in ev.findings if f.rule == "lpp.exceeded") == exceeded


def test_lpp_is_per_entity_and_per_country() -> None:
    # e1 and e2 each 1,000 H100 in AE in 2026 (15,832,000 each, within); e1 also 1,000 in SA: separate consignee
    ev = run(IFR, scenario([("a1", "AE", "e1", [h100(1000, "2026-02-01")]), ("a2", "AE", "e2", [h100(1000)]),
                            ("s1", "SA", "e1", [h100(1000, "2026-03-01")])]))  # fmt: skip
    assert found(ev) == set()
    assert country(ev, "AE").allocation_used_tpp == 0 and country(ev, "AE").tpp == 31_664_000


def test_lpp_only_in_tier2_and_only_for_plain_entities() -> None:
    # 10,000 H100 (158,320,000) in DE (Tier 1) by a plain entity, and in AE by a UVEU/NVEU: no LPP finding
    ev = run(IFR, scenario(
        [("d", "DE", "plain", [h100(10_000)]), ("u", "US", "uv", [h100(100_000)]), ("a", "AE", "uv", [h100(2000)]),
         ("n", "SA", "nv", [h100(10_000)])],
        {"plain": ("DE", "none"), "uv": ("US", "uveu"), "nv": ("SA", "nveu")}))  # fmt: skip
    assert found(ev, "lpp.exceeded") == set()
    assert country(ev, "AE").allocation_used_tpp == 0 and country(ev, "SA").allocation_used_tpp == 0


# --- step 4: country allocation -----------------------------------------------------------------------------

ALLOCATION_CASES = [
    # (id, pack, [(entity, TPP, acquired)] in AE (or IN), country, agreements, expected (severity, value, limit))
    # exactly at the cap: 790,000,000 = 100 % -> not over, but >= 80 % -> warning
    ("at-cap", IFR, [("e", 790_000_000, "2026-03-01")], "AE", [], ("warning", 790_000_000, 790_000_000)),
    ("one-over", IFR, [("e", 790_000_001, "2026-03-01")], "AE", [], ("violation", 790_000_001, 790_000_000)),
    # 80 % of 790,000,000 = 632,000,000: warning at it, nothing one below
    ("at-80-percent", IFR, [("e", 632_000_000, "2026-03-01")], "AE", [], ("warning", 632_000_000, 790_000_000)),
    ("below-80-percent", IFR, [("e", 631_999_999, "2026-03-01")], "AE", [], None),
    # two entities share the allocation: 400,000,000 + 390,000,001 = 790,000,001 > 790,000,000
    (
        "shared-over",
        IFR,
        [("e1", 400_000_000, "2026-03-01"), ("e2", 390_000_001, "2026-04-01")],
        "AE",
        [],
        ("violation", 790_000_001, 790_000_000),
    ),
    # a government agreement doubles it: 790,000,001 of 1,580,000,000 = 50 % -> nothing
    ("agreement-doubles", IFR, [("e", 790_000_001, "2026-03-01")], "AE", ["AE"], None),
    (
        "agreement-one-over",
        IFR,
        [("e", 1_580_000_001, "2026-03-01")],
        "AE",
        ["AE"],
        ("violation", 1_580_000_001, 1_580_000_000),
    ),
    # window: 2025-01-13 and 2027-12-31 count; 2025-01-12 and 2028-01-01 do not
    ("window-first-day", IFR, [("e", 790_000_001, "2025-01-13")], "AE", [], ("violation", 790_000_001, 790_000_000)),
    ("window-last-day", IFR, [("e", 790_000_001, "2027-12-31")], "AE", [], ("violation", 790_000_001, 790_000_000)),
    ("before-window", IFR, [("e", 790_000_001, "2025-01-12")], "AE", [], None),
    ("after-window", IFR, [("e", 790_000_001, "2028-01-01")], "AE", [], None),
    # carnegie: India's allocation x2 (pack parameter) = 1,580,000,000; x2 again with an agreement = 3,160,000,000
    (
        "carnegie-india",
        CARNEGIE,
        [("e", 1_580_000_000, "2026-03-01")],
        "IN",
        [],
        ("warning", 1_580_000_000, 1_580_000_000),
    ),
    (
        "carnegie-india-agreement",
        CARNEGIE,
        [("e", 3_160_000_001, "2026-03-01")],
        "IN",
        ["IN"],
        ("violation", 3_160_000_001, 3_160_000_000),
    ),
    ("ifr-india-plain", IFR, [("e", 790_000_001, "2026-03-01")], "IN", [], ("violation", 790_000_001, 790_000_000)),
]


# the allocation of the cases without a finding: 790,000,000, or 1,580,000,000 with AE's agreement
ALLOCATION_WITHOUT_FINDING = {"below-80-percent": 790_000_000, "agreement-doubles": 1_580_000_000,
                              "before-window": 790_000_000, "after-window": 790_000_000}  # fmt: skip


@pytest.mark.parametrize(("name", "pack_name", "rows", "cc", "agreements", "expected"), ALLOCATION_CASES,
                         ids=[c[0] for c in ALLOCATION_CASES])  # fmt: skip
def test_allocation(name, pack_name, rows, cc, agreements, expected) -> None:
    sites = [(f"s-{e}", cc, e, [tpp(v, acquired)]) for e, v, acquired in rows]
    ev = run(pack_name, scenario(sites, as_of="2028-06-30", agreements=agreements))
    got = [(f.severity, f.value, f.limit) for f in ev.findings if f.rule == "country.allocation"]
    assert got == ([expected] if expected else [])
    c = country(ev, cc)
    assert c.allocation_tpp == (expected[2] if expected else ALLOCATION_WITHOUT_FINDING[name])
    assert c.status == (expected[0] if expected else "compliant")
    assert ev.compliant == (not expected or expected[0] != "violation")


def test_allocation_message_names_the_entities_and_numbers() -> None:
    ev = run(IFR, scenario([("a", "AE", "e1", [tpp(400_000_000)]), ("b", "AE", "e2", [tpp(390_000_001)])]))
    message = one(ev, "country.allocation").message
    assert "e1, e2" in message and "790,000,001 TPP" in message and "790,000,000 TPP" in message


def test_veu_devices_never_count_against_the_allocation() -> None:
    # a UVEU and an NVEU with 900,000,000 TPP each in AE; a plain entity with 100,000,000 -> used 100,000,000
    ev = run(IFR, scenario(
        [("u", "AE", "uv", [tpp(900_000_000)]), ("n", "AE", "nv", [tpp(900_000_000)]),
         ("p", "AE", "plain", [tpp(100_000_000)])],
        {"uv": ("US", "uveu"), "nv": ("SA", "nveu"), "plain": ("AE", "none")}))  # fmt: skip
    ae = country(ev, "AE")
    assert (ae.tpp, ae.allocation_used_tpp, ae.allocation_tpp) == (1_900_000_000, 100_000_000, 790_000_000)
    assert found(ev, "country.allocation") == set()


def test_no_allocation_outside_tier2() -> None:
    ev = run(IFR, scenario([("d", "DE", "e", [tpp(2_000_000_000)])], {"e": ("DE", "none")}))
    assert country(ev, "DE").allocation_tpp is None and found(ev) == set()
    ev = run(BASELINE, scenario([("a", "AE", "e", [tpp(2_000_000_000)])]))
    assert country(ev, "AE").tier == 1 and country(ev, "AE").allocation_tpp is None and found(ev) == set()


# --- step 5: UVEU -------------------------------------------------------------------------------------------


def uveu_run(name: str, hq: str, counts: dict[str, int]) -> Evaluation:
    """One UVEU with `counts[CC]` H100 per country (shares = count / total, all devices equal)."""
    sites = [(f"s-{cc}", cc, "u", [h100(n)]) for cc, n in counts.items()]
    return run(name, scenario(sites, {"u": (hq, "uveu")}))


UVEU_CASES = [
    # (id, pack, headquarters, H100 per country (10,000 total unless noted), expected findings)
    # 80 % US, 15 % DE, 5 % AE: Tier 1 95 %, US 80 %, AE 5 % < 80 % of 7 % = 5.6 % -> clean
    ("clean", IFR, "US", {"US": 8000, "DE": 1500, "AE": 500}, set()),
    # Tier 1 exactly 75 % (US 7,500) -> not below, but less than 5 points above -> warning
    (
        "tier1-at-min",
        IFR,
        "US",
        {"US": 7500, "AE": 500, "SA": 500, "IN": 500, "BR": 500, "MX": 500},
        {("warning", "uveu.tier1-share")},
    ),
    # Tier 1 74.99 % (7,499 of 10,000) -> violation; the one H100 moved to BR keeps BR at 5.01 % (< 5.6 %)
    (
        "tier1-below",
        IFR,
        "US",
        {"US": 7499, "AE": 500, "SA": 500, "IN": 500, "BR": 501, "MX": 500},
        {("violation", "uveu.tier1-share")},
    ),
    # Tier 1 exactly 80 % = 75 % + 5 points -> no warning; 79.99 % -> warning
    ("tier1-at-margin", IFR, "US", {"US": 8000, "AE": 500, "SA": 500, "IN": 500, "BR": 500}, set()),
    (
        "tier1-inside-margin",
        IFR,
        "US",
        {"US": 7999, "AE": 500, "SA": 500, "IN": 500, "BR": 501},
        {("warning", "uveu.tier1-share")},
    ),
    # a Tier 2 country at exactly 7 % -> warning (>= 5.6 %); 7.01 % -> violation; 5.6 % -> warning; 5.59 % -> none
    ("country-at-max", IFR, "US", {"US": 9300, "AE": 700}, {("warning", "uveu.country-share")}),
    ("country-over-max", IFR, "US", {"US": 9299, "AE": 701}, {("violation", "uveu.country-share")}),
    ("country-at-80-percent", IFR, "US", {"US": 9440, "AE": 560}, {("warning", "uveu.country-share")}),
    ("country-below-80-percent", IFR, "US", {"US": 9441, "AE": 559}, set()),
    # carnegie has no single-country limit: 20 % in AE is fine; Tier 1 80 % (no warning)
    ("carnegie-no-country-limit", CARNEGIE, "US", {"US": 8000, "AE": 2000}, set()),
    # carnegie: PL is Tier 1 -> 60 % US + 20 % PL = 80 % Tier 1; under the IFR PL is Tier 2: 60 % Tier 1 + 20 % PL
    ("carnegie-poland-tier1", CARNEGIE, "US", {"US": 6000, "PL": 2000, "AE": 2000}, set()),
    (
        "ifr-poland-tier2",
        IFR,
        "US",
        {"US": 6000, "PL": 2000, "AE": 2000},
        {("violation", "uveu.tier1-share"), ("violation", "uveu.country-share")},
    ),
    # US share for a US-headquartered UVEU: exactly 50 % -> warning (< 55 %); 49.99 % -> violation; 55 % -> clean
    ("us-at-min", IFR, "US", {"US": 5000, "DE": 5000}, {("warning", "uveu.us-share")}),
    ("us-below", IFR, "US", {"US": 4999, "DE": 5001}, {("violation", "uveu.us-share")}),
    ("us-at-margin", IFR, "US", {"US": 5500, "DE": 4500}, set()),
    # a DE-headquartered UVEU has no US minimum
    ("de-hq-no-us-rule", IFR, "DE", {"DE": 10000}, set()),
    # headquarters must be Tier 1
    ("hq-tier2", IFR, "AE", {"US": 10000}, {("violation", "uveu.headquarters")}),
    ("hq-tier3", IFR, "CN", {"US": 10000}, {("violation", "uveu.headquarters")}),
]


@pytest.mark.parametrize(("name", "pack_name", "hq", "counts", "expected"), UVEU_CASES,
                         ids=[c[0] for c in UVEU_CASES])  # fmt: skip
def test_uveu(name, pack_name, hq, counts, expected) -> None:
    ev = uveu_run(pack_name, hq, counts)
    assert {(s, r) for s, r, _ in found(ev)} == expected
    assert all(subject == "entity:u" for _, _, subject in found(ev))


def test_uveu_shares_are_exact_and_reported() -> None:
    # 7,499 / 10,000 Tier 1: the violation's value is exactly 7499/10000, the limit exactly 3/4
    ev = uveu_run(IFR, "US", {"US": 7499, "AE": 500, "SA": 500, "IN": 500, "BR": 501, "MX": 500})
    f = one(ev, "uveu.tier1-share")
    assert (f.value, f.limit) == (Fraction(7499, 10000), Fraction(3, 4))
    entity = ev.entities[0]
    assert entity.tpp == 10_000 * H100 and entity.shares["by_country"]["BR"] == Fraction(501, 10000)


def test_uveu_site_in_tier3() -> None:
    # any site in Tier 3, even an empty one, is a uveu.tier3-site violation; with devices also tier3.prohibited
    ev = run(IFR, scenario([("us", "US", "u", [h100(100)]), ("cn", "CN", "u", [])], {"u": ("US", "uveu")}))
    assert found(ev) == {("violation", "uveu.tier3-site", "site:cn")}
    ev = run(IFR, scenario([("us", "US", "u", [h100(100)]), ("cn", "CN", "u", [h100(1)])], {"u": ("US", "uveu")}))
    assert {r for _, r, _ in found(ev)} >= {"uveu.tier3-site", "tier3.prohibited"}
    assert ev.entities[0].status == "violation"


# --- step 6: NVEU -------------------------------------------------------------------------------------------

NVEU_SCHEDULE = [
    # (as_of, cap in TPP): 100,000 / 270,000 / 320,000 H100e x 15,832; the last step holds after 2027
    ("2025-01-13", 1_583_200_000),
    ("2025-12-31", 1_583_200_000),
    ("2026-01-01", 4_274_640_000),
    ("2026-12-31", 4_274_640_000),
    ("2027-01-01", 5_066_240_000),
    ("2027-12-31", 5_066_240_000),
    ("2031-06-30", 5_066_240_000),
]


@pytest.mark.parametrize(("as_of", "cap"), NVEU_SCHEDULE)
def test_nveu_schedule(as_of, cap) -> None:
    assert pack(IFR).nveu_limit(date.fromisoformat(as_of)) == cap
    assert cap % H100 == 0


NVEU_CASES = [
    # (id, H100 count in SA, as_of, expected (severity, value, limit))
    # 100,000 H100 = 1,583,200,000 = the 2025 cap exactly -> warning; one more H100 -> violation
    ("2025-at-cap", 100_000, "2025-12-31", ("warning", 1_583_200_000, 1_583_200_000)),
    ("2025-one-over", 100_001, "2025-12-31", ("violation", 1_583_215_832, 1_583_200_000)),
    # the same 100,001 on 2026-01-01: 1,583,215,832 / 4,274,640,000 = 37 % -> nothing
    ("2026-same-base-fine", 100_001, "2026-01-01", None),
    # 80 % of 4,274,640,000 = 3,419,712,000 = 216,000 H100 -> warning; 215,999 -> nothing
    ("2026-at-80-percent", 216_000, "2026-06-30", ("warning", 3_419_712_000, 4_274_640_000)),
    ("2026-below-80-percent", 215_999, "2026-06-30", None),
    # 2028: the 2027 cap holds: 320,001 H100 = 5,066,255,832 > 5,066,240,000
    ("after-schedule", 320_001, "2028-06-30", ("violation", 5_066_255_832, 5_066_240_000)),
]


@pytest.mark.parametrize(("name", "count", "as_of", "expected"), NVEU_CASES, ids=[c[0] for c in NVEU_CASES])
def test_nveu_installed_base(name, count, as_of, expected) -> None:
    ev = run(IFR, scenario([("s", "SA", "n", [h100(count)])], {"n": ("SA", "nveu")}, as_of=as_of))
    got = [(f.severity, f.value, f.limit) for f in ev.findings if f.rule == "nveu.installed-base"]
    assert got == ([expected] if expected else [])


def test_nveu_cap_is_per_country_and_tier2_only() -> None:
    # 60,000 H100 in each of SA and AE (949,920,000 each, < 80 % of 1,583,200,000 = 1,266,560,000) -> nothing,
    # although together (1,899,840,000) they exceed one country's cap; 200,000 in DE (Tier 1) is not capped
    ev = run(IFR, scenario([("a", "SA", "n", [h100(60_000)]), ("b", "AE", "n", [h100(60_000)]),
                            ("c", "DE", "n", [h100(200_000)])], {"n": ("AE", "nveu")}, as_of="2025-09-30"))  # fmt: skip
    assert found(ev) == set()


def test_nveu_headquarters() -> None:
    ev = run(IFR, scenario([("s", "SA", "n", [h100(1)])], {"n": ("IR", "nveu")}))
    assert found(ev) == {("violation", "nveu.headquarters", "entity:n")}


# --- step 7 and the rest ------------------------------------------------------------------------------------


def test_unknown_devices_are_listed_with_a_warning_never_dropped() -> None:
    doc = scenario([("s", "AE", "e", [{"model": "mi300x", "count": 8}, h100(2)])])
    doc["sites"][0]["unaccounted"] = 3  # live inventory: 3 GPUs whose TPP is not established
    ev = run(IFR, doc)
    f = one(ev, "device.unknown")
    assert (f.severity, f.subject, f.value) == ("warning", "site:s", 11)
    assert "mi300x" in f.message
    site = ev.sites[0]
    assert (site.gpus, site.unknown, site.tpp) == (13, 11, 2 * H100)
    assert [d.model for d in site.devices if d.tpp is None] == ["mi300x"]
    assert ev.compliant and site.status == "warning"


def test_given_figures_are_classified() -> None:
    # tpp 2,368 with 814 mm² (the H20's figures): PD 2.91 -> outside 3A090 even in China
    doc = scenario([("s", "CN", "e", [{"tpp": 2368, "die_area_mm2": "814", "count": 4}])], {"e": ("CN", "none")})
    ev = run(IFR, doc)
    assert found(ev) == set() and ev.sites[0].devices[0].eccn == "not-3A090"


def test_devices_acquired_after_as_of_are_left_out() -> None:
    ev = run(IFR, scenario([("s", "CN", "e", [h100(5, "2026-07-01")])], as_of="2026-06-30"))
    assert found(ev) == set() and one(ev, "device.after-as-of").value == 5


def test_policy_not_in_effect_is_info() -> None:
    # the AI Diffusion rule is not enforced since 2025-05-13: evaluated as a what-if, said so with its source
    ev = run(IFR, scenario([("s", "US", "e", [h100(1)])], {"e": ("US", "none")}, as_of="2026-06-30"))
    f = one(ev, "policy.not-enforced")
    assert f.severity == "info" and "since 2025-05-13 [may2025]" in f.message and ev.compliant
    ev = run(IFR, scenario([("s", "US", "e", [h100(1)])], {"e": ("US", "none")}, as_of="2025-03-01"))
    assert not [f for f in ev.findings if f.rule == "policy.not-effective"]


@pytest.mark.parametrize("as_of", ["2025-06-01", "2026-06-30", "2031-01-01"])
def test_a_proposal_is_never_in_effect(as_of) -> None:
    # carnegie-2025 has no `until`: the dates alone would call it in effect; its status says it never was
    ev = run(CARNEGIE, scenario([("s", "US", "e", [h100(1)])], {"e": ("US", "none")}, as_of=as_of))
    f = one(ev, "policy.not-effective")
    assert f.severity == "info" and "proposal" in f.message and ev.compliant


def test_baseline_is_in_force_today() -> None:
    # the October 2023 controls were not rescinded with the IFR: no "not in effect" note in 2026
    ev = run(BASELINE, scenario([("s", "US", "e", [h100(1)])], {"e": ("US", "none")}, as_of="2026-06-30"))
    assert not [f for f in ev.findings if f.rule == "policy.not-effective"]
    ev = run(BASELINE, scenario([("s", "US", "e", [h100(1)])], {"e": ("US", "none")}, as_of="2023-11-16"))
    assert one(ev, "policy.not-effective").severity == "info"


def test_summary_counts_and_sort_order() -> None:
    ev = run(IFR, scenario([("cn", "CN", "e", [h100(1)]), ("ae", "AE", "e", [{"model": "nope", "count": 1}])]))
    assert (ev.count("violation"), ev.count("warning"), ev.compliant) == (1, 1, False)
    assert [f.severity for f in ev.findings][:2] == ["violation", "warning"]


# --- display ------------------------------------------------------------------------------------------------


def test_json_keeps_tpp_integers_and_rounds_only_display_fields() -> None:
    from gpucensus.collector.policy.render import to_dict, utilization_text

    ev = run(IFR, scenario([("a", "AE", "e", [tpp(790_000_001)])]))
    doc = to_dict(ev)
    ae = doc["countries"][0]
    assert (ae["tpp"], ae["allocation_used_tpp"], ae["allocation_tpp"]) == (790_000_001, 790_000_001, 790_000_000)
    assert ae["utilization"] == 1.0 and ae["h100e"] == round(790_000_001 / H100, 2)
    assert doc["summary"] == {"violations": 1, "warnings": 1, "compliant": False}
    # 790,000,001 of 790,000,000 rounds to 100 % but is shown as over
    assert utilization_text(790_000_001, 790_000_000) == "> 100 %"
    assert utilization_text(790_000_000, 790_000_000) == "100 %"
    assert utilization_text(632_000_000, 790_000_000) == "80 %"


# --- boundaries added in review (hand-computed) ---------------------------------------------------------------

NVEU_BOUNDARY_CASES = [
    # (id, installed base in SA given as one device of N TPP, as_of, expected (severity, value, limit))
    # 2025 cap 1,583,200,000: at it on its last day -> warning; one TPP over -> violation; the day after, the
    # 2026 cap 4,274,640,000 applies: 1,583,200,001 / 4,274,640,000 = 37.04 % -> nothing
    ("2025-last-day-at-cap", 1_583_200_000, "2025-12-31", ("warning", 1_583_200_000, 1_583_200_000)),
    ("2025-last-day-one-over", 1_583_200_001, "2025-12-31", ("violation", 1_583_200_001, 1_583_200_000)),
    ("2026-first-day", 1_583_200_001, "2026-01-01", None),
    # 2026 cap on its last day, one TPP over -> violation; on 2027-01-01 the cap is 5,066,240,000:
    # 4,274,640,001 / 5,066,240,000 = 84.4 % >= 80 % -> warning
    ("2026-last-day-one-over", 4_274_640_001, "2026-12-31", ("violation", 4_274_640_001, 4_274_640_000)),
    ("2027-first-day", 4_274_640_001, "2027-01-01", ("warning", 4_274_640_001, 5_066_240_000)),
    # the last step holds after 2027-12-31: exactly at it -> warning, one over -> violation
    ("2028-at-last-cap", 5_066_240_000, "2028-01-01", ("warning", 5_066_240_000, 5_066_240_000)),
    ("2028-one-over", 5_066_240_001, "2028-01-01", ("violation", 5_066_240_001, 5_066_240_000)),
    # 80 % of the 2025 cap = 1,266,560,000 -> warning; one TPP less -> nothing
    ("2025-at-80-percent", 1_266_560_000, "2025-06-30", ("warning", 1_266_560_000, 1_583_200_000)),
    ("2025-below-80-percent", 1_266_559_999, "2025-06-30", None),
]


@pytest.mark.parametrize(("name", "value", "as_of", "expected"), NVEU_BOUNDARY_CASES,
                         ids=[c[0] for c in NVEU_BOUNDARY_CASES])  # fmt: skip
def test_nveu_boundaries_to_the_tpp(name, value, as_of, expected) -> None:
    ev = run(IFR, scenario([("s", "SA", "n", [tpp(value, acquired=None)])], {"n": ("SA", "nveu")}, as_of=as_of))
    got = [(f.severity, f.value, f.limit) for f in ev.findings if f.rule == "nveu.installed-base"]
    assert got == ([expected] if expected else [])
    assert ev.compliant == (expected is None or expected[0] != "violation")


def test_shared_allocation_counts_only_licensed_entities() -> None:
    # e1 acquires exactly the LPP limit in 2026 (26,900,000: covered, not counted); e2 790,000,000 (licensed):
    # used = 790,000,000 = the allocation exactly -> warning, not violation
    rows = [("a", "AE", "e1", [tpp(26_900_000)]), ("b", "AE", "e2", [tpp(790_000_000)])]
    ev = run(IFR, scenario(rows))
    assert [(f.severity, f.value) for f in ev.findings if f.rule == "country.allocation"] == [("warning", 790_000_000)]
    assert "e2" in one(ev, "country.allocation").message and "e1" not in one(ev, "country.allocation").message
    # one TPP more for e1 (26,900,001): its year is licensed too -> 816,900,001 > 790,000,000
    rows[0] = ("a", "AE", "e1", [tpp(26_900_001)])
    ev = run(IFR, scenario(rows))
    assert [(f.severity, f.value) for f in ev.findings if f.rule == "country.allocation"] == [
        ("violation", 816_900_001)]  # fmt: skip


def test_undated_devices_take_the_as_of_date_for_the_window() -> None:
    # 790,000,001 TPP undated: as of 2027-12-31 inside the window -> violation; as of 2028-01-01 outside -> nothing
    doc = scenario([("a", "AE", "e", [tpp(790_000_001, acquired=None)])], as_of="2027-12-31")
    assert found(run(IFR, doc), "country.allocation") == {("violation", "country.allocation", "country:AE")}
    doc["as_of"] = "2028-01-01"
    assert found(run(IFR, doc), "country.allocation") == set()


SHARE_TEXT_CASES = [
    # (id, TPP in US, TPP in BR, rule, text that must appear): the share is shown with enough decimals to stay on
    # its side of the limit and of the warning band; 2,999,900 / 4,000,000 = 74.9975 % must not read "75 %"
    ("tier1-just-below", 2_999_900, 1_000_100, "uveu.tier1-share", "Tier 1 share 74.998 % is below the minimum 75 %"),
    # 3,199,960 / 4,000,000 = 79.999 %: a warning, so not "80 %" (which would be outside the 5-point band)
    ("tier1-just-inside-band", 3_199_960, 800_040, "uveu.tier1-share", "Tier 1 share 79.999 % is less than 5"),
    # US share 1,999,980 / 4,000,000 = 49.9995 % -> below 50 % (at three decimals it would round to 50 %)
    ("us-just-below", 1_999_980, 2_000_020, "uveu.us-share", "share in US 49.9995 % is below the minimum 50 %"),
    # round values keep two decimals: 7,499 / 10,000 = 74.99 %
    ("two-decimals", 7_499_000, 2_501_000, "uveu.tier1-share", "Tier 1 share 74.99 % is below"),
]


@pytest.mark.parametrize(("name", "us", "br", "rule", "text"), SHARE_TEXT_CASES, ids=[c[0] for c in SHARE_TEXT_CASES])
def test_share_messages_never_round_across_a_limit(name, us, br, rule, text) -> None:
    doc = scenario(
        [("us", "US", "u", [tpp(us, count=1)]), ("br", "BR", "u", [tpp(br, count=1)])], {"u": ("US", "uveu")}
    )
    msg = one(run(IFR, doc), rule).message
    assert text in msg, msg


def test_json_finding_values_are_not_rounded_onto_the_limit() -> None:
    from gpucensus.collector.policy.render import to_dict

    # Tier 1 share 74,999,990 / 100,000,000 = 0.7499999: rounded to 6 decimals it would read 0.75 = the limit
    doc = scenario([("us", "US", "u", [tpp(74_999_990)]), ("br", "BR", "u", [tpp(25_000_010)])], {"u": ("US", "uveu")})
    f = next(f for f in to_dict(run(IFR, doc))["findings"] if f["rule"] == "uveu.tier1-share")
    assert (f["severity"], f["limit"]) == ("violation", 0.75) and f["value"] < f["limit"]
    assert f["value"] == 0.7499999
