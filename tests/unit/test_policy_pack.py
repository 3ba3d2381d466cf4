"""Policy packs: the shipped packs say what the reference says; a bad pack is an error naming the file and key."""

from __future__ import annotations

import re
from datetime import date
from fractions import Fraction

import pytest
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.policy.pack import builtin_names, load_pack, pack_text, parse_pack

IFR_TIER1 = {"US", "AU", "BE", "CA", "DK", "FI", "FR", "DE", "IE", "IT", "JP", "NL", "NZ", "NO", "KR", "ES", "SE",
             "TW", "GB"}  # fmt: skip
D5_MACAU_HK = {"AF", "BY", "MM", "KH", "CF", "CN", "HK", "CD", "CU", "CY", "ER", "HT", "IR", "IQ", "LB", "LY", "KP",
               "NI", "RU", "SO", "SS", "SD", "SY", "VE", "ZW", "MO"}  # fmt: skip
EU27 = {"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU",
        "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE"}  # fmt: skip


def test_shipped_packs() -> None:
    assert builtin_names() == ["ai-diffusion-2025", "baseline-2023", "carnegie-2025", "us-2026"]


def test_ai_diffusion_numbers() -> None:
    p = load_pack("ai-diffusion-2025")
    assert (p.status, p.h100_reference_tpp, p.counted_classes) == ("not-enforced", 15_832, ("3A090.a",))
    assert (p.status_since, p.status_source) == (date(2025, 5, 13), "may2025") and p.nac_aca_non_datacenter_exempt
    assert p.tier1 == IFR_TIER1 and p.tier3 == D5_MACAU_HK and p.tier3_prohibited
    assert p.lpp_limit(2025) == 26_900_000 and p.lpp_limit(2031) == 26_900_000 and p.lpp_limit(2024) is None
    a = p.allocation
    assert a is not None
    assert (a.tpp, a.window_from, a.window_through, a.government_agreement_multiplier) == (
        790_000_000, date(2025, 1, 13), date(2027, 12, 31), 2)  # fmt: skip
    u = p.uveu
    assert u is not None
    assert (u.headquarters_tiers, u.tier1_min_share, u.country_max_share) == ((1,), Fraction(3, 4), Fraction(7, 100))
    assert u.headquarters_country_min_share == {"US": Fraction(1, 2)} and u.tier3_sites_prohibited
    assert p.nveu is not None and [s.tpp for s in p.nveu.installed_base] == [
        100_000 * 15_832, 270_000 * 15_832, 320_000 * 15_832]  # fmt: skip
    assert (p.warn_cap_fraction, p.warn_min_share_margin) == (Fraction(4, 5), Fraction(1, 20))


def test_carnegie_adds_exactly_the_documented_countries() -> None:
    ifr, c = load_pack("ai-diffusion-2025"), load_pack("carnegie-2025")
    assert c.status == "proposal"
    assert c.tier1 - ifr.tier1 == (EU27 - IFR_TIER1) | {"IS", "IL", "CH"}
    assert len(c.tier1 - ifr.tier1) == 20 and c.tier1 >= ifr.tier1
    assert c.tier3 == ifr.tier3 - {"CY"}  # Cyprus moves to Tier 1 with the whole EU
    # 2025 inherited from the IFR (the proposal is silent on it), then 300 / 600 / 1,200 / 2,400 H100e
    assert [(s.from_year, s.tpp) for s in c.lpp or ()] == [(2025, 26_900_000),
        (2026, 300 * 15_832), (2027, 600 * 15_832), (2028, 1_200 * 15_832), (2029, 2_400 * 15_832)]  # fmt: skip
    assert c.lpp_limit(2025) == ifr.lpp_limit(2025) and c.lpp_limit(2031) == 2_400 * 15_832
    assert c.allocation is not None and c.allocation.country_multipliers == {"IN": 2}
    assert c.uveu is not None and c.uveu.country_max_share is None and c.uveu.tier1_min_share == Fraction(3, 4)
    text = pack_text("carnegie-2025")[0]
    for code in sorted(c.tier1 - ifr.tier1):
        assert re.search(rf"\b{code} [A-Z][a-z]", text), f"{code} is not named in the pack's comments"


def test_baseline_is_the_october_2023_rule_as_published() -> None:
    p = load_pack("baseline-2023")
    assert p.tier3_prohibited and not p.tier1 and p.default_tier == 1
    # the October 2023 controls are still in force (the AI Diffusion rule's non-enforcement did not touch them);
    # the list is the one published, and Cambodia's removal from D:5 applies from its effective date
    assert (p.status, p.effective_from, p.effective_until) == ("in-force", date(2023, 11, 17), None)
    assert p.tier3 == D5_MACAU_HK and p.tiers_as_of == date(2023, 10, 25)
    assert p.on(date(2026, 2, 2)).tier3 == D5_MACAU_HK and p.on(date(2026, 2, 3)).tier3 == D5_MACAU_HK - {"KH"}
    assert (p.lpp, p.allocation, p.uveu, p.nveu, p.licensing) == (None, None, None, None, None)
    assert p.headquarters is not None and p.headquarters.tiers == (3,)


def test_us_2026_numbers() -> None:
    p = load_pack("us-2026")
    assert (p.status, p.effective_from, p.default_tier, p.tier1) == ("in-force", date(2023, 11, 17), 1, frozenset())
    assert p.tier3 == D5_MACAU_HK - {"KH"} and not p.tier3_prohibited
    assert [(c.country, c.effective, c.before, c.after) for c in p.tier_changes] == [("KH", date(2026, 2, 3), 3, 1)]
    lic = p.licensing
    assert lic is not None and lic.review == "presumption-of-denial"
    [rule] = lic.case_by_case
    assert (rule.countries, rule.effective, rule.tpp_below, rule.dram_bandwidth_gbs_below) == (
        frozenset({"CN", "HK", "MO"}), date(2026, 1, 15), 21_000, 6_500)  # fmt: skip
    assert p.headquarters is not None and p.headquarters.tiers == (3,)
    assert (p.lpp, p.allocation, p.uveu, p.nveu) == (None, None, None, None)
    assert p.notes and all(n.source in {s["id"] for s in p.sources} for n in p.notes)


def test_the_default_pack_is_us_2026_everywhere() -> None:
    from gpucensus.collector.config import PolicyConfig
    from gpucensus.collector.policy.packs import DEFAULT_PACK

    assert DEFAULT_PACK == "us-2026" and PolicyConfig().pack == DEFAULT_PACK and DEFAULT_PACK in builtin_names()


@pytest.mark.parametrize("name", ["ai-diffusion-2025", "carnegie-2025", "baseline-2023", "us-2026"])
def test_every_cited_source_is_listed(name) -> None:
    text = pack_text(name)[0]
    ids = {s["id"] for s in load_pack(name).sources}
    comments = "\n".join(line.split("#", 1)[1] for line in text.splitlines() if "#" in line)
    cited = set(re.findall(r"\[([a-z0-9-]+)[ \]]", comments))
    assert cited and cited <= ids, cited - ids


def test_user_pack_by_path(tmp_path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(pack_text("ai-diffusion-2025")[0].replace('name = "ai-diffusion-2025"', 'name = "mine"'))
    p = load_pack(str(path))
    assert (p.name, p.source) == ("mine", str(path))


IFR_TEXT = pack_text("ai-diffusion-2025")[0]

BAD_PACKS = [
    # (id, (old, new) edit of the shipped IFR pack, text the error must contain)
    ("unknown-top-key", ("format = 1", 'format = 1\ncolour = "red"'), "colour: unknown key"),
    (
        "unknown-nested-key",
        ('tier1_min_share = "0.75"', 'tier1_min_share = "0.75"\nmin_share = "1"'),
        "limits.uveu.min_share: unknown key",
    ),
    (
        "unknown-step-key",
        ("{ from_year = 2025, tpp = 26900000 }", "{ from_year = 2025, tpp = 26900000, x = 1 }"),
        "limits.lpp.schedule[0].x: unknown key",
    ),
    ("tpp-as-string", ("tpp = 790000000", 'tpp = "790000000"'), "limits.allocation.tpp: expected an integer"),
    (
        "share-as-float",
        ('tier1_min_share = "0.75"', "tier1_min_share = 0.75"),
        "limits.uveu.tier1_min_share: expected a quoted decimal",
    ),
    (
        "share-over-one",
        ('country_max_share = "0.07"', 'country_max_share = "7"'),
        "limits.uveu.country_max_share: must be between 0 and 1",
    ),
    ("not-iso-uk", ('"TW", "GB",', '"TW", "UK",'), "tiers.tier1: 'UK' is not an ISO 3166-1 alpha-2"),
    ("lower-case-code", ('"TW", "GB",', '"TW", "gb",'), "tiers.tier1: 'gb' is not an ISO 3166-1 alpha-2"),
    (
        "bad-multiplier-key",
        (
            "government_agreement_multiplier = 2",
            "government_agreement_multiplier = 2\ncountry_multipliers = { XX = 2 }",
        ),
        "limits.allocation.country_multipliers.XX: 'XX' is not",
    ),
    ("overlapping-tiers", ('"TW", "GB",', '"TW", "GB", "CN",'), "tiers.tier1 and tiers.tier3 overlap: CN"),
    ("duplicate-in-tier", ('"TW", "GB",', '"TW", "GB", "US",'), "tiers.tier1: listed twice: US"),
    ("bad-status", ('status = "not-enforced"', 'status = "gone"'), "status: must be one of"),
    ("missing-name", ('name = "ai-diffusion-2025"', ""), "name: missing"),
    ("date-as-string", ("from = 2025-01-13", 'from = "soon"'), "effective.from: expected a date"),
    (
        "lpp-both",
        ("{ from_year = 2025, tpp = 26900000 }", "{ from_year = 2025, tpp = 1, h100e = 1 }"),
        "limits.lpp.schedule[0]: give exactly one of",
    ),
    (
        "nveu-not-increasing",
        ("through = 2026-12-31", "through = 2025-06-30"),
        "limits.nveu.installed_base: 'through' dates must be strictly increasing",
    ),
    (
        "window-backwards",
        ("window_through = 2027-12-31", "window_through = 2024-12-31"),
        "limits.allocation.window_through: before window_from",
    ),
    ("negative-cap", ("tpp = 790000000", "tpp = -1"), "limits.allocation.tpp: must be at least 0"),
    ("bad-class", ('counted_classes = ["3A090.a"]', 'counted_classes = ["4A090.a"]'), "counted_classes: '4A090.a'"),
    ("not-toml", ("format = 1", "format = = 1"), "not valid TOML"),
    # a required list left out is an error, never an empty schedule that silently removes the limit
    ("lpp-no-schedule", ("schedule = [{ from_year = 2025, tpp = 26900000 }]", ""), "limits.lpp.schedule: missing"),
    ("nveu-misspelt-schedule", ("installed_base = [", "xs = ["), "limits.nveu.xs: unknown key"),
    ("effective-backwards", ("until = 2025-05-13", "until = 2025-01-13"), "effective.until: must be after"),
    (
        "duplicate-source-id",
        ('id = "summaries"', 'id = "ifr"'),
        "sources[5].id: 'ifr' is used twice",
    ),
    (
        "duplicate-class",
        ('counted_classes = ["3A090.a"]', 'counted_classes = ["3A090.a", "3A090.a"]'),
        "counted_classes: a class is listed twice",
    ),
    ("date-basic-format", ("from = 2025-01-13", 'from = "20250113"'), "effective.from: expected a date"),
]


@pytest.mark.parametrize(("name", "edit", "expected"), BAD_PACKS, ids=[c[0] for c in BAD_PACKS])
def test_bad_pack_names_file_and_key(name, edit, expected, tmp_path) -> None:
    old, new = edit
    assert old in IFR_TEXT
    path = tmp_path / "bad.toml"
    path.write_text(IFR_TEXT.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load_pack(str(path))
    assert err.value.message.startswith(f"{path}: ")
    assert expected in err.value.message


def test_missing_pack_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError) as err:
        load_pack("ai-diffusion-2099")
    assert "ai-diffusion-2099" in err.value.message and "carnegie-2025" in err.value.hint


def test_parse_pack_names_where() -> None:
    with pytest.raises(ConfigError, match=r"^here: status: missing"):
        parse_pack('format = 1\nname = "x"', "here", "here")
    with pytest.raises(ConfigError, match=r"^here: effective: missing"):
        parse_pack('format = 1\nname = "x"\nstatus = "proposal"\ncounted_classes = []', "here", "here")


def test_required_lists_and_sources(tmp_path) -> None:
    text = IFR_TEXT
    no_base = re.sub(r"installed_base = \[.*?\]\n", "", text, flags=re.S)
    assert no_base != text
    with pytest.raises(ConfigError, match=r"limits\.nveu\.installed_base: missing"):
        parse_pack(no_base, "p.toml", "p.toml")
    no_sources = text[: text.index("[[sources]]")]
    with pytest.raises(ConfigError, match=r"p\.toml: sources: missing"):
        parse_pack(no_sources, "p.toml", "p.toml")
    empty = no_sources.replace("format = 1\n", "format = 1\nsources = []\n")
    with pytest.raises(ConfigError, match=r"p\.toml: sources: empty"):
        parse_pack(empty, "p.toml", "p.toml")
