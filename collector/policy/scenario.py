"""Scenarios: the inventory a policy is evaluated over, from a JSON or TOML file or the collector's live store.

Shape (issue 5): `{"as_of", "entities": [{"id", "headquarters", "authorization" [, "ultimate_parent"]}],
"government_agreements", "sites": [{"id", "country", "entity", "devices": [{"model" | "tpp" [, "die_area_mm2",
"datacenter", "dram_bandwidth_gbs"], "count", "acquired"}], "unaccounted"}]}`. `ultimate_parent` is the country
where the entity's ultimate parent is headquartered (licence requirements that follow the parent, issue 11).
`unaccounted` (devices of unknown TPP, as the live inventory reports them) and an empty `acquired` (date unknown)
are accepted. Bad input is a `ConfigError` naming the field.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any

from gpucensus.collector.errors import ConfigError
from gpucensus.collector.policy.fields import Reader, parse_date
from gpucensus.common.catalogue import exact_decimal

AUTHORIZATIONS = ("none", "uveu", "nveu")


@dataclass(frozen=True)
class DeviceGroup:
    count: int
    model: str = ""  # catalogue id (or a label when `tpp` is given)
    tpp: int | None = None  # given figures win over the catalogue
    die_area_mm2: Fraction | None = None
    datacenter: bool = True
    acquired: date | None = None  # None = unknown: taken as acquired in the as_of year
    dram_bandwidth_gbs: int | None = None  # with given figures; None = unknown


@dataclass(frozen=True)
class Entity:
    id: str
    headquarters: str
    authorization: str = "none"
    ultimate_parent: str | None = None  # country of the ultimate parent's headquarters; None = the entity's own

    @property
    def parent_country(self) -> str:
        return self.ultimate_parent or self.headquarters


@dataclass(frozen=True)
class Site:
    id: str
    country: str
    entity: str
    devices: tuple[DeviceGroup, ...] = ()
    unaccounted: int = 0  # devices whose TPP is not established (live inventory)


@dataclass(frozen=True)
class Scenario:
    as_of: date
    entities: tuple[Entity, ...]
    sites: tuple[Site, ...]
    government_agreements: frozenset[str] = frozenset()


def load_scenario(path: str, as_of: date | None = None) -> Scenario:
    """A scenario file (.json or .toml); `as_of` overrides the file's date."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as err:
        raise ConfigError(f"scenario {path}: cannot read it ({err.strerror or err})") from err
    try:
        if file.suffix.lower() == ".toml":
            doc = tomllib.loads(data.decode("utf-8"))
        else:
            doc = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ConfigError(f"scenario {path}: nested too deeply to be a scenario") from None
    except (ValueError, UnicodeDecodeError) as err:
        kind = "TOML" if file.suffix.lower() == ".toml" else "JSON"
        raise ConfigError(f"scenario {path}: not valid {kind} ({err})", hint="a .toml file is read as TOML, "
                          "anything else as JSON") from err  # fmt: skip
    return parse_scenario(doc, f"scenario {path}", as_of)


def parse_scenario(doc: Any, where: str, as_of: date | None = None) -> Scenario:
    r = Reader(doc, where)
    r.allow("as_of", "entities", "sites", "government_agreements", "description")
    if r.has("description"):
        r.string("description")
    when = as_of if as_of is not None else r.date("as_of")
    entities = tuple(_entity(e) for e in r.tables("entities"))
    _unique([e.id for e in entities], where, "entities")
    ids = {e.id for e in entities}
    sites = tuple(_site(s, ids) for s in r.tables("sites"))
    _unique([s.id for s in sites], where, "sites")
    agreements = frozenset(r.countries("government_agreements", default=[]))
    return Scenario(when, entities, sites, agreements)


def _unique(ids: list[str], where: str, key: str) -> None:
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"{where}: {key}: id {dupes[0]!r} appears twice")


def _entity(r: Reader) -> Entity:
    r.allow("id", "headquarters", "authorization", "name", "ultimate_parent")
    authorization = r.string("authorization", default="none")
    if authorization not in AUTHORIZATIONS:
        raise r.fail("authorization", f"must be one of {', '.join(AUTHORIZATIONS)}, got {authorization!r}")
    parent = r.country("ultimate_parent") if r.has("ultimate_parent") else None
    return Entity(r.string("id"), r.country("headquarters"), authorization, parent)


def _site(r: Reader, entities: set[str]) -> Site:
    r.allow("id", "country", "entity", "devices", "unaccounted", "name")
    entity = r.string("entity")
    if entity not in entities:
        raise r.fail("entity", f"{entity!r} is not one of the scenario's entities")
    return Site(
        id=r.string("id"),
        country=r.country("country"),
        entity=entity,
        devices=tuple(_device(d) for d in r.tables("devices", default=[])),
        unaccounted=r.integer("unaccounted", default=0, minimum=0),
    )


def _device(r: Reader) -> DeviceGroup:
    r.allow("model", "tpp", "die_area_mm2", "datacenter", "count", "acquired", "dram_bandwidth_gbs")
    if not r.has("model") and not r.has("tpp"):
        raise ConfigError(f"{r.where}: needs 'model' (a catalogue id) or 'tpp' (the device's figures)")
    if not r.has("tpp") and (r.has("die_area_mm2") or r.has("datacenter") or r.has("dram_bandwidth_gbs")):
        raise ConfigError(f"{r.where}: 'die_area_mm2', 'datacenter' and 'dram_bandwidth_gbs' go with 'tpp' "
                          "(given figures)")  # fmt: skip
    acquired = r.doc.get("acquired")
    return DeviceGroup(
        count=r.integer("count", default=1, minimum=1),
        model=r.string("model") if r.has("model") else "",
        tpp=r.integer("tpp", minimum=0) if r.has("tpp") else None,
        die_area_mm2=_area(r),
        datacenter=r.boolean("datacenter", default=True),
        acquired=None if acquired in (None, "") else parse_date(acquired, r.key("acquired")),
        dram_bandwidth_gbs=r.integer("dram_bandwidth_gbs", minimum=1) if r.has("dram_bandwidth_gbs") else None,
    )


def _area(r: Reader) -> Fraction | None:
    value = r.doc.get("die_area_mm2")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise r.fail("die_area_mm2", f"expected a number of mm², got {value!r}")
    try:
        area = exact_decimal(str(value))  # a float is read as the decimal it prints as ("600.5")
    except ValueError:
        raise r.fail("die_area_mm2", f"not a number: {value!r}") from None
    if area <= 0:
        raise r.fail("die_area_mm2", f"must be positive, got {value!r}")
    return area
