"""Storage that stays small (migration `compact_storage`), on both stores: envelopes stored compressed come back
byte for byte (signatures verify, log leaves hash the same), rows of a store upgraded from before keep working,
a damaged or hostile stored envelope is a clear StoreError and the collector keeps serving; device rows are
written only when a node's device facts change, and every reader answers as it did when every report wrote them.
"""

from __future__ import annotations

import random
import sqlite3
import zlib
from datetime import timedelta

import grpc
import psycopg
import pytest
from gpucensus.collector.errors import StoreError
from gpucensus.collector.store import envelopes, migrate, open_store
from gpucensus.collector.store.base import AttestationRecord, DeviceRecord, Store
from gpucensus.common import merkle
from gpucensus.protos import census_pb2 as pb

from tests.ingest_nodes import NOW, TestNode
from tests.integration.old_rows import store_as_before
from tests.integration.server_fixtures import Collector, collector_fixture, status_of  # noqa: F401 (a fixture)
from tests.integration.store_fixtures import StoreFactory
from tests.integration.test_store_contract import attestation, gpu, registry
from tests.unit.attest_fixtures import new_key, signed_chain

CHAIN = signed_chain(new_key(), 4)  # genuine signed envelopes: what the codec is for


def _signed(keyid: str, seq: int, devices: list[DeviceRecord], minutes: float = 0) -> AttestationRecord:
    return attestation(keyid, seq, devices, minutes, envelope=CHAIN[seq - 1])


def _codecs(store: Store) -> list[int]:
    with store._tx(False) as cur:
        return [int(r[0]) for r in cur.execute("SELECT envelope_codec FROM attestations ORDER BY id").fetchall()]


def _reference_root(store: Store, envelopes_in_order: list[bytes]) -> bytes:
    tree = merkle.MemoryTree()
    for envelope in envelopes_in_order:
        tree.append(envelope)
    return tree.root()


def test_envelopes_are_stored_compressed_and_every_reader_gets_the_bytes_received(make_store) -> None:
    store = make_store()
    registry(store)
    for seq in (1, 2, 3):
        store.store_attestation(_signed("k-fra1", seq, [gpu("GPU-a")], minutes=seq))
    assert _codecs(store) == [envelopes.DSSE_ZLIB] * 3
    with store._tx(False) as cur:
        stored = sum(len(bytes(r[0])) for r in cur.execute("SELECT envelope FROM attestations").fetchall())
    assert stored < sum(len(e) for e in CHAIN[:3]) * 0.6
    assert [store.get_attestation("k-fra1", s).envelope for s in (1, 2, 3)] == CHAIN[:3]
    assert [e for _, e in store.log_entries(0, 3)] == CHAIN[:3]
    assert [e for _, _, e in store.log_attestations(3)] == CHAIN[:3]
    assert store.integrate_log(10) == (0, 3)
    assert merkle.tree_root(3, store.log_hashes) == _reference_root(store, CHAIN[:3])


def test_an_upgraded_store_keeps_its_uncompressed_rows_and_compresses_new_ones(make_store, monkeypatch) -> None:
    every = migrate.load_migrations
    before = next(m.version for m in every("sqlite") if m.name == "compact_storage")
    monkeypatch.setattr(migrate, "load_migrations", lambda dialect: [m for m in every(dialect) if m.version < before])
    old = make_store()  # the schema before this migration, rows written as that collector wrote them
    registry(old)
    store_as_before(old, _signed("k-fra1", 1, [gpu("GPU-a"), gpu("GPU-b", 1)]))
    store_as_before(old, _signed("k-fra1", 2, [gpu("GPU-a"), gpu("GPU-b", 1)], minutes=1))
    with old._tx(True) as cur:  # that collector sequenced them
        cur.execute("UPDATE attestations SET log_index = sequence - 1")
        cur.execute("UPDATE log_sequence SET next_index = 2")
    old.close()
    monkeypatch.setattr(migrate, "load_migrations", every)
    new = open_store(make_store.kind, **make_store.options)
    try:
        new.migrate()
        assert _codecs(new) == [envelopes.RAW, envelopes.RAW]
        assert [new.get_attestation("k-fra1", s).envelope for s in (1, 2)] == CHAIN[:2]
        assert [d.uuid for d in new.node_devices("node-fra1")] == ["GPU-a", "GPU-b"]
        new.store_attestation(_signed("k-fra1", 3, [gpu("GPU-a"), gpu("GPU-b", 1)], minutes=2))  # unchanged
        new.store_attestation(_signed("k-fra1", 4, [gpu("GPU-a")], minutes=3))  # changed
        assert _codecs(new) == [envelopes.RAW, envelopes.RAW, envelopes.DSSE_ZLIB, envelopes.DSSE_ZLIB]
        assert [e for _, e in new.log_entries(0, 4)] == CHAIN
        assert [d.uuid for d in new.get_attestation("k-fra1", 3).devices] == ["GPU-a", "GPU-b"]
        assert [d.uuid for d in new.node_devices("node-fra1")] == ["GPU-a"]
        assert new.integrate_log(10) == (0, 4)
        assert merkle.tree_root(4, new.log_hashes) == _reference_root(new, CHAIN)
        with new._tx(False) as cur:  # the unchanged report repeated the old row's devices: no rows of its own
            assert cur.execute("SELECT COUNT(*) FROM attestation_devices").fetchone()[0] == 2 + 2 + 1
    finally:
        new.close()


def _damage(store: Store, keyid: str, sequence: int, codec: int, stored: bytes) -> None:
    with store._tx(True) as cur:
        cur.execute(
            "UPDATE attestations SET envelope = ?, envelope_codec = ? WHERE keyid = ? AND sequence = ?",
            (stored, codec, keyid, sequence),
        )


BOMB = zlib.compress(b"\0" * (envelopes.MAX_DECODED + (1 << 20)), 9)  # about 65 MiB of zeros in 65 KB


@pytest.mark.parametrize(
    ("codec", "stored"),
    [(envelopes.ZLIB, BOMB), (envelopes.DSSE_ZLIB, b"garbage"), (envelopes.ZLIB, zlib.compress(b"x")[:-2]), (9, b"")],
)
def test_a_damaged_stored_envelope_is_a_store_error_on_every_read(make_store, codec: int, stored: bytes) -> None:
    store = make_store()
    registry(store)
    store.store_attestation(_signed("k-fra1", 1, [gpu("GPU-a")]))
    _damage(store, "k-fra1", 1, codec, stored)
    for read in (
        lambda: store.get_attestation("k-fra1", 1),
        lambda: store.log_entries(0, 1),
        lambda: store.log_attestations(1),
        lambda: store.integrate_log(10),
    ):
        with pytest.raises(StoreError, match=r"k-fra1#1|log index 0"):
            read()
    assert store.log_size() == 0  # nothing integrated from a row that does not decode


def test_serve_answers_a_damaged_row_with_unavailable_and_keeps_serving(collector: Collector) -> None:
    node, other = TestNode("node-1"), TestNode("node-2")
    collector.enroll(node)
    collector.enroll(other)
    first = node.next()
    assert collector.report([first])[0].status == pb.ACK_STATUS_ACCEPTED
    _damage(collector.store, node.keyid, 1, envelopes.ZLIB, BOMB)
    # a resent envelope is judged against the stored one: its bytes are read back
    assert status_of(lambda: collector.report([first])) == grpc.StatusCode.UNAVAILABLE
    (ack,) = collector.report([other.next()])
    assert ack.status == pb.ACK_STATUS_ACCEPTED  # the collector is still up and storing


# --- device rows only when something changed ----------------------------------------------------------------
SITES = ("fra1", "sin1", "iad1")


def _readers(store: Store, records: list[AttestationRecord]) -> dict:
    """What every reader of device rows answers (the dashboard and the audit export read through these)."""
    nodes = sorted({r.node_id for r in records})
    instants = [NOW + timedelta(minutes=m) for m in (-1, 3, 10, 25, 60)]
    return {
        "attestations": [store.get_attestation(r.keyid, r.sequence) for r in records],
        "node_devices": {n: store.node_devices(n) for n in nodes},
        "node_attestations": {n: store.node_attestations(n) for n in nodes},
        "list_nodes": store.list_nodes(),
        "inventory": store.inventory(NOW),
        "inventory_at": [store.inventory_at(t) for t in instants],
        "site_status": store.site_status(),
        "country_totals": store.country_totals(),
    }


def test_readers_answer_as_when_every_report_wrote_its_device_rows(make_store, tmp_path, monkeypatch) -> None:
    compact = make_store()  # today's store
    full = StoreFactory(make_store.kind, tmp_path / "every-report")  # a second database: device rows every time
    try:
        before = full()
        before.migrate()
        monkeypatch.setattr(before, "_repeated_devices", lambda cur, r: (True, None, None))  # never repeats a set
        for store in (compact, before):
            registry(store)
        rng = random.Random(11)
        keyids = [f"k-{s}" for s in SITES]
        sequence = dict.fromkeys(keyids, 0)
        current = {k: [gpu(f"GPU-{k}-{i}", i) for i in range(3)] for k in keyids}
        records: list[AttestationRecord] = []
        for step in range(60):
            keyid = rng.choice(keyids)
            sequence[keyid] += 1
            change = rng.random()
            if change < 0.15:  # a GPU replaced
                slot = rng.randrange(len(current[keyid]) or 1)
                current[keyid] = [*current[keyid][:slot], gpu(f"GPU-{keyid}-{step}", slot), *current[keyid][slot + 1 :]]
            elif change < 0.22:  # a GPU's facts changed, not its UUID
                current[keyid] = [d if i else DeviceRecord(**{**d.__dict__, "status": "lost"})
                                  for i, d in enumerate(current[keyid])]  # fmt: skip
            elif change < 0.27:  # all gone, then back
                current[keyid] = [] if current[keyid] else [gpu(f"GPU-{keyid}-{step}")]
            elif change < 0.30:  # a GPU another node reports too
                current[keyid] = [*current[keyid], gpu("GPU-shared", 7)]
            late = sequence[keyid] > 2 and rng.random() < 0.1  # an older statement stored after a newer one
            record = attestation(keyid, sequence[keyid], current[keyid], minutes=step - (20 if late else 0))
            records.append(record)
            for store in (compact, before):
                store.store_attestation(record)
            if rng.random() < 0.05:
                uuid = rng.choice(current[keyid] or [gpu("GPU-none")]).uuid
                for store in (compact, before):
                    store.decommission_gpu(uuid, "x", NOW)
            assert _readers(compact, records) == _readers(before, records), step
        with compact._tx(False) as cur, before._tx(False) as other:
            rows = cur.execute("SELECT COUNT(*) FROM attestation_devices").fetchone()[0]
            every = other.execute("SELECT COUNT(*) FROM attestation_devices").fetchone()[0]
        assert rows < every / 2  # most reports repeated their node's devices
    finally:
        full.cleanup()


def test_an_attestation_whose_device_rows_others_repeat_cannot_be_deleted(make_store) -> None:
    store = make_store()
    registry(store)
    holder = store.store_attestation(attestation("k-fra1", 1, [gpu("GPU-a")])).id
    store.store_attestation(attestation("k-fra1", 2, [gpu("GPU-a")], minutes=1))  # repeats them
    with store._tx(False) as cur:
        assert cur.execute("SELECT devices_from FROM attestations WHERE sequence = 2").fetchone()[0] == holder
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.ForeignKeyViolation)), store._tx(True) as cur:
        cur.execute("DELETE FROM attestation_devices WHERE attestation_id = ?", (holder,))
        cur.execute("DELETE FROM findings WHERE attestation_id = ?", (holder,))
        cur.execute("DELETE FROM attestations WHERE id = ?", (holder,))  # a retention job must keep it
    assert [d.uuid for d in store.get_attestation("k-fra1", 2).devices] == ["GPU-a"]
    with store._tx(True) as cur:  # what refused it: the referrer (re-pointed here), nothing else
        cur.execute("UPDATE attestations SET devices_from = NULL WHERE devices_from = ?", (holder,))
        cur.execute("DELETE FROM attestation_devices WHERE attestation_id = ?", (holder,))
        cur.execute("DELETE FROM findings WHERE attestation_id = ?", (holder,))
        cur.execute("DELETE FROM attestations WHERE id = ?", (holder,))
