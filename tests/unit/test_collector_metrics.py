"""The collector's metrics object against a fake store: counters, the step histogram, the scrape-time store
gauges, a store that fails during a scrape, and the `[metrics]` config section."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import prometheus_client
import pytest
from gpucensus.collector.config import MetricsConfig, load_config
from gpucensus.collector.errors import ConfigError, StoreError
from gpucensus.collector.metrics import CollectorMetrics, StoreGauges
from gpucensus.collector.store.base import CountryTotals, Finding, NodeStatus
from prometheus_client import CollectorRegistry, generate_latest

from tests.ingest_nodes import NOW


def node(node_id: str, silent_for: timedelta, revoked: bool = False) -> NodeStatus:
    return NodeStatus(node_id, "fra1", "k-" + node_id, NOW - timedelta(days=1), NOW - silent_for, 7, 60, 8, revoked)


class FakeStore:
    """Just the reads the scrape makes; `fail` makes every read raise it. Counts the reads."""

    def __init__(self) -> None:
        self.nodes = [node("fresh", timedelta(seconds=30)), node("quiet", timedelta(hours=1)),
                      node("gone", timedelta(days=1), revoked=True)]  # fmt: skip
        self.totals = [CountryTotals("DE", gpus=8, tpp=800, unaccounted=1), CountryTotals("PL", 0, 0, 0)]
        self.fail: Exception | None = None
        self.reads = 0
        self.stale_args: tuple | None = None

    def _read(self) -> None:
        self.reads += 1
        if self.fail is not None:
            raise self.fail

    def list_nodes(self, site: str | None = None) -> list[NodeStatus]:
        self._read()
        return list(self.nodes)

    def node_counts(self) -> dict[str, int]:
        self._read()
        revoked = sum(1 for n in self.nodes if n.revoked)
        never = sum(1 for n in self.nodes if not n.revoked and n.last_attested_at is None)
        return {"enrolled": len(self.nodes) - revoked, "revoked": revoked, "never_seen": never}

    def stale_nodes(self, now, intervals: int = 3, default_interval_seconds: int = 60) -> list[NodeStatus]:
        self._read()
        self.stale_args = (now, intervals, default_interval_seconds)
        limit = timedelta(seconds=intervals * default_interval_seconds)
        return [n for n in self.nodes if not n.revoked and now - n.last_attested_at > limit]

    def country_totals(self) -> list[CountryTotals]:
        self._read()
        return list(self.totals)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


@pytest.fixture(name="store")
def store_fixture() -> FakeStore:
    return FakeStore()


def metrics_on(store: FakeStore | None) -> tuple[CollectorMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = CollectorMetrics(registry, store, clock=lambda: NOW, stale_intervals=5, default_interval_seconds=60)
    return metrics, registry


def test_envelopes_are_counted_by_outcome_and_their_findings_by_rule_and_severity() -> None:
    metrics, registry = metrics_on(None)
    assert value(registry, "gpucensus_collector_envelopes_total", outcome="unauthenticated") == 0  # shown at 0
    gap = Finding("chain.missing-attestations", "warning", "node:a", "gap")
    fork = Finding("chain.equivocation", "violation", "node:a", "fork")
    metrics.envelope("accepted", [gap])
    metrics.envelope("accepted", [gap])
    metrics.envelope("rejected", [fork])
    metrics.envelope("duplicate")
    metrics.envelope("resource_exhausted")  # a status not listed up front still counts
    counts = {o: value(registry, "gpucensus_collector_envelopes_total", outcome=o)
              for o in ("accepted", "rejected", "duplicate", "resource_exhausted", "internal")}  # fmt: skip
    assert counts == {"accepted": 2, "rejected": 1, "duplicate": 1, "resource_exhausted": 1, "internal": 0}
    findings = "gpucensus_collector_findings_total"
    assert value(registry, findings, rule="chain.missing-attestations", severity="warning") == 2
    assert value(registry, findings, rule="chain.equivocation", severity="violation") == 1


def test_each_accepted_envelope_is_one_observation_per_step() -> None:
    metrics, registry = metrics_on(None)
    metrics.accepted_steps({"signature": 0.0002, "store": 0.004})
    metrics.accepted_steps({"signature": 0.0003, "store": 0.2})
    name = "gpucensus_collector_ingest_step_seconds"
    assert value(registry, name + "_count", step="signature") == 2
    assert value(registry, name + "_sum", step="store") == pytest.approx(0.204)
    assert value(registry, name + "_bucket", step="store", le="0.005") == 1  # buckets fine enough for a commit
    assert value(registry, name + "_bucket", step="signature", le="0.00025") == 1


def test_enrollments_and_open_streams() -> None:
    metrics, registry = metrics_on(None)
    metrics.enrollment("enrolled")
    metrics.enrollment("permission_denied")
    metrics.report_streams.inc()
    assert value(registry, "gpucensus_collector_enrollments_total", outcome="enrolled") == 1
    assert value(registry, "gpucensus_collector_enrollments_total", outcome="permission_denied") == 1
    assert value(registry, "gpucensus_collector_enrollments_total", outcome="already_exists") == 0
    assert value(registry, "gpucensus_collector_open_report_streams") == 1


def test_store_gauges_are_read_at_scrape_time_only(store: FakeStore) -> None:
    _, registry = metrics_on(store)
    assert store.reads == 0  # registering and building read nothing
    assert value(registry, "gpucensus_collector_store_up") == 1
    assert value(registry, "gpucensus_collector_nodes") == 2  # the revoked node is not counted
    assert value(registry, "gpucensus_collector_stale_nodes") == 1
    assert store.stale_args == (NOW, 5, 60)  # the clock and the [nodes] settings reach the store
    assert value(registry, "gpucensus_collector_gpus", country="DE") == 8
    assert value(registry, "gpucensus_collector_tpp", country="DE") == 800
    assert value(registry, "gpucensus_collector_unaccounted_gpus", country="DE") == 1
    assert value(registry, "gpucensus_collector_gpus", country="PL") == 0
    store.nodes.append(node("late", timedelta(hours=2)))
    assert value(registry, "gpucensus_collector_stale_nodes") == 2  # read again, not cached from the last scrape


def test_store_figures_are_read_at_most_once_per_refresh_interval(store: FakeStore) -> None:
    now = [100.0]
    registry = CollectorRegistry()
    registry.register(StoreGauges(store, lambda: NOW, 3, 60, refresh_seconds=10, monotonic=lambda: now[0]))
    assert value(registry, "gpucensus_collector_nodes") == 2
    reads = store.reads
    store.nodes.append(node("new", timedelta(seconds=1)))
    now[0] += 9.5
    assert value(registry, "gpucensus_collector_nodes") == 2  # a scrape within 10 s: the last figures
    assert store.reads == reads
    now[0] += 0.5
    assert value(registry, "gpucensus_collector_nodes") == 3
    assert store.reads == 2 * reads


@pytest.mark.parametrize("error", [StoreError("database is locked"), RuntimeError("a bug in the store")])
def test_a_store_failing_during_a_scrape_gives_store_up_0_and_no_store_figures(
    store: FakeStore, error: Exception
) -> None:
    metrics, registry = metrics_on(store)
    metrics.envelope("accepted")
    store.fail = error
    text = generate_latest(registry).decode()  # what the HTTP endpoint serves: no exception
    assert "gpucensus_collector_store_up 0.0" in text
    assert "gpucensus_collector_gpus{" not in text and "gpucensus_collector_nodes " not in text
    assert 'gpucensus_collector_envelopes_total{outcome="accepted"} 1.0' in text  # the rest is still there
    store.fail = None
    assert value(registry, "gpucensus_collector_store_up") == 1  # recovers at the next scrape
    assert value(registry, "gpucensus_collector_nodes") == 2


def test_nothing_is_registered_globally_and_two_collectors_do_not_clash(store: FakeStore) -> None:
    metrics_on(store)
    metrics_on(store)  # a second object in its own registry: no "Duplicated timeseries"
    assert "gpucensus_collector" not in generate_latest(prometheus_client.REGISTRY).decode()  # the global one


def test_metrics_config_defaults_to_no_endpoint_and_is_validated(tmp_path: Path) -> None:
    assert load_config(env={}).metrics == MetricsConfig(listen="", refresh_seconds=10)
    path = tmp_path / "collector.toml"
    path.write_text('[metrics]\nlisten = "127.0.0.1:9465"\n')
    assert load_config(path, env={}).metrics.listen == "127.0.0.1:9465"
    assert load_config(path, env={"GPUCENSUS_METRICS_LISTEN": "0.0.0.0:9000"}).metrics.listen == "0.0.0.0:9000"
    overridden = load_config(path, env={}, overrides={"metrics": {"listen": "127.0.0.1:0"}})
    assert overridden.metrics.listen == "127.0.0.1:0"
    for text, message in (
        ('[metrics]\nlisten = "9465"\n', "[metrics] listen '9465' must be HOST:PORT"),
        ('[metrics]\nlisten = "127.0.0.1:99999"\n', "must be HOST:PORT"),
        ("[metrics]\nlisten = 9465\n", "[metrics] listen must be a string"),
        ("[metrics]\nrefresh_seconds = -1\n", "[metrics] refresh_seconds must not be negative"),
        ('[metrics]\nport = "9465"\n', "unknown key 'port' in [metrics]"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_config(path, env={})
        assert message in caught.value.message and str(path) in caught.value.message
