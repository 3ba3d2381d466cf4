"""The store contract: every implementation in `collector.store.STORES` must pass all of it.

Runs against a real SQLite file and the real PostgreSQL server (a fresh schema per test, see store_fixtures).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from gpucensus.collector.errors import ConfigError, StoreError
from gpucensus.collector.policy.scenario import parse_scenario
from gpucensus.collector.store import STORES, migrate, open_store
from gpucensus.collector.store.base import (
    AttestationRecord,
    ChainHead,
    ChainLinks,
    ConflictError,
    DeviceRecord,
    EccnTotals,
    EnrollmentToken,
    Entity,
    Finding,
    NodeBoundError,
    RecordExistsError,
    RecordNotFoundError,
    Site,
    Store,
    StoredLink,
    TokenRejectedError,
)

from tests.integration.store_fixtures import STORE_KINDS

pytest_plugins = ["tests.integration.store_fixtures"]  # make_store, store_kind

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
H100 = {"model": "h100-sxm5", "basis": "catalogue", "tpp": 15832, "eccn": "3A090.a", "die_area_mm2": "814"}
L40S = {"model": "l40s", "basis": "catalogue", "tpp": 5824, "eccn": "3A090.a"}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def gpu(uuid: str, index: int = 0, **facts: object) -> DeviceRecord:
    return DeviceRecord(uuid=uuid, index=index, **{**H100, **facts})  # type: ignore[arg-type]


def registry(store: Store) -> None:
    """Two entities, three sites in DE, SG and US; one enrolled node per site (keys k-de, k-sg, k-us)."""
    store.add_entity(Entity("acme", "US", "uveu"))
    store.add_entity(Entity("globex", "SG", "none"))
    for site, country, entity in (("fra1", "DE", "acme"), ("sin1", "SG", "globex"), ("iad1", "US", "acme")):
        store.add_site(Site(site, country, entity))
        store.add_token(EnrollmentToken(f"hash-{site}", site, T0, at(60)))
        store.enroll(f"k-{site}", f"PEM {site}", f"node-{site}", site, f"hash-{site}", T0)


def attestation(keyid: str, seq: int, devices: list[DeviceRecord], minutes: float = 0, **kw: object):
    node = keyid.replace("k-", "node-")
    fields = {
        "digest": f"digest-{keyid}-{seq}", "envelope": b"\x00\xff{" + f"{keyid}:{seq}".encode(),
        "node_id": node, "site": keyid.removeprefix("k-"), "timestamp": at(minutes), "received_at": at(minutes),
        "previous": f"digest-{keyid}-{seq - 1}" if seq > 1 else "", "devices": tuple(devices),
    }  # fmt: skip
    fields.update(kw)
    return AttestationRecord(keyid=keyid, sequence=seq, **fields)  # type: ignore[arg-type]


# --- lifecycle ------------------------------------------------------------------------------------------------


def test_registry_lists_every_kind_tested() -> None:
    assert set(STORES) == set(STORE_KINDS)


def test_migrate_is_idempotent_and_reaches_the_latest_version(make_store) -> None:
    store = make_store()
    assert isinstance(store, Store) and store.kind == make_store.kind
    latest = migrate.latest_version(store.dialect)
    assert latest >= 1
    assert store.schema_version() == latest
    assert store.migrate() == latest
    assert make_store().schema_version() == latest  # a second collector on the same database


def test_collectors_starting_together_on_a_new_database_migrate_it_once(make_store) -> None:
    results: list[object] = []

    def start() -> None:
        try:
            results.append(make_store().schema_version())
        except Exception as err:  # the assertion below shows it
            results.append(err)

    threads = [threading.Thread(target=start) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [migrate.latest_version(make_store.kind)] * 5
    with make_store()._tx(False) as cur:
        assert cur.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == results[0]


def test_a_database_from_a_newer_version_is_refused_naming_both_versions(make_store) -> None:
    store = make_store()
    latest = migrate.latest_version(store.dialect)
    with store._tx(True) as cur:  # simulate a newer gpucensus having migrated this database
        cur.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (latest + 5, "future"))
    with pytest.raises(StoreError) as err:
        make_store()
    assert f"schema version {latest + 5}" in err.value.message
    assert f"version {latest} " in err.value.message
    with pytest.raises(StoreError):
        store.migrate()


def test_data_survives_close_and_reopen(make_store) -> None:
    store = make_store()
    registry(store)
    store.store_attestation(attestation("k-fra1", 1, [gpu("GPU-a")]))
    store.close()
    again = make_store()
    assert again.get_entity("acme") == Entity("acme", "US", "uveu")
    assert again.last_attestation("k-fra1") == ChainHead(1, "digest-k-fra1-1")


# --- registry -------------------------------------------------------------------------------------------------


def test_entities_and_sites(make_store) -> None:
    store = make_store()
    registry(store)
    assert [e.id for e in store.list_entities()] == ["acme", "globex"]
    assert store.get_site("sin1") == Site("sin1", "SG", "globex")
    assert store.get_site("nope") is None and store.get_entity("nope") is None
    assert [s.id for s in store.list_sites()] == ["fra1", "iad1", "sin1"]
    with pytest.raises(RecordExistsError):
        store.add_entity(Entity("acme", "DE", "none"))
    assert store.get_entity("acme") == Entity("acme", "US", "uveu")  # unchanged
    with pytest.raises(RecordExistsError):
        store.add_site(Site("fra1", "FR", "acme"))
    with pytest.raises(RecordNotFoundError):
        store.add_site(Site("ams1", "NL", "initech"))
    with pytest.raises(RecordNotFoundError):
        store.add_token(EnrollmentToken("h", "ams1", T0, at(1)))


def test_a_token_is_single_use_and_expires(make_store) -> None:
    store = make_store()
    registry(store)
    store.add_token(EnrollmentToken("t1", "fra1", T0, at(10)))
    store.add_token(EnrollmentToken("t2", "fra1", T0, at(10)))
    assert store.consume_token("t1", at(1)) == "fra1"
    assert store.consume_token("t1", at(2)) is None  # used
    assert store.consume_token("t2", at(10)) is None  # expired (expires_at is exclusive)
    assert store.consume_token("unknown", at(1)) is None


def test_two_collectors_racing_consume_each_token_exactly_once(make_store) -> None:
    first, second = make_store(), make_store()
    registry(first)
    hashes = [f"race-{i}" for i in range(25)]
    for h in hashes:
        first.add_token(EnrollmentToken(h, "fra1", T0, at(60)))
    wins: list[str] = []
    lock = threading.Lock()

    def worker(store: Store) -> None:
        for h in hashes:
            if store.consume_token(h, at(1)) is not None:
                with lock:
                    wins.append(h)

    threads = [threading.Thread(target=worker, args=(s,)) for s in (first, second, first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == sorted(hashes)


def test_enroll_binds_a_key_and_failures_leave_the_token_unused(make_store) -> None:
    store = make_store()
    registry(store)
    key = store.get_key("k-fra1")
    assert key is not None and (key.node_id, key.site, key.revoked) == ("node-fra1", "fra1", False)
    assert key.public_key_pem == "PEM fra1" and key.enrolled_at == T0
    store.add_token(EnrollmentToken("t-new", "fra1", T0, at(60)))
    with pytest.raises(TokenRejectedError):
        store.enroll("k-x", "PEM", "node-x", "sin1", "t-new", at(1))  # token is for fra1
    with pytest.raises(NodeBoundError):
        store.enroll("k-fra1", "PEM", "node-x", "", "t-new", at(1))  # key already enrolled for another node
    with pytest.raises(RecordExistsError):
        store.enroll("k-fra1", "PEM", "node-fra1", "", "t-new", at(1))  # key already enrolled (another token)
    assert store.get_key("k-x") is None
    bound = store.enroll("k-x", "PEM x", "node-x", "", "t-new", at(2))  # token still usable
    assert (bound.site, bound.node_id) == ("fra1", "node-x")
    with pytest.raises(TokenRejectedError):
        store.enroll("k-y", "PEM", "node-y", "", "t-new", at(3))  # now used
    assert [k.keyid for k in store.list_keys("fra1")] == ["k-fra1", "k-x"]


def test_a_revoked_key_stays_revoked(make_store) -> None:
    store = make_store()
    registry(store)
    assert store.revoke_key("k-sin1", at(5)) is True
    assert store.revoke_key("k-sin1", at(6)) is False
    assert store.revoke_key("k-unknown", at(6)) is False
    key = store.get_key("k-sin1")
    assert key is not None and key.revoked and key.revoked_at == at(5)


# --- attestations ---------------------------------------------------------------------------------------------


def test_an_attestation_round_trips_exactly(make_store) -> None:
    store = make_store()
    registry(store)
    finding = Finding("accounting.mismatch", "warning", "gpu:GPU-a", "agent said 1", "k-fra1", 1)
    record = attestation("k-fra1", 1, [gpu("GPU-a"), gpu("GPU-b", 1, status="lost", tpp=None)],
                         findings=[finding], interval_seconds=30, checkpoint=b"note\n")  # fmt: skip
    stored = store.store_attestation(record)
    assert stored.id is not None
    got = store.get_attestation("k-fra1", 1)
    assert got is not None
    assert got.envelope == record.envelope and isinstance(got.envelope, bytes)
    assert (got.digest, got.node_id, got.site, got.timestamp, got.received_at) == (
        record.digest, "node-fra1", "fra1", record.timestamp, record.received_at)  # fmt: skip
    assert stored.log_index == 0  # the store sequences it: the first leaf of the log
    assert (got.id, got.status, got.log_index, got.checkpoint) == (stored.id, "accepted", 0, b"")  # not kept
    assert got.devices == record.devices
    assert [(f.rule_id, f.subject, f.keyid, f.sequence) for f in got.findings] == [
        ("accounting.mismatch", "gpu:GPU-a", "k-fra1", 1)]  # fmt: skip
    assert store.get_attestation("k-fra1", 2) is None


def test_the_same_key_and_sequence_is_a_conflict_and_changes_nothing(make_store) -> None:
    store = make_store()
    registry(store)
    store.store_attestation(attestation("k-fra1", 1, [gpu("GPU-a")]))
    forged = attestation("k-fra1", 1, [gpu("GPU-z")], digest="other", envelope=b"other")
    with pytest.raises(ConflictError) as err:
        store.store_attestation(forged)
    assert (err.value.keyid, err.value.sequence) == ("k-fra1", 1)
    got = store.get_attestation("k-fra1", 1)
    assert got is not None and got.digest == "digest-k-fra1-1"
    assert store.gpu_states(["GPU-z"]) == {}
    assert [d.uuid for d in store.node_devices("node-fra1")] == ["GPU-a"]


def test_two_collectors_racing_on_one_sequence_store_it_once(make_store) -> None:
    stores = [make_store() for _ in range(4)]
    registry(stores[0])
    outcomes: list[str] = []
    barrier = threading.Barrier(len(stores))

    def worker(i: int) -> None:
        barrier.wait()
        try:
            stores[i].store_attestation(attestation("k-fra1", 1, [gpu(f"GPU-{i}")], digest=f"d{i}"))
            outcomes.append(f"stored d{i}")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o.startswith("stored")]
    assert len(winners) == 1 and outcomes.count("conflict") == len(stores) - 1
    got = stores[1].get_attestation("k-fra1", 1)
    assert got is not None and f"stored {got.digest}" == winners[0]
    assert len(stores[2].node_devices("node-fra1")) == 1


def test_last_attestation_is_the_highest_sequence(make_store) -> None:
    store = make_store()
    registry(store)
    assert store.last_attestation("k-fra1") is None
    for seq in (1, 2, 5, 3):
        store.store_attestation(attestation("k-fra1", seq, [], minutes=seq))
    assert store.last_attestation("k-fra1") == ChainHead(5, "digest-k-fra1-5")
    assert tuple(store.last_attestation("k-fra1")) == (5, "digest-k-fra1-5")


def test_chain_links_are_the_neighbours_of_a_sequence_in_one_read(make_store) -> None:
    store = make_store()
    registry(store)
    assert store.chain_links("k-fra1", 1) == ChainLinks(None, None, None)
    for seq in (1, 2, 5, 3):
        store.store_attestation(attestation("k-fra1", seq, [], minutes=seq))
    store.store_attestation(attestation("k-sin1", 9, [], minutes=9))  # another key's chain is not read

    def link(seq: int) -> StoredLink:
        stored = store.get_attestation("k-fra1", seq)
        assert stored is not None
        return StoredLink(seq, stored.digest, stored.previous)

    head = ChainHead(5, "digest-k-fra1-5")
    assert store.chain_links("k-fra1", 3) == ChainLinks(link(3), link(2), head)  # a replay of 3
    assert store.chain_links("k-fra1", 4) == ChainLinks(None, link(3), head)  # out of order, below the head
    assert store.chain_links("k-fra1", 6) == ChainLinks(None, link(5), head)  # the next one
    assert store.chain_links("k-fra1", 8) == ChainLinks(None, None, head)  # after a gap
    assert store.chain_links("k-fra1", 1) == ChainLinks(link(1), None, head)
    assert store.chain_links("k-fra1", 2**53 - 1) == ChainLinks(None, None, head)
    assert store.chain_links("k-none", 2) == ChainLinks(None, None, None)


def test_concurrent_ingest_from_many_nodes_loses_nothing(make_store) -> None:
    first, second = make_store(), make_store()
    registry(first)
    shared = gpu("GPU-shared")  # reported by every node: the per-GPU row is contended

    def worker(store: Store, keyid: str) -> None:
        for seq in range(1, 9):
            devices = [shared, gpu(f"GPU-{keyid}-{seq % 2}", 1)]
            store.store_attestation(attestation(keyid, seq, devices, minutes=seq))

    jobs = [(first, "k-fra1"), (second, "k-sin1"), (first, "k-iad1")]
    threads = [threading.Thread(target=worker, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for _, keyid in jobs:
        assert first.last_attestation(keyid) == ChainHead(8, f"digest-{keyid}-8")
        assert all(second.get_attestation(keyid, seq) for seq in range(1, 9))
    assert first.gpu_states(["GPU-shared"])["GPU-shared"].acquired == at(1)


# --- per-GPU state and nodes ----------------------------------------------------------------------------------


def test_gpu_state_keeps_first_sight_and_follows_the_last_reporter(make_store) -> None:
    store = make_store()
    registry(store)
    store.store_attestation(attestation("k-fra1", 1, [gpu("GPU-a"), gpu("GPU-b", 1)], minutes=1))
    store.store_attestation(attestation("k-sin1", 1, [gpu("GPU-a")], minutes=2))
    states = store.gpu_states(["GPU-a", "GPU-b", "GPU-never"])
    assert set(states) == {"GPU-a", "GPU-b"}
    moved = states["GPU-a"]
    assert (moved.node_id, moved.site, moved.country, moved.keyid) == ("node-sin1", "sin1", "SG", "k-sin1")
    assert (moved.acquired, moved.last_seen) == (at(1), at(2))
    assert (states["GPU-b"].country, states["GPU-b"].decommissioned_at) == ("DE", None)
    # a late resend from the old node (stated earlier, received later) does not move it back
    store.store_attestation(attestation("k-fra1", 2, [gpu("GPU-a")], minutes=1.5, received_at=at(3)))
    assert store.gpu_states(["GPU-a"])["GPU-a"].node_id == "node-sin1"


def test_node_devices_are_the_latest_attestation_even_when_an_older_one_arrives_late(make_store) -> None:
    store = make_store()
    registry(store)
    assert store.node_devices("node-fra1") == []
    store.store_attestation(attestation("k-fra1", 2, [gpu("GPU-new")], minutes=2))
    store.store_attestation(attestation("k-fra1", 1, [gpu("GPU-old")], minutes=1, received_at=at(3)))
    assert [d.uuid for d in store.node_devices("node-fra1")] == ["GPU-new"]
    node = next(n for n in store.list_nodes() if n.node_id == "node-fra1")
    assert (node.last_sequence, node.last_attested_at, node.gpus) == (2, at(3), 1)


def test_devices_without_uuid_are_stored_unaccounted_and_skip_gpu_state(make_store) -> None:
    store = make_store()
    registry(store)
    lost = DeviceRecord(uuid="", status="lost", error="GPU is lost")
    store.store_attestation(attestation("k-fra1", 1, [gpu("GPU-a"), lost, DeviceRecord(uuid="", index=2)]))
    got = store.get_attestation("k-fra1", 1)
    assert got is not None and [d.uuid for d in got.devices] == ["GPU-a", "", ""]
    assert store.gpu_states([""]) == {}
    (site,) = [s for s in store.site_status() if s.site == "fra1"]
    assert (site.gpus, site.tpp, site.unaccounted) == (3, 15832, 2)


def test_decommission_removes_a_gpu_until_it_is_reported_again(make_store) -> None:
    store = make_store()
    registry(store)
    store.store_attestation(attestation("k-fra1", 1, [gpu("GPU-a"), gpu("GPU-b", 1)], minutes=1))
    assert store.decommission_gpu("GPU-unknown", "scrapped", at(2)) is False
    assert store.decommission_gpu("GPU-b", "RMA 1234", at(2)) is True
    state = store.gpu_states(["GPU-b"])["GPU-b"]
    assert (state.decommissioned_at, state.decommission_reason) == (at(2), "RMA 1234")
    assert {s.site: s.gpus for s in store.site_status()}["fra1"] == 1
    # an attestation stated before the decommission (a late resend) does not undo it
    store.store_attestation(attestation("k-fra1", 2, [gpu("GPU-b", 1)], minutes=1.5, received_at=at(3)))
    assert store.gpu_states(["GPU-b"])["GPU-b"].decommissioned_at == at(2)
    store.store_attestation(attestation("k-fra1", 3, [gpu("GPU-a"), gpu("GPU-b", 1)], minutes=4))
    state = store.gpu_states(["GPU-b"])["GPU-b"]
    assert (state.decommissioned_at, state.decommission_reason) == (None, "")


def test_stale_nodes_counts_silence_in_intervals(make_store) -> None:
    store = make_store()
    registry(store)  # enrolled at T0, never attested yet
    store.store_attestation(attestation("k-fra1", 1, [], minutes=10, interval_seconds=600))
    store.store_attestation(attestation("k-sin1", 1, [], minutes=10))
    store.revoke_key("k-iad1", at(11))
    # default interval 60 s: sin1 silent 3 min at 13:00 -> not yet; iad1 revoked -> never reported stale
    assert store.stale_nodes(at(13), intervals=3, default_interval_seconds=60) == []
    assert [n.node_id for n in store.stale_nodes(at(13.5))] == ["node-sin1"]
    assert [n.node_id for n in store.stale_nodes(at(41))] == ["node-fra1", "node-sin1"]  # fra1: 3 x 600 s


def test_a_node_enrolled_but_never_attesting_goes_stale(make_store) -> None:
    store = make_store()
    registry(store)
    assert [n.node_id for n in store.stale_nodes(at(3.5))] == ["node-fra1", "node-iad1", "node-sin1"]
    assert all(n.last_attested_at is None for n in store.list_nodes())


# --- queries --------------------------------------------------------------------------------------------------


def populated(store: Store) -> None:
    registry(store)
    store.store_attestation(attestation("k-fra1", 1, [gpu("GPU-a"), gpu("GPU-b", 1)], minutes=1))
    store.store_attestation(attestation("k-fra1", 2, [gpu("GPU-a"), gpu("GPU-b", 1)], minutes=61))
    derived = DeviceRecord("GPU-d", 1, model="", basis="derived", tpp=2000, die_area_mm2="600.5", eccn="",
                           datacenter=False)  # fmt: skip
    sin = [DeviceRecord("GPU-c", **L40S), derived, DeviceRecord("GPU-x", 2, status="lost")]  # type: ignore[arg-type]
    store.store_attestation(attestation("k-sin1", 1, sin, minutes=2))


def test_site_status(make_store) -> None:
    store = make_store()
    populated(store)
    rows = {s.site: s for s in store.site_status()}
    assert set(rows) == {"fra1", "iad1", "sin1"}
    fra = rows["fra1"]
    assert (fra.country, fra.entity, fra.nodes, fra.gpus, fra.tpp, fra.unaccounted) == ("DE", "acme", 1, 2,
                                                                                        31664, 0)  # fmt: skip
    assert fra.last_attested_at == at(61)
    sin = rows["sin1"]
    assert (sin.gpus, sin.tpp, sin.unaccounted, sin.last_attested_at) == (3, 7824, 1, at(2))
    assert (rows["iad1"].nodes, rows["iad1"].gpus, rows["iad1"].last_attested_at) == (1, 0, None)


def test_country_totals(make_store) -> None:
    store = make_store()
    populated(store)
    totals = {c.country: c for c in store.country_totals()}
    assert set(totals) == {"DE", "SG"}
    assert (totals["DE"].gpus, totals["DE"].tpp, totals["DE"].unaccounted) == (2, 31664, 0)
    assert totals["DE"].by_eccn == {"3A090.a": EccnTotals(2, 31664)}
    assert (totals["SG"].gpus, totals["SG"].tpp, totals["SG"].unaccounted) == (3, 7824, 1)
    assert totals["SG"].by_eccn == {"3A090.a": EccnTotals(1, 5824)}


def test_inventory_is_the_policy_scenario_shape(make_store) -> None:
    store = make_store()
    populated(store)
    inventory = store.inventory(at(90))
    scenario = parse_scenario(inventory, "live inventory")  # the policy evaluation accepts it as it is
    assert [(s.id, len(s.devices), s.unaccounted) for s in scenario.sites] == [("fra1", 1, 0), ("iad1", 0, 0),
                                                                               ("sin1", 2, 1)]  # fmt: skip
    assert inventory == {
        "as_of": "2026-11-23",
        "entities": [
            {"id": "acme", "headquarters": "US", "authorization": "uveu"},
            {"id": "globex", "headquarters": "SG", "authorization": "none"},
        ],
        "sites": [
            {"id": "fra1", "country": "DE", "entity": "acme",
             "devices": [{"model": "h100-sxm5", "count": 2, "acquired": "2026-11-23"}]},
            {"id": "iad1", "country": "US", "entity": "acme", "devices": []},
            {"id": "sin1", "country": "SG", "entity": "globex", "unaccounted": 1,
             "devices": [{"model": "l40s", "count": 1, "acquired": "2026-11-23"},
                         {"tpp": 2000, "die_area_mm2": "600.5", "datacenter": False, "count": 1,
                          "acquired": "2026-11-23"}]},
        ],
    }  # fmt: skip


# --- opening --------------------------------------------------------------------------------------------------


def test_an_unreachable_postgres_is_a_store_error_naming_the_dsn_without_its_password() -> None:
    with pytest.raises(StoreError) as err:
        open_store("postgres", dsn="host=127.0.0.1 port=1 dbname=census user=u password=s3cret", connect_timeout=2)
    assert "port=1" in err.value.message and "dbname=census" in err.value.message
    assert "s3cret" not in err.value.message and err.value.hint


def test_unknown_kinds_and_options_are_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown store kind 'mysql'"):
        open_store("mysql")
    with pytest.raises(ConfigError, match="bad options for the sqlite store"):
        open_store("sqlite", data_dir=str(tmp_path), dsn="host=x")
