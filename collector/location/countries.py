"""The vendored country borders (`collector/data/countries.json`, Natural Earth admin-0, see its `source`), read
once and kept: ISO 3166-1 alpha-2 code -> polygons, and their border samples for the region test."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from gpucensus.collector.location.geometry import Country, Point, border_points

DATA_FILE = "countries.json"


@cache
def _data() -> dict:
    return json.loads(resources.files("gpucensus.collector.data").joinpath(DATA_FILE).read_text(encoding="utf-8"))


def country_shape(code: str) -> Country | None:
    """The polygons of country `code`, or None when the data has none (a disputed area, a code it lacks)."""
    return _data()["countries"].get(code.upper())


@cache
def country_border(code: str) -> tuple[Point, ...]:
    shape = country_shape(code)
    return tuple(border_points(shape)) if shape else ()


def source() -> str:
    return str(_data()["source"])
