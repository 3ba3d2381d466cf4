"""The collector's Prometheus metrics, registered in a `CollectorRegistry` the caller passes in (nothing global,
nothing at import time).

Counted as things happen: envelopes by outcome, the seconds each ingest step took for each accepted envelope,
findings raised by ingest, open Report streams, enrollments by outcome. Read from the store at scrape time by
`StoreGauges` (at most once per `[metrics] refresh_seconds`): nodes (and by state), stale nodes, GPUs and TPP per
country. A store that fails during a scrape gives `gpucensus_collector_store_up 0` and no store figures, never an
error page or a crash. The compliance state's gauges (`collector.compliance.gauges`) read memory, not the store.
`gpucensus_build_info` names the version; no `_created` series are exported.

`serve` always builds one (`collector.server.run_server`); `[metrics] listen` only decides whether an HTTP
endpoint exposes it. Pipelines and servicers built without one get a private registry nobody scrapes.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime

from gpucensus.collector.compliance.gauges import ComplianceGauges
from gpucensus.collector.compliance.state import ComplianceState
from gpucensus.collector.store.base import Finding, NodeStatus, Store
from gpucensus.common import __version__
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

PREFIX = "gpucensus_collector_"
# Outcomes shown from the start (at 0); any other gRPC status an envelope or enrollment meets is added when seen.
ENVELOPE_OUTCOMES = (
    "accepted",
    "duplicate",
    "rejected",
    "invalid_argument",
    "unauthenticated",
    "permission_denied",
    "unavailable",
    "resource_exhausted",
    "internal",
)
ENROLLMENT_OUTCOMES = ("enrolled", "invalid_argument", "permission_denied", "already_exists", "unavailable", "internal")
STREAM_END_REASONS = ("over_limit", "first_message", "idle")
# An Ed25519 verify is ~0.1 ms, a SQLite commit with fsync a few ms, a remote PostgreSQL commit tens of ms.
STEP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class CollectorMetrics:
    """The collector's metrics in `registry`; with a `store`, also the scrape-time `StoreGauges` over it."""

    def __init__(
        self,
        registry: CollectorRegistry,
        store: Store | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        stale_intervals: int = 3,
        default_interval_seconds: int = 60,
        store_refresh_seconds: float = 0,
    ) -> None:
        disable_created_metrics()  # no `_created` series next to every counter (process-wide switch)
        self.registry = registry
        build = Info("gpucensus_build", "The running gpucensus: component, version, Python", registry=registry)
        build.info({"component": "collector", "version": __version__, "python": platform.python_version()})
        self.envelopes = Counter(
            PREFIX + "envelopes",
            "Envelopes received, by outcome: accepted, duplicate (a replay), rejected "
            "(a verdict), or the gRPC status of the error",
            ["outcome"],
            registry=registry,
        )
        self.step_seconds = Histogram(
            PREFIX + "ingest_step_seconds",
            "Seconds an accepted envelope spent in each ingest step",
            ["step"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.findings = Counter(
            PREFIX + "findings",
            "Findings raised by ingest, by rule and severity",
            ["rule", "severity"],
            registry=registry,
        )
        self.report_streams = Gauge(PREFIX + "open_report_streams", "Report streams open now", registry=registry)
        self.streams_ended = Counter(
            PREFIX + "report_streams_ended",
            "Report streams the collector refused or closed, by reason: over_limit (too many open), "
            "first_message (sent nothing after opening), idle (sent nothing after an ack)",
            ["reason"],
            registry=registry,
        )
        self.enrollments = Counter(
            PREFIX + "enrollments",
            "Enroll calls, by outcome: enrolled or the gRPC status of the error",
            ["outcome"],
            registry=registry,
        )
        for outcome in ENVELOPE_OUTCOMES:
            self.envelopes.labels(outcome)
        for outcome in ENROLLMENT_OUTCOMES:
            self.enrollments.labels(outcome)
        for reason in STREAM_END_REASONS:
            self.streams_ended.labels(reason)
        if store is not None:
            gauges = StoreGauges(store, clock, stale_intervals, default_interval_seconds, store_refresh_seconds)
            registry.register(gauges)

    def add_compliance(self, state: ComplianceState) -> None:
        """Expose the compliance state (`collector.compliance.gauges`) in this registry."""
        self.registry.register(ComplianceGauges(state))

    def envelope(self, outcome: str, findings: Iterable[Finding] = ()) -> None:
        """One envelope answered with `outcome`, and the findings its verdict raised."""
        self.envelopes.labels(outcome).inc()
        for finding in findings:
            self.findings.labels(finding.rule_id, finding.severity).inc()

    def accepted_steps(self, seconds: Mapping[str, float]) -> None:
        """The seconds one accepted envelope spent in each step."""
        for step, spent in seconds.items():
            self.step_seconds.labels(step).observe(spent)

    def enrollment(self, outcome: str) -> None:
        self.enrollments.labels(outcome).inc()


class StoreGauges(Collector):
    """Gauges read from the store at scrape time: the nodes table (twice: all nodes, stale nodes) and the
    current devices per country. Read at most once per `refresh_seconds` however many scrapes arrive (a busy
    /metrics must not keep the store from ingest); 0 = at every scrape."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime],
        stale_intervals: int,
        default_interval_seconds: int,
        refresh_seconds: float = 0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._clock = clock
        self._stale_intervals = stale_intervals
        self._default_interval = default_interval_seconds
        self._refresh = refresh_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()  # concurrent scrapes: one reads the store, the others take its result
        self._last: tuple[float, tuple[GaugeMetricFamily, ...]] | None = None
        self._up = True  # log a failure once, not at every scrape

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families without values: registering never touches the store."""
        yield from _families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            now = self._monotonic()
            if self._last is None or now - self._last[0] >= self._refresh:
                self._last = (now, self._read())
            return iter(self._last[1])

    def _read(self) -> tuple[GaugeMetricFamily, ...]:
        up, nodes, stale, by_state, gpus, tpp, unaccounted = _families()
        try:
            counted = self._store.node_counts()  # counted in the store: a scrape never lists every node
            nodes.add_metric([], counted["enrolled"])
            stale_nodes = self._store.stale_nodes(
                self._clock(), intervals=self._stale_intervals, default_interval_seconds=self._default_interval
            )
            stale.add_metric([], len(stale_nodes))
            for state, count in counted_states(counted, stale_nodes).items():
                by_state.add_metric([state], count)
            for totals in self._store.country_totals():
                gpus.add_metric([totals.country], totals.gpus)
                tpp.add_metric([totals.country], totals.tpp)
                unaccounted.add_metric([totals.country], totals.unaccounted)
        except Exception as err:  # a scrape never fails or crashes the server: store_up 0 says it
            if self._up:
                log.warning("metrics: cannot read the store (gpucensus_collector_store_up 0): %s", err)
            self._up = False
            up.add_metric([], 0)
            return (up,)
        if not self._up:
            log.info("metrics: the store can be read again")
        self._up = True
        up.add_metric([], 1)
        return up, nodes, stale, by_state, gpus, tpp, unaccounted


def _families() -> tuple[GaugeMetricFamily, ...]:
    return (
        GaugeMetricFamily(PREFIX + "store_up", "1 if the last scrape could read the store, else 0"),
        GaugeMetricFamily(PREFIX + "nodes", "Enrolled nodes whose key is not revoked"),
        GaugeMetricFamily(PREFIX + "stale_nodes", "Nodes silent for more than [nodes] stale_intervals intervals"),
        GaugeMetricFamily(
            PREFIX + "nodes_by_state",
            "Nodes by state: reporting, stale (attested once, silent for [nodes] stale_intervals), never_seen "
            "(enrolled, never attested), revoked",
            labels=["state"],
        ),
        GaugeMetricFamily(PREFIX + "gpus", "GPUs currently reported, per country", labels=["country"]),
        GaugeMetricFamily(PREFIX + "tpp", "TPP of the GPUs currently reported, per country", labels=["country"]),
        GaugeMetricFamily(
            PREFIX + "unaccounted_gpus",
            "GPUs whose TPP is not established (not counted in tpp), per country",
            labels=["country"],
        ),
    )


NODE_STATES = ("reporting", "stale", "never_seen", "revoked")


def counted_states(counted: dict[str, int], stale: Iterable[NodeStatus]) -> dict[str, int]:
    """`node_states` from the store's counts (`Store.node_counts`) and the stale nodes (never revoked): a stale
    node that never attested is `never_seen`, as there."""
    stale_seen = sum(1 for n in stale if n.last_attested_at is not None)
    return {
        "reporting": counted["enrolled"] - counted["never_seen"] - stale_seen,
        "stale": stale_seen,
        "never_seen": counted["never_seen"],
        "revoked": counted["revoked"],
    }


def node_states(nodes: Iterable[NodeStatus], stale: set[str]) -> dict[str, int]:
    """Every node in exactly one state (all four present, at 0 when empty)."""
    counts = dict.fromkeys(NODE_STATES, 0)
    for n in nodes:
        if n.revoked:
            counts["revoked"] += 1
        elif n.last_attested_at is None:
            counts["never_seen"] += 1
        else:
            counts["stale" if n.node_id in stale else "reporting"] += 1
    return counts
