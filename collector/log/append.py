"""Appending leaves to a tree kept as stored complete-subtree hashes: the pure part of integration.

The tree of size N is stored as every complete subtree hash `(level, n)` (the subtree over leaves
[n·2^level, (n+1)·2^level)). Appending needs only the right border of the old tree (its complete subtrees, one per
set bit of N: O(log N) reads) and yields the new rows: each leaf adds its leaf hash and one row per subtree it
completes, so an append costs O(1) amortised hashes and writes, O(log N) reads per batch, and nothing is ever
rebuilt from all leaves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gpucensus.common.merkle import leaf_hash, node_hash

Coordinate = tuple[int, int]


def border(size: int) -> list[Coordinate]:
    """The complete subtrees whose hashes an append to a tree of `size` leaves may need (left siblings)."""
    return [(level, (size >> level) - 1) for level in range(size.bit_length()) if size >> level & 1]


def append(size: int, leaves: Iterable[bytes], border_hashes: Sequence[bytes]) -> list[tuple[int, int, bytes]]:
    """The `(level, n, hash)` rows that appending `leaves` (raw leaf bytes) to a tree of `size` leaves adds;
    `border_hashes` are the stored hashes of `border(size)`, in that order."""
    known: dict[Coordinate, bytes] = dict(zip(border(size), border_hashes, strict=True))
    rows: list[tuple[int, int, bytes]] = []
    index = size
    for leaf in leaves:
        level, n, digest = 0, index, leaf_hash(leaf)
        rows.append((level, n, digest))
        known[(level, n)] = digest
        while n & 1:
            digest = node_hash(known.pop((level, n - 1)), digest)
            del known[(level, n)]
            level, n = level + 1, n >> 1
            rows.append((level, n, digest))
            known[(level, n)] = digest
        index += 1
    return rows
