"""Two collectors on one database (PostgreSQL in production; SQLite here too): when the other collector stores
the same (key, sequence) between this one's chain check and its commit, the store's UNIQUE constraint catches
it and this collector answers from what the other stored — a duplicate, or an equivocation."""

from __future__ import annotations

from gpucensus.collector.ingest.model import ACCEPTED, REJECTED, IngestResult
from gpucensus.collector.ingest.pipeline import Pipeline
from gpucensus.collector.store.base import AttestationRecord, Store
from gpucensus.common.dsse import envelope_digest

from tests.ingest_nodes import NOW, TestNode, enroll
from tests.integration.store_fixtures import make_store, store_kind  # noqa: F401 (fixtures)


class Interleaved:
    """This collector's store handle; just before its first commit, the other collector ingests `envelope`."""

    def __init__(self, store: Store, other: Pipeline, envelope: bytes) -> None:
        self._store, self._other, self._envelope = store, other, envelope
        self.raced = False

    def store_attestation(self, record: AttestationRecord) -> AttestationRecord:
        if not self.raced:
            self.raced = True
            self.other_result = self._other.ingest(self._envelope)
        return self._store.store_attestation(record)

    def __getattr__(self, name: str) -> object:  # everything else: the real store
        return getattr(self._store, name)


def race(make_store, mine: bytes, theirs: bytes, node: TestNode) -> tuple[IngestResult, IngestResult, Store]:  # noqa: F811
    first, second = make_store(), make_store()
    enroll(first, node)
    other = Pipeline(second, clock=lambda: NOW)
    store = Interleaved(first, other, theirs)
    result = Pipeline(store, clock=lambda: NOW).ingest(mine)
    assert store.raced
    return result, store.other_result, first


def test_the_same_envelope_stored_by_the_other_collector_first_is_a_duplicate(make_store) -> None:  # noqa: F811
    node = TestNode("node-1")
    envelope = node.next()
    mine, theirs, _ = race(make_store, envelope, envelope, node)
    assert (theirs.status, theirs.duplicate) == (ACCEPTED, False)
    assert (mine.status, mine.duplicate, mine.log_index) == (ACCEPTED, True, theirs.log_index)


def test_a_different_envelope_stored_by_the_other_collector_first_is_an_equivocation(make_store) -> None:  # noqa: F811
    node = TestNode("node-1")
    theirs_envelope = node.sign()
    mine_envelope = node.sign(predicate=node.edited(lambda p: p["node"].update(hostname="elsewhere")))
    mine, theirs, store = race(make_store, mine_envelope, theirs_envelope, node)
    assert theirs.status == ACCEPTED
    assert mine.status == REJECTED and [f.rule_id for f in mine.findings] == ["chain.equivocation"]
    assert store.get_attestation(node.keyid, 1).digest == envelope_digest(theirs_envelope)
    assert len(store.list_findings(rule_id="chain.equivocation")) == 1
