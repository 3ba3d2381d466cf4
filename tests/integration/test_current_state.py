"""Current state (`collector.store.sqlcurrent`) always equals the full scan it replaced: after every write that
can change it (a new latest attestation, an older one stored late, a GPU moving between nodes or listed by two,
a decommission, a report clearing one, a node moving), on both stores; and its migration (`current_state`)
rebuilds it from the stored attestations."""

from __future__ import annotations

import random
from datetime import timedelta

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
