"""Signature step: which enrolled key signed the envelope, and does the signature hold (`collector.verify`).

Verify before parse: the payload is read only after a signature over its exact bytes has been checked. The
key lookup is passed in (`lookup(keyid) -> NodeKey | None`), so the step is testable without a store.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from agent import dsse
from agent.statement import TIMESTAMP_FORMAT
from collector import verify
from collector.ingest.errors import (
    BindingError,
    MalformedError,
    RevokedKeyError,
    SignatureError,
    UnknownKeyError,
)
from collector.store.base import NodeKey

# verify_envelope reasons meaning "not signed by this key"; every other reason means a malformed envelope.
SIGNATURE_REASONS = frozenset({"wrong-key", "signature-invalid", "subject-key-mismatch"})


def enrolled_key(envelope_bytes: bytes, lookup: Callable[[str], NodeKey | None]) -> NodeKey:
    """The enrolled, unrevoked key the envelope names; Malformed-, UnknownKey- or RevokedKeyError if none."""
    try:
        envelope = dsse.parse_envelope(envelope_bytes)
    except dsse.EnvelopeError as err:
        raise MalformedError(f"{err.reason}: {err.message}") from err
    keyids = [s.keyid for s in envelope.signatures if s.keyid]
    if not keyids:
        raise UnknownKeyError("the envelope's signatures name no keyid")
    for keyid in keyids:
        key = lookup(keyid)
        if key is None:
            continue
        if key.revoked:
            raise RevokedKeyError(f"key {keyid} of node {key.node_id} was revoked")
        return key
    raise UnknownKeyError(f"key {', '.join(keyids)} is not enrolled")


def verify_signed(envelope_bytes: bytes, key: NodeKey, public_key: verify.Ed25519PublicKey) -> verify.VerifiedStatement:
    """The verified statement; raises SignatureError (not this key) or MalformedError (bad shape), naming
    every failure, or BindingError when the statement speaks for another node than the key is bound to."""
    result = verify.verify_envelope(envelope_bytes, public_key)
    if result.verified is None:
        detail = "; ".join(f"{f.reason}: {f.message}" for f in result.failures)
        if any(f.reason in SIGNATURE_REASONS for f in result.failures):
            raise SignatureError(detail)
        raise MalformedError(detail)
    verified = result.verified
    if verified.node_id != key.node_id:
        claimed, bound = verified.node_id, key.node_id
        raise BindingError(f"statement is for node {claimed!r}; key {key.keyid} is bound to node {bound!r}")
    return verified


def statement_time(verified: verify.VerifiedStatement) -> datetime:
    """The statement's timestamp (its format was checked by the verifier)."""
    return datetime.strptime(verified.timestamp, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
