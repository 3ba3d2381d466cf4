"""Stores of N nodes built fast (batched SQL, not gRPC: setup, not the thing measured), and the read paths
measured on them: country totals, one site's status, every site's status in pages, `report`; plus the full
scan the read paths used before current state (`full_scan_totals`), kept as the baseline and as the oracle the
integration tests compare current state with.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gpucensus.collector.store.base import CountryTotals, DeviceRecord, EccnTotals, Store
from gpucensus.collector.store.sqlcurrent import node_totals_rows
from gpucensus.collector.store.sqlgroups import GROUP_COLUMNS, device_group

from tests.bench.fleet import COUNTRIES, gpu_identity

_NODES_PER_TX = 2000
_DEVICE_COLUMNS = (
    "attestation_id, pos, uuid, device_index, name, bus_id, status, error, model, basis, tpp, die_area_mm2, "
    "pd_milli, eccn, h100e_milli, datacenter"
)


def device_templates(profiles: Sequence[str] = ("dgx-h100", "hgx-a100", "h20-8x")) -> list[list[DeviceRecord]]:
    """Per mock profile, the devices as the collector stores them (the real pipeline's recomputed accounting)."""
    from gpucensus.collector.ingest.pipeline import Pipeline
    from gpucensus.collector.store import open_store

    from tests.ingest_nodes import NOW, TestNode, enroll

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store("sqlite", data_dir=tmp)
        store.migrate()
        try:
            pipeline = Pipeline(store, clock=lambda: NOW)
            for profile in profiles:
                node = TestNode(f"template-{profile}", profile)
                enroll(store, node)
                pipeline.ingest(node.next())
                out.append(store.node_devices(node.node_id))
        finally:
            store.close()
    return out


def build(store: Store, nodes: int, sites: int, templates: list[list[DeviceRecord]], now: datetime) -> None:
    """`nodes` enrolled nodes over `sites` sites, each with one attestation of its own GPUs (a template's
    devices under UUIDs of its own), the per-GPU state, the current-state totals and the inventory's groups;
    batched transactions, then ANALYZE: without statistics PostgreSQL misjudges every plan (and JIT-compiles a
    1 ms query for 110 ms)."""
    t = store._t(now)  # type: ignore[attr-defined]
    with store._tx(True) as cur:  # type: ignore[attr-defined]
        cur.execute("INSERT INTO entities (id, headquarters, auth) VALUES ('scale', 'US', 'none')")
        cur.executemany(
            "INSERT INTO sites (id, country, entity) VALUES (?, ?, 'scale')",
            [(f"site-{s:04d}", COUNTRIES[s % len(COUNTRIES)]) for s in range(sites)],
        )
    for first in range(0, nodes, _NODES_PER_TX):
        batch = range(first, min(nodes, first + _NODES_PER_TX))
        with store._tx(True) as cur:  # type: ignore[attr-defined]
            _insert_batch(cur, batch, sites, templates, t, now)
    columns = ", ".join(GROUP_COLUMNS)
    with store._tx(True) as cur:  # type: ignore[attr-defined]
        cur.execute(
            "INSERT INTO site_totals (site, eccn, gpus, tpp, unaccounted) SELECT n.site, t.eccn, SUM(t.gpus), "
            "SUM(t.tpp), SUM(t.unaccounted) FROM node_totals t JOIN nodes n ON n.node_id = t.node_id "
            "GROUP BY n.site, t.eccn"
        )
        cur.execute(
            f"INSERT INTO site_groups (site, {columns}, devices) SELECT n.site, "
            f"{', '.join('g.' + c for c in GROUP_COLUMNS)}, SUM(g.devices) FROM node_groups g "
            f"JOIN nodes n ON n.node_id = g.node_id GROUP BY n.site, {', '.join('g.' + c for c in GROUP_COLUMNS)}"
        )
    with store._tx(True) as cur:  # type: ignore[attr-defined]
        cur.execute("ANALYZE")  # the statistics autovacuum gathers after such growth (else PostgreSQL guesses)


def _insert_batch(
    cur: Any, batch: range, sites: int, templates: list[list[DeviceRecord]], t: Any, now: datetime
) -> None:
    site = {i: f"site-{i % sites:04d}" for i in batch}
    country = {i: COUNTRIES[(i % sites) % len(COUNTRIES)] for i in batch}
    cur.executemany(
        "INSERT INTO node_keys (keyid, public_key_pem, node_id, site, token_hash, enrolled_at) "
        "VALUES (?, 'bench', ?, ?, '', ?)",
        [(_keyid(i), f"node-{i:07d}", site[i], t) for i in batch],
    )
    top = cur.execute("SELECT COALESCE(MAX(id), 0) FROM attestations").fetchone()[0]
    cur.executemany(
        "INSERT INTO attestations (keyid, sequence, digest, envelope, node_id, site, stated_at, received_at, "
        "previous, status, checkpoint) VALUES (?, 1, ?, ?, ?, ?, ?, ?, '', 'accepted', ?)",
        [(_keyid(i), f"{i:064x}", b"bench", f"node-{i:07d}", site[i], t, t, b"") for i in batch],
    )
    ids = dict(cur.execute("SELECT node_id, id FROM attestations WHERE id > ?", (top,)).fetchall())
    cur.executemany(
        "INSERT INTO nodes (node_id, site, keyid, enrolled_at, last_attested_at, interval_seconds, "
        "last_attestation_id, last_stated_at, last_sequence) VALUES (?, ?, ?, ?, ?, 60, ?, ?, 1)",
        [(f"node-{i:07d}", site[i], _keyid(i), t, t, ids[f"node-{i:07d}"], t) for i in batch],
    )
    devices, gpus, totals, groups = [], [], [], []
    template_groups = [
        sorted(Counter(device_group(d.basis, d.model, d.tpp, d.die_area_mm2, d.datacenter, now) for d in devs).items())
        for devs in templates
    ]
    for i in batch:
        node_id = f"node-{i:07d}"
        own = []
        for pos, d in enumerate(templates[i % len(templates)]):
            uuid = gpu_identity(node_id, pos, 0)[0]
            own.append((uuid, d.tpp, d.eccn))
            row = (d.index, d.name, d.bus_id, d.status, d.error, d.model, d.basis, d.tpp, d.die_area_mm2, d.pd_milli)
            devices.append((ids[node_id], pos, uuid, *row, d.eccn, d.h100e_milli, d.datacenter))
            gpus.append((uuid, node_id, site[i], country[i], _keyid(i), t, t, t))
        totals += [(node_id, *row) for row in node_totals_rows(own, set())]
        groups += [(node_id, *group, count) for group, count in template_groups[i % len(templates)]]
    marks = ", ".join("?" * 16)
    cur.executemany(f"INSERT INTO attestation_devices ({_DEVICE_COLUMNS}) VALUES ({marks})", devices)
    cur.executemany(
        "INSERT INTO gpus (uuid, node_id, site, country, keyid, acquired, last_seen, last_stated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        gpus,
    )
    cur.executemany("INSERT INTO node_totals (node_id, eccn, gpus, tpp, unaccounted) VALUES (?, ?, ?, ?, ?)", totals)
    cur.executemany(
        f"INSERT INTO node_groups (node_id, {', '.join(GROUP_COLUMNS)}, devices) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        groups,
    )


def _keyid(index: int) -> str:
    """As long as a real key id (64 hex digits), so responses have their real size."""
    return hashlib.sha256(f"node-{index:07d}".encode()).hexdigest()


def full_scan_totals(store: Store) -> tuple[list[CountryTotals], dict[str, tuple[int, int, int]]]:
    """Country totals and per-site (gpus, tpp, unaccounted) the way the store computed them before current
    state: every current device of every node joined and summed in Python (the baseline, and the oracle)."""
    with store._tx(False) as cur:  # type: ignore[attr-defined]
        rows = cur.execute(
            "SELECT s.country, n.site, d.tpp, d.eccn FROM nodes n JOIN sites s ON s.id = n.site "
            "JOIN attestations a ON a.id = n.last_attestation_id "
            "JOIN attestation_devices d ON d.attestation_id = a.id "
            "LEFT JOIN gpus g ON g.uuid = d.uuid AND d.uuid <> '' WHERE g.decommissioned_at IS NULL"
        ).fetchall()
    gpus: Counter[str] = Counter()
    tpp: Counter[str] = Counter()
    unaccounted: Counter[str] = Counter()
    eccn: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    per_site: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for country, site, device_tpp, device_eccn in rows:
        gpus[country] += 1
        per_site[site][0] += 1
        if device_tpp is None:
            unaccounted[country] += 1
            per_site[site][2] += 1
            continue
        tpp[country] += device_tpp
        per_site[site][1] += device_tpp
        if device_eccn:
            eccn[country][device_eccn][0] += 1
            eccn[country][device_eccn][1] += device_tpp
    countries = [
        CountryTotals(c, gpus[c], tpp[c], unaccounted[c],
                      {k: EccnTotals(v[0], v[1]) for k, v in sorted(eccn[c].items())})
        for c in sorted(gpus)
    ]  # fmt: skip
    return countries, {site: (v[0], v[1], v[2]) for site, v in per_site.items()}


def utc_now() -> datetime:
    return datetime.now(UTC)


def store_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
