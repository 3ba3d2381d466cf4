"""Pure geometry on the WGS-84 ellipsoid: distances, discs (a landmark's bound) and country borders.

Distances are geodesics computed with GeographicLib (Karney's algorithm, accurate to nanometres): a site is
judged against a landmark's disc with the exact distance. Border questions use a cheaper spherical distance on
many points, always erring towards "the region touches the border" (so towards "unproven", never towards
"proven"): a relative slack covers the sphere's error against the ellipsoid (under 0.5 %), and half the sampling
step covers the points between samples.

Polygons are what Natural Earth ships: rings of (longitude, latitude) vertices joined by straight lines in that
plane; the first ring of a polygon is its outline, the others its holes; a country is a list of polygons.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from geographiclib.geodesic import Geodesic

Ring = Sequence[Sequence[float]]  # [(lon, lat), ...], first == last
Polygon = Sequence[Ring]
Country = Sequence[Polygon]

MEAN_EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius R1, for the spherical border sampling only
SPHERE_SLACK = 0.005  # the sphere's distance error against WGS-84 stays under 0.5 %
QUARTER_MERIDIAN_M = 10_001_966.0  # a disc wider than this is no longer convex: it bounds almost nothing
BORDER_STEP_M = 10_000.0  # border sample spacing (1:110m borders are not finer than this anyway)

_WGS84 = Geodesic.WGS84


@dataclass(frozen=True)
class Point:
    lat: float
    lon: float


@dataclass(frozen=True)
class Disc:
    """Where a node can be according to one landmark: within `radius_m` of `centre`."""

    centre: Point
    radius_m: float


def distance_m(a: Point, b: Point) -> float:
    """The geodesic distance on the WGS-84 ellipsoid, in metres."""
    return float(_WGS84.Inverse(a.lat, a.lon, b.lat, b.lon, Geodesic.DISTANCE)["s12"])


def spherical_distance_m(a: Point, b: Point) -> float:
    """Haversine distance on the mean sphere: within 0.5 % of `distance_m`, much cheaper."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * MEAN_EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def in_disc(point: Point, disc: Disc) -> bool:
    return distance_m(point, disc.centre) <= disc.radius_m


def point_in_ring(point: Point, ring: Ring) -> bool:
    """Even-odd ray casting in the (lon, lat) plane."""
    x, y, inside = point.lon, point.lat, False
    for (x1, y1), (x2, y2) in itertools.pairwise(ring):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def point_in_country(point: Point, country: Country) -> bool:
    """Inside a polygon's outline and in none of its holes, for some polygon of the country."""
    for polygon in country:
        if polygon and point_in_ring(point, polygon[0]):
            if not any(point_in_ring(point, hole) for hole in polygon[1:]):
                return True
    return False


def border_points(country: Country, step_m: float = BORDER_STEP_M) -> list[Point]:
    """Every vertex of every ring, plus points along each edge at most `step_m` apart."""
    points: list[Point] = []
    for polygon in country:
        for ring in polygon:
            for (x1, y1), (x2, y2) in itertools.pairwise(ring):
                start, end = Point(y1, x1), Point(y2, x2)
                pieces = max(1, math.ceil(spherical_distance_m(start, end) / step_m))
                points.extend(Point(y1 + (y2 - y1) * i / pieces, x1 + (x2 - x1) * i / pieces) for i in range(pieces))
    return points


def touches(point: Point, discs: Iterable[Disc], slack_m: float) -> bool:
    """Whether `point` may lie in every disc, each widened by the sphere's error and `slack_m`."""
    return all(spherical_distance_m(point, d.centre) <= d.radius_m * (1 + SPHERE_SLACK) + slack_m for d in discs)


INSIDE, OUTSIDE, CROSSES = "inside", "outside", "crosses"


def region_against_country(
    discs: Sequence[Disc],
    known_point: Point,
    country: Country,
    border: Sequence[Point],
    margin_m: float,
    step_m: float = BORDER_STEP_M,
) -> str:
    """Where the intersection of `discs` lies against `country`: INSIDE, OUTSIDE or CROSSES its border.

    `known_point` must lie in every disc (the site, once it passed the distance check). Discs wider than a
    quarter meridian are left out (the intersection of the rest is convex, so connected; leaving discs out only
    makes the region larger). A connected region that contains no border point is wholly on one side of the
    border, the side of `known_point`. Border points within `margin_m` (plus half a step) of the region count
    as in it, so INSIDE means: clear of the border by the margin, at the data's scale. No disc at all: CROSSES.
    """
    bounding = [d for d in discs if d.radius_m < QUARTER_MERIDIAN_M]
    if not bounding:
        return CROSSES
    slack = margin_m + step_m / 2
    if any(touches(p, bounding, slack) for p in border):
        return CROSSES
    return INSIDE if point_in_country(known_point, country) else OUTSIDE
