"""What an evaluation returns: findings and per-country / per-entity / per-site results (plain dataclasses).

Numbers stay exact here (TPP as `int`, shares as `Fraction`); `render` turns them into display values.
The threshold helpers below are the only place a value is compared with a cap or a share limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from typing import Any

VIOLATION = "violation"
WARNING = "warning"
INFO = "info"
_RANK = {VIOLATION: 3, WARNING: 2, INFO: 1}
COMPLIANT = "compliant"


@dataclass(frozen=True)
class Finding:
    severity: str
    rule: str  # stable id, e.g. "country.allocation"
    subject: str  # "site:ID", "country:CC", "entity:ID", "policy:NAME"
    message: str  # for a human, with the numbers
    value: int | Fraction | None = None
    limit: int | Fraction | None = None


@dataclass(frozen=True)
class ResolvedDevice:
    """A scenario device group with its class and TPP (per unit) established, and its place."""

    site: str
    country: str
    entity: str
    tier: int
    model: str
    count: int
    tpp: int | None  # per unit; None = unknown (never counted as zero)
    eccn: str  # "3A090.a" | "3A090.b" | "not-3A090" | "unknown"
    basis: str  # catalogue | given | unknown
    counted: bool  # class in the pack's counted_classes
    acquired: date | None  # as given
    acquired_effective: date  # acquired, or as_of when unknown
    review: str = ""
    datacenter: bool = True  # designed or marketed for data centres (Note 2 to 3A090; NAC/ACA)
    dram_bandwidth_gbs: int | None = None  # per unit; None = unknown

    @property
    def total_tpp(self) -> int:
        return (self.tpp or 0) * self.count


@dataclass(frozen=True)
class CountryResult:
    country: str
    tier: int
    tpp: int  # counted TPP of every entity's devices there
    allocation_tpp: int | None
    allocation_used_tpp: int | None
    status: str


@dataclass(frozen=True)
class EntityResult:
    id: str
    authorization: str
    headquarters: str
    tpp: int  # worldwide counted TPP
    shares: dict[str, Any]  # {"tier1": Fraction, "by_country": {CC: Fraction}}; {} when tpp == 0
    status: str


@dataclass(frozen=True)
class SiteResult:
    id: str
    country: str
    entity: str
    tier: int
    gpus: int
    tpp: int  # counted TPP
    unknown: int  # devices of unknown TPP
    devices: tuple[ResolvedDevice, ...]
    status: str


@dataclass(frozen=True)
class Evaluation:
    policy: dict[str, Any]
    as_of: date
    h100_reference_tpp: int
    countries: tuple[CountryResult, ...]
    entities: tuple[EntityResult, ...]
    sites: tuple[SiteResult, ...]
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    @property
    def compliant(self) -> bool:
        return self.count(VIOLATION) == 0


def worst(findings: Iterable[Finding]) -> str:
    """compliant | warning | violation (info findings do not change a verdict)."""
    ranks = [_RANK[f.severity] for f in findings if f.severity != INFO]
    return {3: VIOLATION, 2: WARNING}[max(ranks)] if ranks else COMPLIANT


def sort_findings(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    return tuple(sorted(findings, key=lambda f: (-_RANK[f.severity], f.rule, f.subject, f.message)))


HOW = "{how}"  # placeholder in a message template, replaced by "over", "at ≥ 80 % of", ...


def _say(template: str, how: str) -> str:
    return template.replace(HOW, how)


def check_cap(value: int, limit: int, warn_fraction: Fraction, rule: str, subject: str, message: str) -> Finding | None:
    """Violation when value > limit; warning when value ≥ warn_fraction × limit (and > 0)."""
    if value > limit:
        return Finding(VIOLATION, rule, subject, _say(message, "over"), value, limit)
    if value > 0 and value >= warn_fraction * limit:
        return Finding(WARNING, rule, subject, _say(message, f"at ≥ {percent(warn_fraction)} of"), value, limit)
    return None


def check_max_share(
    share: Fraction, limit: Fraction, warn_fraction: Fraction, rule: str, subject: str, message: str
) -> Finding | None:
    if share > limit:
        return Finding(VIOLATION, rule, subject, _say(message, "above the maximum"), share, limit)
    if share > 0 and share >= warn_fraction * limit:
        return Finding(WARNING, rule, subject, _say(message, f"at ≥ {percent(warn_fraction)} of the maximum"),
                       share, limit)  # fmt: skip
    return None


def check_min_share(
    share: Fraction, limit: Fraction, margin: Fraction, rule: str, subject: str, message: str
) -> Finding | None:
    if share < limit:
        return Finding(VIOLATION, rule, subject, _say(message, "below the minimum"), share, limit)
    if share < limit + margin:
        return Finding(WARNING, rule, subject,
                       _say(message, f"less than {points(margin)} above the minimum"), share, limit)  # fmt: skip
    return None


def percent(value: Fraction, digits: int = 2) -> str:
    """0.075 -> '7.5 %' (display only)."""
    text = f"{float(value * 100):.{digits}f}".rstrip("0").rstrip(".")
    return f"{text} %"


def percent_near(value: Fraction, *marks: Fraction) -> str:
    """`value` as a percentage with as few decimals (2 or more) as keep it on the same side of every mark (a limit,
    a warning band) as the exact value: 0.749975 next to 0.75 reads '74.9975 %', never '75 %' below a 75 % minimum."""
    for digits in range(2, 12):
        shown = round(value * 100, digits) / 100
        if all((shown > m) - (shown < m) == (value > m) - (value < m) for m in marks):
            return percent(shown, digits)
    return percent(value, 12)


def points(value: Fraction) -> str:
    return percent(value).replace(" %", " percentage points")


def tpp_text(tpp: int | Fraction, h100_reference_tpp: int) -> str:
    """'790,000,000 TPP (49,899.0 H100e)' (display only)."""
    return f"{int(tpp):,} TPP ({float(Fraction(tpp) / h100_reference_tpp):,.1f} H100e)"
