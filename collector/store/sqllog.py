"""The SQL both stores share, part 4: the transparency log's storage (schema: migration 0006).

Sequencing happens in `store_attestation` (`sqlstore`): the last statements of its transaction take the next
leaf index from the one-row counter `log_sequence` (`UPDATE … RETURNING`: in PostgreSQL the row stays locked
until the commit, so the critical section shared by collectors is only the end of that transaction, and indices
commit in order with no gap). Integration (`integrate_log`) locks the one-row `log_tree` instead, so it never
blocks sequencing in PostgreSQL: one integrator at a time across every collector sharing the database.

The tree is stored as a node-hash table rather than C2SP tlog-tiles: `log_hashes` keeps complete subtree hashes
by `(level, n)`, the coordinates `common.merkle`'s proof generation asks for, so a `HashReader` is one indexed
query and every row is written once and never rewritten (a tile layout would rewrite its partial tiles on each
batch and compute inner levels from the tile on every read). Only EVEN levels are stored (1⅓ rows per leaf
instead of 2, a third fewer bytes): an odd level's hash is its two children's node hash, read from the level
below and computed when asked for (one SHA-256 for at most half the coordinates of a proof). A store integrated
before kept its odd rows too; they are never read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gpucensus.collector.errors import StoreError
from gpucensus.collector.log import append as tree
from gpucensus.collector.store import envelopes
from gpucensus.collector.store.compact_fields import FACTS, row_facts
from gpucensus.collector.store.sqlnodes import SqlNodes
from gpucensus.common.merkle import node_hash

_CHUNK = 400  # coordinates per query: well under SQLite's 32766 parameters


class SqlLog(SqlNodes):
    _for_update = ""  # PostgreSQL: " FOR UPDATE" (SQLite write transactions are exclusive already)
    # The `log_index` the INSERT of an attestation writes. SQLite: the counter's value, read in the INSERT (a
    # write transaction is exclusive, so nothing takes it in between; `_sequence` then only moves the counter).
    # PostgreSQL: NULL, set by `_sequence` at the end, so the counter row is locked for as short as possible.
    _log_index_at_insert = "(SELECT next_index FROM log_sequence WHERE id = 1)"

    def _sequence(self, cur: Any, attestation_id: int) -> int:
        """Give the stored attestation the next leaf index, inside its transaction (its last statement)."""
        if self._log_index_at_insert != "NULL":
            row = cur.execute("UPDATE log_sequence SET next_index = next_index + 1 WHERE id = 1 RETURNING next_index")
            return int(row.fetchone()[0]) - 1
        row = cur.execute(
            "WITH taken AS (UPDATE log_sequence SET next_index = next_index + 1 WHERE id = 1 "
            "RETURNING next_index - 1 AS leaf) "
            "UPDATE attestations SET log_index = taken.leaf FROM taken WHERE attestations.id = ? "
            "RETURNING attestations.log_index",
            (attestation_id,),
        )
        return int(row.fetchone()[0])

    def log_sequenced(self) -> int:
        """How many leaves were sequenced (the next leaf index)."""
        with self._tx(False) as cur:
            return int(cur.execute("SELECT next_index FROM log_sequence WHERE id = 1").fetchone()[0])

    def log_size(self) -> int:
        """The size of the integrated tree (every hash of a tree of this size is stored)."""
        with self._tx(False) as cur:
            return int(cur.execute("SELECT size FROM log_tree WHERE id = 1").fetchone()[0])

    def log_hashes(self, coordinates: Sequence[tuple[int, int]]) -> list[bytes]:
        """The hashes of complete subtrees `(level, n)`, in order (a `common.merkle.HashReader`). StoreError if one
        is not stored (not integrated yet: a bug in the caller, or a damaged store)."""
        with self._tx(False) as cur:
            return self._hashes_in(cur, list(coordinates))

    def log_entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        """The sequenced leaves with index in [start, end), in index order: (index, envelope bytes)."""
        with self._tx(False) as cur:
            rows = cur.execute(
                f"SELECT log_index, envelope, envelope_codec, {FACTS} FROM attestations "
                "WHERE log_index >= ? AND log_index < ? ORDER BY log_index",
                (start, end),
            ).fetchall()
        return [(int(row[0]), self._envelope(*row)) for row in rows]

    def log_attestations(
        self, below: int, sites: Sequence[str] | None = None, since: datetime | None = None
    ) -> list[tuple[int, str, bytes]]:
        """(leaf index, keyid, envelope) of the stored attestations with index below `below`, of `sites` (all if
        None), stated at or after `since`, in index order: an audit bundle's envelopes."""
        sql = f"SELECT log_index, envelope, envelope_codec, {FACTS} FROM attestations WHERE log_index < ?"
        params: list[Any] = [below]
        if sites is not None:
            if not sites:
                return []
            sql += f" AND site IN ({', '.join('?' * len(sites))})"
            params += list(sites)
        if since is not None:
            sql += " AND stated_at >= ?"
            params.append(self._t(since))
        with self._tx(False) as cur:
            rows = cur.execute(sql + " ORDER BY log_index", tuple(params)).fetchall()
        return [(int(row[0]), row[3], self._envelope(*row)) for row in rows]  # row[3]: the keyid (FACTS)

    def integrate_log(self, max_leaves: int) -> tuple[int, int]:
        """Integrate up to `max_leaves` sequenced leaves into the stored tree, in one transaction holding the
        tree row (one integrator at a time, whichever collector runs it); (old size, new size)."""
        with self._tx(True) as cur:
            size = int(cur.execute(f"SELECT size FROM log_tree WHERE id = 1{self._for_update}").fetchone()[0])
            rows = cur.execute(
                f"SELECT log_index, envelope, envelope_codec, {FACTS} FROM attestations "
                "WHERE log_index >= ? AND log_index < ? ORDER BY log_index",
                (size, size + max_leaves),
            ).fetchall()
            leaves = []
            for expected, row in enumerate(rows, start=size):
                if int(row[0]) != expected:  # indices commit in order: a gap is a damaged store
                    raise StoreError(f"the transparency log {self.where} has no leaf {expected} (found {row[0]} next)")
                leaves.append(self._envelope(*row))
            if not leaves:
                return size, size
            coordinates = tree.border(size)
            border = self._hashes_in(cur, coordinates)
            new_rows = tree.append(size, leaves, border)
            cur.executemany("INSERT INTO log_hashes (level, idx, hash) VALUES (?, ?, ?)",
                            [row for row in new_rows if row[0] % 2 == 0])  # fmt: skip
            cur.execute("UPDATE log_tree SET size = ? WHERE id = 1", (size + len(leaves),))
            return size, size + len(leaves)

    def _envelope(self, index: Any, stored: Any, codec: Any, *facts: Any) -> bytes:
        """The envelope of a row selected as `log_index, envelope, envelope_codec, {FACTS}`."""
        return envelopes.decode(int(codec), bytes(stored), f"at log index {index} {self.where}", row_facts(*facts))

    def _hashes_in(self, cur: Any, coordinates: list[tuple[int, int]]) -> list[bytes]:
        """The hashes of `coordinates`, in order: stored (even levels) or computed from the two children below."""
        stored = list(dict.fromkeys(s for c in coordinates for s in _stored_for(c)))
        found: dict[tuple[int, int], bytes] = {}
        for start in range(0, len(stored), _CHUNK):
            chunk = stored[start : start + _CHUNK]
            where = " OR ".join(["(level = ? AND idx = ?)"] * len(chunk))
            params = tuple(v for coordinate in chunk for v in coordinate)
            for level, idx, digest in cur.execute(f"SELECT level, idx, hash FROM log_hashes WHERE {where}", params):
                found[(int(level), int(idx))] = bytes(digest)
        missing = [c for c in dict.fromkeys(coordinates) if any(s not in found for s in _stored_for(c))]
        if missing:
            raise StoreError(f"the transparency log {self.where} lacks the hash of subtree(s) {missing[:4]}")
        return [found[c] if c[0] % 2 == 0 else node_hash(*(found[s] for s in _stored_for(c))) for c in coordinates]


def _stored_for(coordinate: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """The stored rows a subtree's hash comes from: its own (even level) or its two children's (odd level)."""
    level, idx = coordinate
    return (coordinate,) if level % 2 == 0 else ((level - 1, 2 * idx), (level - 1, 2 * idx + 1))
