"""The SQL both stores share, part 2e: the inventory at a series of instants (`report --history`), incrementally.

`inventory_at(T)` seeks each node's last attestation stated at or before T and reads its devices: every device of
every node, once per instant (a one-year weekly history at 10,000 nodes: 53 times 80,000 rows). Between two
instants of a series only the nodes with an attestation stated in between change, and the GPUs decommissioned in
between leave; so `inventories_at` reads every node's devices once, at the first instant, then per instant only
the nodes that stated something since the last one (their newest statement in between, found on the covering
index `attestations_node_stated`, is their last one at the instant; its devices read by id) and applies
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

# each node's last full attestation stated at or before ? (one seek on attestations_node_stated), every device of it
# with its GPU's decommission time: the filter is applied per instant
_ROWS_SQL = (
    "SELECT a.site, n.node_id, d.uuid, d.model, d.basis, d.tpp, d.die_area_mm2, d.eccn, d.datacenter, g.acquired, "
    "a.stated_at, g.decommissioned_at, a.id "
    "FROM nodes n JOIN attestations a ON a.id = (SELECT b.id FROM attestations b WHERE b.node_id = n.node_id "
    "AND b.kind = 'full' AND b.stated_at <= ? ORDER BY b.stated_at DESC, b.id DESC LIMIT 1) "
    "JOIN attestation_devices d ON d.attestation_id = COALESCE(a.devices_from, a.id) "
    "LEFT JOIN gpus g ON g.uuid = d.uuid AND d.uuid <> ''"
)

_DEVICES_OF_SQL = (
    "SELECT a.site, a.node_id, d.uuid, d.model, d.basis, d.tpp, d.die_area_mm2, d.eccn, d.datacenter, g.acquired, "
    "a.stated_at, g.decommissioned_at, a.id "
    "FROM attestations a JOIN nodes n ON n.node_id = a.node_id "
    "JOIN attestation_devices d ON d.attestation_id = COALESCE(a.devices_from, a.id) "
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
                    changed = self._rows_at(cur, at)
                else:  # a node's newest statement in (previous, at] is its last at `at`: nothing older can be
                    stated = cur.execute(
                        "SELECT node_id, stated_at, id FROM attestations WHERE kind = 'full' AND stated_at > ? "
                        "AND stated_at <= ?",
                        (self._t(previous), self._t(at)),
                    ).fetchall()  # compact statements change no inventory
                    newest: dict[str, tuple[Any, int]] = {}
                    for node_id, when, attestation_id in stated:
                        mine = (self._dt(when), int(attestation_id))
                        if node_id not in newest or mine > newest[node_id]:
                            newest[node_id] = mine
                    changed = self._rows_of(cur, sorted(i for _, i in newest.values())) if newest else {}
                    for node_id in newest:  # its new last attestation lists no device
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

    def _rows_at(self, cur: Any, at: datetime) -> dict[str, _Node]:
        """Per node: its site and devices at `at` as (inventory key, decommission time)."""
        return self._nodes(cur.execute(_ROWS_SQL, (self._t(at),)).fetchall())

    def _rows_of(self, cur: Any, attestations: Sequence[int]) -> dict[str, _Node]:
        """The same for the nodes of these attestations, each its node's last at the instant."""
        rows: list[Any] = []
        for start in range(0, len(attestations), _CHUNK):
            chunk = attestations[start : start + _CHUNK]
            rows += cur.execute(
                f"{_DEVICES_OF_SQL} WHERE a.id IN ({', '.join('?' * len(chunk))})", tuple(chunk)
            ).fetchall()
        return self._nodes(rows)

    def _nodes(self, rows: Iterable[Any]) -> dict[str, _Node]:
        found: dict[str, _Node] = {}
        keys: dict[tuple[Any, ...], tuple[Any, ...] | None] = {}  # per distinct row: a node's 8 GPUs share one
        for r in rows:
            raw = (r[3], r[4], r[5], r[6], r[8], r[9], r[10])
            if raw in keys:
                key = keys[raw]
            else:
                first, stated = self._dt(r[9]), self._dt(r[10])
                acquired = stated if first is None or (stated is not None and stated < first) else first
                device = CurrentDevice(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]), acquired)
                key = keys[raw] = device_key(device)
            node = found.get(r[1])
            if node is None:
                node = found[r[1]] = _Node(site=r[0])
            node.devices.append((key, None if r[11] is None else self._dt(r[11])))
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
