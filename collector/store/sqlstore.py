"""The SQL both stores share, part 3: attestations, per-GPU state, nodes and the queries.

Concurrency: `store_attestation` is one transaction that first claims `(keyid, sequence)` with
`INSERT … ON CONFLICT DO NOTHING RETURNING id` (the loser gets ConflictError and writes nothing), then takes row
locks in one fixed order (the node row, then GPU rows sorted by UUID, then the log's counter row, taken last to
keep the section shared by every collector short) so concurrent writers never deadlock.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from gpucensus.collector.store import envelopes
from gpucensus.collector.store.base import (
    AttestationRecord,
    AttestationSummary,
    ChainHead,
    ConflictError,
    DeviceRecord,
    Entity,
    GpuState,
    NodeStatus,
    Site,
    is_stale,
)
from gpucensus.collector.store.compact_fields import row_facts
from gpucensus.collector.store.inventory import CurrentDevice, build_inventory
from gpucensus.collector.store.sqlbase import where_equal
from gpucensus.collector.store.sqlchain import SqlChain
from gpucensus.collector.store.sqlcompact import COMPACT, SqlCompact
from gpucensus.collector.store.sqlcompliance import SqlCompliance
from gpucensus.collector.store.sqlcurrent import SqlCurrent
from gpucensus.collector.store.sqlfindings import FINDING_COLUMNS
from gpucensus.collector.store.sqlhistory import SqlHistory
from gpucensus.collector.store.sqllocation import SqlLocation
from gpucensus.collector.store.sqllog import SqlLog

_DEVICE_COLUMNS = (
    "uuid, device_index, name, bus_id, status, error, model, basis, tpp, die_area_mm2, pd_milli, eccn, "
    "h100e_milli, datacenter"
)
_D_COLUMNS = ", ".join(f"d.{c.strip()}" for c in _DEVICE_COLUMNS.split(","))
_ATTESTATION_COLUMNS = (
    "id, keyid, sequence, digest, envelope, node_id, site, stated_at, received_at, previous, status, "
    "log_index, checkpoint, kind, inventory_digest, envelope_codec"
)


class SqlStore(SqlChain, SqlCurrent, SqlCompact, SqlHistory, SqlLog, SqlLocation, SqlCompliance):
    # --- attestations -----------------------------------------------------------------------------------
    def get_attestation(self, keyid: str, sequence: int) -> AttestationRecord | None:
        with self._tx(False) as cur:
            row = cur.execute(
                f"SELECT {_ATTESTATION_COLUMNS} FROM attestations WHERE keyid = ? AND sequence = ?",
                (keyid, sequence),
            ).fetchone()
            if row is None:
                return None
            devices = self._devices(cur, row[0])
            findings = cur.execute(
                f"SELECT {FINDING_COLUMNS} FROM findings WHERE attestation_id = ? ORDER BY id", (row[0],)
            ).fetchall()
        return AttestationRecord(
            id=row[0], keyid=row[1], sequence=row[2], digest=row[3], node_id=row[5],
            envelope=envelopes.decode(int(row[15]), bytes(row[4]), f"{keyid}#{sequence} {self.where}",
                                      row_facts(row[1], row[2], row[9], row[14], row[5], row[3])),
            site=row[6], timestamp=self._dt(row[7]), received_at=self._dt(row[8]), previous=row[9],
            status=row[10], log_index=row[11], checkpoint=bytes(row[12]), devices=tuple(devices),
            findings=tuple(self._finding(f) for f in findings), kind=row[13], inventory_digest=row[14],
        )  # fmt: skip

    def last_attestation(self, keyid: str) -> ChainHead | None:
        with self._tx(False) as cur:
            row = cur.execute(
                "SELECT sequence, digest FROM attestations WHERE keyid = ? ORDER BY sequence DESC LIMIT 1",
                (keyid,),
            ).fetchone()
        return ChainHead(int(row[0]), row[1]) if row else None

    def store_attestation(self, record: AttestationRecord) -> AttestationRecord:
        codec, stored = envelopes.encode(record.envelope)  # before the transaction: CPU, not lock time
        with self._tx(True) as cur:
            node_known, devices_from, country = self._repeated_devices(cur, record)
            row = cur.execute(
                "INSERT INTO attestations (keyid, sequence, digest, envelope, envelope_codec, devices_from, node_id, "
                "site, stated_at, received_at, previous, status, log_index, checkpoint) "
                f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {self._log_index_at_insert}, ?) "
                "ON CONFLICT (keyid, sequence) DO NOTHING RETURNING id",
                (record.keyid, record.sequence, record.digest, stored, codec, devices_from, record.node_id,
                 record.site, self._t(record.timestamp), self._t(record.received_at), record.previous, record.status,
                 b""),
            ).fetchone()  # fmt: skip
            if row is None:
                raise ConflictError(record.keyid, record.sequence)
            attestation_id = int(row[0])
            if record.devices and devices_from is None:
                cur.executemany(
                    f"INSERT INTO attestation_devices (attestation_id, pos, {_DEVICE_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(attestation_id, pos, d.uuid, d.index, d.name, d.bus_id, d.status, d.error, d.model,
                      d.basis, d.tpp, d.die_area_mm2, d.pd_milli, d.eccn, d.h100e_milli, d.datacenter)
                     for pos, d in enumerate(record.devices)],
                )  # fmt: skip
            latest = self._update_node(cur, record, attestation_id, node_known)
            self._store_current(cur, record, latest, country)
            self._insert_findings(cur, record.findings, attestation_id, record.received_at)
            log_index = self._sequence(cur, attestation_id)  # last: the counter row is held until the commit
        return replace(record, id=attestation_id, log_index=log_index)

    def _repeated_devices(self, cur: Any, r: AttestationRecord) -> tuple[bool, int | None, str | None]:
        """(whether the node has a row, the attestation whose device rows equal `r.devices` or None, the
        country of the site the record names: read in the same statement, None if the node has no row).

        Device rows are stored only when the node's device facts changed: compared with those of the node's
        latest attestation (one indexed read of about 8 rows), an unchanged report points at the attestation
        holding them (`devices_from`) instead of repeating them. Any equal set would do: rows never change."""
        rows = cur.execute(
            f"SELECT (SELECT country FROM sites WHERE id = ?), COALESCE(a.devices_from, a.id), {_D_COLUMNS} "
            "FROM nodes n LEFT JOIN attestations a ON a.id = n.last_attestation_id "
            "LEFT JOIN attestation_devices d ON d.attestation_id = COALESCE(a.devices_from, a.id) "
            "WHERE n.node_id = ? ORDER BY d.pos",
            (r.site, r.node_id),
        ).fetchall()
        if not rows:
            return False, None, None
        country, holder = rows[0][0] or "", rows[0][1]
        if holder is None or not r.devices:
            return True, None, country
        held = [_device(row[2:]) for row in rows if row[2] is not None]
        return True, (int(holder) if held == list(r.devices) else None), country

    def _update_node(self, cur: Any, r: AttestationRecord, attestation_id: int, known: bool) -> bool:
        """Move the node's watermarks; True if this attestation is now the node's latest (by statement time)."""
        # Lock order (nodes row, then gpus rows by uuid) is the same in every writer: no deadlock.
        if not known:
            cur.execute(
                "INSERT INTO nodes (node_id, site, keyid, enrolled_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (node_id) DO NOTHING",
                (r.node_id, r.site, r.keyid, self._t(r.received_at)),
            )
        # Only the node's bound key moves its state: an attestation verified just before a re-key or a move
        # committed is stored, but never re-binds the node's key or site (both change only by node events).
        # One statement: every right-hand side reads the row as it was before this UPDATE.
        received, stated = self._t(r.received_at), self._t(r.timestamp)
        row = cur.execute(
            "UPDATE nodes SET "
            "last_attested_at = CASE WHEN last_attested_at IS NULL OR last_attested_at < ? THEN ? "
            "ELSE last_attested_at END, "
            "interval_seconds = CASE WHEN last_attested_at IS NULL OR last_attested_at < ? "
            "THEN COALESCE(?, interval_seconds) ELSE interval_seconds END, "
            "last_attestation_id = CASE WHEN last_stated_at IS NULL OR last_stated_at <= ? THEN ? "
            "ELSE last_attestation_id END, "
            "last_sequence = CASE WHEN last_stated_at IS NULL OR last_stated_at <= ? THEN ? ELSE last_sequence END, "
            "last_stated_at = CASE WHEN last_stated_at IS NULL OR last_stated_at <= ? THEN ? ELSE last_stated_at END "
            "WHERE node_id = ? AND keyid = ? RETURNING last_attestation_id",
            (received, received, received, r.interval_seconds, stated, attestation_id, stated, r.sequence, stated,
             stated, r.node_id, r.keyid),
        ).fetchone()  # fmt: skip
        return row is not None and row[0] == attestation_id

    def _update_gpus(self, cur: Any, r: AttestationRecord, country: str | None) -> None:
        """Upsert the GPUs the record lists (one statement per 100: the same rows, sorted, so the same lock
        order in every writer); `country`: of the record's site, None to read it here."""
        if country is None:
            row = cur.execute("SELECT country FROM sites WHERE id = ?", (r.site,)).fetchone()
            country = row[0] if row else ""
        uuids = sorted({d.uuid for d in r.devices if d.uuid})
        received, stated = self._t(r.received_at), self._t(r.timestamp)
        for start in range(0, len(uuids), 100):
            chunk = uuids[start : start + 100]
            cur.execute(
                "INSERT INTO gpus (uuid, node_id, site, country, keyid, acquired, last_seen, last_stated_at) "
                f"VALUES {', '.join(['(?, ?, ?, ?, ?, ?, ?, ?)'] * len(chunk))} "
                "ON CONFLICT (uuid) DO UPDATE SET node_id = excluded.node_id, "
                "site = excluded.site, country = excluded.country, keyid = excluded.keyid, "
                "last_seen = excluded.last_seen, last_stated_at = excluded.last_stated_at, "
                "decommission_reason = CASE WHEN gpus.decommissioned_at IS NOT NULL AND "
                "excluded.last_stated_at <= gpus.decommissioned_at THEN gpus.decommission_reason ELSE '' END, "
                "decommissioned_at = CASE WHEN excluded.last_stated_at <= gpus.decommissioned_at "
                "THEN gpus.decommissioned_at ELSE NULL END "
                "WHERE gpus.last_stated_at <= excluded.last_stated_at",
                tuple(v for uuid in chunk for v in (uuid, r.node_id, r.site, country, r.keyid, received, received,
                                                    stated)),
            )  # fmt: skip

    def _devices(self, cur: Any, attestation_id: int) -> list[DeviceRecord]:
        """The devices of an attestation: its own rows, or those of the attestation it repeats."""
        rows = cur.execute(
            f"SELECT {_D_COLUMNS} FROM attestations a JOIN attestation_devices d "
            "ON d.attestation_id = COALESCE(a.devices_from, a.id) WHERE a.id = ? ORDER BY d.pos",
            (attestation_id,),
        ).fetchall()
        return [_device(row) for row in rows]

    # --- per-GPU state and nodes ------------------------------------------------------------------------
    def gpu_states(self, uuids: Iterable[str]) -> dict[str, GpuState]:
        wanted = sorted(set(uuids))
        out: dict[str, GpuState] = {}
        with self._tx(False) as cur:
            for chunk in _chunks(wanted, 200):
                rows = cur.execute(
                    "SELECT uuid, node_id, site, country, keyid, acquired, last_seen, decommissioned_at, "
                    f"decommission_reason FROM gpus WHERE uuid IN ({', '.join('?' * len(chunk))})",
                    tuple(chunk),
                ).fetchall()
                for r in rows:
                    out[r[0]] = GpuState(r[0], r[1], r[2], r[3], r[4], self._dt(r[5]), self._dt(r[6]),
                                         self._dt(r[7]), r[8])  # fmt: skip
        return out

    def node_devices(self, node_id: str) -> list[DeviceRecord]:
        with self._tx(False) as cur:
            row = cur.execute("SELECT last_attestation_id FROM nodes WHERE node_id = ?", (node_id,)).fetchone()
            return self._devices(cur, row[0]) if row and row[0] is not None else []

    def decommission_gpu(self, uuid: str, reason: str, now: datetime) -> bool:
        with self._tx(True) as cur:
            cur.execute(
                "UPDATE gpus SET decommissioned_at = ?, decommission_reason = ? WHERE uuid = ?",
                (self._t(now), reason, uuid),
            )
            if cur.rowcount != 1:
                return False
            self._refresh_listing(cur, [uuid])
            self._bump_registry(cur)
            return True

    def list_nodes(self, site: str | None = None, *, after: str = "", limit: int | None = None) -> list[NodeStatus]:
        return self._list_nodes(site, after=after, limit=limit)

    def _list_nodes(
        self, site: str | None = None, *, after: str = "", limit: int | None = None, where: str = "",
        where_params: tuple[Any, ...] = (),
    ) -> list[NodeStatus]:  # fmt: skip
        """`where`: a condition of the store's own (stale_nodes), never user text."""
        sql = (
            "SELECT n.node_id, n.site, n.keyid, n.enrolled_at, n.last_attested_at, n.last_sequence, "
            "n.interval_seconds, (SELECT COUNT(*) FROM attestations a JOIN attestation_devices d "
            "ON d.attestation_id = COALESCE(a.devices_from, a.id) WHERE a.id = n.last_attestation_id), k.revoked_at "
            "FROM nodes n LEFT JOIN node_keys k ON k.keyid = n.keyid"
        )
        sql, params = where_equal(sql, "n.site", site)
        if after:  # a page of one site's nodes: index nodes_site
            sql, params = sql + (" AND" if site is not None else " WHERE") + " n.node_id > ?", (*params, after)
        if where:
            joined = " AND" if site is not None or after else " WHERE"
            sql, params = f"{sql}{joined} ({where})", (*params, *where_params)
        sql += " ORDER BY n.site, n.node_id" + (f" LIMIT {int(limit)}" if limit is not None else "")
        with self._tx(False) as cur:
            rows = cur.execute(sql, params).fetchall()
        return [
            NodeStatus(r[0], r[1], r[2], self._dt(r[3]), self._dt(r[4]), r[5], r[6], int(r[7]), r[8] is not None)
            for r in rows
        ]

    def stale_nodes(self, now: datetime, intervals: int = 3, default_interval_seconds: int = 60) -> list[NodeStatus]:
        """`is_stale` in SQL: one condition per interval the nodes declare (a few), so that only the stale nodes
        are read into Python, not every node (100,000 parsed rows took 2 s of `report`)."""
        with self._tx(False) as cur:
            declared = [r[0] for r in cur.execute("SELECT DISTINCT interval_seconds FROM nodes").fetchall()]
        conditions: list[tuple[str, tuple[Any, ...]]] = []
        for interval in declared:
            same, params = (
                ("n.interval_seconds IS NULL", ()) if interval is None else ("n.interval_seconds = ?", (interval,))
            )
            seconds = intervals * (interval or default_interval_seconds)
            try:  # silent for longer than `intervals` of its interval: last heard of before `now` minus that
                since = self._t(now - timedelta(seconds=seconds))
            except OverflowError:  # beyond the calendar: never stale (a long interval) or always (a negative one)
                if seconds < 0:
                    conditions.append((same, params))
                continue
            conditions.append((f"{same} AND COALESCE(n.last_attested_at, n.enrolled_at) < ?", (*params, since)))
        out: list[NodeStatus] = []
        for start in range(0, len(conditions), 100):  # bounded statements, whatever the nodes declared
            chunk = conditions[start : start + 100]
            where = "k.revoked_at IS NULL AND (" + " OR ".join(f"({c})" for c, _ in chunk) + ")"
            out += self._list_nodes(where=where, where_params=tuple(p for _, ps in chunk for p in ps))
        out.sort(key=lambda n: (n.site, n.node_id))
        return [n for n in out if is_stale(n, now, intervals, default_interval_seconds)]  # the rule itself decides

    def node_counts(self) -> dict[str, int]:
        with self._tx(False) as cur:
            row = cur.execute(
                "SELECT COUNT(*), COUNT(k.revoked_at), "
                "SUM(CASE WHEN k.revoked_at IS NULL AND n.last_attested_at IS NULL THEN 1 ELSE 0 END) "
                "FROM nodes n LEFT JOIN node_keys k ON k.keyid = n.keyid"
            ).fetchone()
        total, revoked, never_seen = int(row[0]), int(row[1]), int(row[2] or 0)
        return {"enrolled": total - revoked, "revoked": revoked, "never_seen": never_seen}

    # --- queries ----------------------------------------------------------------------------------------
    def _current_devices(
        self, only: Iterable[str] | None = None, last_attested: bool = True, at: datetime | None = None
    ) -> tuple[list[Entity], list[Site], list[CurrentDevice], dict[str, datetime]]:
        """One consistent read: registry, the devices of each node's latest attestation, last attested (unless
        not wanted: it reads every node); with `only`, the sites named and their devices (every entity still).

        With `at`: each node's last attestation stated at or before `at` (one seek per node on the index
        `attestations_node_stated`), at the site it names, less the GPUs decommissioned by then (see
        `collector.history`); no last-attested times."""
        wanted = None if only is None else sorted(set(only))
        site = "n.site" if at is None else "a.site"
        in_sites = "" if wanted is None else f" AND {site} IN ({', '.join('?' * len(wanted)) or 'NULL'})"
        if at is None:
            sql = _DEVICES_SQL.format(site=site, when="a.received_at", attestation="n.last_attestation_id", at="")
            params: tuple[Any, ...] = ()
        else:
            sql = _DEVICES_SQL.format(site=site, when="a.stated_at", attestation=_AT_OR_BEFORE,
                                      at=" OR g.decommissioned_at > ?")  # fmt: skip
            params = (self._t(at), self._t(at))
        with self._tx(False) as cur:
            entities = [Entity(*r) for r in cur.execute("SELECT id, headquarters, auth FROM entities").fetchall()]
            sites = [Site(*r) for r in cur.execute("SELECT id, country, entity FROM sites").fetchall()]
            if wanted is not None:
                sites = [s for s in sites if s.id in set(wanted)]
            rows = cur.execute(sql + in_sites, (*params, *(wanted or ()))).fetchall()
            last = (
                cur.execute("SELECT node_id, last_attested_at FROM nodes WHERE last_attested_at IS NOT NULL").fetchall()
                if last_attested and at is None
                else []
            )
        acquired = functools.lru_cache(maxsize=4096)(self._acquired)  # a node's GPUs share their times: parse once
        devices = [
            CurrentDevice(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]), acquired(r[9], r[10], at))
            for r in rows
        ]
        return entities, sites, devices, {r[0]: self._dt(r[1]) for r in last}

    def _acquired(self, acquired: Any, when: Any, at: datetime | None) -> datetime | None:
        """The GPU's first sighting (else the attestation's reception); at an instant, the attestation's own time
        when earlier: one delivered late still dates what it saw."""
        first, fallback = self._dt(acquired), self._dt(when)
        if first is None or (at is not None and fallback is not None and fallback < first):
            return fallback
        return first

    def inventory_at(self, at: datetime, as_of: datetime | None = None) -> dict[str, Any]:
        entities, sites, devices, _ = self._current_devices(last_attested=False, at=at)
        return build_inventory(as_of or at, entities, sites, devices)

    def node_attestations(self, node_id: str, limit: int = 100) -> list[AttestationSummary]:
        """The node's newest `limit` full inventories, each with the run of compact statements that follows it in
        its key's chain (one statement: `_NODE_HISTORY_SQL`), as lines newest first, cut to `limit`."""
        with self._tx(False) as cur:
            rows = cur.execute(_NODE_HISTORY_SQL, (node_id, limit)).fetchall()
        lines = []
        for r in rows:
            full = self._summary(node_id, r[1], r[2:8], r[0], int(r[8]))
            lines.append(((full.timestamp, int(r[0])), full))
            if r[9]:  # the run after it: its newest statement (r[10:17]) and its oldest (r[17:19])
                run = replace(self._summary(node_id, r[1], r[10:16], r[16], int(r[8])), kind=COMPACT,
                              statements=int(r[9]), first_sequence=int(r[17]), first_timestamp=self._dt(r[18]),
                              unchanged_since=int(r[2]))  # fmt: skip
                lines.append(((run.timestamp, int(r[16])), run))
        lines.sort(key=lambda line: line[0], reverse=True)
        return [summary for _, summary in lines[:limit]]

    def _summary(self, node_id: str, keyid: str, row: Any, attestation_id: int, gpus: int) -> AttestationSummary:
        """From (sequence, digest, site, stated_at, received_at, log_index) of an attestation row."""
        sequence, digest, site, stated, received, log_index = row
        index = int(log_index if log_index is not None else attestation_id)
        return AttestationSummary(keyid, int(sequence), digest, node_id, site, self._dt(stated),  # type: ignore[arg-type]
                                  self._dt(received), index, gpus)  # type: ignore[arg-type]  # fmt: skip

    def inventory(self, as_of: datetime, sites: Iterable[str] | None = None) -> dict[str, Any]:
        return self.grouped_inventory(as_of, sites)  # kept at ingest: collector.store.sqlgroups

    def location_inventory(self, as_of: datetime, unknown_nodes: frozenset[str], suffix: str) -> dict[str, Any]:
        return self.grouped_inventory(as_of, None, unknown_nodes, suffix)

    def scanned_inventory(self, as_of: datetime, sites: Iterable[str] | None = None) -> dict[str, Any]:
        """`inventory` built from every current device (what `site_groups` replaced; the tests' oracle)."""
        entities, registered, devices, _ = self._current_devices(sites, last_attested=False)
        return build_inventory(as_of, entities, registered, devices)


# A node's history (`node_attestations`): its newest full inventories (index attestations_full_node_stated), each
# with the run of compact statements after it in its key's chain, up to the key's next full inventory in the page
# (the page holds the newest ones, so the next full inventory of a key is in it too, or there is none). Every
# statement between two full inventories of a key is a compact one naming the earlier (the collector stores a
# compact statement only when it names the key's latest full inventory), so a run is counted and bounded on the
# (keyid, sequence) index alone, without reading its rows; its first and last rows are read by key.
_RUN = "FROM attestations c WHERE c.keyid = p.keyid AND c.sequence > p.sequence AND c.sequence < p.next_sequence"
_NODE_HISTORY_SQL = (
    "SELECT p.id, p.keyid, p.sequence, p.digest, p.site, p.stated_at, p.received_at, p.log_index, "
    "(SELECT COUNT(*) FROM attestation_devices d WHERE d.attestation_id = COALESCE(p.devices_from, p.id)), "
    f"(SELECT COUNT(*) {_RUN}), "
    "l.sequence, l.digest, l.site, l.stated_at, l.received_at, l.log_index, l.id, f.sequence, f.stated_at "
    "FROM (SELECT a.*, LEAD(a.sequence, 1, 9223372036854775807) OVER (PARTITION BY a.keyid ORDER BY a.sequence) "
    "AS next_sequence FROM (SELECT b.id, b.keyid, b.sequence, b.digest, b.site, b.stated_at, b.received_at, "
    "b.log_index, b.devices_from FROM attestations b WHERE b.node_id = ? AND b.kind = 'full' "
    "ORDER BY b.stated_at DESC, b.id DESC LIMIT ?) a) p "
    f"LEFT JOIN attestations l ON l.keyid = p.keyid AND l.sequence = (SELECT MAX(c.sequence) {_RUN}) "
    f"LEFT JOIN attestations f ON f.keyid = p.keyid AND f.sequence = (SELECT MIN(c.sequence) {_RUN})"
)

# the devices of one attestation per node: {attestation} names it, {site} the node's site (now: the node's; at
# an instant: the attestation's), {when} the fallback acquisition time, {at} widens the decommission filter
_DEVICES_SQL = (
    "SELECT {site}, n.node_id, d.uuid, d.model, d.basis, d.tpp, d.die_area_mm2, d.eccn, d.datacenter, "
    "g.acquired, {when} "
    "FROM nodes n JOIN attestations a ON a.id = {attestation} "
    "JOIN attestation_devices d ON d.attestation_id = COALESCE(a.devices_from, a.id) "
    "LEFT JOIN gpus g ON g.uuid = d.uuid AND d.uuid <> '' "
    "WHERE (g.decommissioned_at IS NULL{at})"
)
_AT_OR_BEFORE = (
    "(SELECT b.id FROM attestations b WHERE b.node_id = n.node_id AND b.kind = 'full' AND b.stated_at <= ? "
    "ORDER BY b.stated_at DESC, b.id DESC LIMIT 1)"
)


def _device(row: Any) -> DeviceRecord:
    return DeviceRecord(*row[:13], datacenter=bool(row[13]))


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
