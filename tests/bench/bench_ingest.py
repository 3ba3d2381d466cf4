"""Ingest benchmark (not part of the test suite; `make bench`): envelopes per second through the real gRPC
stream into SQLite (clients in their own processes), the per-step cost of the pipeline, and the machine's own
limits measured in the same run (raw Ed25519 verify rate with `cryptography`, raw SQLite commit rate with
synchronous=FULL), as ratios. Each figure is the best of `--repeat` runs (the machine may be shared).

    python tests/bench/bench_ingest.py [--nodes 4] [--rounds 50] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script by `make bench`
    sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from collector.config import CollectorConfig, ServerConfig  # noqa: E402
from collector.ingest.pipeline import STEPS, Pipeline, StepTimings  # noqa: E402
from collector.server import run_server  # noqa: E402
from collector.store import open_store  # noqa: E402
from common import dsse  # noqa: E402
from protos import census_pb2 as pb  # noqa: E402
from protos import census_pb2_grpc  # noqa: E402
from tests.ingest_nodes import NOW, TestNode, enroll  # noqa: E402

MIN_SECONDS = 1.0  # each raw-limit measurement runs at least this long


def rate(operation, min_seconds: float = MIN_SECONDS) -> float:
    """Operations per second of `operation`, run until `min_seconds` have passed."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds or count < 10:
        operation()
        count += 1
    return count / elapsed


def ed25519_verify_rate(envelope: bytes) -> float:
    """Raw verifications per second of one real envelope's PAE bytes (the cost floor of the signature step)."""
    parsed = dsse.parse_envelope(envelope)
    message = dsse.pae(parsed.payload_type, parsed.payload)
    key = Ed25519PrivateKey.generate()
    signature, public = key.sign(message), key.public_key()
    return rate(lambda: public.verify(signature, message))


def sqlite_commit_rate(directory: Path, blob_bytes: int) -> float:
    """Raw committed single-row inserts per second (WAL, synchronous=FULL), a row the envelope's size."""
    conn = sqlite3.connect(directory / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
    blob = b"x" * blob_bytes

    def commit() -> None:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t (body) VALUES (?)", (blob,))
        conn.execute("COMMIT")

    try:
        return rate(commit)
    finally:
        conn.close()


def make_chains(store, nodes: int, rounds: int) -> list[list[bytes]]:
    chains = []
    for i in range(nodes):
        node = TestNode(f"bench-{i}")
        enroll(store, node, site=f"site-{i % 3}", country=("DE", "PL", "SG")[i % 3])
        chains.append([node.next() for _ in range(rounds)])
    return chains


def _stream(port: int, chain: list[bytes]) -> int:
    """One agent's stream, run in a client process (so the client does not share the server's GIL)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = census_pb2_grpc.CensusStub(channel)
        acks = list(stub.Report((pb.Envelope(dsse=e) for e in chain), timeout=600))
    if len(acks) != len(chain) or any(a.status != pb.ACK_STATUS_ACCEPTED for a in acks):
        raise RuntimeError("an envelope was not accepted")
    return len(acks)


def over_grpc(directory: Path, nodes: int, rounds: int) -> tuple[float, int]:
    """Every node streams its chain concurrently from its own client process; returns envelopes/s."""
    store = open_store("sqlite", data_dir=str(directory / "grpc"))
    chains = make_chains(store, nodes, rounds)
    config = CollectorConfig(server=ServerConfig(listen="127.0.0.1:0"))
    server, port = run_server(config, store, clock=lambda: NOW)
    with multiprocessing.get_context("spawn").Pool(nodes) as pool:
        pool.map(abs, range(nodes))  # start the client processes before the clock starts
        start = time.perf_counter()
        acked = sum(pool.starmap(_stream, [(port, chain) for chain in chains]))
        elapsed = time.perf_counter() - start
    server.stop(None).wait()
    store.close()
    return acked / elapsed, len(chains[0][0])


def in_process(directory: Path, nodes: int, rounds: int) -> tuple[float, StepTimings]:
    """The same envelopes straight into the pipeline, one thread, no gRPC: the per-step cost without contention."""
    store = open_store("sqlite", data_dir=str(directory / "direct"))
    chains = make_chains(store, nodes, rounds)
    pipeline = Pipeline(store, clock=lambda: NOW)
    start = time.perf_counter()
    for chain in chains:
        for envelope in chain:
            pipeline.ingest(envelope)
    elapsed = time.perf_counter() - start
    store.close()
    return nodes * rounds / elapsed, pipeline.timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4, help="concurrent streams, one node each (default 4)")
    parser.add_argument("--rounds", type=int, default=50, help="envelopes per node (default 50)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure, best kept (default 3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    runs: dict[str, list] = {"one": [], "many": [], "direct": [], "verify": [], "commit": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            directory = Path(tmp) / str(i)
            directory.mkdir()
            one_stream, envelope_bytes = over_grpc(directory / "one", 1, args.nodes * args.rounds)
            runs["one"].append(one_stream)
            runs["many"].append(over_grpc(directory / "many", args.nodes, args.rounds)[0])
            runs["direct"].append(in_process(directory, args.nodes, args.rounds))
            sample = TestNode("sample").next()
            runs["verify"].append(ed25519_verify_rate(sample))
            runs["commit"].append(sqlite_commit_rate(directory, len(sample)))
    one_stream, many_streams, verify_rate, commit_rate = (max(runs[k]) for k in ("one", "many", "verify", "commit"))
    direct_rate, timings = max(runs["direct"], key=lambda run: run[0])
    step_us = {step: min(1e6 * t.seconds[step] / t.envelopes for _, t in runs["direct"]) for step in STEPS}
    figures = {
        "envelopes_per_run": timings.envelopes,
        "envelope_bytes": envelope_bytes,
        "ingest_per_s_grpc_1_stream": round(one_stream, 1),
        f"ingest_per_s_grpc_{args.nodes}_streams": round(many_streams, 1),
        "ingest_per_s_in_process": round(direct_rate, 1),
        "step_us_per_envelope": {k: round(v, 1) for k, v in step_us.items()},
        "grpc_us_per_envelope": round(1e6 / one_stream - 1e6 / direct_rate, 1),
        "raw_ed25519_verify_per_s": round(verify_rate, 1),
        "raw_sqlite_commit_per_s": round(commit_rate, 1),
        "ratio_ingest_to_sqlite_commit": round(one_stream / commit_rate, 3),
        "ratio_ingest_to_ed25519_verify": round(one_stream / verify_rate, 4),
        "ratio_signature_step_to_raw_verify": round(step_us["signature"] * verify_rate / 1e6, 1),
        "ratio_store_step_to_raw_commit": round(step_us["store"] * commit_rate / 1e6, 1),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"envelopes of {envelope_bytes} B (dgx-h100 mock node, 8 GPUs), {timings.envelopes} per run, SQLite store")
    print(f"ingest over gRPC, 1 stream:          {one_stream:8.1f} envelopes/s")
    print(f"ingest over gRPC, {args.nodes} streams:         {many_streams:8.1f} envelopes/s")
    print(f"same envelopes in process, no gRPC:  {direct_rate:8.1f} envelopes/s")
    print("per-step cost per envelope (in process, one thread, best run per step):")
    for step, us in step_us.items():
        print(f"  {step:<10} {us:9.1f} us")
    print(f"  {'gRPC':<10} {figures['grpc_us_per_envelope']:9.1f} us  (1-stream time minus in-process time; noisy)")
    print(f"machine: Ed25519 verify {verify_rate:9.1f}/s   SQLite commit (WAL, synchronous=FULL) {commit_rate:8.1f}/s")
    print(f"ratios: ingest/SQLite commit = {figures['ratio_ingest_to_sqlite_commit']}, "
          f"ingest/Ed25519 verify = {figures['ratio_ingest_to_ed25519_verify']}, "
          f"signature step/raw verify = {figures['ratio_signature_step_to_raw_verify']}x, "
          f"store step/raw commit = {figures['ratio_store_step_to_raw_commit']}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
