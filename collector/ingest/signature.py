"""Signature step: which enrolled key signed the envelope, and does the signature hold (`common.verify`).

Verify before parse: the payload is read only after a signature over its exact bytes has been checked. The
key lookup is passed in (`lookup(keyid) -> NodeKey | None`), so the step is testable without a store.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from gpucensus.collector.ingest.errors import (
    BindingError,
    MalformedError,
    RevokedKeyError,
    SignatureError,
    UnknownKeyError,
)
from gpucensus.collector.store.base import NodeKey
from gpucensus.common import dsse, verify

# verify reasons meaning "not signed by this key"; every other reason means a malformed envelope.
SIGNATURE_REASONS = frozenset({"wrong-key", "signature-invalid", "subject-key-mismatch"})


def parse(envelope_bytes: bytes) -> verify.ParsedEnvelope:
    """The envelope's one parse (nothing in it trusted yet); MalformedError unless it is in the one canonical form
    (JCS bytes, exactly one signature, canonical base64, no unknown fields): a byte variant of a genuine
    envelope is refused here, before any key lookup, and can never be judged a duplicate or an equivocation."""
    try:
        parsed = verify.parse_envelope(envelope_bytes)
    except dsse.EnvelopeError as err:
        raise MalformedError(f"{err.reason}: {err.message}") from err
    if not parsed.canonical:
        raise MalformedError("envelope-not-canonical: envelope bytes are not the RFC 8785 (JCS) form of the envelope")
    return parsed


def _parsed(envelope: bytes | verify.ParsedEnvelope) -> verify.ParsedEnvelope:
    return parse(envelope) if isinstance(envelope, bytes) else envelope


def enrolled_key(envelope: bytes | verify.ParsedEnvelope, lookup: Callable[[str], NodeKey | None]) -> NodeKey:
    """The enrolled, unrevoked key the envelope names; Malformed-, UnknownKey- or RevokedKeyError if none."""
    keyid = _parsed(envelope).keyid
    key = lookup(keyid)
    if key is None:
        raise UnknownKeyError(f"key {keyid} is not enrolled")
    if key.revoked:
        raise RevokedKeyError(f"key {keyid} of node {key.node_id} was revoked")
    return key


def verify_signed(
    envelope: bytes | verify.ParsedEnvelope, key: NodeKey, public_key: verify.Ed25519PublicKey
) -> verify.VerifiedStatement:
    """The verified statement; raises SignatureError (not this key) or MalformedError (bad shape), naming
    every failure, or BindingError when the statement speaks for another node than the key is bound to.
    Pass the envelope as `parse` returned it: it is not parsed again."""
    result = verify.verify_parsed(_parsed(envelope), public_key, keyid=key.keyid)
    if result.verified is None:
        detail = "; ".join(f"{f.reason}: {f.message}" for f in result.failures)
        if any(f.reason in SIGNATURE_REASONS for f in result.failures):
            raise SignatureError(detail)
        raise MalformedError(detail)
    verified = result.verified
    problem = unstorable(verified.predicate, b"\\u0000" in verified.payload)
    if problem:
        raise MalformedError(f"statement-shape: {problem}")
    if verified.node_id != key.node_id:
        claimed, bound = verified.node_id, key.node_id
        raise BindingError(f"statement is for node {claimed!r}; key {key.keyid} is bound to node {bound!r}")
    return verified


def unstorable(predicate: dict[str, Any], may_hold_nul: bool = True) -> str:
    """Why a verified predicate cannot be stored faithfully ("" if it can): a device or PCI function that is
    not an object (it would silently drop out of the count), or a NUL character in a string (PostgreSQL text
    cannot hold one, so the two stores would disagree). `may_hold_nul=False` skips the NUL walk when the bytes
    show no escaped NUL (JCS always writes it as \\u0000)."""
    for name in ("devices", "pci_functions"):
        for i, item in enumerate(predicate.get(name, [])):
            if not isinstance(item, dict):
                return f"predicate.{name}[{i}] is not an object"
    try:
        return _nul_path(predicate, "predicate") if may_hold_nul else ""
    except RecursionError:
        return "predicate is nested too deeply"


def _nul_path(value: Any, path: str) -> str:
    if isinstance(value, str):
        return f"{path} contains a NUL character" if "\x00" in value else ""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return f"{path} has a key with a NUL character"
        found = _nul_path(item, f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]")
        if found:
            return found
    return ""


def statement_time(verified: verify.VerifiedStatement) -> datetime:
    """The statement's timestamp (its format was checked by the verifier)."""
    return verified.signed_at
