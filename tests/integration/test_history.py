"""The inventory at past instants (`collector.history`), on both stores, and `report --at / --history`,
`evaluate --live --at` as a user runs them. Every expected total below is worked out by hand from the story.

The story (H100 SXM5 = 15,832 TPP each):
- node-a at dxb (AE): 4 H100 stated 2026-01-10 12:00, then 6 H100 stated 2026-03-10; GPU-a5 is decommissioned
  on 2026-04-15 (and never reported again).
- node-b at bom (IN): 2 H100 stated 2026-02-01, then 3 H100 stated 2026-05-01 (delivered a week late).
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gpucensus.collector import history
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.policy import load_pack
from gpucensus.collector.store.base import AttestationRecord, DeviceRecord, EnrollmentToken, Entity, Site
from gpucensus.common.accounting import load_rules
from gpucensus.common.catalogue import load_catalogue

pytest_plugins = ["tests.integration.store_fixtures"]  # make_store, store_kind

SCRIPT = str(Path(sys.executable).parent / "gpucensus-collector")
H100 = 15_832


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _h100s(node: str, count: int) -> list[DeviceRecord]:
    return [DeviceRecord(uuid=f"GPU-{node}{i}", index=i, model="h100-sxm5", basis="catalogue", tpp=H100,
                         die_area_mm2="814", eccn="3A090.a") for i in range(count)]  # fmt: skip


def populate(store) -> None:
    store.add_entity(Entity("gulf", "AE", "none"))
    store.add_entity(Entity("saffron", "IN", "none"))
    store.add_site(Site("dxb", "AE", "gulf"))
    store.add_site(Site("bom", "IN", "saffron"))
    enrolled = t("2026-01-01T00:00:00")
    story = {
        "a": ("dxb", [(t("2026-01-10T12:00:00"), 4, None), (t("2026-03-10T00:00:00"), 6, None)]),
        "b": ("bom", [(t("2026-02-01T00:00:00"), 2, None), (t("2026-05-01T00:00:00"), 3, t("2026-05-08T00:00:00"))]),
    }
    for n, (node, (site, reports)) in enumerate(sorted(story.items())):
        token = f"{n:064x}"
        store.add_token(EnrollmentToken(token, site, enrolled, enrolled + timedelta(days=1)))
        store.enroll(f"key-{node}", "PEM", f"node-{node}", site, token, enrolled)
        previous = ""
        for seq, (stated, count, received) in enumerate(reports, start=1):
            digest = f"{n}{seq}".ljust(64, "0")
            store.store_attestation(AttestationRecord(
                keyid=f"key-{node}", sequence=seq, digest=digest, envelope=b'{"n":%d}' % seq, node_id=f"node-{node}",
                site=site, timestamp=stated, received_at=received or stated, previous=previous,
                devices=_h100s(node, count)))  # fmt: skip
            previous = digest
    assert store.decommission_gpu("GPU-a5", "failed", t("2026-04-15T00:00:00"))


# (instant, AE TPP, IN TPP): worked out from the story above
EXPECTED = [
    ("2026-01-01", 0, 0),  # nothing stated yet
    ("2026-01-10T11:59:59Z", 0, 0),  # one second before node-a's first statement
    ("2026-01-10T12:00:00Z", 4 * H100, 0),  # at it: included
    ("2026-01-31", 4 * H100, 0),
    ("2026-03-31", 6 * H100, 2 * H100),
    ("2026-04-30", 5 * H100, 2 * H100),  # GPU-a5 decommissioned on 04-15
    ("2026-06-30", 5 * H100, 3 * H100),  # node-b's late delivery dates from its statement (05-01)
]


def _country_tpp(inventory: dict) -> dict[str, int]:
    out = {"AE": 0, "IN": 0}
    country = {s["id"]: s["country"] for s in inventory["sites"]}
    for site in inventory["sites"]:
        for d in site["devices"]:
            assert d["model"] == "h100-sxm5"
            out[country[site["id"]]] += d["count"] * H100
    return out


@pytest.mark.parametrize(("instant", "ae", "india"), EXPECTED)
def test_the_inventory_at_past_instants(make_store, instant: str, ae: int, india: int) -> None:
    store = make_store()
    populate(store)
    at = history.parse_instant(instant)
    assert _country_tpp(store.inventory_at(at)) == {"AE": ae, "IN": india}


def test_the_live_inventory_is_unchanged_by_history(make_store) -> None:
    store = make_store()
    populate(store)
    assert _country_tpp(store.inventory(datetime.now(UTC))) == {"AE": 5 * H100, "IN": 3 * H100}


def test_a_weekly_history_evaluated_under_the_pack(make_store) -> None:
    store = make_store()
    populate(store)
    points = history.instants(history.parse_instant("2026-01-05"), history.parse_instant("2026-06-30"), "1mo")
    assert [p.date().isoformat() for p in points] == [f"2026-{m:02d}-05" for m in range(1, 7)]
    series = history.history(store, points, load_pack("ai-diffusion-2025"), load_catalogue(), load_rules())
    got = [(p.at.date().isoformat(), {c["country"]: (c["tpp"], c["counted_tpp"]) for c in p.countries})
           for p in series]  # fmt: skip
    assert got == [
        ("2026-01-05", {"AE": (0, 0), "IN": (0, 0)}),
        ("2026-02-05", {"AE": (4 * H100, 4 * H100), "IN": (2 * H100, 2 * H100)}),
        ("2026-03-05", {"AE": (4 * H100, 4 * H100), "IN": (2 * H100, 2 * H100)}),
        ("2026-04-05", {"AE": (6 * H100, 6 * H100), "IN": (2 * H100, 2 * H100)}),
        ("2026-05-05", {"AE": (5 * H100, 5 * H100), "IN": (3 * H100, 3 * H100)}),
        ("2026-06-05", {"AE": (5 * H100, 5 * H100), "IN": (3 * H100, 3 * H100)}),
    ]
    april = series[3]
    assert {e["entity"]: e["h100e"] for e in april.entities} == {"gulf": 6.0, "saffron": 2.0}
    assert all(c["status"] == "compliant" and c["allocation_tpp"] == 790_000_000 for c in april.countries)


@pytest.mark.parametrize(
    ("start", "end", "every", "count"),
    [("2026-01-31", "2026-05-31", "1mo", 5), ("2025-01-01", "2025-12-31", "1w", 53), ("2026-01-01", "2026-01-01",
     "1d", 1)],
)  # fmt: skip
def test_instants(start: str, end: str, every: str, count: int) -> None:
    points = history.instants(history.parse_instant(start), history.parse_instant(end), every)
    assert len(points) == count and points[0] == history.parse_instant(start)
    if every == "1mo":  # the 31st, clamped to each month's end
        assert [p.day for p in points] == [31, 28, 31, 30, 31]


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01", "2026-01-01T00:00:00", ""])
def test_a_bad_instant_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError):
        history.parse_instant(bad)


# --- the CLIs ---------------------------------------------------------------------------------------------------


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *argv], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def config(make_store, tmp_path: Path) -> str:
    populate(make_store())
    path = tmp_path / "collector.toml"
    path.write_text(make_store.toml())
    return str(path)


def test_report_at_a_past_instant(config: str) -> None:
    result = cli("report", "--config", config, "--at", "2026-04-30", "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["as_of"] == "2026-04-30"
    assert {c["country"]: c["tpp"] for c in doc["countries"]} == {"AE": 5 * H100, "IN": 2 * H100}
    ruled = cli("report", "--config", config, "--at", "2026-04-30", "--as-of", "2026-12-31", "--format", "json")
    assert json.loads(ruled.stdout)["as_of"] == "2026-12-31"  # --as-of keeps its meaning: the rules' date


def test_evaluate_live_at_a_past_instant(config: str) -> None:
    result = cli("evaluate", "--live", "--config", config, "--at", "2026-03-31T23:59:59Z", "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["policy"]["name"]  # the config's [policy] pack: no --policy needed with --live
    assert {c["country"]: c["tpp"] for c in doc["countries"]} == {"AE": 6 * H100, "IN": 2 * H100}


def test_report_history_as_csv_json_and_table(config: str) -> None:
    argv = ("report", "--config", config, "--history", "--from", "2026-01-05", "--to", "2026-06-30", "--every", "1mo")
    table = cli(*argv)
    assert table.returncode == 0, table.stderr
    assert "COUNTED TPP" in table.stdout and "2026-04-05" in table.stdout
    rows = list(csv.DictReader(io.StringIO(cli(*argv, "--format", "csv").stdout)))
    india = [(r["at"][:10], int(r["tpp"])) for r in rows if r["record"] == "country" and r["id"] == "IN"]
    assert india == [("2026-01-05", 0), ("2026-02-05", 2 * H100), ("2026-03-05", 2 * H100), ("2026-04-05", 2 * H100),
                     ("2026-05-05", 3 * H100), ("2026-06-05", 3 * H100)]  # fmt: skip
    doc = json.loads(cli(*argv, "--format", "json").stdout)
    assert doc["every"] == "1mo" and len(doc["points"]) == 6
    assert doc["points"][3]["countries"][0]["country"] == "AE" and doc["points"][3]["countries"][0]["tpp"] == 6 * H100


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--at", "last tuesday"], "--at: expected a date"),
        (["--history"], "--history needs --from"),
        (["--history", "--from", "2026-02-01", "--to", "2026-01-01"], "is before --from"),
        (["--history", "--from", "2000-01-01", "--to", "2026-01-01", "--every", "1d"], "more than 1000 points"),
        (["--from", "2026-01-01"], "go with --history"),
    ],
)
def test_bad_history_arguments_are_one_line_errors(config: str, argv: list[str], expected: str) -> None:
    result = cli("report", "--config", config, *argv)
    assert result.returncode == 2 and "Traceback" not in result.stderr and result.stdout == ""
    assert expected in result.stderr


def test_a_nodes_attestations_newest_first(make_store) -> None:
    store = make_store()
    populate(store)
    got = [(a.sequence, a.timestamp.date().isoformat(), a.gpus, a.site) for a in store.node_attestations("node-b")]
    assert got == [(2, "2026-05-01", 3, "bom"), (1, "2026-02-01", 2, "bom")]
    assert store.node_attestations("nobody") == []
