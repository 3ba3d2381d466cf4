"""Envelope malleability over real gRPC, on SQLite and on PostgreSQL (issue 8, finding 1): a variant of a genuine
envelope made without the key (another byte form of the same payload and signature) is refused as malformed,
whether it arrives after the genuine envelope (no equivocation, no evidence against the honest node) or before
it (the genuine envelope is then accepted and the chain goes on)."""

from __future__ import annotations

import grpc
import pytest
from gpucensus.protos import census_pb2 as pb

from tests.envelope_variants import VARIANTS, with_distinct_variants
from tests.ingest_nodes import TestNode
from tests.integration.server_fixtures import (  # noqa: F401 (fixtures)
    Collector,
    collector_fixture,
    make_store,
    status_of,
    store_kind,
)


def new_node() -> TestNode:
    """node-1, with a key whose first envelope differs from each of its variants."""
    return with_distinct_variants(lambda: TestNode("node-1"), lambda node: node.sign())


def no_violation_recorded(collector: Collector) -> None:
    assert collector.store.list_findings(rule_id="chain.equivocation") == []
    assert collector.store.list_findings(rule_id="chain.previous-mismatch") == []
    assert collector.store.list_evidence() == []


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_variant_sent_after_the_genuine_envelope_is_refused_without_equivocation(
    collector: Collector, variant: str
) -> None:
    node = new_node()
    collector.enroll(node)
    genuine = node.next()
    assert collector.report([genuine])[0].status == pb.ACK_STATUS_ACCEPTED
    forged = VARIANTS[variant](genuine)
    assert forged != genuine
    assert status_of(lambda: collector.report([forged])) == grpc.StatusCode.INVALID_ARGUMENT
    no_violation_recorded(collector)
    assert collector.store.get_attestation(node.keyid, 1).envelope == genuine
    (ack,) = collector.report([node.next()])
    assert ack.status == pb.ACK_STATUS_ACCEPTED and list(ack.findings) == []


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_variant_sent_first_is_refused_and_the_genuine_envelope_is_then_accepted(
    collector: Collector, variant: str
) -> None:
    node = new_node()
    collector.enroll(node)
    genuine = node.next()
    forged = VARIANTS[variant](genuine)
    assert status_of(lambda: collector.report([forged])) == grpc.StatusCode.INVALID_ARGUMENT
    assert collector.store.get_attestation(node.keyid, 1) is None
    (ack,) = collector.report([genuine])
    assert (ack.status, ack.duplicate) == (pb.ACK_STATUS_ACCEPTED, False)
    (ack,) = collector.report([node.next()])
    assert ack.status == pb.ACK_STATUS_ACCEPTED and list(ack.findings) == []
    no_violation_recorded(collector)
