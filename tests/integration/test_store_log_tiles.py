"""The transparency log's packed tiles (migration 0016): once a tile's 256 leaves are integrated their leaf hashes
are one `log_tiles` row and its rows below level 8 are gone; every hash a proof or a root needs is still served,
equal to the reference tree's, on both stores, for a store packed as it grows and one packed after the fact.
"""

from __future__ import annotations

import random

import pytest
from gpucensus.collector.errors import StoreError
from gpucensus.collector.store import sqllog
from gpucensus.common import merkle

from tests.integration.test_store_contract import registry
from tests.integration.test_store_log import fill, reference

pytest_plugins = ["tests.integration.store_fixtures"]  # make_store, store_kind

LEAVES = 3 * sqllog.TILE_WIDTH + 50  # three complete tiles and a partial one


def rows_below_tiles(store) -> list[tuple[int, int]]:
    """The log_hashes rows below level 8 inside a packed tile (there should be none)."""
    with store._tx(False) as cur:
        packed = int(cur.execute("SELECT packed FROM log_tree WHERE id = 1").fetchone()[0])
        rows = cur.execute("SELECT level, idx FROM log_hashes WHERE level < 8").fetchall()
    return [(int(level), int(n)) for level, n in rows if int(n) << int(level) >> 8 < packed]


def tiles(store) -> list[int]:
    with store._tx(False) as cur:
        return [int(r[0]) for r in cur.execute("SELECT idx FROM log_tiles ORDER BY idx").fetchall()]


def assert_serves_the_reference(store, tree: merkle.MemoryTree, size: int) -> None:
    rng = random.Random(size)
    assert merkle.tree_root(size, store.log_hashes) == tree.root(size)
    for index in {i for i in (0, 255, 256, size - 1, *rng.sample(range(size), 12)) if i < size}:
        assert merkle.inclusion_proof(index, size, store.log_hashes) == tree.inclusion_proof(index, size)
    for old in {n for n in (1, 255, 256, 257, 513, *rng.sample(range(1, size + 1), 6)) if n <= size}:
        assert merkle.consistency_proof(old, size, store.log_hashes) == tree.consistency_proof(old, size)
    every_level = [(level, n) for level in range(9) for n in range(size >> level)]
    assert store.log_hashes(every_level) == tree.read(every_level)


def test_complete_tiles_are_packed_as_they_grow_and_every_proof_still_verifies(make_store) -> None:
    store = make_store()
    registry(store)
    fill(store, LEAVES)
    tree = reference(store)
    size = 0
    for batch in (37, 300, 256, 1, 200, LEAVES):  # batches that end inside, on and across tile borders
        size = store.integrate_log(batch)[1]
        assert tiles(store) == list(range(size // 256)) and not rows_below_tiles(store)
        assert_serves_the_reference(store, tree, size)
    assert size == LEAVES
    with store._tx(False) as cur:
        rows = int(cur.execute("SELECT COUNT(*) FROM log_hashes").fetchone()[0])
    assert rows == 50 + 12 + 3 + 3  # the partial tile's 50 leaves at levels 0, 2 and 4; level 8 of the complete ones


def test_a_store_integrated_before_is_packed_a_few_tiles_a_round(make_store, monkeypatch) -> None:
    store = make_store()
    registry(store)
    fill(store, LEAVES)
    tree = reference(store)
    monkeypatch.setattr(sqllog, "PACK_PER_ROUND", 0)  # as before migration 0016: rows only
    store.integrate_log(LEAVES - 20)
    with store._tx(False) as cur:  # every leaf hash is still a row of its own
        leaf_rows = int(cur.execute("SELECT COUNT(*) FROM log_hashes WHERE level = 0").fetchone()[0])
    assert tiles(store) == [] and leaf_rows == LEAVES - 20
    assert_serves_the_reference(store, tree, LEAVES - 20)
    monkeypatch.setattr(sqllog, "PACK_PER_ROUND", 2)
    store.integrate_log(10)  # packs the first two old tiles from their rows
    assert tiles(store) == [0, 1] and not rows_below_tiles(store)
    assert_serves_the_reference(store, tree, LEAVES - 10)
    store.integrate_log(10)
    assert tiles(store) == [0, 1, 2] and not rows_below_tiles(store)
    assert_serves_the_reference(store, tree, LEAVES)


def integrated(make_store, leaves: int):
    """A store with `leaves` envelopes, all integrated (one tile packed from 256 on)."""
    store = make_store()
    registry(store)
    fill(store, leaves)
    store.integrate_log(leaves)
    return store


def test_a_damaged_tile_is_a_clear_store_error(make_store) -> None:
    store = integrated(make_store, 300)
    with store._tx(True) as cur:
        cur.execute("UPDATE log_tiles SET hashes = ? WHERE idx = 0", (b"\x00" * 100,))
    with pytest.raises(StoreError, match=r"tile 0 .* is damaged: 100 bytes instead of 8192"):
        merkle.inclusion_proof(3, 300, store.log_hashes)
    assert merkle.inclusion_proof(290, 300, store.log_hashes)  # a leaf outside it: its proof needs level 8 only


def test_a_missing_tile_and_missing_rows_are_a_clear_store_error(make_store) -> None:
    store = integrated(make_store, 300)
    with store._tx(True) as cur:
        cur.execute("DELETE FROM log_tiles")
    with pytest.raises(StoreError, match="lacks the hash of subtree"):
        store.log_hashes([(0, 5)])
