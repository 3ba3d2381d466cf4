"""`gpucensus-collector evaluate|policy|report` as a user runs them (the installed console script, a subprocess).

Exit codes: 0 compliant, 1 violations, 2 bad input (a message naming the field, never a traceback).
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
from gpucensus.collector.store.base import AttestationRecord, DeviceRecord, EnrollmentToken, Entity, Finding, Site

pytest_plugins = ["tests.integration.store_fixtures"]  # make_store, store_kind

SCRIPT = str(Path(sys.executable).parent / "gpucensus-collector")
SCENARIOS = Path(__file__).resolve().parents[2] / "deploy" / "scenarios"
WORKED = str(SCENARIOS / "worked-example.json")
SMALL = str(SCENARIOS / "small.toml")


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *argv], capture_output=True, text=True, timeout=60, check=False)


def assert_clean_error(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    for text in expected:
        assert text in result.stderr


def test_worked_example_json_contract() -> None:
    result = cli("evaluate", "--policy", "ai-diffusion-2025", "--scenario", WORKED, "--format", "json")
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"policy", "as_of", "countries", "entities", "sites", "findings", "summary"}
    assert doc["policy"]["name"] == "ai-diffusion-2025" and doc["as_of"] == "2026-09-30"
    india = next(c for c in doc["countries"] if c["country"] == "IN")
    # saffron's 60,000 H100 = 949,920,000 TPP, all over the LPP, against 790,000,000
    assert india == {"country": "IN", "tier": 2, "tpp": 960_210_800, "h100e": 60_650.0, "allocation_tpp": 790_000_000,
                     "allocation_used_tpp": 949_920_000, "utilization": 1.2024, "status": "violation"}  # fmt: skip
    for c in doc["countries"]:
        assert isinstance(c["tpp"], int)
    northwind = next(e for e in doc["entities"] if e["id"] == "northwind")
    assert set(northwind) >= {"id", "authorization", "headquarters", "tpp", "shares", "status"}
    assert northwind["shares"]["tier1"] == 0.72 and northwind["tpp"] == 158_320_000
    assert doc["summary"] == {"violations": 7, "warnings": 11, "compliant": False}
    for f in doc["findings"]:
        assert set(f) == {"severity", "rule", "subject", "message", "value", "limit"}
    # TPP is an integer everywhere, never a float that a reader could round
    tpp_values = [e["tpp"] for e in doc["entities"]] + [s["tpp"] for s in doc["sites"]] + [
        v for f in doc["findings"] if f["rule"] in ("country.allocation", "lpp.exceeded", "nveu.installed-base",
                                                    "tier3.prohibited") for v in (f["value"], f["limit"])]  # fmt: skip
    assert tpp_values and all(type(v) is int for v in tpp_values)
    assert '"tpp": 960210800,' in result.stdout


def test_compliant_scenario_exits_0_with_a_table() -> None:
    result = cli("evaluate", "--policy", "ai-diffusion-2025", "--scenario", SMALL)
    assert result.returncode == 0, result.stderr
    assert "ai-diffusion-2025: 0 violation(s)" in result.stdout and ": compliant" in result.stdout
    assert result.stdout.splitlines()[3].split()[:2] == ["COUNTRY", "TIER"]


def test_csv() -> None:
    result = cli("evaluate", "--policy", "carnegie-2025", "--scenario", WORKED, "--format", "csv")
    assert result.returncode == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    kinds = {r["record"] for r in rows}
    assert kinds == {"country", "entity", "site", "finding"}
    ae = next(r for r in rows if r["record"] == "country" and r["id"] == "AE")
    # carnegie: oasis-ai's 1,650 H100 in 2026 (26,122,800) are over its 2026 LPP (300 H100e = 4,749,600), so
    # licensed: 744,104,000 + 26,122,800 = 770,226,800 = 97.5 % of 790,000,000 -> warning
    assert (ae["allocation_used_tpp"], ae["status"]) == ("770226800", "warning")


def test_as_of_and_compare() -> None:
    result = cli("evaluate", "--policy", "ai-diffusion-2025", "--compare", "carnegie-2025", "--scenario", WORKED,
                 "--format", "json")  # fmt: skip
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    by_country = {c["country"]: c for c in doc["countries"]}
    assert by_country["CY"]["tier"] == [3, 1] and by_country["CY"]["status"] == ["violation", "compliant"]
    assert by_country["IN"]["status"] == ["violation", "compliant"] and by_country["IN"]["changed"]
    assert by_country["AE"]["status"] == ["warning", "warning"]
    assert by_country["AE"]["allocation_used_tpp"] == [744_104_000, 770_226_800] and by_country["AE"]["changed"]
    assert by_country["US"]["changed"] is False
    northwind = next(e for e in doc["entities"] if e["id"] == "northwind")
    assert northwind["status"] == ["violation", "compliant"]
    table = cli("evaluate", "--policy", "baseline-2023", "--compare", "carnegie-2025", "--scenario", WORKED)
    assert table.returncode == 1 and table.stdout.startswith("compare baseline-2023 -> carnegie-2025")
    # as of 2025-12-31 the 2026 acquisitions are left out and the 2025 batches (1,650 H100 = 26,122,800 each) are
    # within the 2025 LPP (26,900,000, inherited from the IFR): AE uses nothing; atlas's undated 250,000 H100 =
    # 3,958,000,000 TPP are over the 2025 NVEU cap of 1,583,200,000
    early = cli("evaluate", "--policy", "carnegie-2025", "--scenario", WORKED, "--as-of", "2025-12-31",
                "--format", "json")  # fmt: skip
    doc = json.loads(early.stdout)
    rules = {(f["rule"], f["value"], f["limit"]) for f in doc["findings"] if f["severity"] == "violation"}
    assert rules == {("tier3.prohibited", 1_288_000, 0), ("nveu.installed-base", 3_958_000_000, 1_583_200_000)}
    assert next(c for c in doc["countries"] if c["country"] == "AE")["allocation_used_tpp"] == 0


def test_broken_scenario(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    doc = json.loads(Path(WORKED).read_text())
    doc["sites"][3]["country"] = "UAE"
    bad.write_text(json.dumps(doc))
    assert_clean_error(cli("evaluate", "--policy", "ai-diffusion-2025", "--scenario", str(bad)),
                       f"scenario {bad}: sites[3].country: 'UAE' is not an ISO 3166-1 alpha-2")  # fmt: skip
    bad.write_text("{not json")
    assert_clean_error(cli("evaluate", "--policy", "ai-diffusion-2025", "--scenario", str(bad)), "not valid JSON")
    assert_clean_error(cli("evaluate", "--policy", "ai-diffusion-2025", "--scenario", str(tmp_path / "none.json")),
                       "cannot read it")  # fmt: skip
    assert_clean_error(cli("evaluate", "--policy", "ai-diffusion-2025", "--scenario", WORKED, "--as-of", "2026-02-30"),
                       "--as-of: expected a date")  # fmt: skip
    assert_clean_error(cli("evaluate", "--policy", "ai-diffusion-2025", "--scenario", WORKED, "--as-of", "20260930"),
                       "--as-of: expected a date (YYYY-MM-DD), got '20260930'")  # fmt: skip
    bad.write_text('{"as_of": "2026-09-30", "entities": []}')
    assert_clean_error(cli("evaluate", "--policy", "ai-diffusion-2025", "--scenario", str(bad)),
                       f"scenario {bad}: sites: missing (required)")  # fmt: skip


def test_broken_pack(tmp_path) -> None:
    text = cli("policy", "show", "ai-diffusion-2025", "--format", "toml").stdout
    pack = tmp_path / "mine.toml"
    pack.write_text(text.replace('tier1_min_share = "0.75"', 'tier1_min_share = "0.75"\ntier1_minimum = 1'))
    assert_clean_error(cli("evaluate", "--policy", str(pack), "--scenario", WORKED),
                       f"{pack}: limits.uveu.tier1_minimum: unknown key")  # fmt: skip
    pack.write_text(text.replace('"TW", "GB",', '"TW", "GB", "RU",'))
    assert_clean_error(cli("evaluate", "--policy", "carnegie-2025", "--compare", str(pack), "--scenario", WORKED),
                       "tiers.tier1 and tiers.tier3 overlap: RU")  # fmt: skip
    assert_clean_error(cli("evaluate", "--policy", "no-such-pack", "--scenario", WORKED), "no-such-pack")


def test_policy_list_and_show() -> None:
    listed = cli("policy", "list", "--format", "json")
    assert listed.returncode == 0
    assert [p["name"] for p in json.loads(listed.stdout)] == [
        "ai-diffusion-2025", "baseline-2023", "carnegie-2025", "us-2026"]  # fmt: skip
    assert "us-2026            in-force      " in cli("policy", "list").stdout  # the default, marked so
    shown = cli("policy", "show", "us-2026")
    assert shown.returncode == 0
    assert "status: in-force" in shown.stdout and "case-by-case from 2026-01-15 in CN HK MO" in shown.stdout
    assert "[jan2026] BIS, Revision to License Review Policy" in shown.stdout  # sources, with ids
    ifr = cli("policy", "show", "ai-diffusion-2025").stdout
    assert "status: not-enforced since 2025-05-13 [may2025]" in ifr
    shown = cli("policy", "show", "carnegie-2025", "--format", "json")
    doc = json.loads(shown.stdout)
    assert doc["limits"]["allocation"]["country_multipliers"] == {"IN": 2} and "IL" in doc["tiers"]["tier1"]
    table = cli("policy", "show", "ai-diffusion-2025")
    assert table.returncode == 0 and "Tier 2 allocation: 790,000,000 TPP" in table.stdout
    assert "[ifr]" in table.stdout


# --- report over a real store -------------------------------------------------------------------------------


def populate(store, now: datetime) -> None:
    """AE entity with 4 H100 + 1 lost GPU on one node (attested 2 h ago: stale), a CN site with 2 H100."""
    store.add_entity(Entity("gulf", "AE", "none"))
    store.add_entity(Entity("harbour", "HK", "none"))
    store.add_site(Site("dxb", "AE", "gulf"))
    store.add_site(Site("hkg", "HK", "harbour"))
    for n, (site, count) in enumerate((("dxb", 4), ("hkg", 2))):
        token = f"{n:064x}"
        store.add_token(EnrollmentToken(token, site, now - timedelta(hours=3), now + timedelta(hours=1)))
        store.enroll(f"key{n}", "PEM", f"node-{site}", site, token, now - timedelta(hours=3))
        devices = [DeviceRecord(uuid=f"GPU-{site}-{i}", index=i, model="h100-sxm5", basis="catalogue", tpp=15_832,
                                die_area_mm2="814", eccn="3A090.a") for i in range(count)]  # fmt: skip
        if site == "dxb":
            devices.append(DeviceRecord(uuid="GPU-lost", index=9, status="lost", basis="unknown"))
        when = now - timedelta(hours=2) if site == "dxb" else now - timedelta(seconds=30)
        gap = [Finding("chain.gap", "warning", f"node:node-{site}", "sequence 1 after nothing")] if n else []
        store.store_attestation(AttestationRecord(
            keyid=f"key{n}", sequence=1, digest=f"{n:064x}", envelope=b"{}", node_id=f"node-{site}", site=site,
            timestamp=when, received_at=when, devices=devices, interval_seconds=60, findings=gap))  # fmt: skip


def test_report_over_the_live_store(make_store, tmp_path) -> None:
    store = make_store()
    populate(store, datetime.now(UTC))
    config = tmp_path / "collector.toml"
    config.write_text(make_store.toml())
    result = cli("report", "--config", str(config), "--policy", "ai-diffusion-2025", "--format", "json")
    assert result.returncode == 1, result.stderr  # H100s in Hong Kong
    doc = json.loads(result.stdout)
    ae = next(c for c in doc["countries"] if c["country"] == "AE")
    assert (ae["tpp"], ae["allocation_tpp"], ae["allocation_used_tpp"]) == (4 * 15_832, 790_000_000, 0)
    assert {(f["rule"], f["subject"]) for f in doc["findings"] if f["severity"] != "info"} == {
        ("tier3.prohibited", "site:hkg"), ("device.unknown", "site:dxb")}  # fmt: skip
    assert [n["node_id"] for n in doc["stale_nodes"]] == ["node-dxb"]
    assert [(f["rule"], f["subject"]) for f in doc["ingest_findings"]] == [("chain.gap", "node:node-hkg")]
    table = cli("report", "--config", str(config), "--policy", "baseline-2023")
    assert table.returncode == 1 and "stale nodes" in table.stdout and "node-dxb" in table.stdout
    assert "chain.gap" in table.stdout
    # no --policy and no [policy] in the config: the default, us-2026. The H100s in Hong Kong (15,832 TPP, 3,350
    # GB/s from the catalogue by model) are under both 2026 thresholds: a licence reviewed case by case, a warning
    default = json.loads(cli("report", "--config", str(config), "--format", "json").stdout)
    assert default["policy"]["name"] == "us-2026"
    assert {(f["severity"], f["rule"], f["subject"]) for f in default["findings"] if f["severity"] != "info"} == {
        ("warning", "licence.case-by-case", "site:hkg"), ("warning", "device.unknown", "site:dxb")}  # fmt: skip


def test_report_on_an_empty_sqlite_data_dir(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    result = cli("report", "--data-dir", str(data), "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("record,id,country")
    assert_clean_error(cli("report", "--data-dir", str(tmp_path / "missing")), "no such directory")


@pytest.mark.parametrize("argv", [["evaluate"], ["policy"], ["evaluate", "--policy", "x", "--scenario", "y",
                                                              "--format", "xml"]])  # fmt: skip
def test_usage_errors_exit_2(argv) -> None:
    result = cli(*argv)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "usage:" in result.stderr


def _pack_with(text: str, old: str, new: str, tmp_path: Path) -> str:
    from importlib import resources

    source = (
        resources.files("gpucensus.collector.policy.packs")
        .joinpath("ai-diffusion-2025.toml")
        .read_text(encoding="utf-8")
    )
    assert old in source
    path = tmp_path / "pack.toml"
    path.write_text(source.replace(old, new) if text == "" else text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [  # before: a hang of hours (Fraction expands the exponent), or a RecursionError traceback with exit 1
        ("exponent.json", json.dumps({**json.loads(Path(WORKED).read_text()), "sites": [{"id": "s", "country": "AE",
         "entity": "northwind", "devices": [{"tpp": 5000, "die_area_mm2": "1e999999999"}]}]}),
         "die_area_mm2: not a number"),
        ("nested.json", "[" * 100_000, "nested too deeply"),
        ("nested.toml", "as_of = " + "[" * 100_000, "nested too deeply"),
    ],
)  # fmt: skip
def test_a_hostile_scenario_file_is_a_clean_error_at_once(
    tmp_path: Path, name: str, content: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    result = subprocess.run([SCRIPT, "evaluate", "--policy", "ai-diffusion-2025", "--scenario", str(path)],
                            capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert_clean_error(result, str(path), expected)


@pytest.mark.parametrize(
    ("old", "new", "text", "expected"),
    [
        ('tier1_min_share = "0.75"', 'tier1_min_share = "75e999999999"', "", "tier1_min_share: not a decimal"),
        ("", "", "x = " + "[" * 100_000, "nested too deeply"),
    ],
)
def test_a_hostile_pack_file_is_a_clean_error_at_once(
    tmp_path: Path, old: str, new: str, text: str, expected: str
) -> None:
    pack = _pack_with(text, old, new, tmp_path)
    result = subprocess.run([SCRIPT, "evaluate", "--policy", pack, "--scenario", WORKED],
                            capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert_clean_error(result, pack, expected)
