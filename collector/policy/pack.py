"""Policy packs: versioned TOML files (shipped in `collector/policy/packs/` or named by path), strictly validated.

A pack is data: tiers, limits and their sources. Unknown keys, wrong types, invalid ISO 3166-1 alpha-2 codes and
a country in two tiers are `ConfigError`s naming the file and the key. Decimal limits are quoted strings parsed
to `Fraction`s, so every comparison against a cap or a share is exact.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

from gpucensus.collector.errors import ConfigError
from gpucensus.collector.policy.fields import Reader
from gpucensus.common.accounting import ECCN_A, ECCN_B

# not-enforced: still in the regulations but the agency announced it will not enforce it (the AI Diffusion rule
# since 2025-05-13); rescinded: removed by a published rule.
STATUSES = ("in-force", "not-enforced", "rescinded", "proposal")
REVIEWS = ("presumption-of-denial", "case-by-case")
CLASSES = (ECCN_A, ECCN_B)
TIERS = (1, 2, 3)
FORMAT = 1
_DEFAULT_CAP_FRACTION = "0.8"  # issue 5's warning bands (tool thresholds, not regulation)
_DEFAULT_MIN_SHARE_MARGIN = "0.05"


@dataclass(frozen=True)
class LppStep:
    from_year: int
    tpp: int


@dataclass(frozen=True)
class Allocation:
    tpp: int
    window_from: date
    window_through: date
    government_agreement_multiplier: int = 1
    country_multipliers: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Uveu:
    headquarters_tiers: tuple[int, ...]
    tier1_min_share: Fraction | None
    country_max_share: Fraction | None
    headquarters_country_min_share: dict[str, Fraction]
    tier3_sites_prohibited: bool


@dataclass(frozen=True)
class NveuStep:
    through: date
    tpp: int


@dataclass(frozen=True)
class Nveu:
    headquarters_excluded_tiers: tuple[int, ...]
    installed_base: tuple[NveuStep, ...]


@dataclass(frozen=True)
class TierChange:
    """A country that moved between tiers on `effective` (e.g. Cambodia left Country Group D:5 on 2026-02-03)."""

    effective: date
    country: str
    before: int
    after: int
    source: str


@dataclass(frozen=True)
class CaseByCase:
    """A licence review policy that replaces the presumption of denial for some destinations and parts."""

    countries: frozenset[str]
    effective: date
    tpp_below: int
    dram_bandwidth_gbs_below: int
    source: str


@dataclass(frozen=True)
class Licensing:
    """Tier 3 as licence requirements (us-2026) rather than a prohibition: how each device's licence is reviewed."""

    review: str  # the default review policy for Tier 3 destinations: presumption-of-denial
    case_by_case: tuple[CaseByCase, ...]
    source: str


@dataclass(frozen=True)
class Headquarters:
    """A licence requirement that follows the entity: headquartered (or ultimate parent) in one of these tiers."""

    tiers: tuple[int, ...]
    source: str


@dataclass(frozen=True)
class Note:
    """An event-style measure (a letter to a company, guidance, an announcement): listed, not enforced."""

    date: date
    text: str
    source: str


@dataclass(frozen=True)
class Pack:
    name: str
    version: str
    title: str
    status: str
    source: str  # "builtin" or the file path it was loaded from
    sources: tuple[dict[str, str], ...]
    effective_from: date
    effective_until: date | None
    h100_reference_tpp: int
    counted_classes: tuple[str, ...]
    government_agreements: frozenset[str]
    tiers_as_of: date
    default_tier: int
    tier1: frozenset[str]
    tier3: frozenset[str]
    tier3_prohibited: bool
    lpp: tuple[LppStep, ...] | None
    allocation: Allocation | None
    uveu: Uveu | None
    nveu: Nveu | None
    warn_cap_fraction: Fraction
    warn_min_share_margin: Fraction
    status_since: date | None = None
    status_source: str = ""
    tier_changes: tuple[TierChange, ...] = ()
    licensing: Licensing | None = None
    headquarters: Headquarters | None = None
    nac_aca_non_datacenter_exempt: bool = False  # non-data-centre 3A090.a parts left out of LPP and allocation
    notes: tuple[Note, ...] = ()
    location_implausible_as_unknown: bool = False  # [location]: GPUs of implausibly located nodes in "unknown"

    def on(self, when: date) -> Pack:
        """The pack with its tier lists as they stood on `when` (tier changes not yet effective are undone)."""
        tier1, tier3 = set(self.tier1), set(self.tier3)
        for change in self.tier_changes:
            tier = change.after if when >= change.effective else change.before
            tier1.discard(change.country)
            tier3.discard(change.country)
            {1: tier1, 3: tier3}.get(tier, set()).add(change.country)
        return dataclasses.replace(self, tier1=frozenset(tier1), tier3=frozenset(tier3))

    def tier(self, country: str) -> int:
        if country in self.tier1:
            return 1
        if country in self.tier3:
            return 3
        return self.default_tier

    def lpp_limit(self, year: int) -> int | None:
        """The LPP limit (TPP) for acquisitions in `year`; None = no LPP exception that year."""
        if self.lpp is None:
            return None
        steps = [s for s in self.lpp if s.from_year <= year]
        return steps[-1].tpp if steps else None

    def nveu_limit(self, as_of: date) -> int | None:
        """The per-country NVEU installed-base cap at `as_of`; the last step holds after its date."""
        if self.nveu is None or not self.nveu.installed_base:
            return None
        for step in self.nveu.installed_base:
            if as_of <= step.through:
                return step.tpp
        return self.nveu.installed_base[-1].tpp

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "title": self.title, "status": self.status,
                "status_since": self.status_since.isoformat() if self.status_since else None,
                "source": self.source}  # fmt: skip


def builtin_names() -> list[str]:
    folder = resources.files("gpucensus.collector.policy.packs")
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def load_pack(name_or_path: str) -> Pack:
    """A shipped pack by name (`ai-diffusion-2025`) or any pack file by path."""
    text, where, source = pack_text(name_or_path)
    return parse_pack(text, where, source)


def pack_text(name_or_path: str) -> tuple[str, str, str]:
    """(TOML text, where to name in errors, "builtin" or the path) of a shipped pack or a pack file."""
    if name_or_path in builtin_names():
        where = f"{name_or_path}.toml"
        text = resources.files("gpucensus.collector.policy.packs").joinpath(where).read_text(encoding="utf-8")
        return text, f"builtin pack {where}", "builtin"
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(
            f"policy pack {name_or_path!r}: no shipped pack of that name and no such file",
            hint=f"shipped packs: {', '.join(builtin_names())}; or give the path of a .toml pack",
        )
    try:
        return path.read_text(encoding="utf-8"), str(path), str(path)
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"policy pack {path}: cannot read it ({err})") from err


def parse_pack(text: str, where: str, source: str) -> Pack:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{where}: not valid TOML ({err})") from err
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to be a policy pack") from None
    return parse_pack_document(doc, where, source)


def parse_pack_document(doc: Any, where: str, source: str) -> Pack:
    """A pack from its parsed TOML document; every problem is a `ConfigError` naming `where` and the key."""
    r = Reader(doc, where)
    r.allow("format", "name", "version", "title", "status", "status_since", "status_source", "sources",
            "h100_reference_tpp", "counted_classes", "government_agreements", "effective", "tiers", "limits",
            "warnings", "notes", "location")  # fmt: skip
    if r.integer("format") != FORMAT:
        raise ConfigError(f"{where}: format: this collector reads pack format {FORMAT}")
    status = r.string("status")
    if status not in STATUSES:
        raise ConfigError(f"{where}: status: must be one of {', '.join(STATUSES)}, got {status!r}")
    counted = tuple(r.strings("counted_classes", default=[ECCN_A]))
    for cls in counted:
        if cls not in CLASSES:
            raise ConfigError(f"{where}: counted_classes: {cls!r} is not one of {', '.join(CLASSES)}")
    if len(set(counted)) != len(counted):
        raise ConfigError(f"{where}: counted_classes: a class is listed twice")
    eff = r.table("effective")
    eff.allow("from", "until")
    effective_from, effective_until = eff.date("from"), eff.date("until", required=False)
    if effective_until is not None and effective_until <= effective_from:
        raise ConfigError(f"{where}: effective.until: must be after effective.from")
    tiers = r.table("tiers")
    tiers.allow("as_of", "default", "tier1", "tier3", "changes")
    tier1, tier3 = tiers.countries("tier1"), tiers.countries("tier3")
    both = sorted(set(tier1) & set(tier3))
    if both:
        raise ConfigError(f"{where}: tiers.tier1 and tiers.tier3 overlap: {', '.join(both)}")
    default_tier = tiers.integer("default", default=2)
    if default_tier not in (1, 2):
        raise ConfigError(f"{where}: tiers.default: must be 1 or 2, got {default_tier}")
    h100 = r.integer("h100_reference_tpp", minimum=1)
    limits = r.table("limits", required=False)
    limits.allow("tier3", "lpp", "allocation", "uveu", "nveu", "licensing", "headquarters", "nac_aca")
    warnings = r.table("warnings", required=False)
    warnings.allow("cap_fraction", "min_share_margin")
    sources = _sources(r)
    source_ids = {s["id"] for s in sources}
    licensing = _licensing(limits, source_ids)
    if licensing is not None and _tier3(limits):
        raise ConfigError(f"{where}: limits: give either tier3.prohibited or licensing for Tier 3, not both")
    status_source = r.string("status_source", default="")
    if status_source and status_source not in source_ids:
        raise r.fail("status_source", f"{status_source!r} is not the id of one of the pack's sources")
    location = r.table("location", required=False)
    location.allow("implausible_as_unknown")
    return Pack(
        name=r.string("name"),
        version=r.string("version"),
        title=r.string("title"),
        status=status,
        source=source,
        sources=sources,
        effective_from=effective_from,
        effective_until=effective_until,
        h100_reference_tpp=h100,
        counted_classes=counted,
        government_agreements=frozenset(r.countries("government_agreements", default=[])),
        tiers_as_of=tiers.date("as_of"),
        default_tier=default_tier,
        tier1=frozenset(tier1),
        tier3=frozenset(tier3),
        tier3_prohibited=_tier3(limits),
        lpp=_lpp(limits, h100),
        allocation=_allocation(limits),
        uveu=_uveu(limits),
        nveu=_nveu(limits),
        warn_cap_fraction=warnings.share("cap_fraction", default=_DEFAULT_CAP_FRACTION),
        warn_min_share_margin=warnings.share("min_share_margin", default=_DEFAULT_MIN_SHARE_MARGIN),
        status_since=r.date("status_since", required=False),
        status_source=status_source,
        tier_changes=_changes(tiers, source_ids),
        licensing=licensing,
        headquarters=_headquarters(limits, source_ids),
        nac_aca_non_datacenter_exempt=_nac_aca(limits),
        notes=_notes(r, source_ids),
        location_implausible_as_unknown=location.boolean("implausible_as_unknown", default=False),
    )


def _cited(t: Reader, source_ids: set[str]) -> str:
    source = t.string("source")
    if source not in source_ids:
        raise t.fail("source", f"{source!r} is not the id of one of the pack's sources")
    return source


def _changes(tiers: Reader, source_ids: set[str]) -> tuple[TierChange, ...]:
    out = []
    for t in tiers.tables("changes", default=[]):
        t.allow("effective", "country", "before", "after", "source")
        before, after = t.integer("before"), t.integer("after")
        if before not in TIERS or after not in TIERS or before == after:
            raise ConfigError(f"{t.where}: before and after must be two different tiers (1, 2, 3)")
        out.append(TierChange(t.date("effective"), t.country("country"), before, after, _cited(t, source_ids)))
    return tuple(sorted(out, key=lambda c: c.effective))


def _licensing(limits: Reader, source_ids: set[str]) -> Licensing | None:
    if not limits.has("licensing"):
        return None
    t = limits.table("licensing")
    t.allow("review", "case_by_case", "source")
    review = t.string("review")
    if review != "presumption-of-denial":
        raise t.fail("review", "the Tier 3 review policy this format models is 'presumption-of-denial'")
    rules = []
    for c in t.tables("case_by_case", default=[]):
        c.allow("countries", "effective", "tpp_below", "dram_bandwidth_gbs_below", "source")
        rules.append(CaseByCase(frozenset(c.countries("countries")), c.date("effective"),
                                c.integer("tpp_below", minimum=1), c.integer("dram_bandwidth_gbs_below", minimum=1),
                                _cited(c, source_ids)))  # fmt: skip
    return Licensing(review, tuple(rules), _cited(t, source_ids))


def _headquarters(limits: Reader, source_ids: set[str]) -> Headquarters | None:
    if not limits.has("headquarters"):
        return None
    t = limits.table("headquarters")
    t.allow("licence_required_tiers", "source")
    return Headquarters(t.tiers("licence_required_tiers"), _cited(t, source_ids))


def _nac_aca(limits: Reader) -> bool:
    t = limits.table("nac_aca", required=False)
    t.allow("non_datacenter_exempt")
    return t.boolean("non_datacenter_exempt", default=False)


def _notes(r: Reader, source_ids: set[str]) -> tuple[Note, ...]:
    out = []
    for t in r.tables("notes", default=[]):
        t.allow("date", "text", "source")
        out.append(Note(t.date("date"), t.string("text"), _cited(t, source_ids)))
    return tuple(out)


def _sources(r: Reader) -> tuple[dict[str, str], ...]:
    if not r.has("sources"):
        raise r.fail("sources", "missing (required): where every number of the pack comes from")
    out = []
    for i, item in enumerate(r.tables("sources")):
        item.allow("id", "citation", "url", "note")
        out.append({k: item.string(k) for k in ("id", "citation", "url", "note") if item.has(k)})
        if "id" not in out[-1] or "citation" not in out[-1]:
            raise ConfigError(f"{r.where}: sources[{i}]: needs 'id' and 'citation'")
        if out[-1]["id"] in [s["id"] for s in out[:-1]]:
            raise ConfigError(f"{r.where}: sources[{i}].id: {out[-1]['id']!r} is used twice")
    if not out:
        raise r.fail("sources", "empty: a pack names where its numbers come from")
    return tuple(out)


def _tier3(limits: Reader) -> bool:
    t = limits.table("tier3", required=False)
    t.allow("prohibited")
    return t.boolean("prohibited", default=False)


def _lpp(limits: Reader, h100: int) -> tuple[LppStep, ...] | None:
    if not limits.has("lpp"):
        return None
    t = limits.table("lpp")
    t.allow("schedule")
    steps = []
    for step in t.tables("schedule"):
        step.allow("from_year", "tpp", "h100e")
        year = step.integer("from_year", minimum=1)
        if step.has("tpp") == step.has("h100e"):
            raise ConfigError(f"{step.where}: give exactly one of 'tpp' or 'h100e'")
        tpp = step.integer("tpp", minimum=0) if step.has("tpp") else step.integer("h100e", minimum=0) * h100
        steps.append(LppStep(year, tpp))
    years = [s.from_year for s in steps]
    if years != sorted(set(years)):
        raise ConfigError(f"{t.where}.schedule: from_year values must be strictly increasing")
    return tuple(steps)


def _allocation(limits: Reader) -> Allocation | None:
    if not limits.has("allocation"):
        return None
    t = limits.table("allocation")
    t.allow("tpp", "window_from", "window_through", "government_agreement_multiplier", "country_multipliers")
    start, end = t.date("window_from"), t.date("window_through")
    if end < start:
        raise ConfigError(f"{t.where}.window_through: before window_from")
    multipliers = t.table("country_multipliers", required=False)
    return Allocation(
        tpp=t.integer("tpp", minimum=0),
        window_from=start,
        window_through=end,
        government_agreement_multiplier=t.integer("government_agreement_multiplier", default=1, minimum=1),
        country_multipliers={cc: multipliers.integer(cc, minimum=1) for cc in multipliers.country_keys()},
    )


def _uveu(limits: Reader) -> Uveu | None:
    if not limits.has("uveu"):
        return None
    t = limits.table("uveu")
    t.allow("headquarters_tiers", "tier1_min_share", "country_max_share", "headquarters_country_min_share",
            "tier3_sites_prohibited")  # fmt: skip
    home = t.table("headquarters_country_min_share", required=False)
    return Uveu(
        headquarters_tiers=t.tiers("headquarters_tiers", default=list(TIERS)),
        tier1_min_share=t.share("tier1_min_share", default=None),
        country_max_share=t.share("country_max_share", default=None),
        headquarters_country_min_share={cc: home.share(cc) for cc in home.country_keys()},
        tier3_sites_prohibited=t.boolean("tier3_sites_prohibited", default=False),
    )


def _nveu(limits: Reader) -> Nveu | None:
    if not limits.has("nveu"):
        return None
    t = limits.table("nveu")
    t.allow("headquarters_excluded_tiers", "installed_base")
    steps = []
    for step in t.tables("installed_base"):
        step.allow("through", "tpp")
        steps.append(NveuStep(step.date("through"), step.integer("tpp", minimum=0)))
    dates = [s.through for s in steps]
    if dates != sorted(set(dates)):
        raise ConfigError(f"{t.where}.installed_base: 'through' dates must be strictly increasing")
    return Nveu(t.tiers("headquarters_excluded_tiers", default=[]), tuple(steps))
