"""A site against its landmarks' bounds: the node's location status and the findings, with the numbers.

Each accepted measurement bounds the node's distance from its landmark (`bound.max_distance_m`); the node lies in
the intersection of those discs. Then, for the site the node is enrolled at:

- the site outside some disc: `location.implausible` (violation), naming the landmark, the bound and the site's
  real distance from it;
- the site inside every disc, but the region reaching beyond the site's country (or lying wholly outside it, or no
  border data for it): `location.country-unproven` (warning) - consistent, not proven; a node that adds delay
  ends here, never in the site's favour;
- the region wholly inside the country, clear of its border by `[location] border_margin_km`: `in-country`, no
  finding.

Pure: the site, its coordinates, the accepted measurements and the settings come in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gpucensus.collector.ingest.model import VIOLATION, WARNING, Finding
from gpucensus.collector.location import geometry
from gpucensus.collector.location.bound import DEFAULT_FIBRE_SPEED_KM_PER_S, max_distance_m
from gpucensus.collector.location.countries import country_border, country_shape
from gpucensus.collector.location.evidence import Accepted
from gpucensus.collector.location.records import IMPLAUSIBLE, IN_COUNTRY, UNPROVEN, SiteLocation

IMPLAUSIBLE_RULE = "location.implausible"
UNPROVEN_RULE = "location.country-unproven"
STALE_RULE = "location.stale"


@dataclass(frozen=True)
class Settings:
    fibre_speed_km_per_s: float = DEFAULT_FIBRE_SPEED_KM_PER_S
    processing_allowance_us: int = 20
    border_margin_km: float = 20.0


@dataclass(frozen=True)
class Verdict:
    status: str
    message: str
    findings: tuple[Finding, ...]


def _km(metres: float) -> str:
    return f"{metres / 1000:,.0f} km" if metres >= 10_000 else f"{metres / 1000:.1f} km"


def assess(
    node_id: str, site: str, country: str, where: SiteLocation, accepted: Sequence[Accepted], settings: Settings
) -> Verdict:
    point = geometry.Point(where.latitude, where.longitude)
    best: dict[str, Accepted] = {}  # the smallest round trip per landmark bounds best
    for a in accepted:
        if a.landmark.name not in best or a.measurement.min_rtt_us < best[a.landmark.name].measurement.min_rtt_us:
            best[a.landmark.name] = a
    discs, too_far = [], []
    for name in sorted(best):
        a = best[name]
        centre = geometry.Point(a.landmark.latitude, a.landmark.longitude)
        radius = max_distance_m(
            a.measurement.min_rtt_us, settings.fibre_speed_km_per_s, settings.processing_allowance_us
        )
        discs.append(geometry.Disc(centre, radius))
        distance = geometry.distance_m(point, centre)
        if distance > radius:
            too_far.append(
                f"landmark {name} measured a round trip of {a.measurement.min_rtt_us} us at "
                f"{a.measurement.time:%Y-%m-%dT%H:%M:%SZ}: the node is at most {_km(radius)} from it, but site {site} "
                f"is {_km(distance)} away"
            )
    here = f"node {node_id} at site {site} ({where.latitude:.4f}, {where.longitude:.4f}, {country})"
    if too_far:
        message = f"{here}: {'; '.join(too_far)}"
        return Verdict(IMPLAUSIBLE, message, (Finding(IMPLAUSIBLE_RULE, VIOLATION, f"node:{node_id}", message),))
    tightest = min(zip(discs, sorted(best), strict=True), key=lambda d: d[0].radius_m)
    bound = f"tightest bound: within {_km(tightest[0].radius_m)} of landmark {tightest[1]}"
    shape = country_shape(country)
    if shape is None:
        side = "no border data"
    else:
        margin = settings.border_margin_km * 1000
        side = geometry.region_against_country(discs, point, shape, country_border(country), margin)
    if side == geometry.INSIDE:
        return Verdict(IN_COUNTRY, f"{here}: the measured region lies in {country} ({bound})", ())
    margin_km = f"{settings.border_margin_km:g} km"
    why = {
        geometry.CROSSES: f"the measured region reaches beyond {country} (or within {margin_km} of its border)",
        geometry.OUTSIDE: f"the measured region lies wholly outside {country}: the site is not in {country}",
    }.get(side, f"there is no border data for {country}")
    message = (
        f"{here}: consistent with {len(discs)} landmark(s), but {why} ({bound}); "
        "the evidence does not prove the country"
    )
    return Verdict(UNPROVEN, message, (Finding(UNPROVEN_RULE, WARNING, f"node:{node_id}", message),))
