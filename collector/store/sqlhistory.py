"""The SQL both stores share, part 2e: the inventory at a series of instants (`report --history`), incrementally.

`inventory_at(T)` seeks each node's last attestation stated at or before T and reads its devices: every device of
every node, once per instant (a one-year weekly history at 10,000 nodes: 53 times 80,000 rows). Between two
instants of a series only the nodes with an attestation stated in between change, and the GPUs decommissioned in
between leave; so `inventories_at` reads every node's devices once, at the first instant, then per instant only
the nodes that stated something since the last one (found on the index `attestations_node_stated`) and applies
the decommissions from memory, moving per-site group counts by the difference. All of it in one read
transaction, so every instant sees the same stored data. Each result equals `inventory_at` of that instant
(a property test compares the two on random stores).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gpucensus.collector.store.base import Entity, Site
from gpucensus.collector.store.inventory import CurrentDevice, device_key, inventory_document
from gpucensus.collector.store.sqlgroups import SqlGroups

_CHUNK = 200

# each node's last attestation stated at or before ? (one seek on attestations_node_stated), every device of it
# with its GPU's decommission time: the filter is applied per instant
_ROWS_SQL = (
    "SELECT a.site, n.node_id, d.uuid, d.model, d.basis, d.tpp, d.die_area_mm2, d.eccn, d.datacenter, g.acquired, "
    "a.stated_at, g.decommissioned_at, a.id "
    "FROM nodes n JOIN attestations a ON a.id = (SELECT b.id FROM attestations b WHERE b.node_id = n.node_id "
    "AND b.stated_at <= ? ORDER BY b.stated_at DESC, b.id DESC LIMIT 1) "
    "JOIN attestation_devices d ON d.attestation_id = a.id "
    "LEFT JOIN gpus g ON g.uuid = d.uuid AND d.uuid <> ''"
)


@dataclass
class _Node:
    site: str = ""
    devices: list[tuple[tuple[Any, ...] | None, datetime | None]] = field(default_factory=list)  # key, decommission
    counted: Counter[tuple[Any, ...] | None] = field(default_factory=Counter)  # what the node adds to its site


class SqlHistory(SqlGroups):
    """`inventories_at` (see the module docstring)."""

    def inventories_at(self, points: Sequence[datetime]) -> list[dict[str, Any]]:
        """`[inventory_at(t) for t in points]`, computed in increasing order of the instants."""
        out: list[dict[str, Any]] = [{} for _ in points]
        nodes: dict[str, _Node] = {}
        sites: dict[str, Counter[tuple[Any, ...] | None]] = defaultdict(Counter)
        leaving: list[tuple[datetime, str]] = []  # (decommission time, node): a heap of GPUs yet to leave
        previous: datetime | None = None
        with self._tx(False) as cur:
            entities = [Entity(*r) for r in cur.execute("SELECT id, headquarters, auth FROM entities").fetchall()]
            registered = [Site(*r) for r in cur.execute("SELECT id, country, entity FROM sites").fetchall()]
            for index in sorted(range(len(points)), key=lambda i: points[i]):
                at = points[index]
                if previous is None:
                    changed = self._rows_at(cur, at, None)
                else:
                    stated = cur.execute(
                        "SELECT DISTINCT node_id FROM attestations WHERE stated_at > ? AND stated_at <= ?",
                        (self._t(previous), self._t(at)),
                    ).fetchall()
                    ids = sorted(r[0] for r in stated)
                    changed = self._rows_at(cur, at, ids) if ids else {}
                    for node_id in ids:  # its new last attestation lists no device (or none of its rows came)
                        changed.setdefault(node_id, _Node())
                for node_id, node in changed.items():
                    old = nodes.get(node_id)
                    if old is not None:
                        sites[old.site].subtract(old.counted)
                    nodes[node_id] = node
                    leaving.extend((gone, node_id) for _, gone in node.devices if gone is not None and gone > at)
                heapq.heapify(leaving)
                touched = set(changed)
                while leaving and leaving[0][0] <= at:  # a GPU decommissioned since the last instant leaves
                    touched.add(heapq.heappop(leaving)[1])
                for node_id in touched:
                    node = nodes[node_id]
                    if node_id not in changed:
                        sites[node.site].subtract(node.counted)
                    node.counted = Counter(key for key, gone in node.devices if gone is None or gone > at)
                    sites[node.site].update(node.counted)
                out[index] = _document(at, entities, registered, sites)
                previous = at
        return out

    def _rows_at(self, cur: Any, at: datetime, only: Iterable[str] | None) -> dict[str, _Node]:
        """Per node (all, or `only`): its site and devices at `at` as (inventory key, decommission time)."""
        rows: list[Any] = []
        if only is None:
            rows = cur.execute(_ROWS_SQL, (self._t(at),)).fetchall()
        else:
            wanted = list(only)
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                rows += cur.execute(
                    f"{_ROWS_SQL} WHERE n.node_id IN ({', '.join('?' * len(chunk))})", (self._t(at), *chunk)
                ).fetchall()
        found: dict[str, _Node] = {}
        for r in rows:
            first, stated = self._dt(r[9]), self._dt(r[10])
            acquired = stated if first is None or (stated is not None and stated < first) else first
            device = CurrentDevice(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]), acquired)
            node = found.setdefault(r[1], _Node(site=r[0]))
            node.devices.append((device_key(device), self._dt(r[11])))
        return found


def _document(
    at: datetime, entities: list[Entity], registered: list[Site], sites: dict[str, Counter[tuple[Any, ...] | None]]
) -> dict[str, Any]:
    groups: dict[str, Counter[tuple[Any, ...]]] = {}
    unaccounted: Counter[str] = Counter()
    for site, counts in sites.items():
        mine: Counter[tuple[Any, ...]] = Counter()
        for key, count in counts.items():
            if count <= 0:
                continue
            if key is None:
                unaccounted[site] += count
            else:
                mine[key] = count
        groups[site] = mine
    return inventory_document(at, entities, registered, groups, unaccounted)
