"""Storage benchmark (not part of the test suite; `make bench`, section `storage`): bytes on disk per 8-GPU node
per day, split by table and index (transparency-log hashes included), and the SQL statements and time per
`store_attestation`, on SQLite and PostgreSQL.

A fleet (`fleet.py`: real keys, real chains, dgx-h100 mock, 8 GPUs of its own per node) is signed first, then
ingested through the collector's own pipeline (`Pipeline.ingest`, in process, no gRPC) into a fresh store, the
log integrated every 200 envelopes as the collector's integrator does. Sizes are read twice: after a warm-up
(the first quarter of the rounds: enrolment, the first full reports, per-node and per-GPU rows) and at the end;
the growth between the two, divided by the nodes and the rounds in between and multiplied by 1,440 (a day at the
default 60-second interval), is the steady-state bytes per node-day. Scaled down from a node-day (default 4
nodes x 240 rounds) and extrapolated linearly: every row the store writes per report is per report, so growth
is linear in the rounds; page granularity (SQLite 4 KiB, PostgreSQL 8 KiB per relation) is the error, under
1 % at these sizes.

SQLite sizes come from the `dbstat` virtual table (bytes in pages per table and index, after a WAL checkpoint);
PostgreSQL's from `pg_table_size` per table (its TOAST included) and `pg_relation_size` per index, with a plain
VACUUM after every integration (as autovacuum does in a long-running database: an UPDATE leaves the old row
version dead until a vacuum makes its space reusable; every attestation row is updated once, when it gets its
leaf index at the end of its transaction, and every GPU row on every report).

    python tests/bench/bench_storage.py [--nodes 4] [--rounds 240] [--changed 0.0] [--full-every 0] [--json]

`--full-every N` (once compact steady-state statements exist: a node whose inventory is unchanged sends a short
statement naming its last full inventory, a full one on change and every N rounds) signs the fleet that way;
0, the default, is a full inventory every round.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from gpucensus.collector.store import open_store  # noqa: E402

from tests.bench import fleet, loadgen  # noqa: E402

PG_DSN = os.environ.get("GPUCENSUS_TEST_PG_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")
DAY_ROUNDS = 1440  # reports per node-day at the default 60-second interval
TARGET_BYTES = 100_000  # issue 13: <= 100 KB per 8-GPU node per day in steady state
INTEGRATE_EVERY = 200


@dataclasses.dataclass
class StorageResult:
    kind: str
    nodes: int
    rounds: int
    measured_rounds: int  # the rounds between the two size readings
    per_node_day: dict[str, int]  # table or "<table> indexes" -> bytes per node-day
    total_per_node_day: int
    envelope_raw: float  # mean bytes of an envelope as received
    envelope_stored: float  # mean bytes of the stored `envelope` column
    device_rows: int  # attestation_devices rows after the run
    attestations: int
    statements: float  # SQL statements per store_attestation (executemany: one per row)
    store_us: float  # mean wall time of store_attestation, µs
    store_cpu_us: float  # mean CPU time of the calling thread in store_attestation, µs (no fsync or lock waits)
    runs: int = 1
    total_range: tuple[int, int] = (0, 0)  # min, max over the runs
    store_us_range: tuple[float, float] = (0.0, 0.0)
    # compact statements only: what the store grows by per node-day once those older than the retention window
    # are pruned (`prune`), by table; empty for a mix without them
    retained_per_node_day: dict[str, int] = dataclasses.field(default_factory=dict)
    retained_total: int = 0


def median_of(runs: list[StorageResult]) -> StorageResult:
    """Medians over repeated runs (each table's on its own), with the range of the total and of the time."""
    totals = [r.total_per_node_day for r in runs]
    times = [r.store_us for r in runs]
    names = {n for r in runs for n in r.per_node_day}
    return dataclasses.replace(
        runs[0],
        per_node_day={n: round(statistics.median(r.per_node_day.get(n, 0) for r in runs)) for n in names},
        total_per_node_day=round(statistics.median(totals)), total_range=(min(totals), max(totals)),
        statements=statistics.median(r.statements for r in runs), store_us=statistics.median(times),
        store_cpu_us=statistics.median(r.store_cpu_us for r in runs),
        store_us_range=(min(times), max(times)), runs=len(runs),
        retained_per_node_day={n: round(statistics.median(r.retained_per_node_day.get(n, 0) for r in runs))
                               for n in {n for r in runs for n in r.retained_per_node_day}},
        retained_total=round(statistics.median(r.retained_total for r in runs)),
    )  # fmt: skip


def measure(spec: fleet.FleetSpec, kinds: list[str], repeat: int, work: Path) -> list[StorageResult]:
    """`repeat` runs per store kind on one signed fleet; the median of each."""
    nodes = make_fleet(spec, work)
    return [median_of([run(kind, nodes, work / f"{kind}-{i}") for i in range(repeat)]) for kind in kinds]


def make_fleet(spec: fleet.FleetSpec, work: Path) -> list[fleet.FleetNode]:
    path = work / f"fleet-{spec.nodes}-{spec.rounds}-{spec.changed}-{spec.full_every}.jsonl"
    if not path.exists():
        fleet.generate(spec, path)
    return fleet.load(path)[1]


def fleet_spec(nodes: int, rounds: int, changed: float, full_every: int) -> fleet.FleetSpec:
    """`full_every` 0: every report a full inventory; N: compact statements, a full one every N rounds."""
    return fleet.FleetSpec(nodes, rounds, changed, full_every=full_every)


class _Store:
    """A fresh store of `kind` (SQLite file in `work`, or a new PostgreSQL schema dropped by `drop`)."""

    def __init__(self, kind: str, work: Path) -> None:
        self.kind = kind
        self.schema = f"gpucensus_bench_{secrets.token_hex(4)}"
        options: dict[str, Any] = {"path": str(work / "storage.db")} if kind == "sqlite" else {
            "dsn": PG_DSN, "schema": self.schema}  # fmt: skip
        self.store = open_store(kind, **options)
        self.store.migrate()

    def sizes(self, in_use: bool = False) -> dict[str, int]:
        """Bytes per table and per table's indexes ("<table> indexes"): of their pages; `in_use` (SQLite): the
        bytes their pages hold (headers and cell pointers included, free space not), byte-exact where whole pages
        are too coarse."""
        if self.kind == "sqlite":
            conn = self.store._conn
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            owners = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
            out: dict[str, int] = defaultdict(int)
            measure = "SUM(pgsize - unused)" if in_use else "SUM(pgsize)"
            for name, size in conn.execute(f"SELECT name, {measure} FROM dbstat GROUP BY name"):
                table = owners.get(name, name)
                if name.startswith("sqlite_autoindex_") or (name != table and name in owners):
                    out[f"{table} indexes"] += int(size)
                else:
                    out[table] += int(size)
            return dict(out)
        import psycopg

        out = defaultdict(int)
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT c.relname, c.relkind, COALESCE(t.relname, c.relname), "
                "CASE WHEN c.relkind = 'r' THEN pg_table_size(c.oid) ELSE pg_relation_size(c.oid) END "
                "FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace "
                "LEFT JOIN pg_index i ON i.indexrelid = c.oid LEFT JOIN pg_class t ON t.oid = i.indrelid "
                "WHERE s.nspname = %s AND c.relkind IN ('r', 'i')",
                (self.schema,),
            ).fetchall()
        for _name, relkind, table, size in rows:
            out[table if relkind == "r" else f"{table} indexes"] += int(size)
        return dict(out)

    def vacuum(self, full: bool = False) -> None:
        """PostgreSQL: a plain VACUUM of every table (what autovacuum does); `full`: rewrite every table and
        index packed (SQLite: VACUUM), so two sizes compare what is stored rather than where it was freed."""
        if self.kind != "postgres":
            if full:
                self.store._conn.execute("VACUUM")
            return
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (self.schema,)).fetchall()
            for (table,) in tables:
                conn.execute(f'VACUUM {"FULL " if full else ""}"{self.schema}"."{table}"')

    def pruned_sizes(self) -> dict[str, int]:
        """Sizes once every compact statement the retention job may delete is deleted (`prune_compact` with a
        cutoff in the future: all but each key's chain head), the log integrated first and the store packed."""
        self.store.integrate_log(1 << 30)
        now = datetime.now(UTC)
        self.store.prune_compact(now + timedelta(days=1), now)
        self.vacuum(full=True)
        return self.sizes(in_use=True)

    def scalar(self, sql: str) -> Any:
        with self.store._tx(False) as cur:
            return cur.execute(sql).fetchone()[0]

    def close(self) -> None:
        self.store.close()
        if self.kind == "postgres":
            import psycopg

            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


class _Counted:
    """Counts the SQL statements and time of every `store_attestation` (wraps the store's method)."""

    def __init__(self, handle: _Store) -> None:
        self.statements = 0
        self.calls = 0
        self.seconds = 0.0
        self.cpu = 0.0
        self._on = False
        store = handle.store
        if handle.kind == "sqlite":
            store._conn.set_trace_callback(self._traced)
        else:
            from gpucensus.collector.store import postgres

            original_execute, original_many = postgres._Cursor.execute, postgres._Cursor.executemany
            counter = self

            def execute(cursor: Any, query: str, params: Any = None) -> Any:
                counter._traced(query)
                return original_execute(cursor, query, params)

            def executemany(cursor: Any, query: str, params_seq: Any) -> None:
                for _ in params_seq:
                    counter._traced(query)
                original_many(cursor, query, params_seq)

            postgres._Cursor.execute = execute  # type: ignore[method-assign]
            postgres._Cursor.executemany = executemany  # type: ignore[method-assign]
            self._restore = (postgres._Cursor, original_execute, original_many)
        wrapped = store.store_attestation

        def store_attestation(record: Any) -> Any:
            self._on = True
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return wrapped(record)
            finally:
                self.seconds += time.perf_counter() - start
                self.cpu += time.thread_time() - cpu
                self.calls += 1
                self._on = False

        store.store_attestation = store_attestation

    def _traced(self, statement: str) -> None:
        if self._on and statement.split(None, 1)[0].upper() not in ("BEGIN", "COMMIT"):
            self.statements += 1

    def restore(self) -> None:
        if hasattr(self, "_restore"):
            cls, execute, many = self._restore
            cls.execute, cls.executemany = execute, many


def _ingest_rounds(handle: _Store, nodes: list[fleet.FleetNode], rounds: int) -> None:
    """A fresh store fed the fleet's first `rounds` rounds, as `run` feeds its own."""
    from gpucensus.collector.ingest.pipeline import Pipeline

    total = max(len(n.envelopes) for n in nodes)
    loadgen.enroll_fleet(handle.store, nodes, datetime.now(UTC) - timedelta(minutes=total + 60))
    pipeline = Pipeline(handle.store)
    for number in range(rounds):
        for node in nodes:
            result = pipeline.ingest(node.envelopes[number])
            if result.status != "accepted":
                raise RuntimeError(f"envelope {node.node_id} #{number + 1} was {result.status}: {result}")


def retained_growth(
    kind: str, nodes: list[fleet.FleetNode], work: Path, warm: int, end: dict[str, int]
) -> dict[str, int]:
    """Growth in bytes between the pruned, packed store after `warm` rounds (a second store fed those rounds) and
    `end`, the same after every round (`_Store.pruned_sizes`): what a store whose compact statements older than
    the retention window are deleted grows by. Full inventories, log hashes, the record of pruned ranges and
    each key's chain head stay."""
    (work / "warm").mkdir(parents=True, exist_ok=True)
    handle = _Store(kind, work / "warm")
    try:
        _ingest_rounds(handle, nodes, warm)
        before = handle.pruned_sizes()
    finally:
        handle.close()
    return {name: end.get(name, 0) - before.get(name, 0) for name in sorted(end.keys() | before.keys())}


def run(kind: str, nodes: list[fleet.FleetNode], work: Path) -> StorageResult:
    from gpucensus.collector.ingest.pipeline import Pipeline

    work.mkdir(parents=True, exist_ok=True)
    handle = _Store(kind, work)
    counted = None
    retained: dict[str, int] = {}
    try:
        store = handle.store
        rounds = max(len(n.envelopes) for n in nodes)
        # enrolled before the first statement (each is dated `rounds` intervals back from the fleet's start)
        loadgen.enroll_fleet(store, nodes, datetime.now(UTC) - timedelta(minutes=rounds + 60))
        pipeline = Pipeline(store)
        counted = _Counted(handle)
        warm = max(1, rounds // 4)
        before: dict[str, int] = {}
        for number in range(rounds):
            if number == warm:
                store.integrate_log(1 << 30)
                handle.vacuum()
                before = handle.sizes()
                counted.statements = counted.calls = 0
                counted.seconds = counted.cpu = 0.0
            for node in nodes:
                result = pipeline.ingest(node.envelopes[number])
                if result.status != "accepted":
                    raise RuntimeError(f"envelope {node.node_id} #{number + 1} was {result.status}: {result}")
            if (number + 1) * len(nodes) % INTEGRATE_EVERY < len(nodes):
                store.integrate_log(1 << 30)
                handle.vacuum()
        store.integrate_log(1 << 30)
        handle.vacuum()
        after = handle.sizes()
        measured = rounds - warm
        scale = DAY_ROUNDS / (measured * len(nodes))
        per_day = {name: round((after.get(name, 0) - before.get(name, 0)) * scale)
                   for name in sorted(after.keys() | before.keys())}  # fmt: skip
        raw = sum(len(e) for n in nodes for e in n.envelopes) / (len(nodes) * rounds)
        stored = float(handle.scalar("SELECT AVG(LENGTH(envelope)) FROM attestations"))
        device_rows = int(handle.scalar("SELECT COUNT(*) FROM attestation_devices"))
        attestations = int(handle.scalar("SELECT COUNT(*) FROM attestations"))
        if int(handle.scalar("SELECT COUNT(*) FROM attestations WHERE kind = 'compact'")):
            counted.restore()
            grown = retained_growth(kind, nodes, work, warm, handle.pruned_sizes())
            retained = {name: round(v * scale) for name, v in grown.items() if v}
        return StorageResult(
            kind=kind, nodes=len(nodes), rounds=rounds, measured_rounds=measured,
            per_node_day={k: v for k, v in per_day.items() if v}, total_per_node_day=sum(per_day.values()),
            envelope_raw=raw, envelope_stored=stored,
            device_rows=device_rows, attestations=attestations,
            statements=counted.statements / max(1, counted.calls),
            store_us=1e6 * counted.seconds / max(1, counted.calls),
            store_cpu_us=1e6 * counted.cpu / max(1, counted.calls),
            retained_per_node_day=retained, retained_total=sum(retained.values()),
        )  # fmt: skip
    finally:
        if counted is not None:
            counted.restore()
        handle.close()


def markdown(results: list[StorageResult], spec: fleet.FleetSpec, full_every: int) -> list[str]:
    """The RESULTS.md lines: the per-table split (one column per store) and the per-envelope figures."""
    kinds = [r.kind for r in results]
    names = sorted({n for r in results for n in r.per_node_day}, key=lambda n: -max(r.per_node_day.get(n, 0)
                                                                                      for r in results))  # fmt: skip
    mode = f"a full inventory on change and every {full_every} rounds" if full_every else "a full inventory every round"
    lines = [
        f"{spec.nodes} nodes (dgx-h100 mock, 8 GPUs each) x {spec.rounds} rounds, {mode}, "
        f"{spec.changed:.0%} of rounds changing a GPU; through `Pipeline.ingest` in process; the growth over the "
        f"last {results[0].measured_rounds} rounds, extrapolated to 1,440 rounds (a day at 60 s); median of "
        f"{results[0].runs} run(s) per store. Target: ≤ 100 KB per node-day.\n",
        "| bytes per node-day | " + " | ".join(kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{r.per_node_day.get(name, 0):,}" for r in results) + " |")
    totals = [f"**{r.total_per_node_day:,}** ({r.total_range[0]:,}–{r.total_range[1]:,}; "
              f"{r.total_per_node_day / TARGET_BYTES:.1f} × target)" for r in results]  # fmt: skip
    lines.append("| **total** | " + " | ".join(totals) + " |")
    per = [
        ("bytes per attestation (total / reports)", lambda r: f"{r.total_per_node_day / DAY_ROUNDS:,.0f}"),
        ("envelope as received, bytes (mean)", lambda r: f"{r.envelope_raw:,.0f}"),
        ("envelope as stored, bytes (mean)", lambda r: f"{r.envelope_stored:,.0f}"),
        ("device rows / attestations", lambda r: f"{r.device_rows:,} / {r.attestations:,}"),
        ("SQL statements per `store_attestation`", lambda r: f"{r.statements:.1f}"),
        (
            "`store_attestation` wall µs, commit and fsync included (mean of a run; median of runs, range)",
            lambda r: f"{r.store_us:,.0f} ({r.store_us_range[0]:,.0f}–{r.store_us_range[1]:,.0f})",
        ),
        ("`store_attestation` CPU µs of the ingesting thread (median of runs)", lambda r: f"{r.store_cpu_us:,.0f}"),
    ]
    lines.append("")
    lines.append("| per attestation | " + " | ".join(kinds) + " |")
    lines.append("|---|" + "---|" * len(kinds))
    for label, value in per:
        lines.append(f"| {label} | " + " | ".join(value(r) for r in results) + " |")
    lines.append("")
    if any(r.retained_per_node_day for r in results):
        lines += retained_markdown(results)
    return lines


def retained_markdown(results: list[StorageResult]) -> list[str]:
    """The growth once compact statements past the retention window are pruned (one column per store)."""
    first = results[0]
    names = sorted({n for r in results for n in r.retained_per_node_day},
                   key=lambda n: -max(r.retained_per_node_day.get(n, 0) for r in results))  # fmt: skip
    lines = [
        "After the retention window: what the store grows by per node-day once compact statements older than "
        "`[retention] compact_days` are pruned (`gpucensus-collector prune`: every full inventory, every log hash, "
        "each key's chain head and the record of the pruned ranges stay). Measured as the difference between two "
        f"stores pruned and packed (SQLite `VACUUM`, PostgreSQL `VACUUM FULL`): after the first "
        f"{first.rounds - first.measured_rounds} rounds and after all {first.rounds}, extrapolated as above. SQLite: "
        "the bytes its pages hold (`dbstat`: page size less unused bytes), exact; PostgreSQL: whole 8 KiB pages, "
        "so each table or index is within one page per reading (at this scale ±16 KB per node-day each).\n",
        "| bytes per node-day, compact statements pruned | " + " | ".join(r.kind for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{r.retained_per_node_day.get(name, 0):,}" for r in results) + " |")
    lines.append("| **total** | " + " | ".join(f"**{r.retained_total:,}** ({r.retained_total / TARGET_BYTES:.2f} × "
                                                 "target)" for r in results) + " |")  # fmt: skip
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=240)
    parser.add_argument("--changed", type=float, default=0.0, help="fraction of rounds replacing a GPU")
    parser.add_argument("--full-every", type=int, default=0, help="compact statements: a full one every N rounds")
    parser.add_argument("--kinds", nargs="*", default=["sqlite", "postgres"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    spec = fleet_spec(args.nodes, args.rounds, args.changed, args.full_every)
    with tempfile.TemporaryDirectory(prefix="gpucensus-bench-storage-") as tmp:
        results = measure(spec, args.kinds, args.repeat, Path(tmp))
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    else:
        print("\n".join(markdown(results, spec, args.full_every)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
