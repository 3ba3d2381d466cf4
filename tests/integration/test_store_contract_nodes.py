"""The store contract, node bindings (issue 8, finding 2): a node id is bound to one key and one site, and only an
explicit, recorded action changes either. On a real SQLite file and the real PostgreSQL server (store_fixtures).
"""

from __future__ import annotations

import threading

import pytest
from gpucensus.collector.store import migrate, open_store
from gpucensus.collector.store.base import (
    EnrollmentToken,
    NodeBoundError,
    RecordExistsError,
    RecordNotFoundError,
    Store,
    TokenRejectedError,
)
from gpucensus.collector.store.sqlnodes import TAKEOVER_RULE

from tests.integration.test_store_contract import T0, at, attestation, gpu, registry
from tests.integration.test_store_contract_findings import registry_as_written_by_version_1

pytest_plugins = ["tests.integration.store_fixtures"]  # make_store, store_kind


def token(store: Store, name: str, site: str = "fra1", node_id: str = "") -> str:
    store.add_token(EnrollmentToken(name, site, T0, at(600), node_id=node_id))
    return name


def active_keys(store: Store, node_id: str) -> list[str]:
    return [k.keyid for k in store.list_keys() if k.node_id == node_id and not k.revoked]


def node_row(store: Store, node_id: str) -> tuple[str, str]:
    [node] = [n for n in store.list_nodes() if n.node_id == node_id]
    return node.site, node.keyid


def test_enroll_records_who_bound_the_node(make_store) -> None:
    store = make_store()
    registry(store)
    [event] = store.node_events("node-fra1")
    assert (event.event, event.keyid, event.site, event.actor, event.created_at) == (
        "enrolled", "k-fra1", "fra1", "token:hash-fra1", T0,
    )  # fmt: skip


def test_a_general_token_never_rebinds_a_node_and_the_attempt_is_recorded_once(make_store) -> None:
    store = make_store()
    registry(store)
    store.store_attestation(attestation("k-fra1", 1, [gpu("GPU-a")]))
    before = store.country_totals()
    t = token(store, "t-attack", site="sin1")
    for _ in range(3):  # the same attempt again: one finding, the token still unused
        with pytest.raises(NodeBoundError, match="node 'node-fra1' is already enrolled"):
            store.enroll("k-evil", "PEM evil", "node-fra1", "", t, at(1))
    assert store.get_key("k-evil") is None
    assert node_row(store, "node-fra1") == ("fra1", "k-fra1") and active_keys(store, "node-fra1") == ["k-fra1"]
    assert store.country_totals() == before
    assert [e.event for e in store.node_events("node-fra1")] == ["enrolled"]
    [finding] = store.list_findings(rule_id=TAKEOVER_RULE)
    assert (finding.subject, finding.keyid, finding.severity) == ("node:node-fra1", "k-evil", "violation")
    assert "site sin1" in finding.message and "k-fra1" in finding.message
    assert store.enroll("k-new", "PEM new", "node-new", "", t, at(2)).site == "sin1"  # the token was not used


def test_a_token_for_a_node_id_is_only_for_that_node_and_re_keys_it(make_store) -> None:
    store = make_store()
    registry(store)
    t = token(store, "t-rekey", site="fra1", node_id="node-fra1")
    with pytest.raises(TokenRejectedError, match="for node 'node-fra1'"):
        store.enroll("k-other", "PEM", "node-other", "", t, at(1))
    key = store.enroll("k-fra1-2", "PEM 2", "node-fra1", "", t, at(2))
    assert (key.node_id, key.site) == ("node-fra1", "fra1")
    assert active_keys(store, "node-fra1") == ["k-fra1-2"]
    assert store.get_key("k-fra1").revoked_at == at(2)  # revoked in the same transaction
    assert node_row(store, "node-fra1") == ("fra1", "k-fra1-2")
    rekeyed = store.node_events("node-fra1")[-1]
    assert (rekeyed.event, rekeyed.old_keyid, rekeyed.keyid, rekeyed.actor) == (
        "rekeyed", "k-fra1", "k-fra1-2", "token:t-rekey",
    )  # fmt: skip
    with pytest.raises(TokenRejectedError):  # used
        store.enroll("k-fra1-3", "PEM 3", "node-fra1", "", t, at(3))
    # a node-id token for a node not enrolled yet: only that node id may enroll with it
    fresh = token(store, "t-fresh", site="sin1", node_id="node-planned")
    assert store.enroll("k-planned", "PEM p", "node-planned", "", fresh, at(4)).site == "sin1"


def test_a_token_never_moves_a_node_to_another_site(make_store) -> None:
    store = make_store()
    registry(store)
    with pytest.raises(NodeBoundError, match="at site 'fra1'"):
        token(store, "t-elsewhere", site="sin1", node_id="node-fra1")
    t = token(store, "t-rekey", site="fra1", node_id="node-fra1")
    assert store.move_node("node-fra1", "sin1", at(1), "operator:alice") is True
    with pytest.raises(NodeBoundError, match="at site 'sin1'"):  # moved after the token was made
        store.enroll("k-fra1-2", "PEM 2", "node-fra1", "", t, at(2))
    assert active_keys(store, "node-fra1") == ["k-fra1"]


def test_rekey_node_is_an_explicit_recorded_operator_action(make_store) -> None:
    store = make_store()
    registry(store)
    key = store.rekey_node("node-sin1", "k-sin1-2", "PEM 2", at(1), "operator:alice@host", "disk replaced")
    assert (key.node_id, key.site, key.keyid) == ("node-sin1", "sin1", "k-sin1-2")
    assert active_keys(store, "node-sin1") == ["k-sin1-2"] and store.get_key("k-sin1").revoked
    event = store.node_events("node-sin1")[-1]
    assert (event.event, event.old_keyid, event.actor, event.reason) == (
        "rekeyed", "k-sin1", "operator:alice@host", "disk replaced",
    )  # fmt: skip
    with pytest.raises(RecordExistsError):
        store.rekey_node("node-sin1", "k-fra1", "PEM", at(2), "operator:alice")
    with pytest.raises(RecordNotFoundError):
        store.rekey_node("node-nowhere", "k-x", "PEM", at(2), "operator:alice")
    # a revoked node is re-keyed the same way (a general token would not do it)
    assert store.revoke_key("k-sin1-2", at(3), actor="operator:bob")
    store.rekey_node("node-sin1", "k-sin1-3", "PEM 3", at(4), "operator:alice")
    assert active_keys(store, "node-sin1") == ["k-sin1-3"]
    assert [e.event for e in store.node_events("node-sin1")] == ["enrolled", "rekeyed", "revoked", "rekeyed"]


def test_move_node_moves_its_totals_and_is_recorded(make_store) -> None:
    store = make_store()
    registry(store)
    store.store_attestation(attestation("k-fra1", 1, [gpu("GPU-a")]))
    assert {c.country: c.gpus for c in store.country_totals()} == {"DE": 1}
    assert store.move_node("node-fra1", "sin1", at(1), "operator:alice", "relocated") is True
    assert {c.country: c.gpus for c in store.country_totals()} == {"SG": 1}
    assert store.get_key("k-fra1").site == "sin1"  # its next attestations are for the new site
    event = store.node_events("node-fra1")[-1]
    assert (event.event, event.old_site, event.site, event.reason) == ("moved", "fra1", "sin1", "relocated")
    assert store.move_node("node-fra1", "sin1", at(2), "operator:alice") is False
    with pytest.raises(RecordNotFoundError):
        store.move_node("node-fra1", "nowhere", at(2), "operator:alice")
    with pytest.raises(RecordNotFoundError):
        store.move_node("node-nowhere", "sin1", at(2), "operator:alice")


def test_an_attestation_by_a_replaced_key_never_rebinds_the_node(make_store) -> None:
    # verified just before the re-key committed, stored just after: the node keeps its new key and site
    store = make_store()
    registry(store)
    store.rekey_node("node-fra1", "k-fra1-2", "PEM 2", at(1), "operator:alice")
    store.move_node("node-fra1", "sin1", at(1), "operator:alice")
    store.store_attestation(attestation("k-fra1", 1, [gpu("GPU-a")], minutes=2, site="fra1"))
    assert node_row(store, "node-fra1") == ("sin1", "k-fra1-2")


def test_the_database_allows_one_active_key_per_node(make_store) -> None:
    store = make_store()
    registry(store)
    with pytest.raises(Exception, match=r"(?i)unique"), store._tx(True) as cur:
        cur.execute(
            "INSERT INTO node_keys (keyid, public_key_pem, node_id, site, token_hash, enrolled_at) "
            "VALUES ('k-second', 'PEM', 'node-fra1', 'fra1', '', ?)",
            (store._t(at(1)),),
        )
    assert active_keys(store, "node-fra1") == ["k-fra1"]


def race_enrollments(stores: list[Store], node_id: str, tokens: list[str]) -> list[str]:
    """Enroll `node_id` with one key per token at once, alternating two collectors; the outcomes."""
    outcomes: list[str] = []
    barrier = threading.Barrier(len(tokens))

    def enroll(i: int) -> None:
        barrier.wait()
        try:
            stores[i % 2].enroll(f"k-{node_id}-{i}", "PEM", node_id, "", tokens[i], at(1))
            outcomes.append("bound")
        except NodeBoundError:
            outcomes.append("refused")

    threads = [threading.Thread(target=enroll, args=(i,)) for i in range(len(tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_two_collectors_enrolling_one_new_node_id_bind_it_once(make_store) -> None:
    stores = [make_store(), make_store()]
    registry(stores[0])
    for round_ in range(8):
        node_id = f"node-race-{round_}"
        tokens = [token(stores[0], f"t-{round_}-{i}") for i in range(4)]
        assert sorted(race_enrollments(stores, node_id, tokens)) == ["bound", "refused", "refused", "refused"]
        [winner] = active_keys(stores[1], node_id)
        assert node_row(stores[1], node_id)[1] == winner
        assert [k.keyid for k in stores[1].list_keys() if k.node_id == node_id] == [winner]
        used = [t for t in tokens if stores[0].consume_token(t, at(2)) is None]
        assert len(used) == 1  # only the winner's token was used up


def test_concurrent_re_keys_leave_exactly_one_live_key(make_store) -> None:
    stores = [make_store(), make_store()]
    registry(stores[0])
    results: list[str] = []
    barrier = threading.Barrier(6)

    def rekey(i: int) -> None:
        barrier.wait()
        try:
            stores[i % 2].rekey_node("node-fra1", f"k-new-{i}", "PEM", at(1 + i), "operator:test")
            results.append(f"k-new-{i}")
        except NodeBoundError:
            pass

    threads = [threading.Thread(target=rekey, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results
    [live] = active_keys(stores[0], "node-fra1")
    assert node_row(stores[0], "node-fra1")[1] == live and live in results
    assert len([e for e in stores[1].node_events("node-fra1") if e.event == "rekeyed"]) == len(results)


def test_upgrading_to_version_3_revokes_the_keys_a_token_rebinding_left_live(make_store, monkeypatch) -> None:
    every = migrate.load_migrations
    monkeypatch.setattr(migrate, "load_migrations", lambda dialect: every(dialect)[:2])
    old = make_store()
    assert old.schema_version() == 2
    registry_as_written_by_version_1(old)
    with old._tx(True) as cur:  # what a version-2 Enroll did for node-fra1 with a token for sin1: both keys live
        cur.execute(
            "INSERT INTO node_keys (keyid, public_key_pem, node_id, site, token_hash, enrolled_at) "
            "VALUES ('k-taken', 'PEM', 'node-fra1', 'sin1', 'hash-x', ?)",
            (old._t(at(1)),),
        )
        cur.execute("UPDATE nodes SET site = 'sin1', keyid = 'k-taken' WHERE node_id = 'node-fra1'")
    old.close()
    monkeypatch.setattr(migrate, "load_migrations", every)
    new = open_store(make_store.kind, **make_store.options)
    try:
        assert new.schema_version() >= 3
        assert active_keys(new, "node-fra1") == ["k-taken"] and new.get_key("k-fra1").revoked
        [event] = new.node_events("node-fra1")
        assert (event.event, event.keyid, event.actor) == ("revoked", "k-fra1", "migration 0003")
        assert active_keys(new, "node-sin1") == ["k-sin1"] and new.node_events("node-sin1") == []
    finally:
        new.close()
