"""RFC 9162 §2.1 Merkle tree math: hashes, proof verification, and proof generation from stored subtrees.

Why this shape: a log keeps the hashes of its *complete* subtrees (they never change once complete), so a
storage can name each by `(level, n)` = the subtree over leaves [n·2^level, (n+1)·2^level); level 0 holds
the leaf hashes. Every proof element and every root is either one such hash or the hash of an *incomplete*
right edge, which is recomputed here from the complete subtrees it is made of. Generation therefore first
lists the coordinates it needs (`*_coordinates`), reads them in one batch (`HashReader`), then assembles:
a storage answers a proof with one query and never rebuilds the tree.

Verification follows the RFC's algorithms (§2.1.3.2 inclusion, §2.1.4.2 consistency) and the edge cases of
the transparency-dev conformance vectors (tests/vectors/merkle/README.md). Pure: standard library only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from gpucensus.common.errors import GpucensusError

HASH_SIZE = 32
MAX_TREE_SIZE = 2**63  # sizes travel as int64/uint64; anything larger is hostile input
MAX_PROOF_HASHES = 2 * 64  # a consistency proof of a 2^64 tree has at most ~2·64 hashes

Coordinate = tuple[int, int]  # (level, n): the complete subtree over leaves [n·2^level, (n+1)·2^level)
HashReader = Callable[[Sequence[Coordinate]], list[bytes]]  # batch read of complete-subtree hashes, in order


class ProofError(GpucensusError):
    """A proof, size or hash does not verify; the message names what failed."""


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def empty_root() -> bytes:
    """MTH({}) = SHA-256 of the empty string (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"").digest()


# --- verification -------------------------------------------------------------------------------------------


def _check_size(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < MAX_TREE_SIZE:
        raise ProofError(f"{name} {value!r} is not a tree size (an integer 0..2^63-1)")


def _check_hashes(what: str, proof: Sequence[bytes]) -> None:
    if len(proof) > MAX_PROOF_HASHES:
        raise ProofError(f"{what} has {len(proof)} hashes, more than any tree needs ({MAX_PROOF_HASHES})")
    for position, item in enumerate(proof):
        if not isinstance(item, bytes) or len(item) != HASH_SIZE:
            raise ProofError(f"{what} hash {position} is not {HASH_SIZE} bytes")


def root_from_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that `proof` implies for `leaf_hash` at `index` in a tree of `size` leaves (RFC 9162 §2.1.3.2)."""
    _check_size("tree size", size)
    _check_size("leaf index", index)
    if index >= size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    if not isinstance(leaf_hash, bytes) or len(leaf_hash) != HASH_SIZE:
        raise ProofError(f"leaf hash is not {HASH_SIZE} bytes")
    _check_hashes("inclusion proof", proof)
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError(f"inclusion proof for leaf {index} of {size} is too long ({len(proof)} hashes)")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof for leaf {index} of {size} is too short ({len(proof)} hashes)")
    return r


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    calculated = root_from_inclusion(leaf_hash, index, size, proof)
    if calculated != root:
        raise ProofError(
            f"inclusion proof for leaf {index} does not lead to the root of size {size} "
            f"(computed {calculated.hex()}, expected {root.hex()})"
        )


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Raise ProofError unless the tree of `size2` leaves with `root2` extends the one of `size1` with `root1`."""
    _check_size("old size", size1)
    _check_size("new size", size2)
    if size2 < size1:
        raise ProofError(f"new size {size2} is smaller than old size {size1}")
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing (old size 0)")
    if size1 == size2:
        if proof:
            raise ProofError(f"sizes are equal ({size1}) but the consistency proof is not empty")
        if root1 != root2:
            raise ProofError(f"same size {size1} but different roots ({root1.hex()} vs {root2.hex()})")
        return
    if not proof:
        raise ProofError(f"consistency proof from {size1} to {size2} is empty")
    _check_hashes("consistency proof", proof)
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # old tree is a complete subtree: its root is the first node of the path
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof from {size1} to {size2} is too long ({len(proof)} hashes)")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof from {size1} to {size2} is too short ({len(proof)} hashes)")
    if fr != root1:
        raise ProofError(f"consistency proof does not lead to the old root of size {size1}")
    if sr != root2:
        raise ProofError(f"consistency proof does not lead to the new root of size {size2}")


# --- generation from complete-subtree hashes ----------------------------------------------------------------

Span = tuple[int, int]  # leaves [lo, hi) of one proof element (a complete subtree or an incomplete right edge)


def _largest_power_below(n: int) -> int:
    """The largest power of two strictly below n (n >= 2): RFC 9162's split point k."""
    return 1 << ((n - 1).bit_length() - 1)


def _span_coordinates(lo: int, hi: int) -> list[Coordinate]:
    """The complete subtrees, left to right, whose hashes make MTH(D[lo:hi]) (one if complete)."""
    out = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        out.append((level, lo >> level))
        lo += 1 << level
    return out


def _inclusion_spans(index: int, lo: int, hi: int) -> list[Span]:
    spans: list[Span] = []
    while hi - lo > 1:  # PATH(m, D[lo:hi]), iteratively: the sibling spans from the top down
        k = _largest_power_below(hi - lo)
        if index < lo + k:
            spans.append((lo + k, hi))
            hi = lo + k
        else:
            spans.append((lo, lo + k))
            lo += k
    spans.reverse()  # the proof lists siblings from the leaf up
    return spans


def _consistency_spans(old: int, lo: int, hi: int) -> list[Span]:
    spans: list[Span] = []
    complete = True  # SUBPROOF's b: the old tree is still a left-aligned complete subtree of the walk
    while True:
        n = hi - lo
        if old == hi:
            if not complete:
                spans.append((lo, hi))
            break
        k = _largest_power_below(n)
        if old <= lo + k:
            spans.append((lo + k, hi))
            hi = lo + k
        else:
            spans.append((lo, lo + k))
            lo += k
            complete = False
    spans.reverse()
    return spans


def inclusion_spans(index: int, size: int) -> list[Span]:
    _check_size("leaf index", index)
    _check_size("tree size", size)
    if index >= size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    return _inclusion_spans(index, 0, size)


def consistency_spans(old: int, new: int) -> list[Span]:
    _check_size("old size", old)
    _check_size("new size", new)
    if not 0 < old <= new:
        raise ProofError(f"no consistency proof from size {old} to size {new} (need 0 < old <= new)")
    if old == new:
        return []
    return _consistency_spans(old, 0, new)


def coordinates(spans: Sequence[Span]) -> list[Coordinate]:
    """Every complete-subtree coordinate the spans need, without repeats, in first-use order: one batch read."""
    seen: dict[Coordinate, None] = {}
    for lo, hi in spans:
        for coordinate in _span_coordinates(lo, hi):
            seen.setdefault(coordinate, None)
    return list(seen)


def inclusion_coordinates(index: int, size: int) -> list[Coordinate]:
    return coordinates(inclusion_spans(index, size))


def consistency_coordinates(old: int, new: int) -> list[Coordinate]:
    return coordinates(consistency_spans(old, new))


def root_coordinates(size: int) -> list[Coordinate]:
    _check_size("tree size", size)
    return _span_coordinates(0, size)


def _assemble(spans: Sequence[Span], read: HashReader) -> list[bytes]:
    needed = coordinates(spans)
    hashes = read(needed) if needed else []
    if len(hashes) != len(needed):
        raise ProofError(f"storage returned {len(hashes)} hashes for {len(needed)} requested")
    by_coordinate = dict(zip(needed, hashes, strict=True))
    out = []
    for lo, hi in spans:
        parts = [by_coordinate[c] for c in _span_coordinates(lo, hi)]
        value = parts[-1]
        for left in reversed(parts[:-1]):
            value = node_hash(left, value)
        out.append(value)
    return out


def inclusion_proof(index: int, size: int, read: HashReader) -> list[bytes]:
    """PATH(index, D[0:size]) from stored complete-subtree hashes."""
    return _assemble(inclusion_spans(index, size), read)


def consistency_proof(old: int, new: int, read: HashReader) -> list[bytes]:
    """PROOF(old, D[0:new]) from stored complete-subtree hashes; empty when old == new."""
    return _assemble(consistency_spans(old, new), read)


def tree_root(size: int, read: HashReader) -> bytes:
    """MTH(D[0:size]) from stored complete-subtree hashes."""
    _check_size("tree size", size)
    if size == 0:
        return empty_root()
    return _assemble([(0, size)], read)[0]


class MemoryTree:
    """An append-only tree in memory keeping every complete-subtree hash: the peer of a stored log, for tests
    and for tools (the auditor) that rebuild a small tree."""

    def __init__(self) -> None:
        self._levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf: bytes) -> int:
        """Add a leaf (its bytes, not its hash); return its index."""
        return self.append_hash(leaf_hash(leaf))

    def append_hash(self, hashed: bytes) -> int:
        index = self.size
        self._levels[0].append(hashed)
        level, n = 0, index
        while n & 1:  # this leaf completed the subtree one level up
            if len(self._levels) == level + 1:
                self._levels.append([])
            row = self._levels[level]
            self._levels[level + 1].append(node_hash(row[n - 1], row[n]))
            level, n = level + 1, n >> 1
        return index

    def read(self, wanted: Sequence[Coordinate]) -> list[bytes]:
        try:
            return [self._levels[level][n] for level, n in wanted]
        except IndexError as err:
            raise ProofError(f"subtree not complete in a tree of size {self.size}") from err

    def root(self, size: int | None = None) -> bytes:
        return tree_root(self.size if size is None else self._within(size), self.read)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self.size if size is None else self._within(size), self.read)

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        return consistency_proof(old, self.size if new is None else self._within(new), self.read)

    def _within(self, size: int) -> int:
        if not isinstance(size, int) or not 0 <= size <= self.size:
            raise ProofError(f"tree size {size} is beyond this tree ({self.size} leaves)")
        return size
