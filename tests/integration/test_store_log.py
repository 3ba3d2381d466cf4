"""The store's transparency log: sequencing in the storing transaction, batch integration into stored
complete-subtree hashes, proofs from them, and the upgrade of a store holding envelopes from before the log.

Runs against a real SQLite file and the real PostgreSQL server (store_fixtures); the reference is
`common.merkle.MemoryTree`, rebuilt here from the stored envelopes.
"""

from __future__ import annotations

import threading

import pytest
from gpucensus.collector.errors import StoreError
from gpucensus.collector.store import migrate, open_store
from gpucensus.collector.store.base import ConflictError
from gpucensus.common import merkle

from tests.integration.old_rows import store_as_before
from tests.integration.test_store_contract import at, attestation, gpu, registry

pytest_plugins = ["tests.integration.store_fixtures"]  # make_store, store_kind


def fill(store, count: int, keyid: str = "k-fra1", first: int = 1) -> list[int]:
    return [store.store_attestation(attestation(keyid, seq, [gpu("GPU-a")])).log_index
            for seq in range(first, first + count)]  # fmt: skip


def reference(store) -> merkle.MemoryTree:
    tree = merkle.MemoryTree()
    for _, envelope in store.log_entries(0, store.log_sequenced()):
        tree.append(envelope)
    return tree


def test_envelopes_get_consecutive_leaf_indices_in_their_storing_transaction(make_store) -> None:
    store = make_store()
    registry(store)
    assert fill(store, 5) == [0, 1, 2, 3, 4]
    assert store.get_attestation("k-fra1", 3).log_index == 2
    assert store.log_sequenced() == 5 and store.log_size() == 0  # integration comes later, in the background
    assert [index for index, _ in store.log_entries(1, 3)] == [1, 2]


def test_a_conflicting_store_takes_no_index(make_store) -> None:
    store = make_store()
    registry(store)
    fill(store, 2)
    with pytest.raises(ConflictError):  # the transaction, its index included, rolls back
        store.store_attestation(attestation("k-fra1", 2, [gpu("GPU-a")]))
    assert fill(store, 1, first=3) == [2]


def test_integration_in_batches_matches_the_reference_tree_and_serves_its_proofs(make_store) -> None:
    store = make_store()
    registry(store)
    fill(store, 37)
    sizes = [store.integrate_log(10)[1] for _ in range(5)]
    assert sizes == [10, 20, 30, 37, 37] and store.log_size() == 37
    tree = reference(store)
    for size in (1, 2, 7, 8, 20, 37):
        assert merkle.tree_root(size, store.log_hashes) == tree.root(size)
    for index in (0, 5, 36):
        proof = merkle.inclusion_proof(index, 37, store.log_hashes)
        assert proof == tree.inclusion_proof(index, 37)
        envelope = store.log_entries(index, index + 1)[0][1]
        merkle.verify_inclusion(merkle.leaf_hash(envelope), index, 37, proof, tree.root())
    proof = merkle.consistency_proof(13, 37, store.log_hashes)
    merkle.verify_consistency(13, 37, proof, tree.root(13), tree.root(37))


def test_a_subtree_not_integrated_is_a_store_error_not_a_wrong_proof(make_store) -> None:
    store = make_store()
    registry(store)
    fill(store, 4)
    store.integrate_log(2)
    with pytest.raises(StoreError, match="lacks the hash"):
        merkle.inclusion_proof(3, 4, store.log_hashes)


def test_concurrent_writers_and_integrators_use_every_index_once(make_store) -> None:
    """Two handles on one database (two collectors): each stores envelopes and integrates at the same time."""
    first, second = make_store(), make_store()
    registry(first)
    errors: list[BaseException] = []

    def work(store, keyid: str) -> None:
        try:
            for seq in range(1, 21):
                store.store_attestation(attestation(keyid, seq, [gpu(f"GPU-{keyid}")]))
                store.integrate_log(3)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(s, k)) for s, k in ((first, "k-fra1"), (second, "k-sin1"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    while first.integrate_log(100)[1] < 40:
        pass
    indices = sorted(first.get_attestation(k, s).log_index for k in ("k-fra1", "k-sin1") for s in range(1, 21))
    assert indices == list(range(40))
    assert merkle.tree_root(40, second.log_hashes) == reference(first).root()


def test_an_upgraded_store_sequences_its_envelopes_in_stored_order(make_store, monkeypatch) -> None:
    every = migrate.load_migrations
    log_version = next(m.version for m in every("sqlite") if m.name == "transparency_log")
    monkeypatch.setattr(
        migrate, "load_migrations", lambda dialect: [m for m in every(dialect) if m.version < log_version]
    )
    old = make_store()  # a collector of the schema before the log
    monkeypatch.setattr(old, "_bump_registry", lambda cur: None)  # nor the compliance state's tables (later)
    registry(old)
    for keyid, seq in (("k-sin1", 1), ("k-fra1", 1), ("k-sin1", 2)):
        store_as_before(old, attestation(keyid, seq, [gpu(f"GPU-{keyid}")]))
    old.close()
    monkeypatch.setattr(migrate, "load_migrations", every)
    new = open_store(make_store.kind, **make_store.options)
    try:
        got = [new.get_attestation(k, s).log_index for k, s in (("k-sin1", 1), ("k-fra1", 1), ("k-sin1", 2))]
        assert got == [0, 1, 2]
        assert new.log_sequenced() == 3
        assert fill(new, 1, first=2) == [3]
        assert new.integrate_log(100) == (0, 4)
        assert merkle.tree_root(4, new.log_hashes) == reference(new).root()
    finally:
        new.close()


def test_log_attestations_selects_by_size_site_and_date(make_store) -> None:
    store = make_store()
    registry(store)
    for seq in (1, 2, 3):
        store.store_attestation(attestation("k-fra1", seq, [gpu("GPU-a")], minutes=seq))
        store.store_attestation(attestation("k-sin1", seq, [gpu("GPU-b")], minutes=seq))
    assert [i for i, _, _ in store.log_attestations(6)] == [0, 1, 2, 3, 4, 5]
    assert [i for i, _, _ in store.log_attestations(4)] == [0, 1, 2, 3]  # what a checkpoint of size 4 covers
    assert {k for _, k, _ in store.log_attestations(6, ["sin1"])} == {"k-sin1"}
    assert store.log_attestations(6, []) == []
    assert [(i, k) for i, k, _ in store.log_attestations(6, ["fra1"], since=at(2))] == [(2, "k-fra1"), (4, "k-fra1")]
    index, keyid, envelope = store.log_attestations(1)[0]
    assert envelope == store.get_attestation(keyid, 1).envelope and index == 0


def test_only_even_levels_are_stored_and_odd_ones_are_computed_from_their_children(make_store) -> None:
    store = make_store()
    registry(store)
    fill(store, 64)
    store.integrate_log(20)
    store.integrate_log(100)  # a border with odd levels, derived for the second batch
    with store._tx(False) as cur:
        levels = [int(r[0]) for r in cur.execute("SELECT level FROM log_hashes").fetchall()]
    assert sorted(set(levels)) == [0, 2, 4, 6] and len(levels) == 64 + 16 + 4 + 1  # 1⅓ rows per leaf, not 2
    tree = reference(store)
    wanted = [(1, 5), (3, 2), (5, 1), (0, 7), (6, 0)]
    assert store.log_hashes(wanted) == tree.read(wanted)
    with store._tx(True) as cur:  # an odd row a store integrated before this layout kept: never read
        cur.execute("INSERT INTO log_hashes (level, idx, hash) VALUES (?, ?, ?)", (1, 5, b"\0" * 32))
    assert merkle.inclusion_proof(10, 64, store.log_hashes) == tree.inclusion_proof(10, 64)
    assert merkle.tree_root(64, store.log_hashes) == tree.root()
