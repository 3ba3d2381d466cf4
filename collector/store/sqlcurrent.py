"""The SQL both stores share, part 2c: current state for the read paths (site status, country totals).

Why: summing every current device of every node (a join over 800,000 rows at 100,000 nodes) took seconds and
held the store's lock for all of it, so acknowledgements stalled behind a dashboard. `node_totals` (migration
`current_state`) keeps, per node and ECCN class, the totals of the node's latest attestation without its
decommissioned GPUs, and `site_totals` their sum per site; country totals and one site's totals read a row per
site, one site's node count its nodes through the index `nodes_site`.

The rows are rewritten inside the transaction that changes what they summarise, so they are never out of step:
when an attestation becomes its node's latest (`_store_current`, the one call from `store_attestation`), and
when a GPU's decommissioned state changes (a decommission, or a later report of a decommissioned GPU, which
clears it): then every node whose latest attestation lists that GPU is recomputed. Finding those nodes reads
each node's current devices; that is rare (an operator's decommission) and is the price of not indexing every
stored device row by UUID.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from gpucensus.collector.store.base import AttestationRecord, CountryTotals, EccnTotals, SiteStatus
from gpucensus.collector.store.sqlgroups import Group, SqlGroups, device_group

_CHUNK = 200  # parameters per IN (...) list: well under SQLite's and PostgreSQL's limits


def node_totals_rows(devices: Iterable[tuple[str, int | None, str]], decommissioned: set[str]) -> list[list[Any]]:
    """`[eccn, gpus, tpp, unaccounted]` per ECCN bucket of one node's current devices `(uuid, tpp, eccn)`.

    A device whose TPP is not established counts in gpus and unaccounted (bucket ''), never as zero TPP; a
    decommissioned GPU does not count. The same rules as the full aggregation in the `current_state` migration."""
    buckets: dict[str, list[Any]] = {}
    for uuid, tpp, eccn in devices:
        if uuid and uuid in decommissioned:
            continue
        key = "" if tpp is None else eccn
        bucket = buckets.setdefault(key, [key, 0, 0, 0])
        bucket[1] += 1
        if tpp is None:
            bucket[3] += 1
        else:
            bucket[2] += tpp
    return [buckets[k] for k in sorted(buckets)]


NodeDevices = tuple[list[tuple[str, int | None, str]], set[str]]  # a node's (uuid, tpp, eccn), its decommissioned


def _add_deltas(
    deltas: dict[tuple[str, str], tuple[int, ...]],
    site: str,
    add: dict[str, tuple[int, ...]],
    remove: dict[str, tuple[int, ...]],
) -> None:
    """Accumulate `add - remove` per ECCN class into `deltas[(site, class)]`."""
    zero = (0, 0, 0)
    for eccn in add.keys() | remove.keys():
        change = tuple(a - r for a, r in zip(add.get(eccn, zero), remove.get(eccn, zero), strict=True))
        previous = deltas.get((site, eccn), zero)
        deltas[(site, eccn)] = tuple(p + c for p, c in zip(previous, change, strict=True))


class SqlCurrent(SqlGroups):
    """Current-state writes and the reads summed from them (see the module docstring); the inventory's
    device groups (`collector.store.sqlgroups`) follow the same writes."""

    def _update_gpus(self, cur: Any, record: AttestationRecord, country: str | None) -> None:
        raise NotImplementedError  # sqlstore

    # --- writes (inside the caller's transaction) -------------------------------------------------------
    def _store_current(self, cur: Any, record: AttestationRecord, latest: bool, country: str | None) -> None:
        """Per-GPU state, then the node's totals if this attestation is now its latest (`latest`: the node row
        was updated first and named it), and the totals of other nodes listing a GPU whose decommission this
        report cleared. `country`: of the record's site if the caller read it (None: read here)."""
        uuids = sorted({d.uuid for d in record.devices if d.uuid})
        before = self._decommissioned(cur, uuids)
        self._update_gpus(cur, record, country)
        after = self._decommissioned(cur, before) if before else set()
        nodes: dict[str, NodeDevices] = {}
        groups: dict[str, Counter[Group]] = {}
        if latest:
            nodes[record.node_id] = ([(d.uuid, d.tpp, d.eccn) for d in record.devices], after)
            groups[record.node_id] = self._record_groups(cur, record, after)
        if before != after:
            listed, listed_groups = self._listing(cur, before - after, skip=nodes)
            nodes.update(listed)
            groups.update(listed_groups)
        self._write_totals(cur, nodes)
        self._write_groups(cur, groups)  # after every totals row: one lock order in every writer

    def _refresh_listing(self, cur: Any, uuids: Iterable[str]) -> None:
        """Recompute the totals and groups of every node whose latest attestation lists one of `uuids`."""
        nodes, groups = self._listing(cur, uuids)
        self._write_totals(cur, nodes)
        self._write_groups(cur, groups)

    def _listing(
        self, cur: Any, uuids: Iterable[str], skip: Iterable[str] = ()
    ) -> tuple[dict[str, NodeDevices], dict[str, Counter[Group]]]:
        """The current devices and decommissioned GPUs, and the device groups, of every node whose latest
        attestation lists one of `uuids` (reads only)."""
        nodes: set[str] = set()
        for chunk in _chunks(sorted(set(uuids))):
            nodes.update(
                r[0]
                for r in cur.execute(
                    "SELECT DISTINCT n.node_id FROM nodes n JOIN attestations a ON a.id = n.last_attestation_id "
                    "JOIN attestation_devices d ON d.attestation_id = COALESCE(a.devices_from, a.id) "
                    f"WHERE d.uuid IN ({_marks(chunk)})",
                    tuple(chunk),
                ).fetchall()
            )
        found: dict[str, NodeDevices] = {}
        grouped: dict[str, Counter[Group]] = {}
        for node_id in sorted(nodes - set(skip)):
            rows = cur.execute(
                "SELECT d.uuid, d.tpp, d.eccn, g.decommissioned_at, d.basis, d.model, d.die_area_mm2, "
                "d.datacenter, g.acquired, a.received_at FROM nodes n "
                "JOIN attestations a ON a.id = n.last_attestation_id "
                "JOIN attestation_devices d ON d.attestation_id = COALESCE(a.devices_from, a.id) "
                "LEFT JOIN gpus g ON g.uuid = d.uuid AND d.uuid <> '' WHERE n.node_id = ?",
                (node_id,),
            ).fetchall()
            found[node_id] = ([(r[0], r[1], r[2]) for r in rows], {r[0] for r in rows if r[3] is not None})
            grouped[node_id] = Counter(
                device_group(r[4], r[5], r[1], r[6], bool(r[7]), self._dt(r[8]) or self._dt(r[9]))
                for r in rows
                if r[3] is None
            )
        return found, grouped

    def _record_groups(self, cur: Any, record: AttestationRecord, decommissioned: set[str]) -> Counter[Group]:
        """The groups of the record's devices: acquired at the GPU's first sighting (its `gpus` row, just
        written), else at the record's reception (a device without UUID)."""
        acquired: dict[str, Any] = {}
        for chunk in _chunks(sorted({d.uuid for d in record.devices if d.uuid})):
            rows = cur.execute(f"SELECT uuid, acquired FROM gpus WHERE uuid IN ({_marks(chunk)})", tuple(chunk))
            acquired.update(rows.fetchall())
        return Counter(
            device_group(d.basis, d.model, d.tpp, d.die_area_mm2, d.datacenter,
                         self._dt(acquired.get(d.uuid)) or record.received_at)
            for d in record.devices
            if not (d.uuid and d.uuid in decommissioned)
        )  # fmt: skip

    def _write_totals(self, cur: Any, nodes: dict[str, NodeDevices]) -> None:
        """Replace each node's totals and move its site's by the difference; nothing is written for a node whose
        totals are unchanged (the steady state: one indexed read per report).

        Lock order, the same in every writer (ingest, decommission, move): `node_totals` rows by node id, then
        every `site_totals` row the transaction changes in one batch by (site, class). Writing each node's site
        rows right after its own (the report's node first, then the nodes listing a GPU whose decommission it
        cleared) let two collectors take the same rows in opposite orders: a deadlock, answered UNAVAILABLE."""
        deltas: dict[tuple[str, str], tuple[int, ...]] = {}
        for node_id in sorted(nodes):
            devices, decommissioned = nodes[node_id]
            new = {r[0]: tuple(r[1:]) for r in node_totals_rows(devices, decommissioned)}
            old = self._node_totals(cur, node_id, "")
            if new == old:
                continue
            if self._for_update:  # PostgreSQL: read again under the rows' lock, so no other writer's delta is lost
                old = self._node_totals(cur, node_id, self._for_update)
                if new == old:
                    continue
            site = cur.execute("SELECT site FROM nodes WHERE node_id = ?", (node_id,)).fetchone()[0]
            _add_deltas(deltas, site, new, old)
            cur.execute("DELETE FROM node_totals WHERE node_id = ?", (node_id,))
            if new:
                cur.executemany(
                    "INSERT INTO node_totals (node_id, eccn, gpus, tpp, unaccounted) VALUES (?, ?, ?, ?, ?)",
                    [(node_id, eccn, *values) for eccn, values in sorted(new.items())],
                )
        self._add_site_totals(cur, deltas)

    def _node_totals(self, cur: Any, node_id: str, lock: str) -> dict[str, tuple[int, ...]]:
        rows = cur.execute(f"SELECT eccn, gpus, tpp, unaccounted FROM node_totals WHERE node_id = ?{lock}", (node_id,))
        return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows.fetchall()}

    def _move_totals(self, cur: Any, node_id: str, old_site: str, new_site: str) -> None:
        """A node moved: its totals leave the old site's and join the new site's (same transaction). The node's
        totals are read under their rows' lock (PostgreSQL), as `_write_totals` reads them: a concurrent refresh
        of them waits for the move and then reads the new site."""
        totals = self._node_totals(cur, node_id, self._for_update)
        deltas: dict[tuple[str, str], tuple[int, ...]] = {}
        _add_deltas(deltas, old_site, {}, totals)
        _add_deltas(deltas, new_site, totals, {})
        self._add_site_totals(cur, deltas)
        self._move_groups(cur, node_id, old_site, new_site)

    def _add_site_totals(self, cur: Any, deltas: dict[tuple[str, str], tuple[int, ...]]) -> None:
        """Add each (site, class) delta to `site_totals`, in (site, class) order (the lock order)."""
        rows = [(site, eccn, *change) for (site, eccn), change in sorted(deltas.items()) if any(change)]
        if rows:
            cur.executemany(
                "INSERT INTO site_totals (site, eccn, gpus, tpp, unaccounted) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (site, eccn) DO UPDATE SET gpus = site_totals.gpus + excluded.gpus, "
                "tpp = site_totals.tpp + excluded.tpp, unaccounted = site_totals.unaccounted + excluded.unaccounted",
                rows,
            )

    def _decommissioned(self, cur: Any, uuids: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for chunk in _chunks(sorted(uuids)):
            rows = cur.execute(
                f"SELECT uuid FROM gpus WHERE uuid IN ({_marks(chunk)}) AND decommissioned_at IS NOT NULL",
                tuple(chunk),
            ).fetchall()
            out.update(r[0] for r in rows)
        return out

    # --- reads ------------------------------------------------------------------------------------------
    def site_status(self, sites: Sequence[str] | None = None) -> list[SiteStatus]:
        """Every site (sorted by id), or only `sites`; one transaction, one row per node summed at most."""
        wanted = None if sites is None else sorted(set(sites))
        found: list[Any] = []
        nodes: dict[str, tuple[int, datetime | None]] = {}
        totals: dict[str, tuple[int, int, int]] = {}
        with self._tx(False) as cur:
            for where, params in _site_filters(wanted):
                found += cur.execute(f"SELECT id, country, entity FROM sites s{where('s.id')}", params).fetchall()
                for r in cur.execute(
                    f"SELECT site, COUNT(*), MAX(last_attested_at) FROM nodes n{where('n.site')} GROUP BY site",
                    params,
                ).fetchall():
                    nodes[r[0]] = (int(r[1]), self._dt(r[2]))
                for r in cur.execute(
                    f"SELECT site, SUM(gpus), SUM(tpp), SUM(unaccounted) FROM site_totals t{where('t.site')} "
                    "GROUP BY site",
                    params,
                ).fetchall():
                    totals[r[0]] = (int(r[1]), int(r[2]), int(r[3]))
        out = []
        for site_id, country, entity in sorted(found):
            count, last = nodes.get(site_id, (0, None))
            gpus, tpp, unaccounted = totals.get(site_id, (0, 0, 0))
            out.append(SiteStatus(site_id, country, entity, count, gpus, tpp, unaccounted, last))
        return out

    def country_totals(self) -> list[CountryTotals]:
        with self._tx(False) as cur:
            rows = cur.execute(
                "SELECT s.country, t.eccn, SUM(t.gpus), SUM(t.tpp), SUM(t.unaccounted) FROM site_totals t "
                "JOIN sites s ON s.id = t.site GROUP BY s.country, t.eccn HAVING SUM(t.gpus) > 0"
            ).fetchall()
        sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        by_eccn: dict[str, dict[str, EccnTotals]] = defaultdict(dict)
        for country, eccn, gpus, tpp, unaccounted in rows:
            total = sums[country]
            total[0] += int(gpus)
            total[1] += int(tpp)
            total[2] += int(unaccounted)
            if eccn:  # bucket '' is no class and TPP not established
                by_eccn[country][eccn] = EccnTotals(int(gpus) - int(unaccounted), int(tpp))
        return [CountryTotals(c, *sums[c], by_eccn={k: v for k, v in sorted(by_eccn[c].items())}) for c in sorted(sums)]


def _site_filters(wanted: list[str] | None) -> Iterable[tuple[Any, tuple[str, ...]]]:
    """(where(column) -> SQL suffix, parameters) per chunk of wanted sites; one unfiltered pass for all."""
    if wanted is None:
        yield (lambda column: ""), ()
        return
    for chunk in _chunks(wanted):
        yield (lambda column, chunk=chunk: f" WHERE {column} IN ({_marks(chunk)})"), tuple(chunk)


def _marks(chunk: Sequence[str]) -> str:
    return ", ".join("?" * len(chunk))


def _chunks(items: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield list(items[start : start + _CHUNK])
