"""common.merkle against an independent, naive transcription of RFC 9162 §2.1 (MTH, PATH, PROOF/SUBPROOF):
proofs generated from complete-subtree hashes equal the RFC's for every tree size 1..300 (every index; every
old/new pair up to 64 and sampled pairs above), they verify, and they stop verifying when anything changes."""

from __future__ import annotations

import hashlib
import random
from functools import cache

import pytest
from gpucensus.common import merkle
from gpucensus.common.merkle import MemoryTree, ProofError
from hypothesis import given
from hypothesis import strategies as st

LEAVES = [f"leaf {i}".encode() for i in range(300)]


# --- the RFC, written out as its text reads (memoised only so 45,000 proofs stay quick) ----------------------


@cache
def mth(lo: int, hi: int) -> bytes:
    n = hi - lo
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + LEAVES[lo]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(lo, lo + k) + mth(lo + k, hi)).digest()


def path(m: int, lo: int, hi: int) -> list[bytes]:
    n = hi - lo
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*path(m, lo, lo + k), mth(lo + k, hi)]
    return [*path(m - k, lo + k, hi), mth(lo, lo + k)]


def subproof(m: int, lo: int, hi: int, b: bool) -> list[bytes]:
    n = hi - lo
    if m == n:
        return [] if b else [mth(lo, hi)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*subproof(m, lo, lo + k, b), mth(lo + k, hi)]
    return [*subproof(m - k, lo + k, hi, False), mth(lo, lo + k)]


@pytest.fixture(scope="module")
def tree() -> MemoryTree:
    built = MemoryTree()
    for leaf in LEAVES:
        built.append(leaf)
    return built


def test_hashes_are_the_rfc_domain_separated_sha256() -> None:
    assert merkle.leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert merkle.node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    assert merkle.empty_root().hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert MemoryTree().root() == merkle.empty_root()


def test_roots_of_every_size_match_the_rfc(tree: MemoryTree) -> None:
    for size in range(0, 301):
        assert tree.root(size) == mth(0, size), size


def test_inclusion_proofs_for_every_index_of_every_size_up_to_300(tree: MemoryTree) -> None:
    for size in range(1, 301):
        root = mth(0, size)
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert proof == path(index, 0, size), (index, size)
            merkle.verify_inclusion(merkle.leaf_hash(LEAVES[index]), index, size, proof, root)


def _consistency_round_trip(tree: MemoryTree, old: int, new: int) -> None:
    proof = tree.consistency_proof(old, new)
    assert proof == (subproof(old, 0, new, True) if old < new else []), (old, new)
    merkle.verify_consistency(old, new, proof, mth(0, old), mth(0, new))


def test_consistency_proofs_for_every_pair_up_to_64(tree: MemoryTree) -> None:
    for new in range(1, 65):
        for old in range(1, new + 1):
            _consistency_round_trip(tree, old, new)


def test_consistency_proofs_for_sampled_pairs_up_to_300(tree: MemoryTree) -> None:
    rng = random.Random(9162)
    for new in range(65, 301):
        for old in {1, new - 1, new, 64, 128, 256, rng.randint(1, new)}:
            if old <= new:
                _consistency_round_trip(tree, old, new)


def test_a_large_tree_proves_sampled_leaves() -> None:
    size = 100_000
    big = MemoryTree()
    for i in range(size):
        big.append(i.to_bytes(8, "big"))
    # the reference root, by the RFC's recursion over the leaf hashes
    hashes = [merkle.leaf_hash(i.to_bytes(8, "big")) for i in range(size)]

    def reference(lo: int, hi: int) -> bytes:
        if hi - lo == 1:
            return hashes[lo]
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        return merkle.node_hash(reference(lo, lo + k), reference(lo + k, hi))

    root = reference(0, size)
    assert big.root() == root
    rng = random.Random(10**5)
    for index in [0, 1, size - 2, size - 1, 65_535, 65_536, *rng.sample(range(size), 40)]:
        merkle.verify_inclusion(hashes[index], index, size, big.inclusion_proof(index), root)
    for old in [1, 2, 65_536, 99_999, *rng.sample(range(1, size), 20)]:
        merkle.verify_consistency(old, size, big.consistency_proof(old), big.root(old), root)


def test_one_batch_read_per_proof(tree: MemoryTree) -> None:
    calls: list[list[tuple[int, int]]] = []

    def read(wanted):
        calls.append(list(wanted))
        return tree.read(wanted)

    merkle.inclusion_proof(5, 299, read)
    merkle.consistency_proof(7, 299, read)
    merkle.tree_root(299, read)
    assert len(calls) == 3
    assert calls[0] == merkle.inclusion_coordinates(5, 299)
    assert calls[1] == merkle.consistency_coordinates(7, 299)
    assert calls[2] == merkle.root_coordinates(299) == [(8, 0), (5, 8), (3, 36), (1, 148), (0, 298)]


def test_a_storage_returning_the_wrong_count_is_refused(tree: MemoryTree) -> None:
    with pytest.raises(ProofError, match="returned 1 hashes for"):
        merkle.inclusion_proof(5, 299, lambda wanted: tree.read(wanted)[:1])


@pytest.mark.parametrize(
    ("index", "size", "message"),
    [(5, 5, "outside"), (-1, 5, "not a tree size"), (0, 2**63, "not a tree size"), (True, 5, "not a tree size")],
)
def test_bad_inclusion_coordinates_are_refused(index: int, size: int, message: str) -> None:
    with pytest.raises(ProofError, match=message):
        merkle.inclusion_spans(index, size)
    with pytest.raises(ProofError, match=message):
        merkle.verify_inclusion(b"\0" * 32, index, size, [], b"\0" * 32)


@pytest.mark.parametrize(("old", "new"), [(0, 5), (6, 5), (0, 0)])
def test_bad_consistency_sizes_are_refused(old: int, new: int) -> None:
    with pytest.raises(ProofError):
        merkle.consistency_spans(old, new)
    with pytest.raises(ProofError):
        merkle.verify_consistency(old, new, [], b"\0" * 32, b"\0" * 32)


def test_memory_tree_refuses_sizes_beyond_it(tree: MemoryTree) -> None:
    with pytest.raises(ProofError, match="beyond this tree"):
        tree.inclusion_proof(0, 301)


def test_hostile_proofs_are_refused_without_work() -> None:
    with pytest.raises(ProofError, match="more than any tree needs"):
        merkle.verify_inclusion(b"\0" * 32, 0, 2, [b"\0" * 32] * 10_000, b"\0" * 32)
    with pytest.raises(ProofError, match="not 32 bytes"):
        merkle.verify_consistency(1, 2, [b"\0" * 31], b"\0" * 32, b"\0" * 32)


@given(data=st.data(), size=st.integers(2, 300))
def test_any_changed_bit_breaks_an_inclusion_proof(tree: MemoryTree, data: st.DataObject, size: int) -> None:
    index = data.draw(st.integers(0, size - 1))
    proof = tree.inclusion_proof(index, size)
    position = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    changed = list(proof)
    changed[position] = (int.from_bytes(changed[position], "big") ^ (1 << bit)).to_bytes(32, "big")
    with pytest.raises(ProofError):
        merkle.verify_inclusion(merkle.leaf_hash(LEAVES[index]), index, size, changed, mth(0, size))
    other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
    with pytest.raises(ProofError):  # the proof of one leaf proves no other
        merkle.verify_inclusion(merkle.leaf_hash(LEAVES[other]), other, size, proof, mth(0, size))


@given(data=st.data(), new=st.integers(2, 300))
def test_a_fork_fails_the_consistency_check(tree: MemoryTree, data: st.DataObject, new: int) -> None:
    old = data.draw(st.integers(1, new - 1))
    proof = tree.consistency_proof(old, new)
    forked = MemoryTree()  # same first old-1 leaves, one rewritten leaf, then the same rest
    changed = data.draw(st.integers(0, old - 1))
    for i, leaf in enumerate(LEAVES[:new]):
        forked.append(leaf + b"!" if i == changed else leaf)
    with pytest.raises(ProofError):
        merkle.verify_consistency(old, new, proof, forked.root(old), mth(0, new))
    with pytest.raises(ProofError):
        merkle.verify_consistency(old, new, forked.consistency_proof(old, new), mth(0, old), forked.root())
