"""What the store keeps of location evidence, and the store interface for it (implemented by both SQL stores in
`collector.store.sqllocation`, checked by one contract test)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

# a node's location status, best to worst as a report sorts them
IN_COUNTRY = "in-country"  # the measured region lies wholly in the site's country
UNPROVEN = "unproven"  # consistent with the site, but the region reaches beyond its country
IMPLAUSIBLE = "implausible"  # the site lies outside some landmark's bound
STALE = "stale"  # no valid measurement for longer than [location] stale_after_seconds
UNMEASURED = "unmeasured"  # landmarks exist but no valid measurement arrived yet
UNLOCATED = "unlocated"  # the site has no coordinates


@dataclass(frozen=True)
class SiteLocation:
    site: str
    latitude: float
    longitude: float


@dataclass(frozen=True)
class Landmark:
    name: str
    keyid: str
    public_key_pem: str
    latitude: float
    longitude: float
    address: str
    added_at: datetime


@dataclass(frozen=True)
class StoredMeasurement:
    digest: str
    node_id: str
    keyid: str  # the node key it measured
    landmark: str  # the landmark's name
    min_rtt_us: int
    measured_at: datetime
    received_at: datetime
    measurement: bytes  # the envelope exactly as the landmark signed it


@dataclass(frozen=True)
class NodeLocation:
    node_id: str
    site: str
    status: str
    message: str
    checked_at: datetime


class LocationStore(Protocol):
    def set_site_location(self, location: SiteLocation, now: datetime) -> None:
        """Raises RecordNotFoundError for an unknown site."""

    def site_locations(self) -> dict[str, SiteLocation]: ...
    def add_landmark(self, landmark: Landmark) -> None:
        """Raises RecordExistsError when the name or the key is registered already."""

    def list_landmarks(self) -> list[Landmark]: ...
    def remove_landmark(self, name: str) -> None:
        """Raises RecordNotFoundError for an unknown name."""

    def measurements_seen(self, digests: Iterable[str]) -> set[str]: ...
    def list_measurements(self, node_id: str) -> list[StoredMeasurement]:
        """The node's stored measurements, oldest first."""

    def last_measured_at(self, node_id: str) -> datetime | None: ...
    def record_location(self, measurements: Iterable[StoredMeasurement], verdict: NodeLocation | None) -> None:
        """Store the measurements (a digest already stored is skipped) and the node's verdict, in one transaction."""

    def node_locations(self) -> dict[str, NodeLocation]: ...
    def location_inventory(self, as_of: datetime, unknown_nodes: frozenset[str], suffix: str) -> dict[str, Any]:
        """`inventory(as_of)` with the devices of `unknown_nodes` in a site of their own (id + `suffix`)."""
