"""Build collector/data/countries.json (country polygons by ISO 3166-1 alpha-2) from Natural Earth TopoJSON.

Source: the npm package `world-atlas` 2.0.2 (Natural Earth 4.1.0 admin-0 boundaries as TopoJSON; Natural Earth is
public domain, world-atlas is ISC). Every country of the 1:110m file, plus the ones 1:110m leaves out (Singapore,
Hong Kong, Malta, ...) from the 1:50m file. Feature ids are ISO 3166-1 numeric codes; they are mapped to alpha-2
with Debian iso-codes' iso_3166-1.json. Features without an id (N. Cyprus, Somaliland, Kosovo) are left out: a
site there has no border to check against, which the collector reports as unproven, never as proven.

Run once when the source changes (not at build time):

    npm pack world-atlas@2 && tar xzf world-atlas-2.0.2.tgz
    python scripts/build_country_polygons.py package/ /usr/share/iso-codes/json/iso_3166-1.json
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "collector" / "data" / "countries.json"
DIGITS = 3  # decimal degrees kept: about 110 m, far finer than a 1:110m / 1:50m border


def _arcs(topology: dict) -> list[list[tuple[float, float]]]:
    (sx, sy), (tx, ty) = topology["transform"]["scale"], topology["transform"]["translate"]
    decoded = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            points.append((round(x * sx + tx, DIGITS), round(y * sy + ty, DIGITS)))
        decoded.append(points)
    return decoded


def _ring(indices: list[int], arcs: list[list[tuple[float, float]]]) -> list[list[float]]:
    ring: list[tuple[float, float]] = []
    for index in indices:
        points = arcs[index] if index >= 0 else arcs[~index][::-1]
        ring.extend(points if not ring else points[1:])
    compact = [ring[0]] + [p for prev, p in itertools.pairwise(ring) if p != prev]
    return [list(p) for p in compact]


def polygons(topology: dict) -> dict[str, list]:
    arcs = _arcs(topology)
    found: dict[str, list] = {}
    for geometry in topology["objects"]["countries"]["geometries"]:
        if "id" not in geometry:
            continue
        if geometry["type"] == "Polygon":
            parts = [geometry["arcs"]]
        elif geometry["type"] == "MultiPolygon":
            parts = geometry["arcs"]
        else:
            continue
        shapes = [[_ring(ring, arcs) for ring in polygon] for polygon in parts]
        found[geometry["id"]] = [shape for shape in shapes if len(shape[0]) >= 4]
    return found


def main(package: str, iso_codes: str) -> None:
    numeric = {c["numeric"]: c["alpha_2"] for c in json.loads(Path(iso_codes).read_text())["3166-1"]}
    coarse = polygons(json.loads((Path(package) / "countries-110m.json").read_text()))
    medium = polygons(json.loads((Path(package) / "countries-50m.json").read_text()))
    countries: dict[str, list] = {}
    scale: dict[str, str] = {}
    for source, label in ((medium, "50m"), (coarse, "110m")):  # 110m wins where it has the country
        for code, shapes in source.items():
            if code in numeric and shapes:
                countries[numeric[code]] = shapes
                scale[numeric[code]] = label
    data = {
        "source": "Natural Earth 4.1.0 admin-0 countries (public domain, https://www.naturalearthdata.com/), "
        "as TopoJSON in the npm package world-atlas 2.0.2 (ISC, Copyright 2013-2019 Michael Bostock); "
        "numeric to alpha-2 codes from Debian iso-codes 4.15.0",
        "license": "Natural Earth: public domain (https://www.naturalearthdata.com/about/terms-of-use/); "
        "world-atlas packaging: ISC, text in license_text",
        "license_text": (Path(package) / "LICENSE").read_text(),
        "generated_by": "scripts/build_country_polygons.py",
        "scale": "1:110m; 1:50m for the countries listed in from_50m (too small for 1:110m)",
        "coordinates": "[longitude, latitude] in decimal degrees, WGS 84; each country a list of polygons, "
        "each polygon a list of rings, the first the outline, the others holes",
        "from_50m": sorted(c for c, s in scale.items() if s == "50m"),
        "countries": dict(sorted(countries.items())),
    }
    OUT.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    print(f"{OUT}: {len(countries)} countries, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main(*sys.argv[1:3])
