"""The inventory's device groups (`collector.store.sqlgroups`) always give the inventory the full computation
over every current device gives (`scanned_inventory`): after every write that can change it (a new latest
attestation, an older one stored late, GPUs moving between nodes or listed by two, devices without UUID, a
decommission, a report clearing one, a node moving), on both stores, for all sites, some sites, and with nodes
split off into a site of their own (`location_inventory`); and the migration (`inventory_groups`) rebuilds
them from the stored attestations."""

from __future__ import annotations

import json
import random
from datetime import timedelta

from gpucensus.collector.metrics import counted_states, node_states
from gpucensus.collector.store.base import AttestationRecord, DeviceRecord, Entity, Site, Store, is_stale
from gpucensus.collector.store.migrate import load_migrations

from tests.ingest_nodes import NOW

pytest_plugins = ["tests.integration.store_fixtures"]

SITES = {"fra1": "DE", "waw1": "PL", "sin1": "SG"}
DEVICES = [  # what the collector's recomputation stores: catalogue models, derived TPP, not established
    {"basis": "catalogue", "model": "h100-sxm5-80gb", "tpp": 15832, "eccn": "3A090.a"},
    {"basis": "catalogue", "model": "h20", "tpp": 2368, "eccn": ""},
    {"basis": "catalogue", "model": "", "tpp": 4800, "eccn": "3A090.b"},  # a catalogue basis without a model
    {"basis": "derived", "tpp": 4800, "die_area_mm2": "814", "eccn": "3A090.b"},
    {"basis": "derived", "tpp": 4800, "die_area_mm2": "814", "datacenter": False, "eccn": "3A090.b"},
    {"basis": "derived", "tpp": 300, "eccn": ""},
    {"basis": "derived", "tpp": 300, "die_area_mm2": "", "eccn": ""},
    {"basis": "unknown", "tpp": None, "eccn": ""},
    {"basis": "unknown", "tpp": None, "die_area_mm2": "600", "datacenter": False, "eccn": ""},
]


def _registry(store: Store) -> None:
    store.add_entity(Entity("acme", "US"))
    for site, country in SITES.items():
        store.add_site(Site(site, country, "acme"))


def _enroll(store: Store, node_id: str, site: str) -> str:
    keyid = f"key-{node_id}"
    store.preregister_node(keyid, f"pem-{node_id}", node_id, site, NOW, "test")
    return keyid


def _assert_groups_equal_scan(store: Store, rng: random.Random, nodes: list[str]) -> None:
    now = NOW + timedelta(days=30)
    assert store.inventory(now) == store.scanned_inventory(now)  # type: ignore[attr-defined]
    some = [*rng.sample(sorted(SITES), 2), "nowhere"]
    assert store.inventory(now, some) == store.scanned_inventory(now, some)  # type: ignore[attr-defined]
    unknown = frozenset(rng.sample(nodes, rng.randint(1, 3)))
    assert store.location_inventory(now, unknown, "~unknown") == store.scanned_location_inventory(  # type: ignore[attr-defined]
        now, unknown, "~unknown"
    )


def test_inventory_groups_follow_every_write(make_store) -> None:
    store = make_store()
    _registry(store)
    rng = random.Random(13)
    nodes = {f"n{i}": _enroll(store, f"n{i}", list(SITES)[i % 3]) for i in range(6)}
    sequence = dict.fromkeys(nodes, 0)
    uuids = [f"GPU-{i:03d}" for i in range(14)]  # few enough that nodes share some: moved and duplicate GPUs
    for step in range(80):
        node = rng.choice(sorted(nodes))
        action = rng.random()
        if action < 0.7 or step < 6:
            sequence[node] += 1
            late = sequence[node] > 2 and rng.random() < 0.15  # an older statement stored after a newer one
            when = NOW + timedelta(hours=7 * step - (60 if late else 0))  # acquisition dates a day or more apart
            devices = [
                DeviceRecord(uuid=rng.choice(uuids) if rng.random() > 0.1 else "", **kind)
                for kind in rng.choices(DEVICES, k=rng.randint(0, 5))
            ]
            store.store_attestation(
                AttestationRecord(
                    nodes[node], sequence[node], f"{step:064x}", b"{}", node, "fra1", when, when, devices=devices
                )
            )
        elif action < 0.85:
            store.decommission_gpu(rng.choice(uuids), "scrapped", NOW + timedelta(hours=7 * step))
        else:
            store.move_node(node, rng.choice(sorted(SITES)), NOW, "test")
        _assert_groups_equal_scan(store, rng, sorted(nodes))
    sites = store.inventory(NOW)["sites"]
    assert sum(len(s["devices"]) for s in sites) > 3  # the walk did group something
    assert len({d["acquired"] for s in sites for d in s["devices"]}) > 1
    assert any(s.get("unaccounted") for s in sites)


def test_the_migration_rebuilds_the_groups_from_the_attestations(make_store) -> None:
    store = make_store()
    _registry(store)
    for i, kind in enumerate(DEVICES * 2):
        keyid = _enroll(store, f"n{i}", list(SITES)[i % 3])
        devices = [DeviceRecord(uuid=f"GPU-{i}-{j}" if j else "", **kind) for j in range(i % 3 + 1)]
        when = NOW + timedelta(days=i)
        store.store_attestation(
            AttestationRecord(keyid, 1, f"{i:064x}", b"{}", f"n{i}", "", when, when, devices=devices)
        )
    store.decommission_gpu("GPU-1-1", "scrapped", NOW)
    maintained = store.inventory(NOW)
    assert maintained == store.scanned_inventory(NOW)  # type: ignore[attr-defined]
    (migration,) = [m for m in load_migrations(store.dialect) if m.name == "inventory_groups"]
    with store._tx(True) as cur:  # type: ignore[attr-defined]
        cur.execute("DELETE FROM site_groups")
        cur.execute("DELETE FROM node_groups")
    assert store.inventory(NOW) != maintained  # emptied: the rebuild below is what restores it
    with store._tx(True) as cur:  # type: ignore[attr-defined]
        for statement in migration.statements:
            if statement.startswith("INSERT"):
                cur.execute(statement)
    assert store.inventory(NOW) == maintained


def test_stale_nodes_read_in_sql_are_the_nodes_is_stale_picks(make_store) -> None:
    """`stale_nodes` filters in SQL (one condition per declared interval); it must pick exactly the nodes the
    rule `is_stale` picks over every node, whatever the intervals (none, zero, negative, beyond the calendar); the
    metrics scrape's node states from the store's counts are those counted node by node."""
    store = make_store()
    _registry(store)
    rng = random.Random(7)
    declared = [None, 0, 1, 60, 600, -5, 2**31 - 1, -(2**31 - 1)]
    for i in range(16):
        keyid = _enroll(store, f"n{i}", list(SITES)[i % 3])
        for sequence in range(1, rng.randint(0, 3) + 1):  # some nodes never report: enrolment time counts
            when = NOW + timedelta(minutes=rng.randint(0, 120))
            store.store_attestation(
                AttestationRecord(keyid, sequence, f"{i}-{sequence}".ljust(64, "0"), b"{}", f"n{i}", "", when, when,
                                  interval_seconds=rng.choice(declared))
            )  # fmt: skip
        if rng.random() < 0.2:
            store.revoke_key(keyid, NOW)
    every = store.list_nodes()
    picked = 0
    for minutes in (0, 3, 30, 121, 200, 10**6):
        for intervals, default in ((3, 60), (1, 600), (10**6, 60), (0, 1)):
            now = NOW + timedelta(minutes=minutes)
            expected = [n for n in every if is_stale(n, now, intervals, default)]
            assert store.stale_nodes(now, intervals, default) == expected, (minutes, intervals, default)
            scraped = counted_states(store.node_counts(), expected)  # the metrics scrape's node states
            assert scraped == node_states(every, {n.node_id for n in expected})
            picked += len(expected)
    assert 0 < picked < 24 * len(every)  # some stale, some not


def test_inventories_at_a_series_of_instants_equal_each_instant_alone(make_store) -> None:
    """`inventories_at` (incremental over the instants: `collector.store.sqlhistory`) gives at every instant what
    `inventory_at` gives alone: through late statements, nodes moving to another site, a node whose newest
    statement lists nothing, GPUs moving between nodes, decommissions between and exactly at instants."""
    store = make_store()
    _registry(store)
    rng = random.Random(29)
    nodes = {f"n{i}": _enroll(store, f"n{i}", list(SITES)[i % 3]) for i in range(7)}
    sequence = dict.fromkeys(nodes, 0)
    uuids = [f"GPU-{i:03d}" for i in range(16)]
    decommissioned = 0
    for step in range(90):
        node = rng.choice(sorted(nodes))
        if rng.random() < 0.85:
            sequence[node] += 1
            when = NOW + timedelta(hours=5 * step - (rng.randint(20, 200) if rng.random() < 0.15 else 0))
            devices = [
                DeviceRecord(uuid=rng.choice(uuids) if rng.random() > 0.1 else "", **kind)
                for kind in rng.choices(DEVICES, k=rng.choice([0, 1, 2, 4, 5]))
            ]
            site = rng.choice([*SITES, "nowhere"])  # the site the statement names: where the node counts then
            store.store_attestation(
                AttestationRecord(
                    nodes[node], sequence[node], f"{step:064x}", b"{}", node, site, when, when, devices=devices
                )
            )
        else:
            at = NOW + timedelta(hours=5 * step + rng.choice([0, 1, 7]))
            decommissioned += store.decommission_gpu(rng.choice(uuids), "scrapped", at)
    end = NOW + timedelta(hours=5 * 90)
    for i, uuid in enumerate(rng.sample(uuids, 6)):  # after the last statement: nothing clears these
        decommissioned += store.decommission_gpu(uuid, "scrapped", end + timedelta(hours=3 + 10 * i))
    points = [NOW + timedelta(hours=h) for h in range(-10, 5 * 90 + 80, 10)]
    points += [NOW + timedelta(hours=5 * s) for s in range(0, 90, 9)]  # exactly at statement times
    rng.shuffle(points)  # any order: each result is that instant's
    series = store.inventories_at(points)
    alone = [store.inventory_at(at) for at in points]
    assert series == alone
    assert decommissioned > 0 and len({json.dumps(i["sites"], sort_keys=True) for i in alone}) > 10
