"""Merkle benchmark (not part of the test suite): the cost of the pure log math in `common.merkle` at 10^4, 10^5
and 10^6 leaves, with the in-memory tree as the storage (so storage reads cost nothing here: a stored log adds
one batch read per proof). Per size: append (leaf hash + completed subtrees), root, inclusion and consistency
proof generation and verification, averaged over sampled indices, and how many stored hashes a proof reads.

    python tests/bench/bench_merkle.py [--sizes 10000,100000,1000000] [--samples 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gpucensus.common import merkle  # noqa: E402


def _per_call_us(fn, args_list: list[tuple]) -> float:
    start = time.perf_counter()
    for args in args_list:
        fn(*args)
    return (time.perf_counter() - start) / len(args_list) * 1e6


def measure(size: int, samples: int, rng: random.Random) -> dict[str, float | int]:
    tree = merkle.MemoryTree()
    leaves = [rng.randbytes(600) for _ in range(min(size, 10_000))]  # envelope-sized leaves, reused
    start = time.perf_counter()
    for i in range(size):
        tree.append(leaves[i % len(leaves)])
    append_us = (time.perf_counter() - start) / size * 1e6
    root = tree.root()
    indices = [rng.randrange(size) for _ in range(samples)]
    olds = [rng.randrange(1, size) for _ in range(samples)]
    proofs = [tree.inclusion_proof(i) for i in indices]
    cproofs = [tree.consistency_proof(o) for o in olds]
    roots = {o: tree.root(o) for o in olds}
    hashes = [merkle.leaf_hash(leaves[i % len(leaves)]) for i in indices]
    inclusion_args = [(h, i, size, p, root) for h, i, p in zip(hashes, indices, proofs, strict=True)]
    consistency_args = [(o, size, p, roots[o], root) for o, p in zip(olds, cproofs, strict=True)]
    return {
        "leaves": size,
        "append_us": round(append_us, 2),
        "root_us": round(_per_call_us(tree.root, [()] * 100), 1),
        "inclusion_proof_us": round(_per_call_us(tree.inclusion_proof, [(i,) for i in indices]), 1),
        "inclusion_verify_us": round(_per_call_us(merkle.verify_inclusion, inclusion_args), 1),
        "consistency_proof_us": round(_per_call_us(tree.consistency_proof, [(o,) for o in olds]), 1),
        "consistency_verify_us": round(_per_call_us(merkle.verify_consistency, consistency_args), 1),
        "max_inclusion_reads": max(len(merkle.inclusion_coordinates(i, size)) for i in indices),
        "max_consistency_reads": max(len(merkle.consistency_coordinates(o, size)) for o in olds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(9162)
    results = [measure(int(size), args.samples, rng) for size in args.sizes.split(",")]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for row in results:
        print("  ".join(f"{key} {value}" for key, value in row.items()))


if __name__ == "__main__":
    main()
