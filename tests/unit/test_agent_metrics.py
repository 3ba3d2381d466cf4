"""The agent's delivery and GPU metrics, read back from a real registry as Prometheus exposes them."""

from __future__ import annotations

import platform

from gpucensus.agent.metrics import AgentMetrics
from gpucensus.common import __version__
from prometheus_client import CollectorRegistry, generate_latest


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_delivery_reachability_and_gpus_by_status() -> None:
    registry = CollectorRegistry()
    now = [1_000.0]
    metrics = AgentMetrics(registry, clock=lambda: now[0])
    assert value(registry, "gpucensus_agent_last_delivery_timestamp_seconds") == 0
    assert build_info(registry) == {"component": "agent", "version": __version__, "python": platform.python_version()}
    metrics.delivered(3, "")
    assert value(registry, "gpucensus_agent_last_delivery_timestamp_seconds") == 1_000
    assert value(registry, "gpucensus_agent_collector_reachable") == 1
    now[0] = 1_060.0
    metrics.delivered(0, "")  # nothing was pending: reached, but no new delivery time
    assert value(registry, "gpucensus_agent_last_delivery_timestamp_seconds") == 1_000
    metrics.delivered(1, "stream ended: UNAVAILABLE")
    assert value(registry, "gpucensus_agent_collector_reachable") == 0
    metrics.delivered(0, "")
    metrics.unreachable()
    assert value(registry, "gpucensus_agent_collector_reachable") == 0
    metrics.snapshot([{"status": "ok"}] * 6 + [{"status": "lost"}, {"status": "something-new"}])
    assert [value(registry, "gpucensus_agent_gpus", status=s) for s in ("ok", "lost", "incomplete")] == [6, 1, 1]
    assert b"_created" not in generate_latest(registry)


def build_info(registry: CollectorRegistry) -> dict[str, str]:
    (sample,) = [s for m in registry.collect() if m.name == "gpucensus_build" for s in m.samples]
    assert (sample.name, sample.value) == ("gpucensus_build_info", 1)
    return sample.labels
