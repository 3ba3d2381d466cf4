"""Rows that stay small, on both stores: no attestation row keeps a copy of a checkpoint (every ack, a duplicate's
too, carries the log's current one), and a compact statement is stored as the few fields its row does not
already hold (`envelopes.COMPACT_FIELDS`), rebuilt byte for byte for every reader; a row that does not rebuild
exactly is a StoreError, never other bytes."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from datetime import timedelta
from types import SimpleNamespace

import grpc
import pytest
from gpucensus.agent.attest import sign_predicate
from gpucensus.collector.dashboard import views
from gpucensus.collector.errors import StoreError
from gpucensus.collector.ingest.pipeline import Pipeline
from gpucensus.collector.store import compact_fields, envelopes
from gpucensus.collector.store.base import AttestationRecord, Store
from gpucensus.common import merkle
from gpucensus.common.statement import COMPACT_PREDICATE_TYPE, compact_predicate, format_timestamp
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc

from tests.ingest_nodes import NOW, TestNode, enroll
from tests.integration.log_fixtures import DEADLINE, serve, vkey, wait_for_size
from tests.integration.server_fixtures import Collector, collector_fixture, status_of  # noqa: F401 (a fixture)
from tests.integration.store_fixtures import make_store, store_kind  # noqa: F401
from tests.integration.test_log_export import audit, run
from tests.integration.test_store_contract import attestation, gpu, registry


def _column(store: Store, column: str) -> list:
    with store._tx(False) as cur:
        return [r[0] for r in cur.execute(f"SELECT {column} FROM attestations ORDER BY id").fetchall()]


def test_no_row_stores_a_checkpoint_and_every_ack_carries_the_current_one(make_store) -> None:  # noqa: F811
    store = make_store()
    notes = iter([b"note 1\n", b"note 2\n", b"note 3\n", b"note 4\n"])
    clock = {"now": NOW}
    pipeline = Pipeline(store, clock=lambda: clock["now"], checkpoint=lambda: next(notes))
    node = TestNode("n1")
    enroll(store, node)
    full, compact = node.full(), node.compact()
    acks = []
    for envelope in (full, compact, full, compact):  # then both again: duplicates
        acks.append(pipeline.ingest(envelope))
        clock["now"] += timedelta(minutes=1)
    assert [(a.status, a.duplicate) for a in acks] == [("accepted", False)] * 2 + [("accepted", True)] * 2
    assert [a.checkpoint for a in acks] == [b"note 1\n", b"note 2\n", b"note 3\n", b"note 4\n"]
    assert [a.log_index for a in acks] == [0, 1, 0, 1]
    assert [bytes(c) for c in _column(store, "checkpoint")] == [b"", b""]
    assert store.get_attestation(node.keyid, 1).checkpoint == b""


def test_a_record_carrying_a_checkpoint_is_stored_without_it(make_store) -> None:  # noqa: F811
    store = make_store()
    registry(store)
    store.store_attestation(attestation("k-fra1", 1, [gpu("GPU-a")], checkpoint=b"note\n"))
    assert [bytes(c) for c in _column(store, "checkpoint")] == [b""]
    assert store.get_attestation("k-fra1", 1).checkpoint == b""


# --- compact statements as the fields their row does not hold ----------------------------------------------------
def _ingest(store: Store, plan: list[str]) -> tuple[TestNode, list[bytes]]:
    """`plan`: "full" / "compact" per statement, ingested one minute apart; (the node, its envelopes)."""
    clock = {"now": NOW}
    node = TestNode("n1", clock=lambda: clock["now"])
    enroll(store, node)
    pipeline = Pipeline(store, clock=lambda: clock["now"])
    sent = []
    for kind in plan:
        envelope = node.full() if kind == "full" else node.compact()
        assert pipeline.ingest(envelope).status == "accepted"
        sent.append(envelope)
        clock["now"] += timedelta(minutes=1)
    return node, sent


def _every_reader(store: Store, node: TestNode, count: int) -> dict[str, list[bytes]]:
    return {
        "get_attestation": [store.get_attestation(node.keyid, s).envelope for s in range(1, count + 1)],
        "log_entries": [e for _, e in store.log_entries(0, count)],
        "log_attestations": [e for _, _, e in store.log_attestations(count)],
    }


def test_a_compact_statement_is_stored_as_its_fields_and_every_reader_gets_the_bytes_received(make_store) -> None:  # noqa: F811
    store = make_store()
    node, sent = _ingest(store, ["full", "compact", "compact", "full", "compact"])
    full, compact = envelopes.DSSE_ZLIB, envelopes.COMPACT_FIELDS
    assert _column(store, "envelope_codec") == [full, compact, compact, full, compact]
    sizes = [len(bytes(e)) for e in _column(store, "envelope")]
    assert all(sizes[i] <= 120 < len(sent[i]) for i in (1, 2, 4)), sizes  # 64 + 32 + 8 + 8 + 1 + "{}"
    assert _every_reader(store, node, 5) == dict.fromkeys(("get_attestation", "log_entries", "log_attestations"), sent)
    dashboard = SimpleNamespace(store=store)  # the dashboard's download of an envelope
    assert [views.envelope(dashboard, node.keyid, str(s))[1] for s in range(1, 6)] == sent
    assert store.integrate_log(10) == (0, 5)
    tree = merkle.MemoryTree()
    for envelope in sent:
        tree.append(envelope)
    root = merkle.tree_root(5, store.log_hashes)
    assert root == tree.root()
    for index, envelope in enumerate(sent):
        proof = merkle.inclusion_proof(index, 5, store.log_hashes)
        merkle.verify_inclusion(merkle.leaf_hash(envelope), index, 5, proof, root)


def test_a_statement_with_a_last_checkpoint_is_stored_as_its_fields_too(make_store) -> None:  # noqa: F811
    store = make_store()
    node = TestNode("n1")
    enroll(store, node)
    pipeline = Pipeline(store)
    checkpoint = {"root": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "size": 123456789}
    first = node.full()
    compact = sign_predicate(compact_predicate(node.node_id, *node.last_full), node.key, sequence=node.sequence,
                             previous=node.previous, timestamp=format_timestamp(NOW), last_checkpoint=checkpoint,
                             predicate_type=COMPACT_PREDICATE_TYPE)  # fmt: skip
    assert [pipeline.ingest(e).status for e in (first, compact)] == ["accepted", "accepted"]
    assert _column(store, "envelope_codec")[1] == envelopes.COMPACT_FIELDS
    assert store.get_attestation(node.keyid, 2).envelope == compact


def _compact_record(store: Store, envelope: bytes, node: TestNode, **changed: object) -> AttestationRecord:
    record = AttestationRecord(
        keyid=node.keyid, sequence=2, digest=hashlib.sha256(envelope).hexdigest(), envelope=envelope,
        node_id=node.node_id, site="fra1", timestamp=NOW, received_at=NOW, previous=node.last_full[1],
        kind="compact", inventory_digest=node.last_full[1],
    )  # fmt: skip
    return replace(record, **changed)


@pytest.mark.parametrize(
    "variant",
    ["spaced envelope", "other key order", "node id not the row's", "previous not the row's", "fraction of a second"],
)
def test_a_compact_statement_its_row_does_not_rebuild_is_stored_compressed_byte_for_byte(make_store, variant) -> None:  # noqa: F811
    store = make_store()
    node, (full,) = _ingest(store, ["full"])
    envelope, changed = node.sign(compact=node.last_full), {}
    outer = json.loads(envelope)
    if variant == "spaced envelope":
        envelope = json.dumps(outer, separators=(", ", ": ")).encode()  # as another DSSE library might write it
    elif variant == "other key order":
        envelope = json.dumps(dict(reversed(list(outer.items()))), separators=(",", ":")).encode()
    elif variant == "node id not the row's":
        changed = {"node_id": "n1-elsewhere"}
    elif variant == "previous not the row's":
        changed = {"previous": "0" * 64}
    else:  # a timestamp the fields cannot hold (whole seconds only): signed by hand
        statement = json.loads(base64.b64decode(outer["payload"]))
        statement["predicate"]["timestamp"] = "2026-01-01T00:00:00.5Z"
        outer["payload"] = base64.b64encode(json.dumps(statement, separators=(",", ":"), sort_keys=True).encode()
                                            ).decode()  # fmt: skip
        envelope = json.dumps(outer, separators=(",", ":")).encode()
    store.store_compact(_compact_record(store, envelope, node, **changed))
    assert _column(store, "envelope_codec")[1] == envelopes.DSSE_ZLIB
    assert store.get_attestation(node.keyid, 2).envelope == envelope
    assert [e for _, e in store.log_entries(0, 2)] == [full, envelope]


def _damage(store: Store, sql: str, *params: object) -> None:
    with store._tx(True) as cur:
        cur.execute(sql, params)


@pytest.mark.parametrize(
    "damage",
    ["truncated", "empty", "signature byte", "timestamp", "inventory sequence", "last_checkpoint",
     "previous column", "node_id column", "digest column", "signature length"],
)  # fmt: skip
def test_a_damaged_compact_row_is_a_store_error_on_every_read_never_other_bytes(make_store, damage: str) -> None:  # noqa: F811
    store = make_store()
    node, _ = _ingest(store, ["full", "compact"])
    stored = bytearray(bytes(_column(store, "envelope")[1]))
    where = "WHERE keyid = ? AND sequence = 2"
    if damage.endswith("column"):
        column = damage.split()[0]
        _damage(store, f"UPDATE attestations SET {column} = ? {where}", "0" * 64, node.keyid)
    else:
        if damage == "truncated":
            stored = stored[:40]
        elif damage == "empty":
            stored = bytearray()
        elif damage == "signature byte":
            stored[5] ^= 0x01
        elif damage == "timestamp":
            stored[1 + 64 + 32 + 7] ^= 0x01
        elif damage == "inventory sequence":
            stored[1 + 64 + 32 + 8 + 7] ^= 0x02
        elif damage == "last_checkpoint":
            stored += b'"x"'
        else:
            stored[0] = 200
        _damage(store, f"UPDATE attestations SET envelope = ? {where}", bytes(stored), node.keyid)
    for read in (
        lambda: store.get_attestation(node.keyid, 2),
        lambda: store.log_entries(0, 2),
        lambda: store.log_attestations(2),
        lambda: store.integrate_log(10),
    ):
        with pytest.raises(StoreError, match=r"damaged"):
            read()
    assert store.log_size() == 0  # nothing integrated from a row that does not rebuild


def test_serve_answers_a_damaged_compact_row_with_unavailable_and_keeps_serving(collector: Collector) -> None:
    node, other = TestNode("node-1"), TestNode("node-2")
    collector.enroll(node)
    collector.enroll(other)
    full, compact = node.full(), node.compact()
    assert [a.status for a in collector.report([full, compact])] == [pb.ACK_STATUS_ACCEPTED] * 2
    _damage(collector.store, "UPDATE attestations SET envelope = ? WHERE keyid = ? AND sequence = 2", b"\x40",
            node.keyid)  # fmt: skip
    # a resent envelope is judged against the stored one: its bytes are rebuilt, and do not rebuild
    assert status_of(lambda: collector.report([compact])) == grpc.StatusCode.UNAVAILABLE
    (ack,) = collector.report([other.next()])
    assert ack.status == pb.ACK_STATUS_ACCEPTED  # the collector is still up and storing


def test_an_audit_bundle_of_a_store_mixing_old_and_new_compact_rows_verifies(make_store, tmp_path, monkeypatch) -> None:  # noqa: F811
    store = make_store()
    data = make_store.data_dir
    a, b = TestNode("node-a"), TestNode("node-b")
    for node in (a, b):
        enroll(store, node, "fra1", "DE")
    server, port = serve(store, data)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = census_pb2_grpc.CensusStub(channel)

        def report(envelopes_: list[bytes]) -> None:
            for envelope in envelopes_:
                (ack,) = stub.Report(iter([pb.Envelope(dsse=envelope)]), timeout=DEADLINE)
                assert ack.status == pb.ACK_STATUS_ACCEPTED, ack

        with monkeypatch.context() as before:  # rows as the collector before COMPACT_FIELDS wrote them
            before.setattr(compact_fields, "pack", lambda envelope, row: None)
            report([a.full(), a.compact(), b.full(), a.compact(), b.compact()])
        report([a.compact(), b.compact(), a.full(), a.compact(), b.compact()])
        wait_for_size(stub, vkey(data), 10)
    finally:
        channel.close()
        server.stop(None).wait()
    full, old, new = envelopes.DSSE_ZLIB, envelopes.DSSE_ZLIB, envelopes.COMPACT_FIELDS
    assert _column(store, "envelope_codec") == [full, old, full, old, old, new, new, full, new, new]
    config = tmp_path / "collector.toml"
    config.write_text(make_store.toml())
    out = tmp_path / "bundle"
    exported = run("gpucensus.collector.cli", "export", "--config", str(config), "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert len(list((out / "envelopes").iterdir())) == 10
    verified = audit(out, str(vkey(data)))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "2 node(s), 16 GPU(s)" in verified.stdout
