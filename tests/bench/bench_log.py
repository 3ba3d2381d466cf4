"""Transparency-log benchmark (not part of the test suite; `make bench`): at 10^4, 10^5 and 10^6 leaves in a
SQLite store (PostgreSQL with --postgres DSN), the cost of sequencing one append (the counter statements inside
the storing transaction, and a whole `store_attestation` for scale), of integrating one leaf (batch integration
into the stored complete-subtree hashes), and of generating an inclusion and a consistency proof from the stored
hashes; then ingest throughput over gRPC with the background integrator and signer on versus off
(`[log] integrate = false`), measured in the same run, best of `--repeat`.

The large logs are filled with synthetic leaves of `--leaf-bytes` bytes written in bulk (sequenced, not yet
integrated): integration then runs over all of them as the collector's background task would after an upgrade.

    python tests/bench/bench_log.py [--sizes 10000,100000,1000000] [--leaf-bytes 256] [--postgres DSN] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script by `make bench`
    sys.path.insert(0, str(ROOT))

from gpucensus.collector.config import CollectorConfig, LogConfig, ServerConfig  # noqa: E402
from gpucensus.collector.log.service import INTEGRATION_BATCH  # noqa: E402
from gpucensus.collector.server import run_server  # noqa: E402
from gpucensus.collector.store import open_store  # noqa: E402
from gpucensus.collector.store.base import AttestationRecord  # noqa: E402
from gpucensus.common import merkle  # noqa: E402

from tests.bench.bench_ingest import _stream, make_chains  # noqa: E402
from tests.ingest_nodes import NOW, TestNode, enroll  # noqa: E402

SAMPLES = 200  # proofs and sequencing statements timed per size
FILL_BATCH = 20_000


def fill(store, size: int, leaf_bytes: int, keyid: str) -> None:
    """`size` sequenced leaves (synthetic attestation rows) written in bulk, the counter set to match."""
    now = store._t(NOW)
    for start in range(0, size, FILL_BATCH):
        rows = [(keyid, i + 1, f"{i:064x}", i.to_bytes(8, "big") * (leaf_bytes // 8), "bench-0", "site-0", now, now,
                 "", "accepted", i, b"") for i in range(start, min(size, start + FILL_BATCH))]  # fmt: skip
        with store._tx(True) as cur:
            cur.executemany(
                "INSERT INTO attestations (keyid, sequence, digest, envelope, node_id, site, stated_at, received_at, "
                "previous, status, log_index, checkpoint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    with store._tx(True) as cur:
        cur.execute("UPDATE log_sequence SET next_index = ? WHERE id = 1", (size,))


def at_size(store, size: int, leaf_bytes: int) -> dict[str, float]:
    node = TestNode("bench-0")
    enroll(store, node, site="site-0", country="DE")
    fill(store, size, leaf_bytes, node.keyid)
    start = time.perf_counter()
    while store.integrate_log(INTEGRATION_BATCH)[1] < size:
        pass
    integrate_s = time.perf_counter() - start
    rng = random.Random(size)
    start = time.perf_counter()
    for _ in range(SAMPLES):
        merkle.inclusion_proof(rng.randrange(size), size, store.log_hashes)
    inclusion_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(SAMPLES):
        merkle.consistency_proof(rng.randrange(1, size), size, store.log_hashes)
    consistency_s = time.perf_counter() - start
    start = time.perf_counter()
    root = merkle.tree_root(size, store.log_hashes)
    root_s = time.perf_counter() - start
    assert len(root) == 32
    sequencing = 0.0  # the sequencing statements alone, in a write transaction each (rolled back: size unchanged)
    for _ in range(SAMPLES):
        try:
            with store._tx(True) as cur:
                began = time.perf_counter()
                store._sequence(cur, 1)  # on PostgreSQL it writes the index on that row: rolled back
                sequencing += time.perf_counter() - began
                raise _Rollback
        except _Rollback:
            pass
    start = time.perf_counter()
    for sequence in range(size + 1, size + 1 + SAMPLES):  # whole storing transactions, fsync included
        store.store_attestation(AttestationRecord(
            keyid=node.keyid, sequence=sequence, digest=f"{sequence:064x}", envelope=b"x" * leaf_bytes,
            node_id="bench-0", site="site-0", timestamp=NOW, received_at=NOW))  # fmt: skip
    store_s = time.perf_counter() - start
    return {
        "leaves": size,
        "integrate_us_per_leaf": round(1e6 * integrate_s / size, 2),
        "integrate_s_total": round(integrate_s, 2),
        "sequence_statements_us_per_append": round(1e6 * sequencing / SAMPLES, 1),
        "store_attestation_us_per_append": round(1e6 * store_s / SAMPLES, 1),
        "inclusion_proof_us": round(1e6 * inclusion_s / SAMPLES, 1),
        "consistency_proof_us": round(1e6 * consistency_s / SAMPLES, 1),
        "root_us": round(1e6 * root_s, 1),
    }


class _Rollback(Exception):
    pass


def ingest_rate(directory: Path, nodes: int, rounds: int, integrate: bool) -> float:
    """Envelopes per second over gRPC (one client process per node) with the background log on or off."""
    store = open_store("sqlite", data_dir=str(directory))
    chains = make_chains(store, nodes, rounds)
    log = LogConfig(integrate=integrate, checkpoint_interval=1.0)
    server, port = run_server(CollectorConfig(server=ServerConfig(listen="127.0.0.1:0"), log=log), store,
                              clock=lambda: NOW)  # fmt: skip
    with multiprocessing.get_context("spawn").Pool(nodes) as pool:
        pool.map(abs, range(nodes))
        start = time.perf_counter()
        acked = sum(pool.starmap(_stream, [(port, chain) for chain in chains]))
        elapsed = time.perf_counter() - start
    server.stop(None).wait()
    store.close()
    return acked / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="log sizes (comma-separated)")
    parser.add_argument("--leaf-bytes", type=int, default=256, help="bytes per synthetic leaf (default 256)")
    parser.add_argument("--postgres", default="", metavar="DSN", help="also measure on PostgreSQL (a new schema)")
    parser.add_argument("--nodes", type=int, default=4, help="concurrent streams for the ingest figure")
    parser.add_argument("--rounds", type=int, default=50, help="envelopes per node for the ingest figure")
    parser.add_argument("--repeat", type=int, default=3, help="ingest runs per setting, best kept")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    figures: dict[str, object] = {"leaf_bytes": args.leaf_bytes}
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            store = open_store("sqlite", data_dir=str(Path(tmp) / f"sqlite-{size}"))
            figures[f"sqlite_{size}"] = at_size(store, size, args.leaf_bytes)
            store.close()
            print(f"sqlite {size}: {figures[f'sqlite_{size}']}", file=sys.stderr, flush=True)
        if args.postgres:
            import secrets

            for size in [s for s in sizes if s <= 100_000]:
                schema = f"gpucensus_bench_{secrets.token_hex(4)}"
                store = open_store("postgres", dsn=args.postgres, schema=schema)
                try:
                    figures[f"postgres_{size}"] = at_size(store, size, args.leaf_bytes)
                finally:
                    with store._tx(True) as cur:
                        cur.execute(f"DROP SCHEMA {schema} CASCADE")
                    store.close()
                print(f"postgres {size}: {figures[f'postgres_{size}']}", file=sys.stderr, flush=True)
        on, off = [], []
        for i in range(args.repeat):
            on.append(ingest_rate(Path(tmp) / f"on-{i}", args.nodes, args.rounds, True))
            off.append(ingest_rate(Path(tmp) / f"off-{i}", args.nodes, args.rounds, False))
        figures["ingest_per_s_log_integrating"] = round(max(on), 1)
        figures["ingest_per_s_log_not_integrating"] = round(max(off), 1)
        figures["ingest_runs"] = {"on": [round(r, 1) for r in on], "off": [round(r, 1) for r in off]}
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"transparency log, SQLite, synthetic leaves of {args.leaf_bytes} B")
    for key, value in figures.items():
        if isinstance(value, dict) and "leaves" in value:
            print(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in value.items() if k != "leaves"))
    on, off = figures["ingest_per_s_log_integrating"], figures["ingest_per_s_log_not_integrating"]
    print(f"ingest over gRPC ({args.nodes} streams x {args.rounds}): background integration on {on}/s, off {off}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
