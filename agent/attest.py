"""Compose one attestation: snapshot predicate -> in-toto statement -> signed DSSE envelope bytes.

`sign_predicate` is pure (key object and chain fields in, bytes out). `attest` adds the chain state: it
reserves the sequence number (persisted before signing), signs, and records the new envelope's digest as
the next `previous` before the caller ships the bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from gpucensus.agent.chain import ChainStore
from gpucensus.agent.keys import key_id
from gpucensus.common import dsse, jcs
from gpucensus.common.statement import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    build_statement,
    format_timestamp,
    subject_digest,
)

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Attestation:
    envelope: bytes  # the exact bytes to ship; never re-serialize
    sequence: int
    digest: str  # hex SHA-256 of `envelope`
    keyid: str


def statement_payload(
    predicate: dict[str, Any],
    public_key: Ed25519PublicKey,
    *,
    sequence: int,
    previous: str,
    timestamp: str,
    last_checkpoint: dict[str, Any] | None = None,
    predicate_type: str = PREDICATE_TYPE,
) -> bytes:
    """The JCS bytes of the statement for `predicate` (the DSSE payload); ValueError if it cannot be built."""
    statement = build_statement(
        predicate,
        subject_sha256=subject_digest(public_key.public_bytes_raw()),
        sequence=sequence,
        previous=previous,
        timestamp=timestamp,
        last_checkpoint=last_checkpoint,
        predicate_type=predicate_type,
    )
    return jcs.canonical_bytes(statement)


def sign_payload(payload: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The JCS envelope bytes of `payload` signed with `private_key`."""
    return dsse.sign_envelope(payload, PAYLOAD_TYPE, private_key, key_id(private_key.public_key()))


def sign_predicate(
    predicate: dict[str, Any],
    private_key: Ed25519PrivateKey,
    *,
    sequence: int,
    previous: str,
    timestamp: str,
    last_checkpoint: dict[str, Any] | None = None,
    predicate_type: str = PREDICATE_TYPE,
) -> bytes:
    """Pure: the envelope bytes of the statement for `predicate` with the given chain fields."""
    payload = statement_payload(
        predicate,
        private_key.public_key(),
        sequence=sequence,
        previous=previous,
        timestamp=timestamp,
        last_checkpoint=last_checkpoint,
        predicate_type=predicate_type,
    )
    return sign_payload(payload, private_key)


def attest(
    predicate: dict[str, Any],
    private_key: Ed25519PrivateKey,
    store: ChainStore,
    clock: Clock,
    predicate_type: str = PREDICATE_TYPE,
) -> Attestation:
    """Sign the next attestation in the chain kept by `store` (a compact one: `predicate_type` is
    `COMPACT_PREDICATE_TYPE` and `predicate` is `common.statement.compact_predicate(...)`).

    Raises ValueError (before any number is used) if the predicate cannot be signed, StateError if the chain
    state is unusable.
    """
    with store.locked():
        state = store.load()
        payload = statement_payload(
            predicate,
            private_key.public_key(),
            sequence=state.next_sequence,
            previous=state.previous,
            timestamp=format_timestamp(clock()),
            last_checkpoint=state.last_checkpoint,
            predicate_type=predicate_type,
        )
        store.reserve(state)  # persisted (fsync) before the signature exists
        envelope = sign_payload(payload, private_key)
        digest = dsse.envelope_digest(envelope)
        store.commit(state.next_sequence, digest)
    return Attestation(envelope, state.next_sequence, digest, key_id(private_key.public_key()))
