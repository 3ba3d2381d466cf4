"""The location geometry, table-driven: published geodesic distances, the round-trip bound, country membership
near borders, and the region of several discs against a country."""

from __future__ import annotations

import pytest
from gpucensus.collector.location.bound import max_distance_m, rtt_us_for
from gpucensus.collector.location.countries import country_border, country_shape
from gpucensus.collector.location.geometry import (
    CROSSES,
    INSIDE,
    OUTSIDE,
    Disc,
    Point,
    distance_m,
    in_disc,
    point_in_country,
    region_against_country,
    spherical_distance_m,
)

FRANKFURT = Point(50.1109, 8.6821)
PARIS = Point(48.8566, 2.3522)
SINGAPORE = Point(1.3521, 103.8198)
ASHBURN = Point(39.0438, -77.4874)
LONDON = Point(51.5074, -0.1278)

# (from, to, published distance in metres, tolerance in metres)
PUBLISHED = [
    # GeographicLib's documentation (geographiclib.sourceforge.io, Python "Basic geodesic calculations"):
    # Wellington, NZ (41.32S, 174.81E) to Salamanca, Spain (40.96N, 5.50W) is 19959679.267 m
    (Point(-41.32, 174.81), Point(40.96, -5.50), 19_959_679.267, 0.001),
    # Vincenty (1975) / Geoscience Australia's worked example: Flinders Peak to Buninyong, 54972.271 m
    (
        Point(-(37 + 57 / 60 + 3.72030 / 3600), 144 + 25 / 60 + 29.52440 / 3600),
        Point(-(37 + 39 / 60 + 10.15610 / 3600), 143 + 55 / 60 + 35.38390 / 3600),
        54_972.271,
        0.001,
    ),
    # City pairs as commonly published (city-centre coordinates, so within a few km)
    (LONDON, PARIS, 343_500, 3_000),
    (FRANKFURT, PARIS, 479_000, 3_000),
    (FRANKFURT, SINGAPORE, 10_260_000, 30_000),
    (FRANKFURT, ASHBURN, 6_566_000, 30_000),
]


@pytest.mark.parametrize(("a", "b", "metres", "tolerance"), PUBLISHED)
def test_geodesic_distance_matches_published_figures(a: Point, b: Point, metres: float, tolerance: float) -> None:
    assert distance_m(a, b) == pytest.approx(metres, abs=tolerance)
    assert distance_m(b, a) == pytest.approx(metres, abs=tolerance)


@pytest.mark.parametrize(("a", "b", "_m", "_t"), PUBLISHED)
def test_the_sphere_stays_within_half_a_percent_of_the_ellipsoid(a: Point, b: Point, _m: float, _t: float) -> None:
    assert spherical_distance_m(a, b) == pytest.approx(distance_m(a, b), rel=0.005)


# (round trip in microseconds, allowance, km/s, farthest distance in metres)
BOUNDS = [
    (1_000, 0, 299_792.458 * 2 / 3, 99_930.819),  # 1 ms at 2/3 c: about 100 km
    (1_000, 0, 299_792.458, 149_896.229),  # at c
    (1_000, 200, 200_000.0, 80_000.0),  # the allowance comes off first
    (100, 200, 200_000.0, 0.0),  # never negative
    (0, 0, 200_000.0, 0.0),
]


@pytest.mark.parametrize(("rtt", "allowance", "speed", "metres"), BOUNDS)
def test_round_trip_bounds_distance(rtt: int, allowance: int, speed: float, metres: float) -> None:
    assert max_distance_m(rtt, speed, allowance) == pytest.approx(metres, abs=0.001)


def test_bound_and_shortest_round_trip_are_inverse() -> None:
    far = distance_m(FRANKFURT, SINGAPORE)
    assert max_distance_m(round(rtt_us_for(far)) + 1, 299_792.458 * 2 / 3) >= far
    assert rtt_us_for(far) == pytest.approx(102_680, rel=0.01)  # about 103 ms Frankfurt-Singapore at 2/3 c


def test_a_disc_holds_what_is_near_and_not_what_is_far() -> None:
    assert in_disc(PARIS, Disc(FRANKFURT, 480_000))
    assert not in_disc(PARIS, Disc(FRANKFURT, 478_000))


SQUARE = [[[[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0], [0.0, 0.0]],
           [[4.0, 4.0], [6.0, 4.0], [6.0, 6.0], [4.0, 6.0], [4.0, 4.0]]]]  # fmt: skip


@pytest.mark.parametrize(
    ("lat", "lon", "inside"),
    [
        (5.0, 1.0, True),
        (0.5, 9.999, True),  # just inside the east edge
        (0.5, 10.001, False),  # just outside it
        (5.0, 5.0, False),  # in the hole
        (4.0 - 1e-6, 5.0, True),  # just below the hole
        (-0.001, 5.0, False),
    ],
)
def test_membership_at_the_edges_of_a_polygon_with_a_hole(lat: float, lon: float, inside: bool) -> None:
    assert point_in_country(Point(lat, lon), SQUARE) is inside


# cities some tens of km from a border, on either side (the vendored borders are 1:110m)
BORDER_CITIES = [
    ("DE", Point(48.0, 7.85), True),  # Freiburg, 20 km east of the Rhine
    ("FR", Point(48.0, 7.85), False),
    ("FR", Point(48.08, 7.36), True),  # Colmar, 20 km west of it
    ("DE", Point(48.08, 7.36), False),
    ("US", Point(42.33, -83.05), True),  # Detroit
    ("CA", Point(42.98, -81.25), True),  # London, Ontario
    ("SG", SINGAPORE, True),  # from the 1:50m data: 1:110m has no Singapore
    ("MY", Point(3.139, 101.6869), True),  # Kuala Lumpur
    ("DE", PARIS, False),
]


@pytest.mark.parametrize(("code", "point", "inside"), BORDER_CITIES)
def test_country_membership_near_borders(code: str, point: Point, inside: bool) -> None:
    shape = country_shape(code)
    assert shape is not None
    assert point_in_country(point, shape) is inside


def test_unknown_or_unmapped_countries_have_no_shape() -> None:
    assert country_shape("XK") is None  # Kosovo: no ISO code in Natural Earth's data
    assert country_border("XK") == ()


def region(discs: list[Disc], known: Point, code: str, margin_m: float = 20_000) -> str:
    return region_against_country(discs, known, country_shape(code), country_border(code), margin_m)


def test_a_small_disc_around_frankfurt_is_inside_germany() -> None:
    assert region([Disc(FRANKFURT, 50_000), Disc(PARIS, 600_000)], FRANKFURT, "DE") == INSIDE


def test_a_disc_reaching_over_the_border_crosses_it() -> None:
    assert region([Disc(FRANKFURT, 200_000)], FRANKFURT, "DE") == CROSSES
    assert region([Disc(FRANKFURT, 130_000)], FRANKFURT, "DE", margin_m=50_000) == CROSSES  # the margin counts


def test_the_intersection_not_each_disc_decides() -> None:
    # each disc alone crosses the German border; together they leave a lens around Frankfurt
    lens = [Disc(Point(50.11, 6.5), 160_000), Disc(Point(50.11, 10.9), 160_000)]
    assert all(region([d], FRANKFURT, "DE") == CROSSES for d in lens)
    assert region(lens, FRANKFURT, "DE") == INSIDE


def test_a_region_wholly_in_another_country_is_outside() -> None:
    assert region([Disc(PARIS, 50_000)], PARIS, "DE") == OUTSIDE


def test_huge_discs_bound_nothing() -> None:
    assert region([Disc(FRANKFURT, 12_000_000)], FRANKFURT, "DE") == CROSSES
    assert region([], FRANKFURT, "DE") == CROSSES
