"""The store contract, site tokens for fleets and pre-registration (issue 15): a token enrolls up to N NEW node
ids, each use recorded and counted down atomically (also by two collectors on one database); a token can be
listed and revoked by its public id; an operator can bind a new node without a token. On a real SQLite file and
the real PostgreSQL server (store_fixtures).
"""

from __future__ import annotations

import threading

import pytest
from gpucensus.collector import registry as reg
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.store import migrate, open_store
from gpucensus.collector.store.base import (
    EnrollmentToken,
    NodeBoundError,
    RecordExistsError,
    RecordNotFoundError,
    TokenRejectedError,
)

from tests.integration.test_store_contract import T0, at, registry
from tests.integration.test_store_contract_findings import registry_as_written_by_version_1

pytest_plugins = ["tests.integration.store_fixtures"]  # make_store, store_kind

SITE_TOKEN = "ab" * 32  # a token hash: its public id is "abababababab"


def site_token(store, uses: int, name: str = SITE_TOKEN, site: str = "fra1") -> str:
    store.add_token(EnrollmentToken(name, site, T0, at(600), uses=uses))
    return name


def test_a_site_token_enrolls_n_new_nodes_records_each_use_and_then_refuses(make_store) -> None:
    store = make_store()
    registry(store)
    t = site_token(store, uses=3)
    for i in range(3):
        key = store.enroll(f"k-{i}", "PEM", f"gpu-{i}", "", t, at(1 + i))
        assert (key.node_id, key.site) == (f"gpu-{i}", "fra1")
    with pytest.raises(TokenRejectedError, match="used up"):
        store.enroll("k-3", "PEM", "gpu-3", "", t, at(5))
    assert store.get_key("k-3") is None
    [listed] = [x for x in store.list_tokens() if x.token_hash == t]
    assert (listed.uses, listed.remaining, listed.used_at, listed.public_id) == (3, 0, at(3), "abababababab")
    uses = store.token_uses(t)
    assert [(u.node_id, u.keyid, u.used_at) for u in uses] == [(f"gpu-{i}", f"k-{i}", at(1 + i)) for i in range(3)]
    assert [e.actor for e in store.node_events("gpu-0")] == ["token:abababababab"]


def test_a_site_token_never_rebinds_an_enrolled_node_and_keeps_the_use(make_store) -> None:
    store = make_store()
    registry(store)
    t = site_token(store, uses=2)
    with pytest.raises(NodeBoundError, match="already enrolled"):
        store.enroll("k-evil", "PEM", "node-fra1", "", t, at(1))
    store.enroll("k-a", "PEM", "gpu-a", "", t, at(2))
    assert store.enroll("k-a", "PEM", "gpu-a", "", t, at(3)).keyid == "k-a"  # the agent's retry: no second use
    [listed] = [x for x in store.list_tokens() if x.token_hash == t]
    assert listed.remaining == 1 and len(store.token_uses(t)) == 1


def test_two_collectors_never_over_use_a_site_token(make_store) -> None:
    stores = [make_store(), make_store()]
    registry(stores[0])
    t = site_token(stores[0], uses=5)
    bound: list[str] = []
    barrier = threading.Barrier(12)

    def enroll(i: int) -> None:
        barrier.wait()
        try:
            stores[i % 2].enroll(f"k-race-{i}", "PEM", f"race-{i}", "", t, at(1))
            bound.append(f"race-{i}")
        except TokenRejectedError:
            pass

    threads = [threading.Thread(target=enroll, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(bound) == 5
    assert sorted(u.node_id for u in stores[1].token_uses(t)) == sorted(bound)
    assert [x.remaining for x in stores[1].list_tokens() if x.token_hash == t] == [0]


def test_a_revoked_token_enrolls_nothing_more(make_store) -> None:
    store = make_store()
    registry(store)
    t = site_token(store, uses=10)
    store.enroll("k-a", "PEM", "gpu-a", "", t, at(1))
    before = store.revoke_token("ABABABABABAB", at(2))  # the public id, in any case
    assert before.revoked_at is None and before.remaining == 9
    assert store.revoke_token("abababababab", at(3)).revoked_at == at(2)  # already revoked: when
    with pytest.raises(TokenRejectedError, match="revoked"):
        store.enroll("k-b", "PEM", "gpu-b", "", t, at(4))
    assert store.get_key("k-a") is not None and not store.get_key("k-a").revoked  # its nodes stay enrolled


def test_a_token_id_must_name_exactly_one_token(make_store) -> None:
    store = make_store()
    registry(store)
    site_token(store, uses=2, name="abcdef012345" + "0" * 52)
    site_token(store, uses=2, name="abcdef012345" + "1" * 52)
    for bad in ("", "abc", "not-hex-at-all", "abcdef01234g"):
        with pytest.raises(ConfigError, match="not a token id"):
            store.revoke_token(bad, at(1))
    with pytest.raises(RecordNotFoundError, match="2 tokens"):
        store.revoke_token("abcdef012345", at(1))
    with pytest.raises(RecordNotFoundError, match="no token"):
        store.find_token("0123456789ab")
    assert store.find_token("abcdef0123451").uses == 2


def test_a_token_for_one_node_id_stays_single_use(make_store) -> None:
    store = make_store()
    registry(store)
    with pytest.raises(ValueError):
        store.add_token(EnrollmentToken("t-node", "fra1", T0, at(60), node_id="gpu-a", uses=2))
    with pytest.raises(ConfigError, match="single use"):
        reg.new_token("fra1", T0, reg.parse_ttl("1h"), "gpu-a", uses=2)
    for uses in (0, -1, reg.MAX_USES + 1):
        with pytest.raises(ConfigError, match="uses"):
            reg.new_token("fra1", T0, reg.parse_ttl("1h"), uses=uses)


def test_pre_registration_binds_a_new_node_without_a_token_and_records_the_operator(make_store) -> None:
    store = make_store()
    registry(store)
    key = store.preregister_node("k-pre", "PEM pre", "gpu-pre", "sin1", at(1), "operator:alice@host")
    assert (key.node_id, key.site, store.get_key("k-pre").site) == ("gpu-pre", "sin1", "sin1")
    [event] = store.node_events("gpu-pre")
    assert (event.event, event.keyid, event.site, event.actor) == ("enrolled", "k-pre", "sin1", "operator:alice@host")
    with pytest.raises(NodeBoundError, match="already enrolled"):
        store.preregister_node("k-other", "PEM", "node-fra1", "fra1", at(2), "operator:x")
    with pytest.raises(RecordExistsError, match="already enrolled"):
        store.preregister_node("k-pre", "PEM pre", "gpu-new", "sin1", at(2), "operator:x")
    with pytest.raises(RecordNotFoundError, match="does not exist"):
        store.preregister_node("k-new", "PEM", "gpu-new", "nowhere", at(2), "operator:x")
    assert store.get_key("k-other") is None and store.get_key("k-new") is None
    assert [n.site for n in store.list_nodes() if n.node_id == "node-fra1"] == ["fra1"]


def test_upgrading_to_version_4_keeps_used_tokens_used_and_records_their_uses(make_store, monkeypatch) -> None:
    every = migrate.load_migrations
    monkeypatch.setattr(migrate, "load_migrations", lambda dialect: every(dialect)[:3])
    old = make_store()
    assert old.schema_version() == 3
    registry_as_written_by_version_1(old)
    with old._tx(True) as cur:  # version 3: a used token (it enrolled node-fra1) and an unused one
        for name, used in (("hash-fra1", old._t(T0)), ("hash-new", None)):
            cur.execute(
                "INSERT INTO enrollment_tokens (token_hash, site, created_at, expires_at, used_at) "
                "VALUES (?, 'fra1', ?, ?, ?)",
                (name, old._t(T0), old._t(at(600)), used),
            )
    old.close()
    monkeypatch.setattr(migrate, "load_migrations", every)
    new = open_store(make_store.kind, **make_store.options)
    try:
        assert new.schema_version() >= 4
        tokens = {t.token_hash: t for t in new.list_tokens()}
        assert (tokens["hash-fra1"].uses, tokens["hash-fra1"].remaining) == (1, 0)
        assert (tokens["hash-new"].uses, tokens["hash-new"].remaining) == (1, 1)
        assert [(u.node_id, u.keyid) for u in new.token_uses("hash-fra1")] == [("node-fra1", "k-fra1")]
        with pytest.raises(TokenRejectedError):
            new.enroll("k-x", "PEM", "gpu-x", "", "hash-fra1", at(1))
        assert new.enroll("k-y", "PEM", "gpu-y", "", "hash-new", at(1)).site == "fra1"
    finally:
        new.close()
