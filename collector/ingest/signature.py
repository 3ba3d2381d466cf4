"""Signature step: which enrolled key signed the envelope, and does the signature hold (`collector.verify`).

Verify before parse: the payload is read only after a signature over its exact bytes has been checked. The
key lookup is passed in (`lookup(keyid) -> NodeKey | None`), so the step is testable without a store.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

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
# An agent signs once. Each signature costs a key lookup and an Ed25519 verification: thousands of them fit in
# 1 MiB and would cost about a second per message, so more than this is malformed before any is looked at.
MAX_SIGNATURES = 4


def parse(envelope_bytes: bytes) -> dsse.Envelope:
    """The envelope's fields (nothing in them trusted yet); MalformedError if it is not a DSSE envelope or
    carries more than MAX_SIGNATURES signatures."""
    try:
        envelope = dsse.parse_envelope(envelope_bytes)
    except dsse.EnvelopeError as err:
        raise MalformedError(f"{err.reason}: {err.message}") from err
    except ValueError as err:  # the JSON parser's own limits, e.g. an integer of more than 4300 digits
        raise MalformedError(f"envelope-malformed: envelope is not valid JSON: {err}") from err
    if len(envelope.signatures) > MAX_SIGNATURES:
        count = len(envelope.signatures)
        raise MalformedError(f"envelope-malformed: {count} signatures, at most {MAX_SIGNATURES} are accepted")
    return envelope


def enrolled_key(envelope: bytes | dsse.Envelope, lookup: Callable[[str], NodeKey | None]) -> NodeKey:
    """The enrolled, unrevoked key the envelope names; Malformed-, UnknownKey- or RevokedKeyError if none."""
    if isinstance(envelope, bytes):
        envelope = parse(envelope)
    keyids = list(dict.fromkeys(s.keyid for s in envelope.signatures if s.keyid))
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


def verify_signed(
    envelope_bytes: bytes,
    key: NodeKey,
    public_key: verify.Ed25519PublicKey,
    parsed: dsse.Envelope | None = None,
) -> verify.VerifiedStatement:
    """The verified statement; raises SignatureError (not this key) or MalformedError (bad shape), naming
    every failure, or BindingError when the statement speaks for another node than the key is bound to.
    `parsed`: `parse(envelope_bytes)` when the caller has it already."""
    result = verify.verify_envelope(envelope_bytes, public_key, parsed=parsed)
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
    return datetime.strptime(verified.timestamp, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
