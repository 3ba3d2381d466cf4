"""`compact_fields`: a compact statement kept as the fields its row does not hold comes back byte for byte, or is
not kept that way at all; nothing else (a full statement, garbage, a row that disagrees) is ever packed."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gpucensus.agent.attest import sign_predicate
from gpucensus.collector.errors import StoreError
from gpucensus.collector.store.compact_fields import RowFacts, pack, unpack
from gpucensus.common.statement import COMPACT_PREDICATE_TYPE, compact_predicate
from gpucensus.common.verify import public_key_id

from tests.ingest_nodes import TestNode

KEY = Ed25519PrivateKey.generate()
KEYID = public_key_id(KEY.public_key())


def _compact(
    node_id: str, sequence: int, named: int, timestamp: str, checkpoint: dict | None
) -> tuple[bytes, RowFacts]:
    rng = random.Random(sequence)
    previous, digest = rng.randbytes(32).hex(), rng.randbytes(32).hex()
    envelope = sign_predicate(compact_predicate(node_id, named, digest), KEY, sequence=sequence, previous=previous,
                              timestamp=timestamp, last_checkpoint=checkpoint,
                              predicate_type=COMPACT_PREDICATE_TYPE)  # fmt: skip
    return envelope, RowFacts(KEYID, sequence, previous, digest, node_id, hashlib.sha256(envelope).hexdigest())


@pytest.mark.parametrize(
    ("node_id", "sequence", "named", "timestamp", "checkpoint"),
    [
        ("node-1", 2, 1, "2026-11-30T04:21:35Z", None),
        ("gpu-host.example.org", 10**12, 10**12 - 1, "1999-12-31T23:59:59Z", {}),
        ("n", 3, 1, "2026-02-28T00:00:00Z", {"root": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "size": 9}),
        ("Ünïcode-node", 7, 5, "2100-01-01T00:00:00Z", None),
    ],
)
def test_a_compact_statement_packs_small_and_unpacks_byte_for_byte(node_id, sequence, named, timestamp, checkpoint):
    envelope, row = _compact(node_id, sequence, named, timestamp, checkpoint)
    stored = pack(envelope, row)
    assert stored is not None and len(stored) < 200 < len(envelope)
    assert unpack(stored, row, "here") == envelope


def test_nothing_else_is_packed() -> None:
    envelope, row = _compact("node-1", 2, 1, "2026-11-30T04:21:35Z", None)
    spaced = json.dumps(json.loads(envelope), indent=1).encode()
    full = TestNode("node-1").full()  # a full inventory
    for other, facts in [
        (spaced, row),  # the same statement, other bytes
        (full, row),  # not a compact statement
        (b"", row), (b"{}", row), (b"\xff" * 100, row), (b"[" * 100_000, row),  # garbage, however nested
        (envelope, RowFacts(**{**row.__dict__, "sequence": 3})),  # a row that disagrees with it
        (envelope, RowFacts(**{**row.__dict__, "keyid": "0" * 64})),
        (envelope, RowFacts(**{**row.__dict__, "node_id": "node-2"})),
    ]:  # fmt: skip
        assert pack(other, facts) is None


def test_unpack_refuses_what_does_not_rebuild_the_row_digest() -> None:
    envelope, row = _compact("node-1", 2, 1, "2026-11-30T04:21:35Z", None)
    stored = pack(envelope, row)
    assert stored is not None
    for damaged in (stored[:-1], stored + b" ", bytes([stored[0] ^ 1]) + stored[1:], b"", b"\xff" + b"\0" * 60):
        with pytest.raises(StoreError, match="here is damaged"):
            unpack(damaged, row, "here")
    with pytest.raises(StoreError, match="SHA-256 differs"):
        unpack(stored, RowFacts(**{**row.__dict__, "previous": "1" * 64}), "here")
