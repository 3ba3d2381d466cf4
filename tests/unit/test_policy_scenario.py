"""Scenario files (JSON or TOML) and the live-inventory shape: bad input is a ConfigError naming the field."""

from __future__ import annotations

import json
from datetime import date
from fractions import Fraction
from pathlib import Path

import pytest
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.policy.scenario import load_scenario, parse_scenario

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "scenarios"

GOOD = {
    "as_of": "2026-06-30",
    "entities": [{"id": "e", "headquarters": "AE", "authorization": "none"}],
    "sites": [{"id": "s", "country": "AE", "entity": "e",
               "devices": [{"model": "h100-sxm5", "count": 2, "acquired": "2026-01-02"},
                           {"tpp": 5000, "die_area_mm2": "600.5", "datacenter": False}]}],
}  # fmt: skip


def test_parse_good() -> None:
    sc = parse_scenario(GOOD, "t")
    assert sc.as_of == date(2026, 6, 30)
    d1, d2 = sc.sites[0].devices
    assert (d1.model, d1.count, d1.acquired) == ("h100-sxm5", 2, date(2026, 1, 2))
    assert (d2.tpp, d2.die_area_mm2, d2.datacenter, d2.count, d2.acquired) == (5000, Fraction(1201, 2), False, 1, None)


def test_as_of_override() -> None:
    assert parse_scenario(GOOD, "t", date(2025, 1, 1)).as_of == date(2025, 1, 1)


def test_live_inventory_shape() -> None:
    # as `collector.store.inventory.build_inventory` writes it: empty acquired, unaccounted count, derived figures
    doc = {"as_of": "2026-11-23", "entities": [{"id": "e", "headquarters": "US", "authorization": "uveu"}],
           "sites": [{"id": "s", "country": "US", "entity": "e", "unaccounted": 2,
                      "devices": [{"model": "h100-sxm5", "count": 8, "acquired": ""},
                                  {"tpp": 9000, "datacenter": True, "die_area_mm2": "700", "count": 1,
                                   "acquired": "2026-11-01"}]}]}  # fmt: skip
    sc = parse_scenario(doc, "live inventory")
    assert sc.sites[0].unaccounted == 2 and sc.sites[0].devices[0].acquired is None


BAD = [
    # (id, change to GOOD, text the error must contain)
    ("no-as-of", lambda d: d.pop("as_of"), "t: as_of: missing"),
    ("bad-as-of", lambda d: d.update(as_of="30/06/2026"), "t: as_of: expected a date"),
    ("unknown-key", lambda d: d.update(colour=1), "t: colour: unknown key"),
    (
        "entity-hq",
        lambda d: d["entities"][0].update(headquarters="UAE"),
        "t: entities[0].headquarters: 'UAE' is not an ISO 3166-1 alpha-2",
    ),
    ("entity-auth", lambda d: d["entities"][0].update(authorization="vip"), "t: entities[0].authorization: must be"),
    ("duplicate-entity", lambda d: d["entities"].append(dict(d["entities"][0])), "entities: id 'e' appears twice"),
    ("site-country", lambda d: d["sites"][0].update(country="ae"), "t: sites[0].country: 'ae' is not"),
    ("site-entity", lambda d: d["sites"][0].update(entity="x"), "t: sites[0].entity: 'x' is not one of"),
    (
        "device-count",
        lambda d: d["sites"][0]["devices"][0].update(count=0),
        "t: sites[0].devices[0].count: must be at least 1",
    ),
    (
        "device-count-type",
        lambda d: d["sites"][0]["devices"][0].update(count="8"),
        "t: sites[0].devices[0].count: expected an integer",
    ),
    ("device-neither", lambda d: d["sites"][0]["devices"][0].pop("model"), "t: sites[0].devices[0]: needs 'model'"),
    (
        "device-unknown-key",
        lambda d: d["sites"][0]["devices"][0].update(uuid="GPU-1"),
        "t: sites[0].devices[0].uuid: unknown key",
    ),
    (
        "device-acquired",
        lambda d: d["sites"][0]["devices"][0].update(acquired="2026-13-01"),
        "t: sites[0].devices[0].acquired: expected a date",
    ),
    (
        "die-area-zero",
        lambda d: d["sites"][0]["devices"][1].update(die_area_mm2=0),
        "t: sites[0].devices[1].die_area_mm2: must be positive",
    ),
    (
        "area-without-tpp",
        lambda d: d["sites"][0]["devices"][0].update(die_area_mm2="800"),
        "'die_area_mm2', 'datacenter' and 'dram_bandwidth_gbs' go with 'tpp'",
    ),
    ("agreements", lambda d: d.update(government_agreements=["AE", "XX"]), "t: government_agreements: 'XX'"),
    ("sites-not-list", lambda d: d.update(sites={"id": "s"}), "t: sites: expected a list"),
    # required lists: a scenario without sites is not an empty, compliant inventory
    ("no-sites", lambda d: d.pop("sites"), "t: sites: missing"),
    ("no-entities", lambda d: d.pop("entities"), "t: entities: missing"),
    # dates are YYYY-MM-DD exactly (Python 3.11 would also read "20260102" and week dates)
    (
        "acquired-basic-format",
        lambda d: d["sites"][0]["devices"][0].update(acquired="20260102"),
        "t: sites[0].devices[0].acquired: expected a date (YYYY-MM-DD)",
    ),
    ("as-of-week-date", lambda d: d.update(as_of="2026-W27-2"), "t: as_of: expected a date (YYYY-MM-DD)"),
]


@pytest.mark.parametrize(("name", "change", "expected"), BAD, ids=[c[0] for c in BAD])
def test_bad_scenario_names_the_field(name, change, expected) -> None:
    doc = json.loads(json.dumps(GOOD))
    change(doc)
    with pytest.raises(ConfigError) as err:
        parse_scenario(doc, "t")
    assert expected in err.value.message


def test_files(tmp_path) -> None:
    assert load_scenario(str(DEPLOY / "worked-example.json")).as_of == date(2026, 9, 30)
    assert len(load_scenario(str(DEPLOY / "small.toml")).sites) == 3
    bad = tmp_path / "bad.json"
    bad.write_text('{"as_of": "2026-01-01",')
    with pytest.raises(ConfigError, match=r"bad.json: not valid JSON"):
        load_scenario(str(bad))
    with pytest.raises(ConfigError, match=r"cannot read it"):
        load_scenario(str(tmp_path / "missing.json"))
    top = tmp_path / "list.json"
    top.write_text("[]")
    with pytest.raises(ConfigError, match=r"list.json: expected a table/object"):
        load_scenario(str(top))
