"""The signed location measurement: what a landmark says it measured, in a DSSE envelope of its own type.

A landmark times k challenge-answer round trips with one node and signs the result with its own Ed25519 key:

    {"challenges": ["<64 hex>", ...], "landmark": "<landmark key id>", "min_rtt_us": 4211,
     "node_keyid": "<node key id>", "samples_us": [4302, 4211, ...], "time": "2026-11-30T01:00:00Z",
     "type": "https://gpucensus.dev/location-measurement/v1"}

serialized in JCS and signed as DSSE with payloadType `MEASUREMENT_TYPE` (never readable as a statement: the
type is inside the signed bytes). The node's answer to each challenge is its node key's Ed25519 signature over
DSSE's PAE of `CHALLENGE_TYPE` and the 32 challenge bytes, so an answer can be made only by the holder of the
node key and can be read as nothing else. Pure: keys and clocks are passed in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from gpucensus.common import dsse, jcs
from gpucensus.common.verify import ParsedEnvelope, parse_envelope, public_key_id

MEASUREMENT_TYPE = "application/vnd.gpucensus.location-measurement+json"
CHALLENGE_TYPE = "application/vnd.gpucensus.landmark-challenge"
DOCUMENT_TYPE = "https://gpucensus.dev/location-measurement/v1"
CHALLENGE_BYTES = 32
MAX_SAMPLES = 16
MAX_RTT_US = 60_000_000  # a minute: no round trip on Earth takes longer
MAX_ENVELOPE_BYTES = 8192  # a measurement of MAX_SAMPLES is about 2.5 KiB
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FIELDS = {"challenges", "landmark", "min_rtt_us", "node_keyid", "samples_us", "time", "type"}


class MeasurementError(ValueError):
    """A measurement that cannot be used; `reason` is a stable id."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Measurement:
    landmark: str  # the landmark's key id
    node_keyid: str
    challenges: tuple[str, ...]
    samples_us: tuple[int, ...]
    min_rtt_us: int
    time: datetime
    digest: str  # hex SHA-256 of the envelope bytes: its identity (a replay is the same digest again)


def challenge_message(challenge: bytes) -> bytes:
    """The bytes a node signs to answer `challenge`."""
    return dsse.pae(CHALLENGE_TYPE, challenge)


def answer(challenge: bytes, node_key: Ed25519PrivateKey) -> bytes:
    return node_key.sign(challenge_message(challenge))


def answer_valid(challenge: bytes, signature: bytes, node_public: Ed25519PublicKey) -> bool:
    try:
        node_public.verify(signature, challenge_message(challenge))
    except InvalidSignature:
        return False
    return True


def sign_measurement(
    landmark_key: Ed25519PrivateKey,
    node_keyid: str,
    challenges: list[bytes],
    samples_us: list[int],
    at: datetime,
) -> bytes:
    """The envelope bytes of one measurement (the landmark's side)."""
    keyid = public_key_id(landmark_key.public_key())
    document = {
        "type": DOCUMENT_TYPE,
        "landmark": keyid,
        "node_keyid": node_keyid,
        "challenges": [c.hex() for c in challenges],
        "samples_us": samples_us,
        "min_rtt_us": min(samples_us),
        "time": at.astimezone(UTC).strftime(TIME_FORMAT),
    }
    return dsse.sign_envelope(jcs.canonical_bytes(document), MEASUREMENT_TYPE, landmark_key.sign, keyid)


def _parse(envelope_bytes: bytes) -> ParsedEnvelope:
    if len(envelope_bytes) > MAX_ENVELOPE_BYTES:
        raise MeasurementError("malformed", f"{len(envelope_bytes)} bytes, at most {MAX_ENVELOPE_BYTES}")
    try:
        parsed = parse_envelope(envelope_bytes)
    except dsse.EnvelopeError as err:
        raise MeasurementError("malformed", err.message) from err
    if not parsed.canonical:
        raise MeasurementError("malformed", "the envelope is not in its JCS form")
    if parsed.envelope.payload_type != MEASUREMENT_TYPE:
        raise MeasurementError("malformed", f"payloadType is {parsed.envelope.payload_type[:80]!r}")
    return parsed


def verify_measurement(envelope_bytes: bytes, landmark_key: Callable[[str], Ed25519PublicKey | None]) -> Measurement:
    """The measurement in `envelope_bytes` if the signature verifies with the key `landmark_key` gives for the
    envelope's key id (None: not a landmark we know) and its content is well formed. One parse; the signature is
    checked before the payload is read. Reasons: `malformed`, `unknown-landmark`, `bad-signature`."""
    parsed = _parse(envelope_bytes)
    envelope = parsed.envelope
    (signature,) = envelope.signatures
    public = landmark_key(signature.keyid)
    if public is None:
        raise MeasurementError("unknown-landmark", "signed by no registered landmark")
    keyid = public_key_id(public)
    try:
        if signature.keyid != keyid:
            raise InvalidSignature
        public.verify(signature.sig, dsse.pae(envelope.payload_type, envelope.payload))
    except InvalidSignature:
        raise MeasurementError("bad-signature", f"the signature does not verify with landmark key {keyid}") from None
    try:
        doc = jcs.loads_strict(envelope.payload)
    except (jcs.CanonicalJsonError, ValueError) as err:
        raise MeasurementError("malformed", f"the payload is not JSON: {err}") from err
    return _measurement(doc, keyid, dsse.envelope_digest(envelope_bytes))


def _measurement(doc: object, keyid: str, digest: str) -> Measurement:
    def bad(message: str) -> MeasurementError:
        return MeasurementError("malformed", message)

    if not isinstance(doc, dict) or set(doc) != _FIELDS or doc["type"] != DOCUMENT_TYPE:
        raise bad(f"the payload must be exactly the fields {', '.join(sorted(_FIELDS))} of {DOCUMENT_TYPE}")
    challenges, samples = doc["challenges"], doc["samples_us"]
    if not isinstance(challenges, list) or not all(isinstance(c, str) and _HEX64.fullmatch(c) for c in challenges):
        raise bad("challenges must be a list of 64 hex digits each")
    if not isinstance(samples, list) or not all(_rtt(s) for s in samples):
        raise bad(f"samples_us must be a list of integers 0..{MAX_RTT_US}")
    if not 1 <= len(samples) <= MAX_SAMPLES or len(samples) != len(challenges):
        raise bad(f"1..{MAX_SAMPLES} samples, one per challenge")
    if doc["min_rtt_us"] != min(samples) or not _rtt(doc["min_rtt_us"]):
        raise bad("min_rtt_us must be the smallest sample")
    if doc["landmark"] != keyid or not (isinstance(doc["node_keyid"], str) and _HEX64.fullmatch(doc["node_keyid"])):
        raise bad("landmark must be the signing key's id and node_keyid a key id")
    try:
        at = datetime.strptime(str(doc["time"]), TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise bad(f"time must be {TIME_FORMAT}") from None
    return Measurement(keyid, doc["node_keyid"], tuple(challenges), tuple(samples), doc["min_rtt_us"], at, digest)


def _rtt(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_RTT_US
