"""Verify gpucensus attestations: one envelope at a time, and the hash chain across one node's envelopes.

Used by the collector's ingest and by `gpucensus-audit`. Verify before parse: the payload is parsed only after
a signature over its exact bytes has been checked with the enrolled key. Every failure is collected (never
stop at the first) as a `Failure` with a stable reason id:

per envelope  envelope-malformed, envelope-not-canonical, base64-invalid, signature-missing, wrong-key,
              signature-invalid, payload-type, payload-malformed, payload-not-canonical, statement-type,
              predicate-type, statement-shape, subject-key-mismatch
across        duplicate (replay: same sequence, same digest), fork (equivocation: same sequence, other
envelopes     digest), out-of-order (a sequence below the highest already seen), gap (sequences missing),
              previous-mismatch (`previous` is not the digest of the preceding envelope)

Imports only the standard library, `cryptography`, `collector.canonical` and the agent's pure modules (dsse, jcs,
statement).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent import dsse, jcs
from agent.statement import PAYLOAD_TYPE, check_statement, subject_digest
from collector.canonical import parse_canonical

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


def _check_signatures(envelope: dsse.Envelope, public_key: Ed25519PublicKey, keyid: str) -> tuple[str, str] | None:
    """None if a signature verifies over the PAE bytes, else (reason, message)."""
    message = dsse.pae(envelope.payload_type, envelope.payload)
    for signature in envelope.signatures:
        try:
            public_key.verify(signature.sig, message)
            return None
        except InvalidSignature:
            continue
    claimed = sorted({s.keyid for s in envelope.signatures if s.keyid})
    if claimed and keyid not in claimed:
        return "wrong-key", f"signed by key {', '.join(claimed)}, expected {keyid}"
    return "signature-invalid", f"no signature verifies with key {keyid} over the PAE bytes"


def verify_envelope(
    envelope_bytes: bytes, public_key: Ed25519PublicKey, source: str = "", *, parsed: dsse.Envelope | None = None
) -> EnvelopeResult:
    """Verify one envelope's exact bytes against the node's public key, collecting every failure.

    `parsed`: `dsse.parse_envelope(envelope_bytes)` when the caller has parsed it already (saves a parse)."""
    keyid = public_key_id(public_key)
    failures: list[Failure] = []

    def fail(reason: str, message: str) -> None:
        failures.append(Failure(reason, message, source=source))

    try:
        envelope = parsed or dsse.parse_envelope(envelope_bytes)
        _, envelope_canonical = parse_canonical(envelope_bytes)
    except dsse.EnvelopeError as err:
        fail(err.reason, err.message)
        return EnvelopeResult(failures)
    except (jcs.CanonicalJsonError, ValueError) as err:  # e.g. an integer too long to convert
        fail("envelope-malformed", f"envelope is not valid JSON: {err}")
        return EnvelopeResult(failures)
    if not envelope_canonical:
        fail("envelope-not-canonical", "envelope bytes are not the RFC 8785 (JCS) form of the envelope")
    if envelope.payload_type != PAYLOAD_TYPE:
        fail("payload-type", f"payloadType is {envelope.payload_type!r}, expected {PAYLOAD_TYPE!r}")
    signature_problem = _check_signatures(envelope, public_key, keyid)
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
    digest = dsse.envelope_digest(envelope_bytes)
    return EnvelopeResult([], VerifiedStatement(envelope_bytes, digest, keyid, statement, source, envelope.payload))


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
        if any(r.digest == new.digest for r in same):
            return finding(DUPLICATE, f"envelope {new.digest} was already received (replay)")
        others = ", ".join(sorted({r.digest for r in same}))
        return finding(FORK, f"two different envelopes for sequence {seq}: {new.digest} and {others}")
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
