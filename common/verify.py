"""Verify gpucensus attestations: one envelope at a time, and the hash chain across one node's envelopes.

Used by the collector's ingest and by `gpucensus-audit`. Verify before parse: the payload is parsed only after
a signature over its exact bytes has been checked with the enrolled key. Every failure is collected (never
stop at the first) as a `Failure` with a stable reason id:

per envelope  envelope-malformed, envelope-not-canonical, base64-invalid, base64-not-canonical,
              signature-missing, signature-count, wrong-key, signature-invalid, payload-type, payload-malformed,
              payload-not-canonical, statement-type, predicate-type, statement-shape, compact-shape,
              subject-key-mismatch
across        duplicate (replay: same sequence, same signed payload), fork (equivocation: same sequence, two
envelopes     different payloads, each validly signed by the key), out-of-order (a sequence below the highest
              already seen), gap (sequences missing), previous-mismatch (`previous` is not the digest of the
              preceding envelope)

An envelope's identity is what was signed. Only the canonical form is accepted (JCS bytes, one signature naming
the key, canonical base64: `common.dsse.envelope_from_object`), so nobody without the key can make a second
envelope of the same payload; and duplicate / fork compare the signed payloads, not the envelope bytes.

Imports only the standard library, `cryptography`, `common.canonical` and the agent's pure modules (dsse, jcs,
statement).
"""

from __future__ import annotations

import binascii
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from gpucensus.common import dsse, jcs
from gpucensus.common.canonical import parse_canonical
from gpucensus.common.statement import (
    COMPACT,
    PAYLOAD_TYPE,
    check_statement,
    parse_timestamp,
    statement_kind,
    subject_digest,
)

# Chain reasons an ingest treats specially: a duplicate is an idempotent resend, not an error.
DUPLICATE, FORK, OUT_OF_ORDER, GAP, PREVIOUS_MISMATCH = (
    "duplicate",
    "fork",
    "out-of-order",
    "gap",
    "previous-mismatch",
)


@dataclass(frozen=True)
class Failure:
    """One reason an envelope or a chain does not hold."""

    reason: str  # stable id, see the module docstring
    message: str  # human-readable, with the numbers
    sequence: int | None = None  # the envelope's sequence when known
    source: str = ""  # where the envelope came from (file name, peer), set by the caller

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        seq = f"sequence {self.sequence}: " if self.sequence is not None else ""
        return f"{where}{seq}{self.reason}: {self.message}"


@dataclass(frozen=True)
class VerifiedStatement:
    """An envelope whose signature, payload type and statement shape all hold."""

    envelope_bytes: bytes
    digest: str  # hex SHA-256 of envelope_bytes
    keyid: str  # of the key that verified it
    statement: dict[str, Any]
    source: str = ""
    payload: bytes = b""  # the signed payload bytes (the statement's JCS form)

    @cached_property
    def payload_digest(self) -> str:
        """Hex SHA-256 of the signed payload: what duplicate / fork compare (hashed when first asked for)."""
        return payload_digest(self.payload)

    @property
    def predicate(self) -> dict[str, Any]:
        return self.statement["predicate"]

    @property
    def node_id(self) -> str:
        return self.predicate["node"]["id"]

    @property
    def sequence(self) -> int:
        return self.predicate["sequence"]

    @property
    def previous(self) -> str:
        return self.predicate["previous"]

    @property
    def timestamp(self) -> str:
        return self.predicate["timestamp"]

    @property
    def kind(self) -> str:
        """`full` (an inventory) or `compact` (inventory unchanged since the full envelope it names)."""
        return statement_kind(self.statement)

    @property
    def inventory_reference(self) -> tuple[int, str] | None:
        """A compact statement's named full envelope as (sequence, digest); None for a full statement."""
        if self.kind != COMPACT:
            return None
        named = self.predicate["inventory"]
        return named["sequence"], named["digest"]

    @cached_property
    def signed_at(self) -> datetime:
        """The statement's timestamp as a UTC datetime (its format was checked by `check_statement`)."""
        return parse_timestamp(self.timestamp).replace(tzinfo=UTC)


@dataclass(frozen=True)
class ParsedEnvelope:
    """An envelope's fields after its one parse (nothing in them trusted yet), and whether its bytes are JCS."""

    envelope_bytes: bytes
    envelope: dsse.Envelope
    canonical: bool

    @property
    def keyid(self) -> str:
        return self.envelope.signatures[0].keyid


@dataclass(frozen=True)
class EnvelopeResult:
    """`verified` is set exactly when `failures` is empty."""

    failures: list[Failure] = field(default_factory=list)
    verified: VerifiedStatement | None = None

    @property
    def ok(self) -> bool:
        return not self.failures


class ChainRecord(Protocol):
    """What the chain checks need of an envelope already accepted (a VerifiedStatement or a store row)."""

    @property
    def sequence(self) -> int: ...
    @property
    def digest(self) -> str: ...
    @property
    def previous(self) -> str: ...
    @property
    def payload_digest(self) -> str: ...  # "" when unknown: the envelope digest is compared instead


def public_key_from_pem(pem: bytes) -> Ed25519PublicKey:
    """Parse a SubjectPublicKeyInfo PEM; raises ValueError if it is malformed or not Ed25519."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"not an Ed25519 public key ({type(key).__name__})")
    return key


def public_key_id(public_key: Ed25519PublicKey) -> str:
    """Hex SHA-256 of the key's DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return dsse.key_id(der)


def payload_digest(payload: bytes) -> str:
    """Hex SHA-256 of a signed payload (what an envelope's identity is)."""
    return hashlib.sha256(payload).hexdigest()


def stored_payload_digest(envelope_bytes: bytes) -> str:
    """The payload digest of an envelope already stored (verified when it arrived, possibly before canonical form
    was required, so read leniently); "" if it cannot be read (its envelope digest is compared instead)."""
    try:
        payload = json.loads(envelope_bytes)["payload"]
        return payload_digest(dsse.b64decode(payload))
    except (ValueError, KeyError, TypeError, binascii.Error, RecursionError):
        return ""


def parse_envelope(envelope_bytes: bytes) -> ParsedEnvelope:
    """The one parse of an envelope: strict JSON, the canonical envelope shape (`dsse.envelope_from_object`) and
    whether the bytes are their JCS form, from a single pass. Raises `dsse.EnvelopeError`."""
    try:
        obj, canonical = parse_canonical(envelope_bytes)
    except (jcs.CanonicalJsonError, ValueError) as err:  # ValueError: e.g. an integer too long to convert
        raise dsse.EnvelopeError("envelope-malformed", f"envelope is not valid JSON: {err}") from err
    return ParsedEnvelope(envelope_bytes, dsse.envelope_from_object(obj), canonical)


def _check_signature(envelope: dsse.Envelope, public_key: Ed25519PublicKey, keyid: str) -> tuple[str, str] | None:
    """None if the one signature names this key and verifies over the PAE bytes, else (reason, message)."""
    (signature,) = envelope.signatures
    if signature.keyid != keyid:
        return "wrong-key", f"signed by key {signature.keyid}, expected {keyid}"
    try:
        public_key.verify(signature.sig, dsse.pae(envelope.payload_type, envelope.payload))
    except InvalidSignature:
        return "signature-invalid", f"the signature does not verify with key {keyid} over the PAE bytes"
    return None


def verify_envelope(envelope_bytes: bytes, public_key: Ed25519PublicKey, source: str = "") -> EnvelopeResult:
    """Verify one envelope's exact bytes against the node's public key, collecting every failure."""
    try:
        parsed = parse_envelope(envelope_bytes)
    except dsse.EnvelopeError as err:
        return EnvelopeResult([Failure(err.reason, err.message, source=source)])
    return verify_parsed(parsed, public_key, source)


def verify_parsed(
    parsed: ParsedEnvelope, public_key: Ed25519PublicKey, source: str = "", keyid: str | None = None
) -> EnvelopeResult:
    """Verify an envelope from its one parse (`parse_envelope`): canonical bytes, payload type, signature, then
    the payload (parsed and canonical-checked once) and the statement. `keyid`: the key's id when the caller
    knows it already (saves hashing the key)."""
    keyid = keyid or public_key_id(public_key)
    envelope = parsed.envelope
    failures: list[Failure] = []

    def fail(reason: str, message: str) -> None:
        failures.append(Failure(reason, message, source=source))

    if not parsed.canonical:
        fail("envelope-not-canonical", "envelope bytes are not the RFC 8785 (JCS) form of the envelope")
    if envelope.payload_type != PAYLOAD_TYPE:
        fail("payload-type", f"payloadType is {envelope.payload_type!r}, expected {PAYLOAD_TYPE!r}")
    signature_problem = _check_signature(envelope, public_key, keyid)
    if signature_problem:
        fail(*signature_problem)
        return EnvelopeResult(failures)  # verify before parse: an unauthenticated payload is not read
    try:
        statement, canonical = parse_canonical(envelope.payload)
    except jcs.CanonicalJsonError as err:
        fail("payload-malformed", f"payload is not a valid JSON document: {err}")
        return EnvelopeResult(failures)
    if not canonical:
        fail("payload-not-canonical", "payload bytes are not the RFC 8785 (JCS) form of the statement")
    for reason, message in check_statement(statement):
        fail(reason, message)
    actual = _subject_sha256(statement)
    if actual is not None and actual != subject_digest(public_key.public_bytes_raw()):
        fail("subject-key-mismatch", f"subject digest {actual} is not the SHA-256 of the signing key")
    sequence = _sequence_of(statement)
    failures = [Failure(f.reason, f.message, sequence, f.source) for f in failures]
    if failures:
        return EnvelopeResult(failures)
    envelope_bytes = parsed.envelope_bytes
    verified = VerifiedStatement(
        envelope_bytes, dsse.envelope_digest(envelope_bytes), keyid, statement, source, envelope.payload
    )
    return EnvelopeResult([], verified)


def _subject_sha256(statement: Any) -> str | None:
    try:
        digest = statement["subject"][0]["digest"]["sha256"]
    except (KeyError, IndexError, TypeError):
        return None
    return digest if isinstance(digest, str) else None


def _sequence_of(statement: Any) -> int | None:
    predicate = statement.get("predicate") if isinstance(statement, dict) else None
    sequence = predicate.get("sequence") if isinstance(predicate, dict) else None
    return sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else None


def check_chain(previous_records: Iterable[ChainRecord], new: ChainRecord, source: str = "") -> list[Failure]:
    """Chain findings for `new`, given the records of the same key accepted before it (in any order).

    An ingest may pass only the neighbours it has: the record with new.sequence (duplicate/fork), the highest
    record below it (previous link, gap) and the highest overall (out-of-order). An empty list means `new`
    extends the chain. A `duplicate` finding alone means "already have exactly this envelope".
    """
    records = list(previous_records)
    seq = new.sequence

    def finding(reason: str, message: str) -> list[Failure]:
        return [Failure(reason, message, seq, source)]

    same = [r for r in records if r.sequence == seq]
    if same:
        if any(_same_signed_payload(r, new) for r in same):
            return finding(DUPLICATE, f"envelope {new.digest} was already received (replay)")
        others = ", ".join(sorted({r.digest for r in same}))
        return finding(FORK, f"two different signed payloads for sequence {seq}: envelopes {new.digest} and {others}")
    failures: list[Failure] = []
    highest = max((r.sequence for r in records), default=None)
    if highest is not None and seq < highest:
        failures += finding(OUT_OF_ORDER, f"sequence {seq} arrived after sequence {highest}")
    earlier = [r for r in records if r.sequence < seq]
    if earlier:
        before = max(earlier, key=lambda r: r.sequence)
        if seq > before.sequence + 1:
            missing = f"{before.sequence + 1}" + (f"..{seq - 1}" if seq - 1 > before.sequence + 1 else "")
            failures += finding(GAP, f"sequence(s) {missing} missing between {before.sequence} and {seq}")
        if new.previous != before.digest:
            failures += finding(
                PREVIOUS_MISMATCH,
                f"previous is {new.previous or '(empty)'}, but sequence {before.sequence} has digest {before.digest}",
            )
    return failures


def _same_signed_payload(a: ChainRecord, b: ChainRecord) -> bool:
    """Same signed payload (same envelope bytes imply it); a record without a payload digest compares by envelope.

    Only the key's holder can sign, so two records for one sequence whose payloads differ are an equivocation;
    the same payload in two envelopes (signed twice) is a replay, never evidence against the node."""
    if a.digest == b.digest:
        return True
    return bool(a.payload_digest) and a.payload_digest == b.payload_digest


def check_chains(statements: Sequence[VerifiedStatement]) -> list[Failure]:
    """Audit a set of verified envelopes: per key, in sequence order, every chain finding.

    Order of the input does not matter (files named by hand sort badly); use `check_chain` in arrival order to
    detect reordering in a stream.
    """
    failures: list[Failure] = []
    by_key: dict[str, list[VerifiedStatement]] = {}
    for statement in statements:
        by_key.setdefault(statement.keyid, []).append(statement)
    for group in by_key.values():
        accepted: list[VerifiedStatement] = []
        for statement in sorted(group, key=lambda s: s.sequence):
            found = check_chain(accepted, statement, statement.source)
            failures += found
            if not any(f.reason in (DUPLICATE, FORK) for f in found):
                accepted.append(statement)
    return failures
