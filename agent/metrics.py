"""The agent's own Prometheus metrics beside the spool's (`agent.spool.SpoolMetrics`): delivery and the GPUs of
the last snapshot. Registered in the registry the caller passes in; `agent/commands/run.py` updates them around
its `attest` and `deliver` callables, so the runner loop knows nothing of them."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gpucensus.common import __version__
from prometheus_client import CollectorRegistry, Gauge, Info, disable_created_metrics

PREFIX = "gpucensus_agent_"
DEVICE_STATUSES = ("ok", "lost", "incomplete")  # common.devices: a device that cannot be read stays listed


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float] = time.time) -> None:
        disable_created_metrics()  # no `_created` series next to every counter (process-wide switch)
        self._clock = clock
        build = Info("gpucensus_build", "The running gpucensus: component, version, Python", registry=registry)
        build.info({"component": "agent", "version": __version__, "python": platform.python_version()})
        self.last_delivery = Gauge(
            PREFIX + "last_delivery_timestamp_seconds",
            "Unix time of the last delivery attempt that got envelopes acknowledged with a log index (0: none yet)",
            registry=registry,
        )
        self.reachable = Gauge(
            PREFIX + "collector_reachable",
            "1 if the last delivery attempt reached the collector and ended cleanly, else 0",
            registry=registry,
        )
        self.gpus = Gauge(
            PREFIX + "gpus", "GPUs in the last snapshot, by status: ok, lost, incomplete", ["status"], registry=registry
        )
        for status in DEVICE_STATUSES:
            self.gpus.labels(status)

    def snapshot(self, devices: Iterable[Mapping[str, Any]]) -> None:
        counts = dict.fromkeys(DEVICE_STATUSES, 0)
        for device in devices:
            status = device.get("status", "ok")
            counts[status if status in counts else "incomplete"] += 1
        for status, count in counts.items():
            self.gpus.labels(status).set(count)

    def delivered(self, delivered: int, error: str) -> None:
        """A delivery attempt that reached the collector; `error` set when its stream ended early."""
        self.reachable.set(0 if error else 1)
        if delivered:
            self.last_delivery.set(self._clock())

    def unreachable(self) -> None:
        self.reachable.set(0)
