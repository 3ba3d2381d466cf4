"""The collector over real sockets on 127.0.0.1, on SQLite and on PostgreSQL: enrollment, the Report stream
and its verdicts (docs/formats.md, "Wire"), and the query RPCs."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import grpc
from gpucensus.agent.attest import sign_predicate
from gpucensus.collector.ingest.pipeline import Pipeline
from gpucensus.common.dsse import envelope_digest
from gpucensus.protos import census_pb2 as pb

from tests.ingest_nodes import NOW, TestNode, enroll
from tests.integration.server_fixtures import (  # noqa: F401 (fixtures)
    DEADLINE,
    Collector,
    collector_fixture,
    make_store,
    status_of,
    store_kind,
)


def rule_ids(ack: pb.Ack) -> list[str]:
    return [f.rule_id for f in ack.findings]


def test_enroll_binds_the_key_to_the_node_and_the_tokens_site(collector: Collector) -> None:
    node = TestNode("node-1")
    reply = collector.enroll(node, site="waw1", country="PL")
    assert (reply.keyid, reply.node_id, reply.site) == (node.keyid, "node-1", "waw1")
    key = collector.store.get_key(node.keyid)
    assert key is not None and (key.node_id, key.site) == ("node-1", "waw1")


def test_an_enrollment_token_works_once(collector: Collector) -> None:
    token = collector.token()
    first, second = TestNode("node-1"), TestNode("node-2")
    request = pb.EnrollRequest(token=token, node_id="node-1", public_key_pem=first.public_key_pem)
    collector.stub.Enroll(request, timeout=DEADLINE)
    again = pb.EnrollRequest(token=token, node_id="node-2", public_key_pem=second.public_key_pem)
    assert status_of(lambda: collector.stub.Enroll(again, timeout=DEADLINE)) == grpc.StatusCode.PERMISSION_DENIED


def test_enrollment_with_bad_input_is_invalid_argument(collector: Collector) -> None:
    node = TestNode("node-1")
    for request in (
        pb.EnrollRequest(token=collector.token(), node_id="node-1", public_key_pem="not a key"),
        pb.EnrollRequest(token=collector.token(), node_id="bad id with spaces", public_key_pem=node.public_key_pem),
        pb.EnrollRequest(token="", node_id="node-1", public_key_pem=node.public_key_pem),
    ):
        assert (
            status_of(lambda r=request: collector.stub.Enroll(r, timeout=DEADLINE)) == grpc.StatusCode.INVALID_ARGUMENT
        )


def test_a_chain_is_acknowledged_in_order_with_log_indexes(collector: Collector) -> None:
    node = TestNode("node-1")
    collector.enroll(node)
    acks = collector.report([node.next() for _ in range(3)])
    assert [(a.keyid, a.sequence, a.status, a.duplicate) for a in acks] == [
        (node.keyid, s, pb.ACK_STATUS_ACCEPTED, False) for s in (1, 2, 3)
    ]
    assert all(a.HasField("log_index") for a in acks)
    assert [a.log_index for a in acks] == [0, 1, 2]  # leaf indices of the log, from 0
    assert all(rule_ids(a) == [] for a in acks)
    assert collector.store.last_attestation(node.keyid).sequence == 3


def test_a_replay_gets_the_same_ack_with_duplicate_true(collector: Collector) -> None:
    node = TestNode("node-1")
    collector.enroll(node)
    first, second = node.next(), node.next(sequence=3)  # a gap: the ack carries a finding
    original = collector.report([first, second])
    replayed = collector.report([first, second])
    for before, after in zip(original, replayed, strict=True):
        assert after.duplicate and not before.duplicate
        after.duplicate = False
        assert after == before
    assert rule_ids(replayed[1]) == ["chain.missing-attestations"]


def test_an_equivocation_is_rejected_with_a_finding_and_the_first_envelope_stays(collector: Collector) -> None:
    node = TestNode("node-1")
    collector.enroll(node)
    first = node.next()
    stored = collector.report([first, node.next()])[1]
    forked = node.edited(lambda p: p["totals"].update(gpus=7))
    second = node.sign(sequence=2, previous=node.previous, predicate=forked)
    (ack,) = collector.report([second])
    assert ack.status == pb.ACK_STATUS_REJECTED and not ack.HasField("log_index")
    assert rule_ids(ack) == ["chain.equivocation"]
    assert ack.findings[0].severity == pb.SEVERITY_VIOLATION
    assert collector.store.get_attestation(node.keyid, 2).log_index == stored.log_index
    assert [rule_ids(a) for a in collector.report([second, second])] == [["chain.equivocation"]] * 2  # resent
    assert [f.sequence for f in collector.store.list_findings(rule_id="chain.equivocation")] == [2]  # once
    (evidence,) = collector.store.list_evidence(node.keyid)  # the auditor's proof: both signed envelopes
    assert (evidence.sequence, evidence.envelope, evidence.digest) == (2, second, envelope_digest(second))
    assert evidence.stored_digest == collector.store.get_attestation(node.keyid, 2).digest


def test_a_gap_is_accepted_with_a_missing_attestations_finding(collector: Collector) -> None:
    node = TestNode("node-1")
    collector.enroll(node)
    node.next()  # sequence 1 never sent
    node.next()  # nor 2
    (ack,) = collector.report([node.next()])
    assert ack.status == pb.ACK_STATUS_ACCEPTED and ack.sequence == 3
    assert rule_ids(ack) == ["chain.missing-attestations"]
    assert "1..2" in ack.findings[0].message


def test_a_gap_after_a_stored_attestation_the_collector_no_longer_remembers_is_accepted(make_store) -> None:  # noqa: F811
    """After a restart (or another collector's write) the host facts before a gap come from the stored chain head's
    envelope: a regression test for an AttributeError (INTERNAL) on that path."""
    store = make_store()
    node = TestNode("node-1")
    enroll(store, node)
    Pipeline(store, clock=lambda: NOW).ingest(node.next())  # sequence 1, by a collector that is gone now
    node.next()  # sequence 2 never sent
    result = Pipeline(store, clock=lambda: NOW).ingest(node.next())
    assert result.status == "accepted" and "chain.missing-attestations" in [f.rule_id for f in result.findings]


def test_a_timestamp_more_than_five_minutes_ahead_is_rejected(collector: Collector) -> None:
    node = TestNode("node-1")
    collector.enroll(node)
    ahead, within = node.sign(ahead=timedelta(minutes=6)), node.sign(ahead=timedelta(minutes=4))
    (rejected,) = collector.report([ahead])
    assert rejected.status == pb.ACK_STATUS_REJECTED and rule_ids(rejected) == ["chain.future-timestamp"]
    (accepted,) = collector.report([within])
    assert accepted.status == pb.ACK_STATUS_ACCEPTED


def test_a_timestamp_long_before_the_keys_enrolment_is_rejected(collector: Collector) -> None:
    node = TestNode("node-1")
    collector.enroll(node)  # at NOW, the collector's clock
    year_one = sign_predicate(node.predicate, node.key, sequence=1, previous="", timestamp="0001-01-01T00:00:00Z")
    (rejected,) = collector.report([year_one])
    assert rejected.status == pb.ACK_STATUS_REJECTED and rule_ids(rejected) == ["chain.past-timestamp"]
    assert collector.store.get_attestation(node.keyid, 1) is None
    spooled_before_enrolment = node.sign(ahead=-timedelta(days=2))
    (accepted,) = collector.report([spooled_before_enrolment])
    assert accepted.status == pb.ACK_STATUS_ACCEPTED and rule_ids(accepted) == []


def test_an_unenrolled_key_is_permission_denied(collector: Collector) -> None:
    node = TestNode("node-1")
    assert status_of(lambda: collector.report([node.next()])) == grpc.StatusCode.PERMISSION_DENIED


def test_a_revoked_key_is_permission_denied(collector: Collector) -> None:
    node = TestNode("node-1")
    collector.enroll(node)
    collector.report([node.next()])
    collector.store.revoke_key(node.keyid, collector.store.get_key(node.keyid).enrolled_at)
    assert status_of(lambda: collector.report([node.next()])) == grpc.StatusCode.PERMISSION_DENIED


def _tampered(envelope: bytes) -> bytes:
    obj = json.loads(envelope)
    statement = json.loads(base64.b64decode(obj["payload"]))
    statement["predicate"]["totals"]["tpp"] = 0  # hide the compute
    obj["payload"] = base64.b64encode(json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()).decode()
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def test_a_tampered_envelope_is_unauthenticated_and_nothing_is_stored(collector: Collector) -> None:
    node = TestNode("node-1")
    collector.enroll(node)
    assert status_of(lambda: collector.report([_tampered(node.next())])) == grpc.StatusCode.UNAUTHENTICATED
    assert collector.store.last_attestation(node.keyid) is None


def test_garbage_is_invalid_argument(collector: Collector) -> None:
    assert status_of(lambda: collector.report([b"{not json"])) == grpc.StatusCode.INVALID_ARGUMENT


def test_the_stream_survives_nothing_after_an_error_but_the_next_stream_works(collector: Collector) -> None:
    node = TestNode("node-1")
    collector.enroll(node)
    good = node.next()
    assert status_of(lambda: collector.report([b"junk", good])) == grpc.StatusCode.INVALID_ARGUMENT
    assert [a.sequence for a in collector.report([good])] == [1]


def test_a_gpu_reported_by_two_nodes_and_across_a_border_is_a_finding(collector: Collector) -> None:
    first, second = TestNode("node-1"), TestNode("node-2")
    collector.enroll(first, site="fra1", country="DE")
    collector.enroll(second, site="waw1", country="PL")
    collector.report([first.next()])
    board = first.predicate["devices"][0]["uuid"]
    second.predicate["devices"][0]["uuid"] = board
    (ack,) = collector.report([second.next()])
    assert ack.status == pb.ACK_STATUS_ACCEPTED
    found = {(f.rule_id, f.subject) for f in ack.findings}
    assert {("crossnode.duplicate-uuid", f"gpu:{board}"), ("crossnode.moved-country", f"gpu:{board}")} <= found


def test_a_gpu_gone_without_decommission_is_a_finding_and_with_it_is_not(collector: Collector) -> None:
    node = TestNode("node-1")
    collector.enroll(node)
    collector.report([node.next()])
    gone = node.predicate["devices"].pop()["uuid"]
    node.predicate["totals"] = {}  # the agent's totals are only compared; a mismatch is another finding
    (ack,) = collector.report([node.next()])
    assert ("crossnode.disappeared", f"gpu:{gone}") in {(f.rule_id, f.subject) for f in ack.findings}
    also_gone = node.predicate["devices"].pop()["uuid"]
    assert collector.store.decommission_gpu(also_gone, "RMA", collector.store.get_key(node.keyid).enrolled_at)
    (ack,) = collector.report([node.next()])
    assert "crossnode.disappeared" not in rule_ids(ack)


def test_a_hidden_gpu_is_a_finding_and_is_counted(collector: Collector) -> None:
    node = TestNode("node-1", profile="hidden-gpu")
    collector.enroll(node)
    (ack,) = collector.report([node.next()])
    assert "crossnode.hidden-gpu" in rule_ids(ack)
    (site,) = collector.stub.GetSiteStatus(pb.GetSiteStatusRequest(site="fra1"), timeout=DEADLINE).sites
    assert site.totals.gpus == node.predicate["totals"]["gpus"]


def test_the_collectors_figures_are_stored_not_the_agents(collector: Collector) -> None:
    node = TestNode("node-1")
    collector.enroll(node)
    honest_tpp = node.predicate["totals"]["tpp"]
    for device in node.predicate["devices"]:
        device["tpp"] = 1
    node.predicate["totals"]["tpp"] = len(node.predicate["devices"])
    (ack,) = collector.report([node.next()])
    assert ack.status == pb.ACK_STATUS_ACCEPTED
    assert "accounting.mismatch" in rule_ids(ack) and "accounting.totals-mismatch" in rule_ids(ack)
    (country,) = collector.stub.GetCountryTotals(pb.GetCountryTotalsRequest(country="DE"), timeout=DEADLINE).countries
    assert country.totals.tpp == honest_tpp


def test_site_status_and_country_totals(collector: Collector) -> None:
    nodes = [TestNode("node-1"), TestNode("node-2", profile="hgx-a100"), TestNode("node-3", profile="h20-8x")]
    collector.enroll(nodes[0], site="fra1", country="DE")
    collector.enroll(nodes[1], site="fra1", country="DE")
    collector.enroll(nodes[2], site="sin1", country="SG")
    for node in nodes[:2]:
        collector.report([node.next()])
    sites = {s.site: s for s in collector.stub.GetSiteStatus(pb.GetSiteStatusRequest(), timeout=DEADLINE).sites}
    assert set(sites) == {"fra1", "sin1"}
    fra = sites["fra1"]
    assert (fra.country, fra.entity, fra.totals.gpus) == ("DE", "acme", 16)
    assert fra.totals.tpp == sum(n.predicate["totals"]["tpp"] for n in nodes[:2])
    assert sorted((n.node_id, n.last_sequence, n.stale) for n in fra.nodes) == [
        ("node-1", 1, False),
        ("node-2", 1, False),
    ]
    (silent,) = sites["sin1"].nodes
    assert not silent.HasField("last_sequence") and silent.last_attested == ""
    countries = collector.stub.GetCountryTotals(pb.GetCountryTotalsRequest(), timeout=DEADLINE).countries
    de = next(c for c in countries if c.country == "DE")
    assert (de.sites, de.totals.gpus) == (1, 16)
    assert sum(t.tpp for t in de.by_eccn.values()) == de.totals.tpp
    unknown = pb.GetSiteStatusRequest(site="nowhere")
    assert status_of(lambda: collector.stub.GetSiteStatus(unknown, timeout=DEADLINE)) == grpc.StatusCode.NOT_FOUND


def test_a_node_silent_for_three_intervals_is_stale(collector: Collector) -> None:
    node = TestNode("node-1")
    collector.enroll(node)
    collector.report([node.next()])
    request = pb.GetSiteStatusRequest(site="fra1")
    collector.clock.now += timedelta(seconds=3 * 60)
    assert not collector.stub.GetSiteStatus(request, timeout=DEADLINE).sites[0].nodes[0].stale
    collector.clock.now += timedelta(seconds=1)
    assert collector.stub.GetSiteStatus(request, timeout=DEADLINE).sites[0].nodes[0].stale


def test_a_store_that_is_down_is_unavailable_the_one_status_an_agent_retries(collector: Collector) -> None:
    node = TestNode("node-1")
    collector.enroll(node)
    collector.store.close()
    assert status_of(lambda: collector.report([node.next()])) == grpc.StatusCode.UNAVAILABLE
