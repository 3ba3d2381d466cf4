"""ISO 3166-1 alpha-2 country codes, as data (`collector/data/iso3166.json`, its source noted in the file)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources


@cache
def country_names() -> dict[str, str]:
    """Officially assigned alpha-2 code -> English short name."""
    text = resources.files("gpucensus.collector.data").joinpath("iso3166.json").read_text(encoding="utf-8")
    return dict(json.loads(text)["countries"])


def is_alpha2(code: object) -> bool:
    """True for an officially assigned ISO 3166-1 alpha-2 code in upper case ("DE"; not "de", "UK", "XK")."""
    return isinstance(code, str) and code in country_names()
