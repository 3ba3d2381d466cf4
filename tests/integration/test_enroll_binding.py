"""Issue 8, finding 2: a node id is bound to one key and never rebound by an enrollment token.

Over real gRPC on 127.0.0.1, on SQLite and on PostgreSQL. An attacker holding any valid token (here for another
site) calls Enroll for an existing node id with its own key: refused, the token stays unused, the node keeps its
site and key, totals do not move, the node's later reports still count, and the attempt is a finding.
"""

from __future__ import annotations

import grpc
from gpucensus.collector.registry import hash_token
from gpucensus.protos import census_pb2 as pb

from tests.ingest_nodes import TestNode
from tests.integration.server_fixtures import DEADLINE, Collector, collector_fixture, make_store, status_of, store_kind  # noqa: F401

ACCEPTED = pb.ACK_STATUS_ACCEPTED


def _totals(collector: Collector) -> dict[str, int]:
    reply = collector.stub.GetCountryTotals(pb.GetCountryTotalsRequest(), timeout=DEADLINE)
    return {c.country: c.totals.gpus for c in reply.countries}


def _token_used(collector: Collector, token: str) -> bool:
    """Whether the token is used up: a probe enrollment of a fresh node id with it is refused."""
    probe = TestNode("probe-node")
    request = pb.EnrollRequest(token=token, node_id=probe.node_id, public_key_pem=probe.public_key_pem)
    try:
        collector.stub.Enroll(request, timeout=DEADLINE)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err
        return True
    return False


def test_a_token_for_another_site_cannot_take_over_an_enrolled_node(collector: Collector) -> None:
    genuine = TestNode("n1")
    collector.enroll(genuine, site="fra1", country="DE")
    assert collector.report([genuine.next()])[0].status == ACCEPTED
    token = collector.token(site="sin1", country="SG")  # any valid token: here for a site in another country
    before = _totals(collector)
    assert before == {"DE": 8, "SG": 0}

    attacker = TestNode("n1")  # same node id, the attacker's own key
    request = pb.EnrollRequest(token=token, node_id="n1", public_key_pem=attacker.public_key_pem)
    with_error = None
    try:
        collector.stub.Enroll(request, timeout=DEADLINE)
    except grpc.RpcError as err:
        with_error = err
    assert with_error is not None, "Enroll rebound node n1 to the attacker's key"
    assert with_error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "n1" in with_error.details() and "already enrolled" in with_error.details()

    # nothing moved: n1 is at fra1 with its own key, the attacker's key is unknown, totals unchanged
    assert collector.store.get_key(attacker.keyid) is None
    [node] = [n for n in collector.store.list_nodes() if n.node_id == "n1"]
    assert (node.site, node.keyid, node.revoked) == ("fra1", genuine.keyid, False)
    assert _totals(collector) == before
    # the attacker's envelope is refused, the genuine node's next report still counts
    assert status_of(lambda: collector.report([attacker.next()])) == grpc.StatusCode.PERMISSION_DENIED
    ack = collector.report([genuine.next()])[0]
    assert ack.status == ACCEPTED and not [f for f in ack.findings if f.rule_id.startswith("chain.")]
    assert _totals(collector) == before

    # the attempt is recorded; the token was not used up (the refusal changed nothing but the record)
    [finding] = collector.store.list_findings(rule_id="enroll.node-already-bound")
    assert finding.subject == "node:n1" and finding.severity == "violation"
    assert attacker.keyid in finding.message and "sin1" in finding.message
    assert hash_token(token)[:12] in finding.message
    assert not _token_used(collector, token)


def test_a_token_for_the_same_site_cannot_rebind_a_node_either(collector: Collector) -> None:
    genuine = TestNode("n1")
    collector.enroll(genuine)
    attacker = TestNode("n1")
    assert status_of(lambda: collector.enroll(attacker)) == grpc.StatusCode.PERMISSION_DENIED
    assert collector.store.get_key(attacker.keyid) is None
    assert collector.store.get_key(genuine.keyid).revoked is False  # type: ignore[union-attr]


def test_a_revoked_node_is_not_rebound_by_a_general_token(collector: Collector) -> None:
    genuine = TestNode("n1")
    collector.enroll(genuine)
    assert collector.store.revoke_key(genuine.keyid, collector.clock())
    attacker = TestNode("n1")
    assert status_of(lambda: collector.enroll(attacker, site="sin1", country="SG")) == grpc.StatusCode.PERMISSION_DENIED
    [node] = collector.store.list_nodes()
    assert (node.site, node.keyid) == ("fra1", genuine.keyid)


def test_re_enrolling_the_same_key_for_the_same_node_stays_idempotent(collector: Collector) -> None:
    node = TestNode("n1")
    token = collector.token()
    request = pb.EnrollRequest(token=token, node_id="n1", public_key_pem=node.public_key_pem)
    first = collector.stub.Enroll(request, timeout=DEADLINE)
    # the agent crashed before it recorded the answer and retries with the same token: the same answer
    again = collector.stub.Enroll(request, timeout=DEADLINE)
    assert (again.keyid, again.node_id, again.site) == (first.keyid, "n1", "fra1")
    # another valid token for the same site: ALREADY_EXISTS (the agent records itself enrolled), token unused
    other = collector.token()
    retry = pb.EnrollRequest(token=other, node_id="n1", public_key_pem=node.public_key_pem)
    assert status_of(lambda: collector.stub.Enroll(retry, timeout=DEADLINE)) == grpc.StatusCode.ALREADY_EXISTS
    assert not _token_used(collector, other)
    assert collector.store.list_findings(rule_id="enroll.node-already-bound") == []


def test_an_enrolled_key_cannot_be_enrolled_for_another_node(collector: Collector) -> None:
    node = TestNode("n1")
    collector.enroll(node)
    request = pb.EnrollRequest(token=collector.token(), node_id="n2", public_key_pem=node.public_key_pem)
    assert status_of(lambda: collector.stub.Enroll(request, timeout=DEADLINE)) == grpc.StatusCode.PERMISSION_DENIED
    assert [n.node_id for n in collector.store.list_nodes()] == ["n1"]
