"""Current state (`collector.store.sqlcurrent`) always equals the full scan it replaced: after every write that
can change it (a new latest attestation, an older one stored late, a GPU moving between nodes or listed by two,
a decommission, a report clearing one, a node moving), on both stores; and its migration (`current_state`)
rebuilds it from the stored attestations."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from gpucensus.collector.store.base import AttestationRecord, DeviceRecord, Entity, Site, Store
from gpucensus.collector.store.migrate import load_migrations

from tests.bench.scale import full_scan_totals
from tests.ingest_nodes import NOW

pytest_plugins = ["tests.integration.store_fixtures"]

SITES = {"fra1": "DE", "waw1": "PL", "sin1": "SG"}
KINDS = [  # (tpp, eccn): a class, another class, no class, TPP not established
    (15832, "3A090.a"),
    (4800, "3A090.b"),
    (300, ""),
    (None, ""),
]


def _registry(store: Store) -> None:
    store.add_entity(Entity("acme", "US"))
    for site, country in SITES.items():
        store.add_site(Site(site, country, "acme"))


def _enroll(store: Store, node_id: str, site: str) -> str:
    keyid = f"key-{node_id}"
    store.preregister_node(keyid, f"pem-{node_id}", node_id, site, NOW, "test")
    return keyid


def _assert_current_equals_scan(store: Store) -> None:
    countries, per_site = full_scan_totals(store)
    assert store.country_totals() == countries
    for status in store.site_status():
        assert (status.gpus, status.tpp, status.unaccounted) == per_site.get(status.site, (0, 0, 0)), status.site
    for site in SITES:
        (one,) = store.site_status([site])
        assert (one.gpus, one.tpp, one.unaccounted) == per_site.get(site, (0, 0, 0))


def test_current_state_follows_every_write(make_store) -> None:
    store = make_store()
    _registry(store)
    rng = random.Random(13)
    nodes = {f"n{i}": _enroll(store, f"n{i}", list(SITES)[i % 3]) for i in range(6)}
    sequence = dict.fromkeys(nodes, 0)
    uuids = [f"GPU-{i:03d}" for i in range(14)]  # few enough that nodes share some: moved and duplicate GPUs
    for step in range(70):
        node = rng.choice(sorted(nodes))
        action = rng.random()
        if action < 0.7 or step < 6:
            sequence[node] += 1
            late = sequence[node] > 2 and rng.random() < 0.15  # an older statement stored after a newer one
            when = NOW + timedelta(minutes=step - (30 if late else 0))
            devices = [
                DeviceRecord(uuid=rng.choice(uuids) if rng.random() > 0.05 else "", tpp=tpp, eccn=eccn)
                for tpp, eccn in rng.choices(KINDS, k=rng.randint(0, 4))
            ]
            store.store_attestation(
                AttestationRecord(
                    nodes[node], sequence[node], f"{step:064x}", b"{}", node, "fra1", when, when, devices=devices
                )
            )
        elif action < 0.85:
            store.decommission_gpu(rng.choice(uuids), "scrapped", NOW + timedelta(minutes=step))
        else:
            store.move_node(node, rng.choice(sorted(SITES)), NOW, "test")
        _assert_current_equals_scan(store)
    assert sum(c.gpus for c in store.country_totals()) > 0  # the walk did count something


def test_the_migration_rebuilds_current_state_from_the_attestations(make_store) -> None:
    store = make_store()
    _registry(store)
    for i, (tpp, eccn) in enumerate(KINDS * 2):
        keyid = _enroll(store, f"n{i}", list(SITES)[i % 3])
        devices = [DeviceRecord(uuid=f"GPU-{i}-{j}", tpp=tpp, eccn=eccn) for j in range(i % 3 + 1)]
        store.store_attestation(AttestationRecord(keyid, 1, f"{i:064x}", b"{}", f"n{i}", "", NOW, NOW, devices=devices))
    store.decommission_gpu("GPU-1-0", "scrapped", NOW)
    maintained = (store.country_totals(), store.site_status())
    (migration,) = [m for m in load_migrations(store.dialect) if m.name == "current_state"]
    with store._tx(True) as cur:
        cur.execute("DELETE FROM site_totals")
        cur.execute("DELETE FROM node_totals")
        for statement in migration.statements:
            if statement.startswith("INSERT"):
                cur.execute(statement)
    assert (store.country_totals(), store.site_status()) == maintained
    _assert_current_equals_scan(store)


class _Recorder:
    """A store cursor that logs every statement (and its rows, for executemany) before running it."""

    def __init__(self, cur: Any, log: list[tuple[str, Any]]) -> None:
        self._cur, self._log = cur, log

    def execute(self, query: str, params: Any = None) -> Any:
        self._log.append((query, params))
        return self._cur.execute(query, params) if params is not None else self._cur.execute(query)

    def executemany(self, query: str, rows: Any) -> Any:
        rows = list(rows)
        self._log.append((query, rows))
        return self._cur.executemany(query, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


def _recording(store: Store) -> list[tuple[str, Any]]:
    log: list[tuple[str, Any]] = []
    original = store._tx  # type: ignore[attr-defined]

    @contextmanager
    def tx(write: bool) -> Iterator[Any]:
        with original(write) as cur:
            yield _Recorder(cur, log)

    store._tx = tx  # type: ignore[attr-defined]
    return log


def _totals_lock_order(log: list[tuple[str, Any]]) -> tuple[list[str], list[tuple[str, str]], bool]:
    """The node ids whose node_totals rows were written, the (site, class) site_totals rows in the order they
    were written, and whether every site_totals write came after every node_totals write."""
    nodes, sites, sites_started, interleaved = [], [], False, False
    for query, params in log:
        if query.startswith("DELETE FROM node_totals"):
            nodes.append(params[0])
            interleaved = interleaved or sites_started
        elif query.startswith("INSERT INTO site_totals"):
            sites += [(row[0], row[1]) for row in params]
            sites_started = True
    return nodes, sites, not interleaved


def test_totals_rows_are_locked_in_one_order_by_every_writer(make_store) -> None:
    """A report that clears a GPU's decommission rewrites its own node's totals and those of the nodes listing the
    GPU; a decommission rewrites every node listing it. Both take `node_totals` by node id, then every
    `site_totals` row by (site, class), so two collectors never take the same rows in opposite orders (which
    PostgreSQL ends as a deadlock, answered UNAVAILABLE)."""
    store = make_store()
    _registry(store)
    keys = {node: _enroll(store, node, site) for node, site in (("n1", "sin1"), ("n2", "fra1"), ("n3", "waw1"))}

    def report(node: str, seq: int, devices: list[DeviceRecord]) -> None:
        when = NOW + timedelta(minutes=seq)
        store.store_attestation(
            AttestationRecord(keys[node], seq, f"{node}-{seq}".ljust(64, "0"), b"{}", node, "", when, when,
                              devices=devices)
        )  # fmt: skip

    a, b = KINDS[0], KINDS[1]
    report("n1", 1, [DeviceRecord(uuid="GPU-g", tpp=a[0], eccn=a[1])])
    report("n2", 1, [DeviceRecord(uuid="GPU-h", tpp=b[0], eccn=b[1])])
    store.decommission_gpu("GPU-g", "scrapped", NOW + timedelta(minutes=2))
    log = _recording(store)
    # n3 reports GPU-g (listed by n1) beside a GPU of the other class: n1 < n3, sin1 > waw1, classes a and b
    report("n3", 5, [DeviceRecord(uuid="GPU-g", tpp=a[0], eccn=a[1]), DeviceRecord(uuid="GPU-x", tpp=b[0],
                                                                                  eccn=b[1])])  # fmt: skip
    nodes, sites, after = _totals_lock_order(log)
    assert nodes == ["n1", "n3"] and after
    assert sites == sorted(sites) and len(sites) == 3  # sin1 a (n1 counts GPU-g again), waw1 a and b (n3)
    log.clear()
    store.decommission_gpu("GPU-g", "scrapped again", NOW + timedelta(minutes=9))  # listed by n1 and n3
    nodes, sites, after = _totals_lock_order(log)
    assert nodes == ["n1", "n3"] and after and sites == sorted(sites)
    _assert_current_equals_scan(store)
