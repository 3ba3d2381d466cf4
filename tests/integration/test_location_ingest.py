"""Location evidence through the real collector (gRPC on 127.0.0.1, SQLite and PostgreSQL): the verdicts travel in
the ack and are stored; a statement without evidence still verifies; hostile evidence is INVALID_ARGUMENT."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.request
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from gpucensus.collector.config import DashboardConfig, NodesConfig
from gpucensus.collector.dashboard.server import start_dashboard
from gpucensus.collector.location.records import IMPLAUSIBLE, IN_COUNTRY, SiteLocation
from gpucensus.collector.policy.pack import pack_text
from gpucensus.collector.policy.packs import DEFAULT_PACK
from gpucensus.common import jcs
from gpucensus.protos import census_pb2 as pb

from tests.ingest_nodes import NOW, TestNode
from tests.integration.server_fixtures import (  # noqa: F401 (fixtures)
    DEADLINE,
    Collector,
    collector_fixture,
    make_store,
    status_of,
    store_kind,
)
from tests.location_fixtures import FRANKFURT_DC, SINGAPORE_DC, landmarks, rtt_from

LANDMARKS = landmarks()


def setup(collector: Collector, site: str, country: str, where: SiteLocation) -> TestNode:
    for lm in LANDMARKS.values():
        collector.store.add_landmark(lm.record(f"lm-{lm.name}.example:7450"))
    node = TestNode(f"node-{site}")
    collector.enroll(node, site=site, country=country)
    collector.store.set_site_location(where, NOW)
    return node


def evidence(node: TestNode, extra_us: int = 300) -> list[str]:
    at = NOW - timedelta(minutes=1)
    return [lm.measure(node.keyid, rtt_from(FRANKFURT_DC, lm, extra_us), at) for lm in LANDMARKS.values()]


def with_evidence(node: TestNode, raw: list) -> bytes:
    return node.next(predicate=node.edited(lambda p: p.update(location_evidence=raw)))


def rules(ack: pb.Ack) -> dict[str, str]:
    return {f.rule_id: f.message for f in ack.findings if f.rule_id.startswith("location.")}


def test_nodes_learn_the_landmarks(collector: Collector) -> None:
    setup(collector, "fra1", "DE", SiteLocation("fra1", FRANKFURT_DC.lat, FRANKFURT_DC.lon))
    reply = collector.stub.ListLandmarks(pb.ListLandmarksRequest(), timeout=DEADLINE)
    assert [(lm.name, lm.address) for lm in reply.landmarks] == [
        ("fra", "lm-fra.example:7450"), ("iad", "lm-iad.example:7450"), ("par", "lm-par.example:7450"),
        ("sin", "lm-sin.example:7450"),
    ]  # fmt: skip
    assert reply.landmarks[0].public_key_pem == LANDMARKS["fra"].public_key_pem


def test_an_honest_node_is_in_country_and_its_measurements_are_kept(collector: Collector) -> None:
    node = setup(collector, "fra1", "DE", SiteLocation("fra1", FRANKFURT_DC.lat, FRANKFURT_DC.lon))
    (ack,) = collector.report([with_evidence(node, evidence(node))])
    assert ack.status == pb.ACK_STATUS_ACCEPTED and rules(ack) == {}
    assert collector.store.node_locations()[node.node_id].status == IN_COUNTRY
    assert collector.store.last_measured_at(node.node_id) == NOW - timedelta(minutes=1)
    (plain,) = collector.report([node.next()])  # an hour later: no evidence, nothing to say yet
    assert plain.status == pb.ACK_STATUS_ACCEPTED and rules(plain) == {}


def test_a_node_in_frankfurt_enrolled_in_singapore_is_implausible(collector: Collector) -> None:
    node = setup(collector, "sin1", "SG", SiteLocation("sin1", SINGAPORE_DC.lat, SINGAPORE_DC.lon))
    (ack,) = collector.report([with_evidence(node, evidence(node))])
    assert ack.status == pb.ACK_STATUS_ACCEPTED  # a verdict, never a refusal: the inventory is stored
    assert "landmark fra measured a round trip of" in rules(ack)["location.implausible"]
    assert collector.store.node_locations()[node.node_id].status == IMPLAUSIBLE


def test_a_replayed_measurement_is_a_violation(collector: Collector) -> None:
    node = setup(collector, "fra1", "DE", SiteLocation("fra1", FRANKFURT_DC.lat, FRANKFURT_DC.lon))
    raw = evidence(node)
    collector.report([with_evidence(node, raw)])
    (again,) = collector.report([with_evidence(node, raw[:1])])
    assert "rejected (replayed)" in rules(again)["location.evidence-rejected"]
    assert [f.severity for f in again.findings if f.rule_id == "location.evidence-rejected"] == [pb.SEVERITY_VIOLATION]


def test_a_node_without_measurements_goes_stale_once(collector: Collector) -> None:
    node = setup(collector, "fra1", "DE", SiteLocation("fra1", FRANKFURT_DC.lat, FRANKFURT_DC.lon))
    (fresh,) = collector.report([node.next()])
    assert rules(fresh) == {}  # within stale_after of its enrolment
    collector.clock.now = NOW + timedelta(hours=4)
    (late,) = collector.report([node.next()])
    assert "no valid location measurement since its enrolment" in rules(late)["location.stale"]
    (later,) = collector.report([node.next()])
    assert rules(later) == {}  # reported once per lapse, not with every envelope


def test_hostile_evidence_is_invalid_argument_and_stores_nothing(collector: Collector) -> None:
    node = setup(collector, "fra1", "DE", SiteLocation("fra1", FRANKFURT_DC.lat, FRANKFURT_DC.lon))
    for raw in (["x"] * 33, [7], ["x" * 9000], "not a list"):
        envelope = node.sign(predicate=node.edited(lambda p, r=raw: p.update(location_evidence=r)))
        assert status_of(lambda e=envelope: collector.report([e])) == grpc.StatusCode.INVALID_ARGUMENT
    assert collector.store.last_attestation(node.keyid) is None


def test_reports_and_the_live_inventory_show_each_sites_location(
    collector: Collector,
    make_store,  # noqa: F811 - the same database as the collector's
    tmp_path: Path,
) -> None:
    honest = setup(collector, "fra1", "DE", SiteLocation("fra1", FRANKFURT_DC.lat, FRANKFURT_DC.lon))
    collector.report([with_evidence(honest, evidence(honest))])
    moved = TestNode("node-sin1")
    collector.enroll(moved, site="sin1", country="SG")
    collector.store.set_site_location(SiteLocation("sin1", SINGAPORE_DC.lat, SINGAPORE_DC.lon), NOW)
    collector.report([with_evidence(moved, evidence(moved))])
    collector.enroll(TestNode("node-waw1"), site="waw1", country="PL")  # a site without coordinates

    sites = collector.stub.GetSiteStatus(pb.GetSiteStatusRequest(), timeout=DEADLINE).sites
    assert {s.site: s.location for s in sites} == {"fra1": "in-country", "sin1": "implausible", "waw1": "unlocated"}
    countries = collector.stub.GetCountryTotals(pb.GetCountryTotalsRequest(), timeout=DEADLINE).countries
    assert {c.country: dict(c.sites_by_location) for c in countries} == {
        "DE": {"in-country": 1}, "PL": {"unlocated": 1}, "SG": {"implausible": 1},
    }  # fmt: skip

    config = tmp_path / "collector.toml"
    config.write_text(make_store.toml(), encoding="utf-8")
    report = _report("--config", str(config), "--format", "json")
    doc = json.loads(report.stdout)
    assert {row["site"]: row["status"] for row in doc["site_locations"]} == {
        "fra1": "in-country", "sin1": "implausible", "waw1": "unlocated",
    }  # fmt: skip
    assert "unknown" not in {c["country"] for c in doc["countries"]}
    table = _report("--config", str(config)).stdout
    assert "site locations" in table and "node-sin1 implausible" in table

    text, _, _ = pack_text("ai-diffusion-2025")
    pack = tmp_path / "located.toml"
    pack.write_text(text + "\n[location]\nimplausible_as_unknown = true\n", encoding="utf-8")
    doc = json.loads(_report("--config", str(config), "--format", "json", "--policy", str(pack)).stdout)
    by_country = {c["country"]: c for c in doc["countries"]}
    assert by_country["unknown"]["tpp"] == 8 * 15832 and by_country["SG"]["tpp"] == 0  # its one node moved
    assert by_country["DE"]["tpp"] == 8 * 15832
    (note,) = [f for f in doc["findings"] if f["rule"] == "location.unknown"]
    assert "8 GPU(s) of implausibly located nodes enrolled at site sin1 (SG)" in note["message"]
    pack.write_text(text + "\n[location]\nimplausible_as_unknwn = true\n", encoding="utf-8")
    wrong = _report("--config", str(config), "--policy", str(pack))
    assert wrong.returncode == 2 and "implausible_as_unknwn" in wrong.stderr


def _report(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(Path(sys.executable).parent / "gpucensus-collector"), "report", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def _forged(node: TestNode) -> str:
    """Singapore's measurement with the round trips of a node next door; the landmark's signature kept."""
    envelope = json.loads(LANDMARKS["sin"].measure(node.keyid, 103_000, NOW - timedelta(minutes=1)))
    document = json.loads(base64.b64decode(envelope["payload"]))
    document.update(samples_us=[900, 940, 980], min_rtt_us=900)
    envelope["payload"] = base64.b64encode(jcs.canonical_bytes(document)).decode()
    return jcs.canonical_bytes(envelope).decode()


REJECTIONS = [
    ("bad-signature", _forged),
    ("other-node", lambda node: LANDMARKS["fra"].measure("c" * 64, 300, NOW - timedelta(minutes=1))),
    ("too-old", lambda node: LANDMARKS["fra"].measure(node.keyid, 300, NOW - timedelta(hours=3))),
]


@pytest.mark.parametrize(("reason", "make"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_a_bad_measurement_is_rejected_with_its_reason(collector: Collector, reason: str, make) -> None:
    node = setup(collector, "fra1", "DE", SiteLocation("fra1", FRANKFURT_DC.lat, FRANKFURT_DC.lon))
    (ack,) = collector.report([with_evidence(node, [make(node)])])
    assert ack.status == pb.ACK_STATUS_ACCEPTED
    assert f"location_evidence[0] rejected ({reason})" in rules(ack)["location.evidence-rejected"]
    assert collector.store.list_measurements(node.node_id) == []
    assert node.node_id not in collector.store.node_locations()


def test_the_dashboard_shows_each_sites_location(collector: Collector) -> None:
    honest = setup(collector, "fra1", "DE", SiteLocation("fra1", FRANKFURT_DC.lat, FRANKFURT_DC.lon))
    collector.report([with_evidence(honest, evidence(honest))])
    moved = TestNode("node-sin1")  # measured near Frankfurt, registered at a site in Singapore
    collector.enroll(moved, site="sin1", country="SG")
    collector.store.set_site_location(SiteLocation("sin1", SINGAPORE_DC.lat, SINGAPORE_DC.lon), NOW)
    collector.report([with_evidence(moved, evidence(moved))])
    service = start_dashboard(DashboardConfig(listen="127.0.0.1:0"), collector.store, DEFAULT_PACK, NodesConfig(),
                              lambda: NOW)  # fmt: skip
    try:
        overview = json.loads(urllib.request.urlopen(service.url + "api/overview", timeout=DEADLINE).read())
        rows = {r["site"]: (r["location"], r["nodes"]) for r in overview["tables"]["locations"]["rows"]}
        assert rows == {"fra1": ("in-country", "node-fra1: in-country"),
                        "sin1": ("implausible", "node-sin1: implausible")}  # fmt: skip
        page = urllib.request.urlopen(service.url, timeout=DEADLINE).read().decode()
        assert '<section id="locations">' in page and "no landmark is registered" not in page
        country = json.loads(urllib.request.urlopen(service.url + "api/country?cc=SG", timeout=DEADLINE).read())
        assert [(r["site"], r["location"]) for r in country["tables"]["sites"]["rows"]] == [("sin1", "implausible")]
    finally:
        service.stop()
