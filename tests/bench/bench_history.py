"""History benchmark (not part of the test suite; `make bench`): the time to answer the inventory at a past instant
and a one-year weekly history (53 instants, each evaluated under the default pack; and its 53 inventories alone, one
query per instant as `inventory_at` answers them and incrementally as `inventories_at` does) from a SQLite store
of N nodes,
each with an attestation of 8 H100 every `--every-days` days for a year. The store is seeded with bulk SQL (the
ingest path has its own benchmark); the queries are the collector's own (`store.inventory_at`, `history.history`).
With `--unindexed`, the same instant is also answered WITHOUT the index (dropped), by the same query, for scale.

    python tests/bench/bench_history.py [--nodes 10000] [--every-days 28] [--unindexed] [--json]
    GPUCENSUS_BENCH_NODES=100000 python tests/bench/bench_history.py     # the 100,000-node figure (minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script by `make bench`
    sys.path.insert(0, str(ROOT))

from gpucensus.collector import history  # noqa: E402
from gpucensus.collector.config import PolicyConfig  # noqa: E402
from gpucensus.collector.policy import load_pack  # noqa: E402
from gpucensus.collector.store import open_store  # noqa: E402
from gpucensus.common.accounting import load_rules  # noqa: E402
from gpucensus.common.catalogue import load_catalogue  # noqa: E402

START = datetime(2025, 1, 1, tzinfo=UTC)
COUNTRIES = ("US", "IN", "AE", "DE", "BR", "SG", "MX", "PL")


def ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seed(path: Path, nodes: int, every_days: int) -> int:
    """Entities, one site per country, `nodes` nodes each attesting 8 H100 every `every_days` days for a year."""
    store = open_store("sqlite", path=str(path))
    store.close()
    db = sqlite3.connect(path)
    with db:
        db.executemany("INSERT INTO entities VALUES (?, ?, 'none')", [(f"e-{c}", c) for c in COUNTRIES])
        db.executemany("INSERT INTO sites VALUES (?, ?, ?)", [(f"s-{c}", c, f"e-{c}") for c in COUNTRIES])
        rows = 0
        next_id = 1
        for n in range(nodes):
            site = f"s-{COUNTRIES[n % len(COUNTRIES)]}"
            node, keyid = f"node-{n:06d}", f"{n:064x}"
            db.execute("INSERT INTO node_keys VALUES (?, 'PEM', ?, ?, '', ?, NULL)", (keyid, node, site, ts(START)))
            attestations, devices = [], []
            for seq, day in enumerate(range(0, 366, every_days), start=1):
                when = ts(START + timedelta(days=day, seconds=n % 3600))
                attestations.append((next_id, keyid, seq, f"{next_id:064x}", b"{}", node, site, when, when, "",
                                     "accepted", None, b""))  # fmt: skip
                devices += [(next_id, i, f"GPU-{n}-{i}", i, "H100", "", "ok", "", "h100-sxm5", "catalogue", 15832,
                             "814", 19450, "3A090.a", 1000, 1) for i in range(8)]  # fmt: skip
                next_id += 1
            db.executemany(
                "INSERT INTO attestations (id, keyid, sequence, digest, envelope, node_id, site, stated_at, "
                "received_at, previous, status, log_index, checkpoint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                attestations,
            )
            db.executemany(
                "INSERT INTO attestation_devices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", devices
            )
            last = attestations[-1]
            db.execute(
                "INSERT INTO nodes (node_id, site, keyid, enrolled_at, last_attested_at, last_attestation_id, "
                "last_stated_at, last_sequence) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (node, site, keyid, ts(START), last[8], last[0], last[7], last[2]),
            )
            db.executemany(
                "INSERT INTO gpus (uuid, node_id, site, country, keyid, acquired, last_seen, last_stated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(f"GPU-{n}-{i}", node, site, site[2:], keyid, ts(START), last[8], last[7]) for i in range(8)],
            )
            rows += len(attestations)
    db.close()
    return rows


def timed(func):
    start = time.perf_counter()
    result = func()
    return result, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=int(os.environ.get("GPUCENSUS_BENCH_NODES", "10000")))
    parser.add_argument("--every-days", type=int, default=28, help="days between a node's attestations (28)")
    parser.add_argument("--unindexed", action="store_true", help="also time an instant without the index (slow)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pack = load_pack(PolicyConfig().pack)  # the default pack, from where the collector reads it
    catalogue, rules = load_catalogue(), load_rules()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "collector.db"
        attestations, seed_s = timed(lambda: seed(path, args.nodes, args.every_days))
        store = open_store("sqlite", path=str(path))
        at = START + timedelta(days=200)
        inventory, instant_s = timed(lambda: store.inventory_at(at))
        gpus = sum(d["count"] for s in inventory["sites"] for d in s["devices"])
        assert gpus == 8 * args.nodes, gpus
        _, evaluated_s = timed(lambda: history.evaluate_at(store, at, pack, catalogue, rules))
        points = history.instants(START, START + timedelta(days=364), "1w")
        _, history_s = timed(lambda: history.history(store, points, pack, catalogue, rules))
        each, each_s = timed(lambda: [store.inventory_at(t) for t in points])  # one query per instant (before)
        series, series_s = timed(lambda: store.inventories_at(points))  # incremental over the instants (now)
        assert series == each
        store.close()
        unindexed_s = None
        if args.unindexed:
            db = sqlite3.connect(path)
            db.execute("DROP INDEX attestations_node_stated")
            db.close()
            store = open_store("sqlite", path=str(path), migrate=False)
            unindexed_s = round(timed(lambda: store.inventory_at(at))[1], 3)
            store.close()
    result = {
        "nodes": args.nodes, "attestations": attestations, "seed_seconds": round(seed_s, 1),
        "instant_seconds": round(instant_s, 3), "instant_evaluated_seconds": round(evaluated_s, 3),
        "weekly_year_points": len(points), "weekly_year_seconds": round(history_s, 2),
        "weekly_year_inventories_each_instant_seconds": round(each_s, 2),
        "weekly_year_inventories_series_seconds": round(series_s, 2),
        "instant_without_index_seconds": unindexed_s,
    }  # fmt: skip
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:32} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
