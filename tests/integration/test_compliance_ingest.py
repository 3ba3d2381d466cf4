"""Continuous compliance, end to end (issue 14's "done when"): a real collector over real gRPC and a real store
(SQLite and PostgreSQL), under a pack with small caps so one node can cross them. A node reports 4 H100s (63,328
TPP: under the 100,000 TPP LPP limit, so nothing counts against the allocation), then all 8 (126,656 TPP: over the
LPP limit, so all of them are licensed and count against AE's 120,000 TPP allocation): the Ack of that attestation
carries the violation, the metrics endpoint shows it within a second, and it is recorded as opened. Four GPUs
decommissioned with the CLI (a separate process writing the database while the collector runs) clear it: the
collector notices the registry version move, re-evaluates, and records the clearing time."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from gpucensus.collector.config import CollectorConfig, MetricsConfig, PolicyConfig, ServerConfig
from gpucensus.collector.policy.pack import pack_text
from gpucensus.collector.server import run_server
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.ingest_nodes import TestNode
from tests.integration.server_fixtures import DEADLINE, Clock, Collector, serving

pytest_plugins = ["tests.integration.store_fixtures"]  # make_store, store_kind

ROOT = Path(__file__).resolve().parents[2]
H100 = 15_832


def small_caps_pack(folder: Path) -> Path:
    """ai-diffusion-2025 with an LPP limit of 100,000 TPP and an allocation of 120,000 TPP."""
    text = pack_text("ai-diffusion-2025")[0]
    text = text.replace('name = "ai-diffusion-2025"', 'name = "small-caps"')
    text = text.replace(
        "schedule = [{ from_year = 2025, tpp = 26900000 }]", "schedule = [{ from_year = 2025, tpp = 100000 }]"
    )
    text = text.replace("tpp = 790000000", "tpp = 120000")
    path = folder / "small-caps.toml"
    path.write_text(text)
    return path


def first_gpus(node: TestNode, count: int) -> dict:
    """The node's predicate with only its first `count` GPUs (the others not installed yet)."""
    predicate = copy.deepcopy(node.predicate)
    predicate["devices"] = predicate["devices"][:count]
    predicate["pci_functions"] = predicate["pci_functions"][:count]
    predicate["totals"].update(gpus=count, tpp=count * H100, h100e_milli=count * 1000,
                               by_eccn={"3A090.a": {"gpus": count, "tpp": count * H100}})  # fmt: skip
    return predicate


@pytest.fixture(name="collector")
def collector_fixture(make_store, tmp_path: Path) -> Iterator[Collector]:
    store = make_store()
    config = CollectorConfig(
        server=ServerConfig(listen="127.0.0.1:0"),
        policy=PolicyConfig(pack=str(small_caps_pack(tmp_path)), refresh_seconds=0),
        metrics=MetricsConfig(listen="127.0.0.1:0", refresh_seconds=0),
    )
    yield from serving(store, config)


def scrape(collector: Collector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = f"http://127.0.0.1:{collector.server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=DEADLINE) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def country_status(collector: Collector) -> float | None:
    return scrape(collector).get(("gpucensus_collector_country_status", (("country", "AE"),)))


def poll(collector: Collector, want: float, within: float) -> float:
    """Scrape until AE's status is `want`; the seconds it took (fails after `within`)."""
    start = time.monotonic()
    while (seen := country_status(collector)) != want:
        assert time.monotonic() - start < within, f"AE status {seen}, expected {want} within {within} s"
        time.sleep(0.05)
    return time.monotonic() - start


def allocation_findings(ack: pb.Ack) -> list[tuple[int, str]]:
    return [(f.severity, f.subject) for f in ack.findings if f.rule_id == "country.allocation"]


def test_a_node_crossing_the_allocation_is_in_its_ack_and_the_metrics_and_clears_on_decommission(
    collector: Collector,
    make_store,
    tmp_path: Path,
) -> None:
    node = TestNode("node-1")
    collector.enroll(node, site="ae1", country="AE")
    (before,) = collector.report([node.next(predicate=first_gpus(node, 4))])
    assert before.status == pb.ACK_STATUS_ACCEPTED and allocation_findings(before) == []
    poll(collector, 0, within=1.0)

    (crossed,) = collector.report([node.next()])  # all 8 GPUs
    assert crossed.status == pb.ACK_STATUS_ACCEPTED
    assert allocation_findings(crossed) == [(pb.SEVERITY_VIOLATION, "country:AE")]
    message = next(f.message for f in crossed.findings if f.rule_id == "country.allocation")
    assert "126,656 TPP" in message and "120,000 TPP" in message
    assert poll(collector, 2, within=1.0) < 1.0
    samples = scrape(collector)
    assert samples[("gpucensus_collector_country_allocation_used_tpp", (("country", "AE"),))] == 8 * H100
    assert samples[("gpucensus_collector_country_allocation_limit_tpp", (("country", "AE"),))] == 120_000
    assert samples[("gpucensus_collector_entity_status", (("entity", "acme"),))] == 1  # lpp.exceeded: a warning
    site = (("country", "AE"), ("entity", "acme"), ("site", "ae1"))
    assert (
        samples[("gpucensus_collector_site_tpp", site)]
        == samples[("gpucensus_collector_country_tpp", (("country", "AE"),))]
        == 8 * H100
    )
    assert samples[("gpucensus_collector_site_h100e_milli", site)] == 8000
    assert samples[("gpucensus_collector_site_status", site)] == 0  # the violation is the country's, not the site's
    assert (
        samples[
            ("gpucensus_collector_policy_findings_open", (("rule", "country.allocation"), ("severity", "violation")))
        ]
        == 1
    )
    (opened,) = [f for f in collector.server.compliance.history("country:AE") if f.rule_id == "country.allocation"]
    assert opened.severity == "violation" and opened.opened_at is not None and opened.cleared_at is None

    (again,) = collector.report([node.next()])  # nothing changed: the open violation is carried again
    assert allocation_findings(again) == [(pb.SEVERITY_VIOLATION, "country:AE")]

    config = tmp_path / "cli.toml"
    config.write_text(make_store.toml())
    for device in node.predicate["devices"][4:]:
        subprocess.run([sys.executable, "-m", "gpucensus.collector.cli", "gpu", "decommission", device["uuid"],
                        "--config", str(config), "--reason", "RMA"],
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                       check=True, capture_output=True, timeout=60)  # fmt: skip
    poll(collector, 0, within=5.0)  # the watcher checks the registry version every second
    history = [f for f in collector.server.compliance.history("country:AE") if f.rule_id == "country.allocation"]
    (closed,) = [f for f in history if f.severity == "violation"]  # (7 GPUs left, if seen, is a warning)
    assert all(f.cleared_at is not None for f in history)
    assert closed.id == opened.id and closed.cleared_at is not None and closed.cleared_at >= opened.opened_at
    assert [f for f in collector.server.compliance.current().findings if f.subject == "country:AE"] == []


def test_two_collectors_on_one_database_share_the_state_and_record_each_finding_once(
    make_store, tmp_path: Path
) -> None:
    """Collector A accepts the crossing attestation; collector B, sharing the database, shows the violation within
    two seconds (A notes the changed site, B reads the notes every second; no periodic refresh); a decommission
    written through B's store clears it on both; the history holds the violation once, opened and cleared."""
    pack = str(small_caps_pack(tmp_path))
    servers, stubs = [], []
    try:
        for _ in range(2):
            config = CollectorConfig(server=ServerConfig(listen="127.0.0.1:0"),
                                     policy=PolicyConfig(pack=pack, refresh_seconds=0),
                                     metrics=MetricsConfig(listen="127.0.0.1:0", refresh_seconds=0))  # fmt: skip
            store = make_store()
            server, port = run_server(config, store, clock=Clock())
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            servers.append((server, channel))
            stubs.append(Collector(server, port, store, channel, census_pb2_grpc.CensusStub(channel), Clock()))
        a, b = stubs
        node = TestNode("node-1")
        a.enroll(node, site="ae1", country="AE")
        deadline = time.monotonic() + 5  # B took in the new site (a registry write) before the attestation arrives
        while "ae1" not in {s.id for s in b.server.compliance.current().sites}:
            assert time.monotonic() < deadline, "B never saw the new site"
            time.sleep(0.05)
        poll(b, 0, within=1.0)
        (crossed,) = a.report([node.next()])
        assert allocation_findings(crossed) == [(pb.SEVERITY_VIOLATION, "country:AE")]
        poll(b, 2, within=2.5)
        for device in node.predicate["devices"][4:]:
            assert b.store.decommission_gpu(device["uuid"], "RMA", Clock()())
        poll(a, 0, within=5.0)
        poll(b, 0, within=5.0)
        history = [f for f in a.server.compliance.history("country:AE") if f.severity == "violation"]
        assert len(history) == 1 and history[0].cleared_at is not None
    finally:
        for server, channel in servers:
            channel.close()
            server.stop(None).wait()


def test_serve_with_an_unknown_pack_stops_with_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(f'[store]\nkind = "sqlite"\ndata_dir = "{tmp_path / "data"}"\n[server]\nlisten = "127.0.0.1:0"\n'
                      '[policy]\npack = "no-such-pack"\n')  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "gpucensus.collector.cli", "serve", "--config", str(config)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert "policy pack 'no-such-pack'" in done.stderr and "Traceback" not in done.stderr
