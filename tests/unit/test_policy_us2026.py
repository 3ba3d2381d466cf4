"""The 2026 rules (issue 11), hand-computed: licence review per destination and part, tier changes with effective
dates, the headquarters / ultimate-parent licence rule, NAC/ACA and the NVEU headquarters test.

Figures (shipped catalogue): H200 SXM = 15,832 TPP, 4,800 GB/s; B200 = 36,000 TPP, 8,000 GB/s; H100 SXM5 = 15,832
TPP, 3,350 GB/s; H20 = 2,368 TPP (outside 3A090); RTX 4090 = 5,285 TPP, not data centre (3A090.a).
us-2026: Tier 3 = D:5 + Macau (Cambodia until 2026-02-03), presumption of denial; CN/HK/MO case by case from
2026-01-15 for TPP < 21,000 and DRAM bandwidth < 6,500 GB/s.
"""

from __future__ import annotations

from typing import Any

import pytest
from gpucensus.collector.policy.pack import pack_text, parse_pack

from tests.unit.test_policy_evaluate import IFR, found, h100, one, run, scenario

US = "us-2026"
BASELINE = "baseline-2023"
DENIAL = ("violation", "licence.presumption-of-denial", "site:s")
CASE = ("warning", "licence.case-by-case", "site:s")


def part(model: str, count: int = 1, acquired: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"model": model, "count": count}
    if acquired:
        d["acquired"] = acquired
    return d


def given(tpp: int, bandwidth: int | None) -> dict[str, Any]:
    d: dict[str, Any] = {"tpp": tpp, "count": 1, "acquired": "2026-03-01"}
    if bandwidth is not None:
        d["dram_bandwidth_gbs"] = bandwidth
    return d


LICENCE_CASES = [
    # (id, country, device, as_of, expected licence findings)
    ("h200-china-case-by-case", "CN", part("h200-sxm", 8), "2026-06-30", {CASE}),
    ("h200-macau-case-by-case", "MO", part("h200-sxm"), "2026-06-30", {CASE}),
    ("h200-hong-kong-is-china", "HK", part("h200-sxm"), "2026-06-30", {CASE}),
    ("h200-before-the-2026-rule", "CN", part("h200-sxm", 1, "2026-01-14"), "2026-06-30", {DENIAL}),
    ("h200-evaluated-before-the-rule", "CN", part("h200-sxm"), "2026-01-14", {DENIAL}),
    ("b200-above-both-thresholds", "CN", part("b200"), "2026-06-30", {DENIAL}),
    ("h200-in-russia-no-case-by-case", "RU", part("h200-sxm"), "2026-06-30", {DENIAL}),
    ("h20-outside-3a090", "CN", part("h20", 100), "2026-06-30", set()),
    ("h100-in-germany", "DE", h100(1), "2026-06-30", set()),
    # boundaries: both thresholds are "below", exactly
    ("just-below-both", "CN", given(20_999, 6_499), "2026-06-30", {CASE}),
    ("tpp-at-threshold", "CN", given(21_000, 6_499), "2026-06-30", {DENIAL}),
    ("bandwidth-at-threshold", "CN", given(20_999, 6_500), "2026-06-30", {DENIAL}),
    # a part whose bandwidth is unknown cannot be shown to be below it: the presumption stays
    ("bandwidth-unknown", "CN", given(15_000, None), "2026-06-30", {DENIAL}),
    # Cambodia left D:5 effective 2026-02-03
    ("cambodia-the-day-before", "KH", h100(1), "2026-02-02", {DENIAL}),
    ("cambodia-from-the-day", "KH", h100(1), "2026-02-03", set()),
]


@pytest.mark.parametrize(("name", "cc", "device", "as_of", "expected"), LICENCE_CASES,
                         ids=[c[0] for c in LICENCE_CASES])  # fmt: skip
def test_licence_review_per_destination_and_part(name, cc, device, as_of, expected) -> None:
    ev = run(US, scenario([("s", cc, "e", [device])], {"e": ("SG", "none")}, as_of=as_of))
    assert {f for f in found(ev) if f[1].startswith("licence.")} == expected
    assert not found(ev, "tier3.prohibited")  # us-2026 states licences, not a prohibition
    assert ev.compliant == (DENIAL not in expected)


def test_case_by_case_finding_says_which_rule_and_numbers() -> None:
    ev = run(US, scenario([("s", "CN", "e", [part("h200-sxm", 8)])], {"e": ("SG", "none")}))
    f = one(ev, "licence.case-by-case")
    assert f.value == 8 * 15_832 and "TPP < 21,000" in f.message and "6,500 GB/s" in f.message
    assert "[jan2026]" in f.message and "8 × h200-sxm" in f.message


def test_unknown_bandwidth_is_named_in_the_denial() -> None:
    ev = run(US, scenario([("s", "CN", "e", [given(15_000, None)])], {"e": ("SG", "none")}))
    assert "1 of them with DRAM bandwidth unknown" in one(ev, "licence.presumption-of-denial").message


HQ = ("warning", "licence.headquarters", "entity:e")


@pytest.mark.parametrize("pack_name", [US, BASELINE])
@pytest.mark.parametrize(("entity", "expected"), [
    ({"id": "e", "headquarters": "CN"}, {HQ}),
    ({"id": "e", "headquarters": "MO"}, {HQ}),
    ({"id": "e", "headquarters": "SG", "ultimate_parent": "CN"}, {HQ}),
    ({"id": "e", "headquarters": "SG"}, set()),
    ({"id": "e", "headquarters": "SG", "ultimate_parent": "US"}, set()),
], ids=["hq-china", "hq-macau", "parent-china", "hq-singapore", "parent-us"])  # fmt: skip
def test_headquarters_licence_follows_the_entity(pack_name, entity, expected) -> None:
    doc = scenario([("s", "SG", "e", [h100(2), part("h20", 5)])])
    doc["entities"] = [entity]
    ev = run(pack_name, doc)
    assert found(ev, "licence.headquarters") == expected
    if expected:
        f = one(ev, "licence.headquarters")
        assert f.value == 2 * 15_832  # the H20s are outside 3A090
        assert ("ultimate parent" in f.message) == ("ultimate_parent" in entity)


def test_event_style_measures_are_listed_not_enforced() -> None:
    ev = run(US, scenario([("s", "US", "e", [h100(1)])], {"e": ("US", "none")}, as_of="2026-06-30"))
    notes = [f for f in ev.findings if f.rule == "policy.note"]
    assert notes and all(f.severity == "info" and "not enforced" in f.message for f in notes)
    assert ev.compliant and not found(ev)
    early = run(US, scenario([("s", "US", "e", [h100(1)])], {"e": ("US", "none")}, as_of="2025-01-01"))
    assert not [f for f in early.findings if f.rule == "policy.note"]  # none dated yet


def _rtx_4090_over_lpp(exempt: bool):
    text = pack_text(IFR)[0]
    if not exempt:
        text = text.replace("non_datacenter_exempt = true", "non_datacenter_exempt = false")
    pack = parse_pack(text, "test pack", "test")
    # 6,000 × 5,285 = 31,710,000 TPP in 2026 > the LPP limit of 26,900,000
    return run(pack, scenario([("s", "AE", "e", [part("rtx-4090", 6000, "2026-03-01")])]))


def test_non_datacenter_3a090a_under_nac_aca_counts_against_neither_lpp_nor_allocation() -> None:
    # 15 CFR 740.8(a): NAC/ACA covers 3A090 "except for items designed or marketed for use in a data center and
    # meeting the parameters of 3A090.a"; an RTX 4090 (3A090.a, not data centre) ships under it
    ev = _rtx_4090_over_lpp(exempt=True)
    assert not found(ev, "lpp.exceeded") and not [f for f in ev.findings if f.rule == "lpp.exceeded"]
    ae = next(c for c in ev.countries if c.country == "AE")
    assert ae.allocation_used_tpp == 0 and ae.tpp == 6000 * 5_285  # still counted as installed TPP
    ev = _rtx_4090_over_lpp(exempt=False)
    assert one(ev, "lpp.exceeded").value == 6000 * 5_285


def test_nveu_headquarters_test_reaches_the_ultimate_parent() -> None:
    doc = scenario([("s", "AE", "n", [h100(1)])], {"n": ("AE", "nveu")})
    assert not found(run(IFR, doc), "nveu.headquarters")
    doc["entities"][0]["ultimate_parent"] = "CN"
    f = one(run(IFR, doc), "nveu.headquarters")
    assert f.severity == "violation" and "ultimate parent in CN" in f.message


US_TEXT = pack_text(US)[0]


@pytest.mark.parametrize(("change", "expected"), [
    (("dram_bandwidth_gbs_below = 6500", "dram_bandwidth_below = 6500"), "dram_bandwidth_below: unknown key"),
    (('source = "jan2026"\n', 'source = "nowhere"\n'), "'nowhere' is not the id of one of the pack's sources"),
    (('review = "presumption-of-denial"', 'review = "approval"'), "licensing.review: the Tier 3 review policy"),
    (("before = 3", "before = 1"), "before and after must be two different tiers"),
    (('country = "KH"', 'country = "XX"'), "'XX' is not an ISO 3166-1 alpha-2"),
    (("licence_required_tiers = [3]", "licence_required_tiers = [4]"), "expected a list of tiers"),
    (('date = 2025-04-09', 'date = "April"'), "notes[0].date: expected a date"),
    (('[limits.headquarters]', '[limits.tier3]\nprohibited = true\n\n[limits.headquarters]'), "not both"),
])  # fmt: skip
def test_bad_2026_pack_names_file_and_key(change, expected) -> None:
    from gpucensus.collector.errors import ConfigError

    old, new = change
    assert old in US_TEXT
    with pytest.raises(ConfigError) as err:
        parse_pack(US_TEXT.replace(old, new, 1), "mine.toml", "mine.toml")
    assert err.value.message.startswith("mine.toml") and expected in err.value.message


def test_a_catalogue_part_without_published_figures_is_listed_unknown_with_the_reason() -> None:
    ev = run(US, scenario([("s", "CN", "e", [part("rtx-6000d", 4)])], {"e": ("SG", "none")}))
    f = one(ev, "device.unknown")
    assert f.value == 4 and "'rtx-6000d' (figures not published: give 'tpp')" in f.message
    assert not found(ev, "licence.presumption-of-denial")  # unknown TPP: listed, never guessed


def test_a_bad_ultimate_parent_names_the_field() -> None:
    from gpucensus.collector.errors import ConfigError
    from gpucensus.collector.policy import parse_scenario

    doc = scenario([("s", "SG", "e", [h100(1)])])
    doc["entities"][0]["ultimate_parent"] = "PRC"
    with pytest.raises(ConfigError) as err:
        parse_scenario(doc, "plan.json")
    assert "plan.json: entities[0].ultimate_parent: 'PRC' is not an ISO 3166-1 alpha-2" in err.value.message
