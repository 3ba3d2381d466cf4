"""The ingest pipeline's location step: what a statement's `location_evidence` says about its node, and whether
the node went too long without any.

`check` reads (landmarks, the digests already stored, the node's last measurement) and judges with the pure
modules; `record` stores the accepted measurements and the node's verdict after the attestation itself was
stored (the measurements are also in the stored envelope, so a crash between the two loses nothing that cannot
be read again). Nothing happens while no landmark is registered. The landmark list is read at most every
`LANDMARK_CACHE_SECONDS`, so ingest does not query it for every envelope.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gpucensus.collector.ingest import facts
from gpucensus.collector.ingest.model import WARNING, Finding
from gpucensus.collector.location import evidence
from gpucensus.collector.location.assess import STALE_RULE, Settings, assess
from gpucensus.collector.location.records import (
    STALE,
    UNLOCATED,
    UNMEASURED,
    Landmark,
    LocationStore,
    NodeLocation,
    StoredMeasurement,
)
from gpucensus.collector.store.base import Site
from gpucensus.common.dsse import envelope_digest

LANDMARK_CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class LocationConfig:
    settings: Settings = field(default_factory=Settings)
    max_age: timedelta = timedelta(hours=2)  # a measurement older than this when it arrives is rejected
    stale_after: timedelta = timedelta(hours=3)  # no valid measurement for this long: location.stale
    max_future_skew: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class Outcome:
    findings: tuple[Finding, ...] = ()
    measurements: tuple[StoredMeasurement, ...] = ()
    verdict: NodeLocation | None = None


def location_config(section: Any, max_future_skew: timedelta) -> LocationConfig:
    """From the collector's `[location]` section (`collector.config.LocationSection`)."""
    settings = Settings(section.fibre_speed_km_per_s, section.processing_allowance_us, section.border_margin_km)
    return LocationConfig(
        settings,
        max_age=timedelta(seconds=section.max_age_seconds),
        stale_after=timedelta(seconds=section.stale_after_seconds),
        max_future_skew=max_future_skew,
    )


class LocationCheck:
    def __init__(self, store: LocationStore, config: LocationConfig | None = None) -> None:
        self._store = store
        self.config = config or LocationConfig()
        self._landmarks: tuple[float, dict[str, Landmark]] = (-LANDMARK_CACHE_SECONDS, {})
        self._stale: set[str] = set()  # nodes already reported stale (one finding per lapse, not per envelope)
        # node -> its last measurement's time (None: never), as this collector last read or stored it: the store
        # is asked again only when it looks stale (another collector sharing the database may have stored one)
        self._last: dict[str, datetime | None] = {}
        self._guard = threading.Lock()

    def landmarks(self) -> dict[str, Landmark]:
        with self._guard:
            read_at, known = self._landmarks
            if time.monotonic() - read_at >= LANDMARK_CACHE_SECONDS:
                known = {lm.keyid: lm for lm in self._store.list_landmarks()}
                self._landmarks = (time.monotonic(), known)
            return known

    def check(
        self,
        node_id: str,
        keyid: str,
        site: Site | None,
        enrolled_at: datetime,
        predicate: Mapping[str, Any],
        now: datetime,
    ) -> Outcome:
        raw = facts.location_evidence(predicate)  # bounded first: MalformedFactError before anything is read
        landmarks = self.landmarks()
        if not landmarks:
            return Outcome()
        site_id = site.id if site else ""
        if not raw:
            return self._staleness(node_id, site_id, enrolled_at, now)
        seen = self._store.measurements_seen(envelope_digest(text.encode()) for text in raw)
        cfg = self.config
        accepted, rejected = evidence.check_evidence(raw, landmarks, keyid, now, cfg.max_age, cfg.max_future_skew, seen)
        found = evidence.findings(node_id, rejected)
        stored = tuple(
            StoredMeasurement(a.measurement.digest, node_id, keyid, a.landmark.name, a.measurement.min_rtt_us,
                              a.measurement.time, now, a.envelope)
            for a in accepted
        )  # fmt: skip
        if not accepted:
            return Outcome(found, stored, None)
        self._stale.discard(node_id)
        where = self._store.site_locations().get(site_id) if site else None
        if site is None or where is None:
            message = f"node {node_id}: site {site_id or '?'} has no coordinates (gpucensus-collector site locate)"
            return Outcome(found, stored, NodeLocation(node_id, site_id, UNLOCATED, message, now))
        verdict = assess(node_id, site.id, site.country, where, accepted, cfg.settings)
        return Outcome(
            (*found, *verdict.findings), stored, NodeLocation(node_id, site_id, verdict.status, verdict.message, now)
        )

    def _staleness(self, node_id: str, site_id: str, enrolled_at: datetime, now: datetime) -> Outcome:
        limit = self.config.stale_after
        if node_id in self._stale:
            return Outcome()
        last = self._last.get(node_id)
        if now - (last or enrolled_at) > limit:  # looks stale (or not read yet): ask the store
            last = self._last[node_id] = self._store.last_measured_at(node_id)
        since = last or enrolled_at
        if now - since <= limit:
            return Outcome()
        self._stale.add(node_id)
        seconds = int(limit.total_seconds())
        what = f"since {since:%Y-%m-%dT%H:%M:%SZ}" if last else f"since its enrolment at {since:%Y-%m-%dT%H:%M:%SZ}"
        message = f"node {node_id}: no valid location measurement {what}, more than {seconds} s"
        finding = Finding(STALE_RULE, WARNING, f"node:{node_id}", message)
        return Outcome((finding,), (), NodeLocation(node_id, site_id, STALE if last else UNMEASURED, message, now))

    def record(self, outcome: Outcome) -> None:
        if outcome.measurements or outcome.verdict is not None:
            self._store.record_location(outcome.measurements, outcome.verdict)
        for m in outcome.measurements:
            known = self._last.get(m.node_id)
            self._last[m.node_id] = m.measured_at if known is None else max(known, m.measured_at)
