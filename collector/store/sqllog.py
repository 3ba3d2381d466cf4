"""The SQL both stores share, part 4: the transparency log's storage (schema: migration 0006).

Sequencing happens in `store_attestation` (`sqlstore`): the last statements of its transaction take the next
leaf index from the one-row counter `log_sequence` (`UPDATE … RETURNING`: in PostgreSQL the row stays locked
until the commit, so the critical section shared by collectors is only the end of that transaction, and indices
commit in order with no gap). Integration (`integrate_log`) locks the one-row `log_tree` instead, so it never
blocks sequencing in PostgreSQL: one integrator at a time across every collector sharing the database.

The tree is stored as complete-subtree hashes by `(level, n)`, the coordinates `common.merkle`'s proof generation
asks for, so a `HashReader` is one or two indexed queries. Two layouts, one read path:
- `log_hashes` rows, written once at integration: only EVEN levels (an odd level's hash is its two children's
  node hash, read from the level below and computed when asked for: one SHA-256 for at most half the
  coordinates of a proof). A store integrated before that layout kept its odd rows too; they are never read.
- `log_tiles`, from migration 0016: once the 256 leaves of a tile are all integrated, their leaf hashes become one
  row (8,192 bytes in leaf order) and the tile's rows below level 8 are deleted in the same transaction; levels
  1 to 7 inside it are computed from its leaf hashes when asked for (at most 255 SHA-256 per tile a read touches).
  32 bytes a leaf instead of 1⅓ rows with their index entries (about 57 bytes a leaf on SQLite, 159 on
  PostgreSQL). Level 8 (a whole tile) and above stay rows. `log_tree.packed` counts the tiles packed: the
  integrator packs up to `PACK_PER_ROUND` tiles a round from there, so a store integrated before is packed too.
  Unlike C2SP tlog-tiles, a partial tile is never stored (its leaves stay rows until it completes), so no row
  is ever rewritten.
A reader asks `log_hashes` first and `log_tiles` for what it lacks: packing commits the tile before the rows
are gone, so even a PostgreSQL read of two statements (autocommit) finds every hash in one or the other.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gpucensus.collector.errors import StoreError
from gpucensus.collector.log import append as tree
from gpucensus.collector.store import envelopes
from gpucensus.collector.store.compact_fields import FACTS, row_facts
from gpucensus.collector.store.sqlnodes import SqlNodes
from gpucensus.common.merkle import HASH_SIZE, node_hash

_CHUNK = 400  # coordinates per query: well under SQLite's 32766 parameters
TILE_HEIGHT = 8  # a tile is 2^8 leaves; its leaf hashes are one `log_tiles` row once it is complete
TILE_WIDTH = 1 << TILE_HEIGHT
PACK_PER_ROUND = 64  # tiles packed per integration at most (16,384 leaves: a store from before catches up)


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
            new_size = size + len(leaves)
            packed = int(cur.execute("SELECT packed FROM log_tree WHERE id = 1").fetchone()[0])
            tiles = range(packed, min(new_size // TILE_WIDTH, packed + PACK_PER_ROUND))
            fresh = {n: digest for level, n, digest in new_rows if level == 0}  # leaf hashes of this batch
            cur.executemany("INSERT INTO log_hashes (level, idx, hash) VALUES (?, ?, ?)",
                            [row for row in new_rows if row[0] % 2 == 0 and not _in_tiles(row, tiles)])  # fmt: skip
            for tile in tiles:
                self._pack(cur, tile, fresh)
            cur.execute("UPDATE log_tree SET size = ?, packed = ? WHERE id = 1", (new_size, tiles.stop))
            return size, new_size

    def _pack(self, cur: Any, tile: int, fresh: dict[int, bytes]) -> None:
        """Store the leaf hashes of complete tile `tile` as one row and delete its rows below level 8: the leaf
        hashes come from this batch (`fresh`) or, integrated before, from their rows."""
        first = tile * TILE_WIDTH
        stored = {}
        if any(n not in fresh for n in range(first, first + TILE_WIDTH)):
            rows = cur.execute(
                "SELECT idx, hash FROM log_hashes WHERE level = 0 AND idx >= ? AND idx < ?",
                (first, first + TILE_WIDTH),
            ).fetchall()
            stored = {int(n): bytes(digest) for n, digest in rows}
        try:
            hashes = b"".join(fresh[n] if n in fresh else stored[n] for n in range(first, first + TILE_WIDTH))
        except KeyError as err:
            raise StoreError(f"the transparency log {self.where} lacks the leaf hash of leaf {err.args[0]}") from None
        cur.execute("INSERT INTO log_tiles (idx, hashes) VALUES (?, ?)", (tile, hashes))
        for level in range(0, TILE_HEIGHT, 2):
            width = TILE_WIDTH >> level
            cur.execute("DELETE FROM log_hashes WHERE level = ? AND idx >= ? AND idx < ?",
                        (level, tile * width, (tile + 1) * width))  # fmt: skip

    def _envelope(self, index: Any, stored: Any, codec: Any, *facts: Any) -> bytes:
        """The envelope of a row selected as `log_index, envelope, envelope_codec, {FACTS}`."""
        return envelopes.decode(int(codec), bytes(stored), f"at log index {index} {self.where}", row_facts(*facts))

    def _hashes_in(self, cur: Any, coordinates: list[tuple[int, int]]) -> list[bytes]:
        """The hashes of `coordinates`, in order: stored (even levels), in a packed tile, or computed from the
        two children below."""
        stored = list(dict.fromkeys(s for c in coordinates for s in _stored_for(c)))
        found: dict[tuple[int, int], bytes] = {}
        for start in range(0, len(stored), _CHUNK):
            chunk = stored[start : start + _CHUNK]
            where = " OR ".join(["(level = ? AND idx = ?)"] * len(chunk))
            params = tuple(v for coordinate in chunk for v in coordinate)
            for level, idx, digest in cur.execute(f"SELECT level, idx, hash FROM log_hashes WHERE {where}", params):
                found[(int(level), int(idx))] = bytes(digest)
        in_tiles = [s for s in stored if s not in found and s[0] < TILE_HEIGHT]
        if in_tiles:  # after the rows: a tile is committed before its rows go, so no read misses both
            found.update(self._from_tiles(cur, in_tiles))
        missing = [c for c in dict.fromkeys(coordinates) if any(s not in found for s in _stored_for(c))]
        if missing:
            raise StoreError(f"the transparency log {self.where} lacks the hash of subtree(s) {missing[:4]}")
        return [found[c] if c[0] % 2 == 0 else node_hash(*(found[s] for s in _stored_for(c))) for c in coordinates]

    def _from_tiles(self, cur: Any, coordinates: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """The hashes of `coordinates` (levels below 8) found in packed tiles, computed from their leaf hashes."""
        wanted = sorted({n << level >> TILE_HEIGHT for level, n in coordinates})
        found: dict[tuple[int, int], bytes] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            rows = cur.execute(
                f"SELECT idx, hashes FROM log_tiles WHERE idx IN ({', '.join('?' * len(chunk))})", tuple(chunk)
            ).fetchall()
            for tile, hashes in rows:
                try:
                    levels = _tile_levels(bytes(hashes))
                except ValueError as err:
                    raise StoreError(f"tile {tile} of the transparency log {self.where} is damaged: {err}") from None
                found.update(((level, n), levels[level][n - (int(tile) << (TILE_HEIGHT - level))])
                             for level, n in coordinates if n << level >> TILE_HEIGHT == int(tile))  # fmt: skip
        return found


def _in_tiles(row: tuple[int, int, bytes], tiles: range) -> bool:
    """Whether a new row is below level 8 inside one of the tiles packed now (so it is not written at all)."""
    level, n, _ = row
    return level < TILE_HEIGHT and n << level >> TILE_HEIGHT in tiles


@functools.lru_cache(maxsize=64)  # by content: an export proves every leaf of a tile in turn (about 2 MB at most)
def _tile_levels(hashes: bytes) -> list[list[bytes]]:
    """The hashes of levels 0 to 7 inside a tile, from its 256 leaf hashes (ValueError if it is damaged)."""
    if len(hashes) != TILE_WIDTH * HASH_SIZE:
        raise ValueError(f"{len(hashes)} bytes instead of {TILE_WIDTH * HASH_SIZE}")
    levels = [[hashes[i : i + HASH_SIZE] for i in range(0, len(hashes), HASH_SIZE)]]
    for _ in range(1, TILE_HEIGHT):
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below), 2)])
    return levels


def _stored_for(coordinate: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """The stored rows a subtree's hash comes from: its own (even level) or its two children's (odd level)."""
    level, idx = coordinate
    return (coordinate,) if level % 2 == 0 else ((level - 1, 2 * idx), (level - 1, 2 * idx + 1))
