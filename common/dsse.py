"""DSSE v1 envelopes (secure-systems-lab/dsse): the PAE encoding, building and parsing. Pure.

The envelope is produced once, as JCS bytes, and from then on only moved as bytes: what was signed is what is
stored and what an auditor receives. Signing takes a callable (`private_key.sign`) or any object with a
`sign(bytes) -> bytes` method, so this module never touches key files.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gpucensus.common import jcs

ENVELOPE_FIELDS = frozenset({"payload", "payloadType", "signatures"})
SIGNATURE_FIELDS = frozenset({"keyid", "sig"})


class _HasSign(Protocol):
    def sign(self, data: bytes, /) -> bytes: ...


Signer = Callable[[bytes], bytes] | _HasSign


class EnvelopeError(ValueError):
    """The bytes are not a well-formed DSSE envelope; `reason` is a stable id."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload: bytes
    payload_type: str
    signatures: tuple[Signature, ...]


def pae(payload_type: str, payload: bytes) -> bytes:
    """Pre-Authentication Encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def key_id(spki_der: bytes) -> str:
    """gpucensus key id: hex SHA-256 of the DER SubjectPublicKeyInfo."""
    return hashlib.sha256(spki_der).hexdigest()


def envelope_digest(envelope_bytes: bytes) -> str:
    """Hex SHA-256 of an envelope's exact bytes (what the next statement's `previous` names)."""
    return hashlib.sha256(envelope_bytes).hexdigest()


def b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, with padding (lenient: for reading envelopes stored before canonical form was
    required; a verifier uses `b64decode_canonical`)."""
    alphabet = text.translate(str.maketrans("-_", "+/"))
    return base64.b64decode(alphabet, validate=True)


_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# pad bits: the low bits of the last character before '=' padding (4 bits before "==", 2 before "=")
_PAD_MASK = {1: 0b11, 2: 0b1111}


def b64decode_canonical(text: str, what: str) -> bytes:
    """Decode base64 that must be canonical: standard alphabet, '=' padding, zero pad bits, so that one byte
    string has exactly one text form. Raises EnvelopeError `base64-invalid` (not base64 at all, or unpadded) or
    `base64-not-canonical` (URL-safe alphabet, non-zero pad bits). No re-encoding: the standard alphabet and the
    padding are checked by the strict decoder, the pad bits by looking at one character."""
    try:
        data = binascii.a2b_base64(text.encode("ascii"), strict_mode=True)  # standard alphabet, exact padding
    except (binascii.Error, ValueError) as err:  # ValueError: a non-ASCII character
        try:
            b64decode(text)
        except (binascii.Error, ValueError):
            raise EnvelopeError("base64-invalid", f"{what} is not valid base64: {err}") from err
        raise EnvelopeError("base64-not-canonical", f"{what} uses the URL-safe base64 alphabet") from err
    padding = len(text) - len(text.rstrip("="))
    if len(text) % 4 or padding > 2:
        raise EnvelopeError("base64-not-canonical", f"{what} has excess base64 padding")
    if padding and _B64_ALPHABET.index(text[-padding - 1]) & _PAD_MASK[padding]:
        raise EnvelopeError("base64-not-canonical", f"{what} has non-zero base64 pad bits")
    return data


def sign_envelope(payload: bytes, payload_type: str, signer: Signer, keyid: str) -> bytes:
    """Sign PAE(payload_type, payload) and return the envelope's JCS bytes."""
    sign = signer if callable(signer) else signer.sign
    signature = sign(pae(payload_type, payload))
    envelope = {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": payload_type,
        "signatures": [{"keyid": keyid, "sig": base64.b64encode(signature).decode("ascii")}],
    }
    return jcs.canonical_bytes(envelope)


def _field(obj: dict[str, Any], name: str, kind: type) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind):
        raise EnvelopeError("envelope-malformed", f"envelope field {name!r} is missing or not a {kind.__name__}")
    return value


def envelope_from_object(obj: Any) -> Envelope:
    """The envelope in a parsed JSON value, in the one form gpucensus accepts; raises EnvelopeError.

    An envelope's identity is what was signed, so one payload and signature must have exactly one byte form:
    exactly the fields payload, payloadType and signatures; exactly one signature of exactly keyid (non-empty)
    and sig; payload and sig in canonical base64 (`b64decode_canonical`). Together with JCS bytes (checked by
    the verifier) nobody without the key can make a second envelope that verifies. Reasons:
    `envelope-malformed`, `signature-missing`, `signature-count`, `base64-invalid`, `base64-not-canonical`.
    """
    if not isinstance(obj, dict):
        raise EnvelopeError("envelope-malformed", "envelope is not a JSON object")
    unknown = sorted(set(obj) - ENVELOPE_FIELDS)
    if unknown:
        raise EnvelopeError("envelope-malformed", f"envelope has unknown field(s) {', '.join(unknown)}")
    payload = b64decode_canonical(_field(obj, "payload", str), "payload")
    payload_type = _field(obj, "payloadType", str)
    raw_signatures = _field(obj, "signatures", list)
    if not raw_signatures:
        raise EnvelopeError("signature-missing", "envelope has no signatures")
    if len(raw_signatures) != 1:
        raise EnvelopeError(
            "signature-count", f"envelope has {len(raw_signatures)} signatures; a gpucensus envelope has exactly one"
        )
    item = raw_signatures[0]
    if not isinstance(item, dict) or set(item) != SIGNATURE_FIELDS:
        raise EnvelopeError("envelope-malformed", "signatures[0] must have exactly the fields keyid and sig")
    keyid, sig = item["keyid"], item["sig"]
    if not isinstance(keyid, str) or not keyid or not isinstance(sig, str):
        raise EnvelopeError("envelope-malformed", "signatures[0] keyid must be a non-empty string and sig a string")
    signature = Signature(keyid=keyid, sig=b64decode_canonical(sig, "signatures[0].sig"))
    return Envelope(payload=payload, payload_type=payload_type, signatures=(signature,))


def parse_envelope(data: bytes) -> Envelope:
    """Decode an envelope's JSON without trusting anything in it; raises EnvelopeError (see
    `envelope_from_object`). Checking that the bytes are their JCS form is the verifier's job
    (`common.verify.parse_envelope` does both in one parse)."""
    try:
        obj = jcs.loads_strict(data)
    except jcs.CanonicalJsonError as err:
        raise EnvelopeError("envelope-malformed", f"envelope is not valid JSON: {err}") from err
    return envelope_from_object(obj)
