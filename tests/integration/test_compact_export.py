"""Audit bundles with compact statements: `export` carries the full inventory a selected compact statement names
(listed under the manifest's `references`), `gpucensus-audit verify` checks that reference instead of
recomputing, and a bundle whose compact statement names a full inventory it does not hold fails."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from gpucensus.collector.store import open_store
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc

from tests.ingest_nodes import NOW, TestNode, enroll
from tests.integration.log_fixtures import DEADLINE, serve, vkey, wait_for_size
from tests.integration.test_log_export import audit, export


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """node-a: a full inventory two hours ago, then two compact statements; node-b: two full inventories."""
    data = tmp_path_factory.mktemp("compact-export") / "data"
    store = open_store("sqlite", data_dir=str(data))
    moment = {"now": NOW - timedelta(hours=2)}
    a, b = TestNode("node-a", clock=lambda: moment["now"]), TestNode("node-b", clock=lambda: moment["now"])
    for node in (a, b):
        enroll(store, node, "fra1", "DE")
    server, port = serve(store, data)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = census_pb2_grpc.CensusStub(channel)
        rounds = [[a.full(), b.full()]]
        moment["now"] = NOW - timedelta(hours=1)
        rounds.append([a.compact(), b.full()])
        moment["now"] = NOW
        rounds.append([a.compact()])
        for envelopes in rounds:
            for envelope in envelopes:
                (ack,) = stub.Report(iter([pb.Envelope(dsse=envelope)]), timeout=DEADLINE)
                assert ack.status == pb.ACK_STATUS_ACCEPTED, ack
        wait_for_size(stub, vkey(data), 5)
    finally:
        channel.close()
        server.stop(None).wait()
        store.close()
    return data


def test_a_whole_log_bundle_with_compact_statements_verifies(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    assert export(data, out).returncode == 0
    assert json.loads((out / "manifest.json").read_text())["references"] == []
    verified = audit(out, str(vkey(data)))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "2 node(s), 16 GPU(s)" in verified.stdout  # node-a counted from the full inventory it repeats


def test_a_selection_carries_the_full_inventory_its_compact_statements_name(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "since"
    since = (NOW - timedelta(minutes=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = export(data, out, "--since", since)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["references"] == [0]  # node-a's full inventory, stated before --since
    assert sorted(int(p.stem) for p in (out / "envelopes").iterdir()) == [0, 2, 3, 4]
    verified = audit(out, str(vkey(data)))
    assert verified.returncode == 0, verified.stdout + verified.stderr  # no chain gap from the reference

    broken = tmp_path / "broken"  # what an exporter that left the reference out would write
    shutil.copytree(out, broken)
    (broken / "envelopes" / "0.json").unlink()
    (broken / "proofs" / "0.json").unlink()
    manifest["files"] = [f for f in manifest["files"] if f["path"] not in ("envelopes/0.json", "proofs/0.json")]
    manifest["references"] = []
    (broken / "manifest.json").write_text(json.dumps(manifest))
    caught = audit(broken, str(vkey(data)))
    assert caught.returncode == 1
    assert "compact-reference" in caught.stdout + caught.stderr and "does not hold" in caught.stdout + caught.stderr


def test_a_chain_gap_left_by_pruning_is_reported_as_pruning_not_as_tampering(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = open_store("sqlite", data_dir=str(data))
    node = TestNode("node-a")
    enroll(store, node, "fra1", "DE")
    server, port = serve(store, data)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = census_pb2_grpc.CensusStub(channel)
        for envelope in [node.full(), node.compact(), node.compact(), node.compact(), node.compact()]:
            (ack,) = stub.Report(iter([pb.Envelope(dsse=envelope)]), timeout=DEADLINE)
            assert ack.status == pb.ACK_STATUS_ACCEPTED, ack
        wait_for_size(stub, vkey(data), 5)
        assert store.prune_compact(NOW + timedelta(seconds=1), NOW) == 3  # 2..4; 5 is the chain head
    finally:
        channel.close()
        server.stop(None).wait()
        store.close()
    out = tmp_path / "bundle"
    assert export(data, out).returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pruned"] == {node.keyid: [[2, 4]]}
    verified = audit(out, str(vkey(data)))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "sequence(s) 2..4 pruned by the collector" in verified.stdout

    manifest["pruned"] = {}  # without the collector's word, the same hole is a gap
    (out / "manifest.json").write_text(json.dumps(manifest))
    caught = audit(out, str(vkey(data)))
    assert caught.returncode == 1 and "gap" in caught.stdout + caught.stderr


def test_a_hole_left_by_a_rejected_compact_statement_is_reported_as_such(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = open_store("sqlite", data_dir=str(data))
    node = TestNode("node-a")
    enroll(store, node, "fra1", "DE")
    server, port = serve(store, data)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = census_pb2_grpc.CensusStub(channel)
        first = node.full()
        node.sequence += 1  # sequence 2, never sent: a real gap
        expected = [pb.ACK_STATUS_ACCEPTED, pb.ACK_STATUS_ACCEPTED, pb.ACK_STATUS_REJECTED, pb.ACK_STATUS_ACCEPTED]
        envelopes = [first, node.compact(), node.compact((1, "ab" * 32)), node.full()]
        for envelope, status in zip(envelopes, expected, strict=True):
            (ack,) = stub.Report(iter([pb.Envelope(dsse=envelope)]), timeout=DEADLINE)
            assert ack.status == status, ack
        wait_for_size(stub, vkey(data), 3)
    finally:
        channel.close()
        server.stop(None).wait()
        store.close()
    out = tmp_path / "bundle"
    assert export(data, out).returncode == 0
    assert json.loads((out / "manifest.json").read_text())["rejected"] == {node.keyid: [[4, 4]]}
    verified = audit(out, str(vkey(data)))
    output = verified.stdout + verified.stderr
    assert "sequence(s) 4 rejected by the collector" in output  # the hole the rejected one left: a note
    assert verified.returncode == 1 and "gap" in output and "sequence 3" in output  # the unexplained one stays
