"""The SQL both stores share for location evidence: site coordinates, landmarks, measurements, verdicts.

Part of the SQL store chain (see `sqlbase`); the interface is `collector.location.records.LocationStore`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from gpucensus.collector.location.records import Landmark, NodeLocation, SiteLocation, StoredMeasurement
from gpucensus.collector.store.base import RecordExistsError, RecordNotFoundError, Site
from gpucensus.collector.store.inventory import build_inventory
from gpucensus.collector.store.sqlbase import SqlBase

_LANDMARK_COLUMNS = "name, keyid, public_key_pem, latitude, longitude, address, added_at"


class SqlLocation(SqlBase):
    def set_site_location(self, location: SiteLocation, now: datetime) -> None:
        with self._tx(True) as cur:
            if not cur.execute("SELECT 1 FROM sites WHERE id = ?", (location.site,)).fetchone():
                raise RecordNotFoundError(
                    f"site {location.site!r} does not exist", hint="add it first: gpucensus-collector site add"
                )
            cur.execute(
                "INSERT INTO site_locations (site, latitude, longitude, set_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (site) DO UPDATE SET latitude = excluded.latitude, longitude = excluded.longitude, "
                "set_at = excluded.set_at",
                (location.site, location.latitude, location.longitude, self._t(now)),
            )
            self._bump_registry(cur)  # a pack may count an implausibly located site's GPUs as "unknown"

    def site_locations(self) -> dict[str, SiteLocation]:
        with self._tx(False) as cur:
            rows = cur.execute("SELECT site, latitude, longitude FROM site_locations").fetchall()
        return {r[0]: SiteLocation(r[0], float(r[1]), float(r[2])) for r in rows}

    def add_landmark(self, landmark: Landmark) -> None:
        with self._tx(True) as cur:
            taken = cur.execute(
                "SELECT name FROM landmarks WHERE name = ? OR keyid = ?", (landmark.name, landmark.keyid)
            ).fetchone()
            if taken:
                raise RecordExistsError(
                    f"landmark {taken[0]!r} already has that name or key",
                    hint="remove it first: gpucensus-collector landmark remove NAME",
                )
            cur.execute(
                f"INSERT INTO landmarks ({_LANDMARK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (landmark.name, landmark.keyid, landmark.public_key_pem, landmark.latitude, landmark.longitude,
                 landmark.address, self._t(landmark.added_at)),
            )  # fmt: skip

    def list_landmarks(self) -> list[Landmark]:
        with self._tx(False) as cur:
            rows = cur.execute(f"SELECT {_LANDMARK_COLUMNS} FROM landmarks ORDER BY name").fetchall()
        return [Landmark(r[0], r[1], r[2], float(r[3]), float(r[4]), r[5], self._dt(r[6])) for r in rows]  # type: ignore[arg-type]

    def remove_landmark(self, name: str) -> None:
        with self._tx(True) as cur:
            cur.execute("DELETE FROM landmarks WHERE name = ?", (name,))
            if cur.rowcount != 1:
                raise RecordNotFoundError(f"no landmark {name!r}", hint="see: gpucensus-collector landmark list")

    def measurements_seen(self, digests: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(digests))
        if not wanted:
            return set()
        marks = ", ".join("?" for _ in wanted)
        with self._tx(False) as cur:
            rows = cur.execute(f"SELECT digest FROM location_measurements WHERE digest IN ({marks})", wanted)
            return {r[0] for r in rows.fetchall()}

    def list_measurements(self, node_id: str) -> list[StoredMeasurement]:
        columns = "digest, node_id, keyid, landmark, min_rtt_us, measured_at, received_at, measurement"
        with self._tx(False) as cur:
            rows = cur.execute(
                f"SELECT {columns} FROM location_measurements WHERE node_id = ? ORDER BY measured_at, landmark",
                (node_id,),
            ).fetchall()
        return [StoredMeasurement(r[0], r[1], r[2], r[3], r[4], self._dt(r[5]), self._dt(r[6]), bytes(r[7]))  # type: ignore[arg-type]
                for r in rows]  # fmt: skip

    def last_measured_at(self, node_id: str) -> datetime | None:
        with self._tx(False) as cur:
            row = cur.execute(
                "SELECT MAX(measured_at) FROM location_measurements WHERE node_id = ?", (node_id,)
            ).fetchone()
        return self._dt(row[0]) if row and row[0] is not None else None

    def record_location(self, measurements: Iterable[StoredMeasurement], verdict: NodeLocation | None) -> None:
        with self._tx(True) as cur:
            for m in measurements:
                cur.execute(
                    "INSERT INTO location_measurements (digest, node_id, keyid, landmark, min_rtt_us, measured_at, "
                    "received_at, measurement) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING",
                    (m.digest, m.node_id, m.keyid, m.landmark, m.min_rtt_us, self._t(m.measured_at),
                     self._t(m.received_at), m.measurement),
                )  # fmt: skip
            if verdict is not None:
                cur.execute(
                    "INSERT INTO node_locations (node_id, site, status, message, checked_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (node_id) DO UPDATE SET site = excluded.site, status = excluded.status, "
                    "message = excluded.message, checked_at = excluded.checked_at",
                    (verdict.node_id, verdict.site, verdict.status, verdict.message, self._t(verdict.checked_at)),
                )

    def scanned_location_inventory(self, as_of: datetime, unknown_nodes: frozenset[str], suffix: str) -> dict[str, Any]:
        """`inventory(as_of)`, with the devices of `unknown_nodes` in a site of their own: their site's id + `suffix`
        (same country and entity; the policy option then places it in "unknown"). Built from every current
        device: the store's `location_inventory` reads the groups kept at ingest (`collector.store.sqlgroups`);
        this is the tests' oracle."""
        entities, sites, devices, _ = self._current_devices()  # type: ignore[attr-defined]  # SqlStore's
        moved = {d.site for d in devices if d.node_id in unknown_nodes}
        split = [Site(s.id + suffix, s.country, s.entity) for s in sites if s.id in moved]
        devices = [replace(d, site=d.site + suffix) if d.node_id in unknown_nodes else d for d in devices]
        return build_inventory(as_of, entities, [*sites, *split], devices)

    def node_locations(self) -> dict[str, NodeLocation]:
        with self._tx(False) as cur:
            rows = cur.execute("SELECT node_id, site, status, message, checked_at FROM node_locations").fetchall()
        return {r[0]: NodeLocation(r[0], r[1], r[2], r[3], self._dt(r[4])) for r in rows}  # type: ignore[arg-type]
