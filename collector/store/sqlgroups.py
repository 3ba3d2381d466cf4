"""The SQL both stores share, part 2d: the live inventory's device groups, kept at ingest for `report`,
`evaluate --live`, the dashboard and continuous compliance.

Why: the live inventory groups every current device per site by model (or TPP, die area and data-centre flag)
and acquisition date (`collector.store.inventory`); reading every device to build it took 12 s and 820 MiB at
100,000 nodes. `node_groups` (migration `inventory_groups`) holds, per node, the group counts of its latest
attestation's devices without its decommissioned GPUs; `site_groups` their sum per site, moved by the
difference. They are rewritten by the same writes as `node_totals` (`collector.store.sqlcurrent`), in the same
transaction, and only when they change: a steady-state report costs two indexed reads here.

A group is `(kind, model, tpp, die_area, datacenter, acquired)`, every column non-null so that it can be a key:
kind `model` (catalogue basis with a model: model and acquisition date), `tpp` or `tpp_area` (TPP, data-centre
flag, acquisition date, and for `tpp_area` the die area), `none` (TPP not established: counted as unaccounted).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from gpucensus.collector.store.base import Entity, Site
from gpucensus.collector.store.inventory import inventory_document
from gpucensus.collector.store.sqlnodes import SqlNodes

Group = tuple[str, str, int, str, bool, str]  # kind, model, tpp, die_area, datacenter, acquired (YYYY-MM-DD)
GROUP_COLUMNS = ("kind", "model", "tpp", "die_area", "datacenter", "acquired")
_KEY = " AND ".join(f"{c} = ?" for c in GROUP_COLUMNS)
_CHUNK = 200  # parameters per IN (...) list


def device_group(
    basis: str, model: str | None, tpp: int | None, die_area: str | None, datacenter: bool, acquired: datetime | None
) -> Group:
    """The group of one current device: the same rules as `collector.store.inventory` (and the migration)."""
    day = acquired.astimezone(UTC).date().isoformat() if acquired else ""
    if basis == "catalogue" and model:
        return ("model", model, 0, "", False, day)
    if tpp is not None:
        return ("tpp" if die_area is None else "tpp_area", "", int(tpp), die_area or "", bool(datacenter), day)
    return ("none", "", 0, "", False, "")


def inventory_key(group: Group) -> tuple[Any, ...] | None:
    """The group as `collector.store.inventory` keys it (None: unaccounted)."""
    kind, model, tpp, die_area, datacenter, day = group
    if kind == "model":
        return ("model", model, day)
    if kind in ("tpp", "tpp_area"):
        return ("tpp", tpp, die_area if kind == "tpp_area" else None, datacenter, day)
    return None


class SqlGroups(SqlNodes):
    """Group writes (inside the caller's transaction) and the inventory read from them."""

    _for_update = ""  # PostgreSQL: " FOR UPDATE"

    # --- writes -----------------------------------------------------------------------------------------
    def _write_groups(self, cur: Any, nodes: dict[str, Counter[Group]]) -> None:
        """Replace each node's groups and move its site's by the difference; nothing written for a node whose
        groups are unchanged. Lock order as `_write_totals`: `node_groups` rows by node id, then every
        `site_groups` row the transaction changes in one batch by (site, group)."""
        deltas: dict[str, Counter[Group]] = defaultdict(Counter)
        for node_id in sorted(nodes):
            groups = nodes[node_id]
            old = self._node_groups(cur, node_id)
            if old == groups:
                continue
            if self._for_update:  # PostgreSQL: read again under the rows' lock, so no other writer's delta is lost
                old = self._node_groups(cur, node_id, self._for_update)
                if old == groups:
                    continue
            site = cur.execute("SELECT site FROM nodes WHERE node_id = ?", (node_id,)).fetchone()[0]
            deltas[site].update(groups)
            deltas[site].subtract(old)
            cur.execute("DELETE FROM node_groups WHERE node_id = ?", (node_id,))
            if groups:
                cur.executemany(
                    f"INSERT INTO node_groups (node_id, {', '.join(GROUP_COLUMNS)}, devices) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(node_id, *group, count) for group, count in sorted(groups.items())],
                )
        self._add_site_groups(cur, deltas)

    def _move_groups(self, cur: Any, node_id: str, old_site: str, new_site: str) -> None:
        groups = self._node_groups(cur, node_id, self._for_update)
        deltas: dict[str, Counter[Group]] = defaultdict(Counter)
        deltas[old_site].subtract(groups)
        deltas[new_site].update(groups)
        self._add_site_groups(cur, deltas)

    def _node_groups(self, cur: Any, node_id: str, lock: str = "") -> Counter[Group]:
        rows = cur.execute(
            f"SELECT {', '.join(GROUP_COLUMNS)}, devices FROM node_groups WHERE node_id = ?{lock}", (node_id,)
        ).fetchall()
        return Counter({_group(r): int(r[6]) for r in rows})

    def _add_site_groups(self, cur: Any, deltas: dict[str, Counter[Group]]) -> None:
        """Add each (site, group) delta to `site_groups`, in (site, group) order (the lock order); a group no
        device is left in goes (acquisition dates would otherwise pile up)."""
        delta = sorted(
            (site, g, change) for site, by_group in deltas.items() for g, change in by_group.items() if change
        )
        if not delta:
            return
        cur.executemany(
            f"INSERT INTO site_groups (site, {', '.join(GROUP_COLUMNS)}, devices) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            f"ON CONFLICT (site, {', '.join(GROUP_COLUMNS)}) DO UPDATE SET devices = site_groups.devices + "
            "excluded.devices",
            [(site, *g, change) for site, g, change in delta],
        )
        # only rows this transaction already holds, so no lock is taken out of order
        gone = [(site, *g) for site, g, change in delta if change < 0]
        if gone:
            cur.executemany(f"DELETE FROM site_groups WHERE site = ? AND {_KEY} AND devices = 0", gone)

    # --- reads ------------------------------------------------------------------------------------------
    def grouped_inventory(
        self, as_of: datetime, sites: Iterable[str] | None = None, unknown_nodes: frozenset[str] = frozenset(),
        suffix: str = "",
    ) -> dict[str, Any]:  # fmt: skip
        """`inventory(as_of, sites)` read from `site_groups` (a row per site and group); with `unknown_nodes`,
        those nodes' groups (read from `node_groups`) in a site of their own, their site's id + `suffix`."""
        wanted = None if sites is None else sorted(set(sites))
        rows: list[Any] = []
        moved: list[Any] = []
        with self._tx(False) as cur:
            entities = [Entity(*r) for r in cur.execute("SELECT id, headquarters, auth FROM entities").fetchall()]
            registered = [Site(*r) for r in cur.execute("SELECT id, country, entity FROM sites").fetchall()]
            select = f"SELECT site, {', '.join(GROUP_COLUMNS)}, devices FROM site_groups"
            if wanted is None:
                rows = cur.execute(select).fetchall()
            for chunk in _chunks(wanted or []):
                rows += cur.execute(f"{select} WHERE site IN ({_marks(chunk)})", tuple(chunk)).fetchall()
            for chunk in _chunks(sorted(unknown_nodes)):
                moved += cur.execute(
                    f"SELECT n.site, {', '.join('g.' + c for c in GROUP_COLUMNS)}, g.devices FROM node_groups g "
                    f"JOIN nodes n ON n.node_id = g.node_id WHERE g.node_id IN ({_marks(chunk)})",
                    tuple(chunk),
                ).fetchall()
        if wanted is not None:
            registered = [s for s in registered if s.id in set(wanted)]
        counts: dict[str, Counter[Group]] = defaultdict(Counter)
        for r in rows:
            counts[r[0]][_group(r[1:])] += int(r[7])
        split = set()
        for r in moved:
            group, count = _group(r[1:]), int(r[7])
            if count:
                counts[r[0]][group] -= count
                counts[r[0] + suffix][group] += count
                split.add(r[0])
        registered += [Site(s.id + suffix, s.country, s.entity) for s in registered if s.id in split]
        groups: dict[str, Counter[tuple[Any, ...]]] = defaultdict(Counter)
        unaccounted: Counter[str] = Counter()
        for site, by_group in counts.items():
            for group, count in by_group.items():
                key = inventory_key(group)
                if count <= 0:
                    continue
                if key is None:
                    unaccounted[site] += count
                else:
                    groups[site][key] += count
        return inventory_document(as_of, entities, registered, groups, unaccounted)


def _group(r: Sequence[Any]) -> Group:
    return (r[0], r[1], int(r[2]), r[3], bool(r[4]), r[5])


def _marks(chunk: Sequence[str]) -> str:
    return ", ".join("?" * len(chunk))


def _chunks(items: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield list(items[start : start + _CHUNK])
