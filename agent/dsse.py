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

from agent import jcs

ENVELOPE_FIELDS = frozenset({"payload", "payloadType", "signatures"})


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
    """Standard or URL-safe base64, with padding, as the DSSE spec requires verifiers to accept."""
    alphabet = text.translate(str.maketrans("-_", "+/"))
    return base64.b64decode(alphabet, validate=True)


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


def _decode(text: str, what: str) -> bytes:
    try:
        return b64decode(text)
    except (binascii.Error, ValueError) as err:
        raise EnvelopeError("base64-invalid", f"{what} is not valid base64: {err}") from err


def parse_envelope(data: bytes) -> Envelope:
    """Decode an envelope's JSON without trusting anything in it; raises EnvelopeError.

    Reasons: `envelope-malformed` (not strict JSON, wrong or unknown fields), `base64-invalid`,
    `signature-missing`. Checking that the bytes are canonical is the verifier's job (`jcs.is_canonical`).
    """
    try:
        obj = jcs.loads_strict(data)
    except jcs.CanonicalJsonError as err:
        raise EnvelopeError("envelope-malformed", f"envelope is not valid JSON: {err}") from err
    if not isinstance(obj, dict):
        raise EnvelopeError("envelope-malformed", "envelope is not a JSON object")
    unknown = sorted(set(obj) - ENVELOPE_FIELDS)
    if unknown:
        raise EnvelopeError("envelope-malformed", f"envelope has unknown field(s) {', '.join(unknown)}")
    payload = _decode(_field(obj, "payload", str), "payload")
    payload_type = _field(obj, "payloadType", str)
    raw_signatures = _field(obj, "signatures", list)
    if not raw_signatures:
        raise EnvelopeError("signature-missing", "envelope has no signatures")
    signatures = []
    for i, item in enumerate(raw_signatures):
        if not isinstance(item, dict) or not isinstance(item.get("sig"), str):
            raise EnvelopeError("envelope-malformed", f"signatures[{i}] has no string 'sig'")
        keyid = item.get("keyid", "")
        if not isinstance(keyid, str) or set(item) - {"keyid", "sig"}:
            raise EnvelopeError("envelope-malformed", f"signatures[{i}] has a bad keyid or unknown fields")
        signatures.append(Signature(keyid=keyid, sig=_decode(item["sig"], f"signatures[{i}].sig")))
    return Envelope(payload=payload, payload_type=payload_type, signatures=tuple(signatures))
