"""Storage benchmark (not part of the test suite): database growth per report and per node-day on SQLite, full
inventories every round against compact statements (a full one every `--full-every` rounds), through the
collector's own ingest pipeline (in process) and the log's integration. Sizes are deterministic; no timing.

    python tests/bench/bench_storage.py [--nodes 8] [--rounds 60] [--full-every 60]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from gpucensus.collector.ingest.pipeline import Pipeline  # noqa: E402
from gpucensus.collector.store import open_store  # noqa: E402

from tests.bench import fleet, loadgen  # noqa: E402


def _size(db: Path) -> int:
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return db.stat().st_size


def growth(spec: fleet.FleetSpec, work: Path) -> tuple[float, float]:
    """(average envelope bytes, database bytes per report) for the fleet `spec`."""
    fleet.generate(spec, work / "fleet.jsonl", processes=1)
    nodes = fleet.load(work / "fleet.jsonl")[1]
    store = open_store("sqlite", data_dir=str(work / "db"))
    try:
        loadgen.enroll_fleet(store, nodes, loadgen.utc_now())
        before = _size(work / "db" / "collector.db")
        pipeline = Pipeline(store)
        for envelope in fleet.interleaved(nodes):
            if pipeline.ingest(envelope).status != "accepted":
                raise RuntimeError("the bench fleet is wrong: an envelope was not accepted")
        store.integrate_log(10**9)
    finally:
        store.close()
    reports = spec.nodes * spec.rounds
    envelope_bytes = sum(len(e) for n in nodes for e in n.envelopes)
    return envelope_bytes / reports, (_size(work / "db" / "collector.db") - before) / reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--full-every", type=int, default=60)
    args = parser.parse_args(argv)
    for mix, full_every in (("full inventories", 0), (f"compact, a full one every {args.full_every}", args.full_every)):
        with tempfile.TemporaryDirectory(prefix="gpucensus-storage-") as tmp:
            spec = fleet.FleetSpec(args.nodes, args.rounds, 0.0, full_every=full_every)
            envelope, per_report = growth(spec, Path(tmp))
            print(f"{mix}: envelope {envelope:,.0f} B on average, database {per_report:,.0f} B per report, "
                  f"{per_report * 1440 / 1e6:.2f} MB per node-day at one report a minute")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
