"""Rows that stay small, on both stores: no attestation row keeps a copy of a checkpoint (every ack, a duplicate's
too, carries the log's current one), and a compact statement is stored as the few fields its row does not
already hold (`envelopes.COMPACT_FIELDS`), rebuilt byte for byte for every reader; a row that does not rebuild
exactly is a StoreError, never other bytes."""

from __future__ import annotations

from datetime import timedelta

from gpucensus.collector.ingest.pipeline import Pipeline
from gpucensus.collector.store.base import Store

from tests.ingest_nodes import NOW, TestNode, enroll
from tests.integration.store_fixtures import make_store, store_kind  # noqa: F401
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
