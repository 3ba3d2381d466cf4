"""The signature step: which enrolled key, and does its signature hold over the exact bytes."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest
from gpucensus.collector.ingest.errors import (
    BindingError,
    MalformedError,
    RevokedKeyError,
    SignatureError,
    UnknownKeyError,
)
from gpucensus.collector.ingest.signature import enrolled_key, statement_time, verify_signed
from gpucensus.collector.store.base import NodeKey
from gpucensus.common.verify import public_key_from_pem

from tests.ingest_nodes import NOW, TestNode


@pytest.fixture
def node() -> TestNode:
    return TestNode("n1")


def bound(node: TestNode, node_id: str = "n1", revoked: bool = False) -> NodeKey:
    return NodeKey(node.keyid, node.public_key_pem, node_id, "fra1", NOW, NOW if revoked else None)


def lookup_for(*keys: NodeKey):
    table = {k.keyid: k for k in keys}
    return table.get


def check(envelope: bytes, key: NodeKey):
    return verify_signed(envelope, key, public_key_from_pem(key.public_key_pem.encode()))


def test_a_good_envelope_verifies_and_names_its_key(node: TestNode) -> None:
    envelope = node.next()
    key = enrolled_key(envelope, lookup_for(bound(node)))
    verified = check(envelope, key)
    assert (verified.keyid, verified.sequence, verified.node_id) == (node.keyid, 1, "n1")
    assert statement_time(verified) == NOW


def test_an_unenrolled_key_is_unknown(node: TestNode) -> None:
    with pytest.raises(UnknownKeyError, match="not enrolled"):
        enrolled_key(node.next(), lookup_for())


def test_a_revoked_key_is_refused(node: TestNode) -> None:
    with pytest.raises(RevokedKeyError, match="revoked"):
        enrolled_key(node.next(), lookup_for(bound(node, revoked=True)))


@pytest.mark.parametrize("garbage", [b"", b"not json", b"[]", b'{"payload": 1}'])
def test_garbage_is_malformed(garbage: bytes) -> None:
    with pytest.raises(MalformedError):
        enrolled_key(garbage, lookup_for())


def _tamper(envelope: bytes) -> bytes:
    obj = json.loads(envelope)
    statement = json.loads(base64.b64decode(obj["payload"]))
    statement["predicate"]["totals"]["tpp"] = 1
    obj["payload"] = base64.b64encode(json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()).decode()
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def test_a_tampered_payload_fails_the_signature(node: TestNode) -> None:
    tampered = _tamper(node.next())
    with pytest.raises(SignatureError, match="signature-invalid"):
        check(tampered, enrolled_key(tampered, lookup_for(bound(node))))


def test_an_envelope_signed_by_another_key_fails_the_signature(node: TestNode) -> None:
    other = TestNode("n1")
    with pytest.raises(SignatureError):
        check(other.next(), bound(node))


def test_a_key_speaks_only_for_the_node_it_is_bound_to(node: TestNode) -> None:
    with pytest.raises(BindingError, match="bound to node 'n9'"):
        check(node.next(), replace(bound(node), node_id="n9"))


def test_an_envelope_with_thousands_of_signatures_is_malformed_before_any_lookup(node: TestNode) -> None:
    envelope = json.loads(node.next())
    envelope["signatures"] *= 5000  # about 1 MiB: 5000 key lookups and Ed25519 verifications otherwise
    looked_up: list[str] = []
    with pytest.raises(MalformedError, match="5000 signatures"):
        enrolled_key(json.dumps(envelope).encode(), lambda keyid: looked_up.append(keyid))  # type: ignore[func-returns-value]
    assert looked_up == []
