"""Compact statements ("inventory unchanged since full envelope N") over real gRPC, on SQLite and PostgreSQL.

The steady state: a compact statement is accepted with a log index, writes no device rows, keeps the node fresh
(staleness) and leaves its inventory, totals and history pointing at the full one. The attacks: a compact
statement may only repeat its OWN key's LATEST ACCEPTED full inventory, and only while nothing the collector
knows changed since (a decommission, a move, a re-key): otherwise it is REJECTED with a finding naming why, and
nothing about the node moves (not even its last report).
"""

from __future__ import annotations

import json
from datetime import timedelta

import grpc
import pytest
from gpucensus.agent.attest import sign_payload
from gpucensus.collector.store.base import Store
from gpucensus.common import dsse, jcs
from gpucensus.common.dsse import envelope_digest
from gpucensus.protos import census_pb2 as pb

from tests.ingest_nodes import NOW, TestNode
from tests.integration.server_fixtures import DEADLINE, Collector, collector_fixture, make_store, store_kind  # noqa: F401

ACCEPTED, REJECTED = pb.ACK_STATUS_ACCEPTED, pb.ACK_STATUS_REJECTED


def _gpus(collector: Collector) -> dict[str, int]:
    reply = collector.stub.GetCountryTotals(pb.GetCountryTotalsRequest(), timeout=DEADLINE)
    return {c.country: c.totals.gpus for c in reply.countries}


def _rules(ack: pb.Ack) -> set[str]:
    return {f.rule_id for f in ack.findings}


def _node(store: Store, node_id: str):
    [node] = [n for n in store.list_nodes() if n.node_id == node_id]
    return node


def _one(collector: Collector, envelope: bytes) -> pb.Ack:
    [ack] = collector.report([envelope])
    return ack


def test_steady_state_compact_statements_are_cheap_and_change_no_inventory(collector: Collector) -> None:
    node = TestNode("n1")
    collector.enroll(node)
    full = node.full()
    acks = collector.report([full, node.compact(), node.compact()])
    assert [a.status for a in acks] == [ACCEPTED] * 3
    assert [a.log_index for a in acks] == [0, 1, 2]
    assert _gpus(collector) == {"DE": 8}
    store = collector.store
    compact = store.get_attestation(node.keyid, 3)
    assert compact is not None and compact.kind == "compact" and compact.devices == ()
    assert compact.inventory_digest == envelope_digest(full)
    assert store.get_attestation(node.keyid, 1).kind == "full"  # type: ignore[union-attr]
    assert len(store.node_devices("n1")) == 8  # the node's inventory is still the full one's
    assert _node(store, "n1").gpus == 8 and _node(store, "n1").last_sequence == 3
    later = store.inventory_at(NOW + timedelta(hours=1))  # history: the full one a compact statement repeats
    assert sum(row["count"] for site in later["sites"] for row in site["devices"]) == 8

    # staleness counts compact statements: an hour later the node reports compactly and is fresh again
    collector.clock.now = NOW + timedelta(hours=1)
    assert store.stale_nodes(collector.clock.now)[0].node_id == "n1"
    assert _one(collector, node.compact()).status == ACCEPTED
    assert store.stale_nodes(collector.clock.now) == []
    assert _node(store, "n1").last_attested_at == collector.clock.now

    # a replay of a compact statement is a duplicate with the original index
    again = collector.report([node.sign(sequence=2, previous=envelope_digest(full), compact=node.last_full)])
    assert again[0].duplicate and again[0].log_index == 1


def test_a_full_inventory_again_makes_compact_statements_name_it(collector: Collector) -> None:
    node = TestNode("n1")
    collector.enroll(node)
    first = node.full()
    assert _one(collector, first).status == ACCEPTED
    assert _one(collector, node.compact()).status == ACCEPTED
    assert _one(collector, node.full()).status == ACCEPTED
    older = _one(collector, node.compact((1, envelope_digest(first))))
    assert older.status == REJECTED and _rules(older) == {"compact.superseded"}
    assert _one(collector, node.compact()).status == ACCEPTED


@pytest.mark.parametrize(
    "attack",
    ["before-any-full", "other-key", "unknown-digest", "wrong-sequence", "names-a-compact", "names-a-rejected"],
)
def test_a_compact_statement_naming_anything_but_its_keys_latest_full_is_rejected(
    collector: Collector, attack: str
) -> None:
    node, other = TestNode("n1"), TestNode("n2")
    collector.enroll(node)
    collector.enroll(other)
    assert _one(collector, other.full()).status == ACCEPTED
    if attack == "before-any-full":
        named = (1, "ab" * 32)
        node.sequence = 2  # a named sequence must lie below the statement's own
    else:
        assert _one(collector, node.full()).status == ACCEPTED
        if attack == "other-key":
            named = other.last_full  # type: ignore[assignment]
        elif attack == "unknown-digest":
            named = (1, "cd" * 32)
        elif attack == "wrong-sequence":
            assert _one(collector, node.compact()).status == ACCEPTED
            named = (2, node.last_full[1])  # type: ignore[index]
        elif attack == "names-a-compact":
            compact = node.compact()
            assert _one(collector, compact).status == ACCEPTED
            named = (2, envelope_digest(compact))
        else:  # a full inventory the collector rejected (dated an hour ahead)
            rejected = node.full(ahead=timedelta(hours=1))
            assert _one(collector, rejected).status == REJECTED
            named = node.last_full  # type: ignore[assignment]
    before = _node(collector.store, "n1")
    ack = _one(collector, node.compact(named))
    assert ack.status == REJECTED and not ack.log_index
    assert "compact.unknown-inventory" in _rules(ack), ack
    assert any(f.rule_id == "compact.unknown-inventory" for f in collector.store.list_findings())
    assert collector.store.get_attestation(node.keyid, node.sequence - 1) is None  # nothing stored
    assert _node(collector.store, "n1") == before  # not even the node's last report moved


def test_after_a_decommission_only_a_full_inventory_is_accepted(collector: Collector) -> None:
    node = TestNode("n1")
    collector.enroll(node)
    assert _one(collector, node.full()).status == ACCEPTED
    gone = node.predicate["devices"][7]["uuid"]
    collector.clock.now = NOW + timedelta(minutes=5)
    assert collector.store.decommission_gpu(gone, "scrapped", collector.clock.now)
    assert _gpus(collector) == {"DE": 7}

    ack = _one(collector, node.compact())  # a node must not vouch for the old inventory after a decommission
    assert ack.status == REJECTED and _rules(ack) == {"compact.decommissioned"}
    assert _gpus(collector) == {"DE": 7}

    node.predicate["devices"] = node.predicate["devices"][:7]  # the GPU really left: the next full says so
    node.predicate["pci_functions"] = [p for p in node.predicate["pci_functions"] if p.get("nvml_index") != 7]
    node.predicate["totals"]["gpus"] = 7
    assert _one(collector, node.full()).status == ACCEPTED
    assert _one(collector, node.compact()).status == ACCEPTED
    assert _gpus(collector) == {"DE": 7}


def test_after_a_move_only_a_full_inventory_is_accepted(collector: Collector) -> None:
    node = TestNode("n1")
    collector.enroll(node)
    collector.token(site="sin1", country="SG")  # registers the other site
    assert _one(collector, node.full()).status == ACCEPTED
    assert collector.store.move_node("n1", "sin1", NOW + timedelta(minutes=5), "operator:test")
    collector.clock.now = NOW + timedelta(minutes=6)
    ack = _one(collector, node.compact())
    assert ack.status == REJECTED and _rules(ack) == {"compact.binding-changed"}
    assert "moved" in ack.findings[0].message
    assert _one(collector, node.full()).status == ACCEPTED
    assert _one(collector, node.compact()).status == ACCEPTED
    assert _gpus(collector) == {"DE": 0, "SG": 8}


def test_after_a_rekey_the_old_key_is_refused_and_the_new_key_needs_its_own_full(collector: Collector) -> None:
    old = TestNode("n1")
    collector.enroll(old)
    assert _one(collector, old.full()).status == ACCEPTED
    new = TestNode("n1")
    collector.store.rekey_node("n1", new.keyid, new.public_key_pem, NOW + timedelta(minutes=5), "operator:test")
    collector.clock.now = NOW + timedelta(minutes=6)

    with pytest.raises(grpc.RpcError) as refused:
        collector.report([old.compact()])
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED  # the old key is revoked

    new.sequence = 2  # (a named inventory lies below the statement's own sequence)
    ack = _one(collector, new.compact(old.last_full))  # the new key names the old key's inventory
    assert ack.status == REJECTED and "compact.unknown-inventory" in _rules(ack)
    assert _one(collector, new.full()).status == ACCEPTED
    assert _one(collector, new.compact()).status == ACCEPTED
    assert _gpus(collector) == {"DE": 8}


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda p: p.update(totals={"gpus": 8}), "unknown field(s) 'totals'"),
        (lambda p: p["inventory"].update(sequence="1"), "inventory.sequence must be an integer"),
        (lambda p: p["inventory"].update(sequence=True), "inventory.sequence must be an integer"),
        (lambda p: p["inventory"].update(digest="AB" * 32), "inventory.digest must be 64 lower-case hex"),
        (lambda p: p["inventory"].update(extra=1), "exactly sequence and digest"),
        (lambda p: p["node"].update(site="fra1"), "node must have exactly id"),
        (lambda p: p["inventory"].update(sequence=3), "below the statement's own sequence"),
    ],
)
def test_a_malformed_compact_statement_is_invalid_argument(collector: Collector, edit, reason: str) -> None:
    node = TestNode("n1")
    collector.enroll(node)
    assert _one(collector, node.full()).status == ACCEPTED
    statement = json.loads(dsse.b64decode(json.loads(node.compact())["payload"]))  # a genuine one, then edited
    edit(statement["predicate"])
    envelope = sign_payload(jcs.canonical_bytes(statement), node.key)  # signed as is: the agent would refuse
    with pytest.raises(grpc.RpcError) as refused:
        collector.report([envelope])
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "compact-shape" in refused.value.details() and reason in refused.value.details()


def test_a_full_inventory_answering_a_rejection_is_no_chain_violation_but_other_holes_are(
    collector: Collector,
) -> None:
    node = TestNode("n1")
    collector.enroll(node)
    assert _one(collector, node.full()).status == ACCEPTED
    collector.clock.now = NOW + timedelta(minutes=5)
    assert collector.store.decommission_gpu(node.predicate["devices"][0]["uuid"], "scrapped", collector.clock.now)
    acks = collector.report([node.compact(), node.compact()])  # two spooled compact statements, both rejected
    assert [a.status for a in acks] == [REJECTED, REJECTED]
    answer = _one(collector, node.full(ahead=timedelta(minutes=10)))  # links to the second rejected one
    assert answer.status == ACCEPTED and _rules(answer) == {"chain.after-rejected"}, answer

    # a hole that is not made of rejected compact statements stays a gap (sequence skipped on purpose)
    node.sequence += 1
    skipped = _one(collector, node.compact())
    assert skipped.status == ACCEPTED and _rules(skipped) == {"chain.missing-attestations"}
    # a statement after a rejected one that does not link to it keeps its previous-mismatch violation
    collector.clock.now = NOW + timedelta(minutes=20)
    assert collector.store.decommission_gpu(node.predicate["devices"][1]["uuid"], "scrapped", collector.clock.now)
    assert _one(collector, node.compact()).status == REJECTED
    unlinked = _one(collector, node.full(previous="ef" * 32, ahead=timedelta(minutes=25)))
    assert unlinked.status == ACCEPTED and "chain.previous-mismatch" in _rules(unlinked)
