"""Issue 15: a statement whose `node.site` differs from the site its key is enrolled at is a finding
`binding.site-mismatch`, never a silent move: the attestation is stored and counted at the ENROLLED site.

Over real gRPC on 127.0.0.1, on SQLite and on PostgreSQL. A violation when the claimed site is a registered site in
another country (the node says it is somewhere the enrolled country's counts would be wrong), a warning otherwise
(the same country, or a site the registry does not know: the agent's configuration is stale or mistyped).
"""

from __future__ import annotations

from gpucensus.protos import census_pb2 as pb

from tests.ingest_nodes import TestNode, register
from tests.integration.server_fixtures import DEADLINE, Collector, collector_fixture, make_store, store_kind  # noqa: F401

RULE = "binding.site-mismatch"


def _claiming(node: TestNode, site: object) -> bytes:
    node.predicate = node.edited(lambda p: p["node"].__setitem__("site", site))
    return node.next()


def _mismatches(ack: pb.Ack) -> list[tuple[int, str]]:
    return [(f.severity, f.message) for f in ack.findings if f.rule_id == RULE]


def _site_gpus(collector: Collector, site: str) -> int:
    reply = collector.stub.GetSiteStatus(pb.GetSiteStatusRequest(site=site), timeout=DEADLINE)
    return sum(s.totals.gpus for s in reply.sites)


def test_a_node_claiming_a_site_in_another_country_is_a_violation_and_stays_counted_where_enrolled(
    collector: Collector,
) -> None:
    node = TestNode("n1")
    collector.enroll(node, site="fra1", country="DE")
    register(collector.store, "sin1", "SG")
    [ack] = collector.report([_claiming(node, "sin1")])
    assert ack.status == pb.ACK_STATUS_ACCEPTED
    [(severity, message)] = _mismatches(ack)
    assert severity == pb.SEVERITY_VIOLATION
    assert "'sin1'" in message and "fra1" in message and "SG" in message and "DE" in message
    assert _site_gpus(collector, "fra1") == 8 and _site_gpus(collector, "sin1") == 0
    [stored] = collector.store.list_findings(rule_id=RULE)
    assert stored.subject == "node:n1" and stored.keyid == node.keyid
    assert [n.site for n in collector.store.list_nodes() if n.node_id == "n1"] == ["fra1"]


def test_a_node_claiming_another_site_in_its_country_or_an_unknown_site_is_a_warning(collector: Collector) -> None:
    node = TestNode("n1")
    collector.enroll(node, site="fra1", country="DE")
    register(collector.store, "ber1", "DE")
    for claimed in ("ber1", "typo-site", "\x1b[2J" + "x" * 500, 42, list(range(10_000))):
        [ack] = collector.report([_claiming(node, claimed)])
        assert ack.status == pb.ACK_STATUS_ACCEPTED
        [(severity, message)] = _mismatches(ack)
        assert severity == pb.SEVERITY_WARNING and "\x1b" not in message and len(message) < 400
    assert _site_gpus(collector, "fra1") == 8


def test_no_finding_when_the_node_names_its_enrolled_site_or_none(collector: Collector) -> None:
    node = TestNode("n1")
    collector.enroll(node, site="fra1", country="DE")
    acks = collector.report([_claiming(node, "fra1"), _claiming(node, "")])
    assert [_mismatches(a) for a in acks] == [[], []]
    assert all(a.status == pb.ACK_STATUS_ACCEPTED for a in acks)
