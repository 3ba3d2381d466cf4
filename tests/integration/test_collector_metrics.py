"""The collector's Prometheus endpoint as an operator scrapes it: a real server on 127.0.0.1 over a real SQLite
store, envelopes (accepted, a replay, a tampered one, a fork, garbage) over real gRPC, then GET /metrics over
HTTP with urllib and the exact values read back."""

from __future__ import annotations

import queue
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from gpucensus.collector.config import CollectorConfig, MetricsConfig, NodesConfig, ServerConfig
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.ingest.pipeline import STEPS
from gpucensus.collector.server import run_server
from gpucensus.collector.store import open_store
from gpucensus.common.dsse import envelope_digest
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.ingest_nodes import TestNode
from tests.integration.server_fixtures import DEADLINE, Clock, Collector, spawn_serve, status_of
from tests.integration.test_server import _tampered

ROOT = Path(__file__).resolve().parents[2]
INTERVAL = 60


@pytest.fixture(name="collector")
def collector_fixture(tmp_path: Path) -> Iterator[Collector]:
    store = open_store("sqlite", data_dir=str(tmp_path / "collector-data"))
    clock = Clock()
    config = CollectorConfig(
        server=ServerConfig(listen="127.0.0.1:0"),
        nodes=NodesConfig(interval_seconds=INTERVAL, stale_intervals=3),
        metrics=MetricsConfig(listen="127.0.0.1:0", refresh_seconds=0),  # every scrape reads the store
    )
    server, port = run_server(config, store, clock=clock)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Collector(server, port, store, channel, census_pb2_grpc.CensusStub(channel), clock)
    finally:
        channel.close()
        server.stop(None).wait()
        store.close()


def scrape(collector: Collector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics; {(sample name, sorted labels): value}."""
    url = f"http://127.0.0.1:{collector.server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=DEADLINE) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def outcomes(samples: dict) -> dict[str, float]:
    prefix = "gpucensus_collector_envelopes_total"
    return {dict(labels)["outcome"]: v for (name, labels), v in samples.items() if name == prefix and v}


def findings(samples: dict) -> dict[tuple[str, str], float]:
    name = "gpucensus_collector_findings_total"
    return {(dict(lb)["rule"], dict(lb)["severity"]): v for (n, lb), v in samples.items() if n == name}


def test_envelopes_findings_and_step_timings_are_counted_exactly(collector: Collector) -> None:
    first, second, stranger = TestNode("node-1"), TestNode("node-2", "hgx-a100"), TestNode("node-3")
    collector.enroll(first, site="fra1", country="DE")
    collector.enroll(second, site="waw1", country="PL")
    chain = [first.next() for _ in range(3)]
    assert [a.status for a in collector.report(chain)] == [pb.ACK_STATUS_ACCEPTED] * 3
    assert status_of(lambda: collector.report([_tampered(first.sign())])) == grpc.StatusCode.UNAUTHENTICATED
    fork = first.edited(lambda p: p["totals"].update(gpus=7))
    forked = first.sign(sequence=3, previous=envelope_digest(chain[1]), predicate=fork)
    assert [a.status for a in collector.report([forked])] == [pb.ACK_STATUS_REJECTED]  # chain.equivocation
    second.next()  # sequence 1 never arrives: a gap
    gap = second.next()
    acks = collector.report([gap, second.next()])
    assert [[f.rule_id for f in a.findings] for a in acks] == [["chain.missing-attestations"], []]
    (replay,) = collector.report([gap])  # its finding comes back in the ack; it is not raised again
    assert replay.duplicate and [f.rule_id for f in replay.findings] == ["chain.missing-attestations"]
    assert status_of(lambda: collector.report([stranger.next()])) == grpc.StatusCode.PERMISSION_DENIED
    assert status_of(lambda: collector.report([b"{not json"])) == grpc.StatusCode.INVALID_ARGUMENT

    samples = scrape(collector)
    assert outcomes(samples) == {
        "accepted": 5, "duplicate": 1, "rejected": 1, "unauthenticated": 1, "permission_denied": 1,
        "invalid_argument": 1,
    }  # fmt: skip
    assert sample(samples, "gpucensus_collector_envelopes_total", outcome="unavailable") == 0
    assert findings(samples) == {("chain.equivocation", "violation"): 1, ("chain.missing-attestations", "warning"): 1}
    for step in (s for s in STEPS if s != "reference"):  # one observation per step for each accepted envelope,
        # none for the others (reference: compact statements only, which skip recompute and crossnode)
        assert sample(samples, "gpucensus_collector_ingest_step_seconds_count", step=step) == 5, step
        assert sample(samples, "gpucensus_collector_ingest_step_seconds_sum", step=step) > 0, step
    # every stream above has ended; one the collector aborted (UNAUTHENTICATED ...) sent its status before its
    # handler finished, so its gauge may lag the client by a moment: wait for it, bounded
    deadline = time.monotonic() + DEADLINE
    while sample(scrape(collector), "gpucensus_collector_open_report_streams") != 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sample(scrape(collector), "gpucensus_collector_open_report_streams") == 0
    assert sample(samples, "gpucensus_collector_enrollments_total", outcome="enrolled") == 2


def test_enrollment_outcomes(collector: Collector) -> None:
    token = collector.token()
    node = TestNode("node-1")
    enroll = pb.EnrollRequest(token=token, node_id="node-1", public_key_pem=node.public_key_pem)
    collector.stub.Enroll(enroll, timeout=DEADLINE)
    again = pb.EnrollRequest(token=token, node_id="node-2", public_key_pem=TestNode("node-2").public_key_pem)
    assert status_of(lambda: collector.stub.Enroll(again, timeout=DEADLINE)) == grpc.StatusCode.PERMISSION_DENIED
    bad_key = pb.EnrollRequest(token=collector.token(), node_id="node-3", public_key_pem="not a key")
    assert status_of(lambda: collector.stub.Enroll(bad_key, timeout=DEADLINE)) == grpc.StatusCode.INVALID_ARGUMENT
    samples = scrape(collector)
    counts = {o: sample(samples, "gpucensus_collector_enrollments_total", outcome=o)
              for o in ("enrolled", "permission_denied", "invalid_argument", "already_exists")}  # fmt: skip
    assert counts == {"enrolled": 1, "permission_denied": 1, "invalid_argument": 1, "already_exists": 0}


def test_an_open_report_stream_is_counted_until_it_ends(collector: Collector) -> None:
    node = TestNode("node-1")
    collector.enroll(node)
    outbox: queue.Queue[pb.Envelope | None] = queue.Queue()
    acks = collector.stub.Report(iter(outbox.get, None), timeout=DEADLINE)
    outbox.put(pb.Envelope(dsse=node.next()))
    assert next(acks).status == pb.ACK_STATUS_ACCEPTED  # the stream is open and working
    assert sample(scrape(collector), "gpucensus_collector_open_report_streams") == 1
    outbox.put(None)
    assert list(acks) == []
    assert sample(scrape(collector), "gpucensus_collector_open_report_streams") == 0


def test_store_gauges_follow_the_inventory_and_the_clock(collector: Collector) -> None:
    first, second = TestNode("node-1"), TestNode("node-2", "hgx-a100")
    collector.enroll(first, site="fra1", country="DE")
    collector.enroll(second, site="waw1", country="PL")
    collector.report([first.next()])
    collector.report([second.next()])
    samples = scrape(collector)
    assert sample(samples, "gpucensus_collector_store_up") == 1
    assert (sample(samples, "gpucensus_collector_nodes"), sample(samples, "gpucensus_collector_stale_nodes")) == (2, 0)
    for node, country in ((first, "DE"), (second, "PL")):
        totals = node.predicate["totals"]  # the agent's figures; the collector recomputed the same
        assert sample(samples, "gpucensus_collector_gpus", country=country) == totals["gpus"]
        assert sample(samples, "gpucensus_collector_tpp", country=country) == totals["tpp"]
        assert sample(samples, "gpucensus_collector_unaccounted_gpus", country=country) == 0
    collector.clock.now += timedelta(seconds=3 * INTERVAL + 1)  # both silent for more than 3 intervals
    collector.report([first.next()])
    samples = scrape(collector)
    assert (sample(samples, "gpucensus_collector_nodes"), sample(samples, "gpucensus_collector_stale_nodes")) == (2, 1)


def test_a_store_that_fails_during_a_scrape_is_store_up_0_and_the_server_lives_on(collector: Collector) -> None:
    node = TestNode("node-1")
    collector.enroll(node)
    collector.report([node.next()])
    collector.store.close()  # every read now raises StoreError
    samples = scrape(collector)  # HTTP 200, not a 500 or a dead endpoint
    assert sample(samples, "gpucensus_collector_store_up") == 0
    assert sample(samples, "gpucensus_collector_nodes") is None
    assert sample(samples, "gpucensus_collector_envelopes_total", outcome="accepted") == 1
    assert status_of(lambda: collector.report([node.next()])) == grpc.StatusCode.UNAVAILABLE  # gRPC still answers
    assert sample(scrape(collector), "gpucensus_collector_envelopes_total", outcome="unavailable") == 1


def test_a_metrics_port_in_use_is_a_config_error(tmp_path: Path) -> None:
    store = open_store("sqlite", data_dir=str(tmp_path / "collector-data"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        config = CollectorConfig(server=ServerConfig(listen="127.0.0.1:0"), metrics=MetricsConfig(listen=listen))
        with pytest.raises(ConfigError) as caught:
            run_server(config, store)
    store.close()
    assert f"cannot serve metrics on {listen}" in caught.value.message


def test_serve_exposes_the_endpoint_set_in_the_config(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[store]\ndata_dir = "{tmp_path / "data"}"\n[server]\nlisten = "127.0.0.1:0"\n'
        '[metrics]\nlisten = "127.0.0.1:0"\n'
    )
    process = spawn_serve(config)
    try:
        url = next((line.split()[-1] for line in process.stderr if "metrics on" in line), None)
        assert url is not None, f"the collector did not start (exit {process.wait()})"
        with urllib.request.urlopen(url, timeout=DEADLINE) as response:
            text = response.read().decode()
        assert "gpucensus_collector_store_up 1.0" in text and "gpucensus_collector_nodes 0.0" in text
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
