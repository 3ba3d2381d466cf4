"""Issue 15, host facts: the collector records, under the same node id, a reboot (`host.rebooted`) and a changed
host (`host.changed`) between two accepted attestations, over real gRPC on 127.0.0.1 (SQLite and PostgreSQL),
and refuses a malformed host fact without storing anything."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from gpucensus.collector.ingest.pipeline import Pipeline
from gpucensus.protos import census_pb2 as pb

from tests.ingest_nodes import NOW, TestNode
from tests.integration.server_fixtures import Collector, collector_fixture, make_store, store_kind  # noqa: F401

HOST = {"cpu_logical": 224, "cpu_physical": 112, "memory_total_bytes": 2_061_584_302_080, "boot_time": 1_763_000_000}


def _reporting(node: TestNode, boot_id: str = "boot-1", **facts: Any) -> bytes:
    node.predicate = node.edited(lambda p: p["node"].update({**HOST, "boot_id": boot_id, **facts}))
    return node.next()


def _host_findings(ack: pb.Ack) -> list[tuple[str, int]]:
    return [(f.rule_id, f.severity) for f in ack.findings if f.rule_id.startswith("host.")]


def test_a_node_reporting_a_new_boot_time_is_recorded_as_rebooted(collector: Collector) -> None:
    node = TestNode("n1")
    collector.enroll(node)
    first, same, rebooted = collector.report(
        [_reporting(node), _reporting(node, boot_time=HOST["boot_time"] + 5), _reporting(node, boot_time=1_763_500_000)]
    )
    assert [a.status for a in (first, same, rebooted)] == [pb.ACK_STATUS_ACCEPTED] * 3
    assert _host_findings(first) == [] and _host_findings(same) == []  # a clock correction is not a reboot
    assert _host_findings(rebooted) == [("host.rebooted", pb.SEVERITY_INFO)]
    [stored] = collector.store.list_findings(rule_id="host.rebooted")
    assert stored.subject == "node:n1" and stored.keyid == node.keyid and "1763000005 -> 1763500000" in stored.message


def test_a_node_whose_cpus_or_memory_changed_is_a_warning(collector: Collector) -> None:
    node = TestNode("n1")
    collector.enroll(node)
    acks = collector.report([_reporting(node), _reporting(node, memory_total_bytes=1_030_792_151_040)])
    assert _host_findings(acks[1]) == [("host.changed", pb.SEVERITY_WARNING)]
    assert "memory_total_bytes 2061584302080 -> 1030792151040" in acks[1].findings[-1].message


def test_a_malformed_host_fact_is_refused_and_nothing_is_stored(collector: Collector) -> None:
    node = TestNode("n1")
    collector.enroll(node)
    for bad in (
        {"cpu_logical": True},
        {"boot_time": "1763000000"},
        {"cpu_physical": 2**21},
        {"memory_total_bytes": -1},
        {"boot_id": "x" * 65},
    ):
        predicate = node.edited(lambda p, bad=bad: p["node"].update({**HOST, **bad}))
        envelope = node.sign(predicate=predicate)  # the chain does not advance: nothing may be stored
        with pytest.raises(grpc.RpcError) as refused:
            collector.report([envelope])
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "node." in refused.value.details(), refused.value.details()
    assert collector.store.last_attestation(node.keyid) is None


def test_a_restarted_collector_reads_the_previous_host_facts_from_the_stored_envelope(collector: Collector) -> None:
    node = TestNode("n1")
    collector.enroll(node)
    [first] = collector.report([_reporting(node)])
    restarted = Pipeline(collector.store, clock=lambda: NOW)  # remembers nothing: reads the stored envelope
    result = restarted.ingest(_reporting(node, boot_time=1_763_500_000, cpu_physical=56))
    assert first.status == pb.ACK_STATUS_ACCEPTED and result.status == "accepted"
    assert [(f.rule_id, f.severity) for f in result.findings if f.rule_id.startswith("host.")] == [
        ("host.rebooted", "info"),
        ("host.changed", "warning"),
    ]


@pytest.mark.parametrize("restarted", [False, True])
def test_a_reboot_after_compact_statements_is_compared_with_the_last_full_inventory(
    collector: Collector, restarted: bool
) -> None:
    node = TestNode("n1")
    collector.enroll(node)
    node.predicate = node.edited(lambda p: p["node"].update({**HOST, "boot_id": "boot-1"}))
    acks = collector.report([node.full(), node.compact(), node.compact()])
    assert [a.status for a in acks] == [pb.ACK_STATUS_ACCEPTED] * 3
    node.predicate = node.edited(lambda p: p["node"].update({"boot_time": 1_763_500_000, "cpu_physical": 56}))
    if restarted:  # remembers nothing: reads the full envelope the compact ones repeat
        result = Pipeline(collector.store, clock=lambda: NOW).ingest(node.full())
        found = [(f.rule_id, f.severity) for f in result.findings if f.rule_id.startswith("host.")]
        assert found == [("host.rebooted", "info"), ("host.changed", "warning")]
    else:
        [ack] = collector.report([node.full()])
        assert _host_findings(ack) == [("host.rebooted", pb.SEVERITY_INFO), ("host.changed", pb.SEVERITY_WARNING)]
