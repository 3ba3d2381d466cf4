"""DSSE v1: the PAE encoding (against the specification's own test vector), envelope building and parsing."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gpucensus.common import dsse, jcs

# secure-systems-lab/dsse protocol.md, "Test Vectors": SERIALIZED_BODY "hello world",
# PAYLOAD_TYPE "http://example.com/HelloWorld", PAE "DSSEv1 29 http://example.com/HelloWorld 11 hello world".
SPEC_PAE = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"


def test_pae_matches_the_dsse_specification_test_vector() -> None:
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == SPEC_PAE


@pytest.mark.parametrize(
    ("payload_type", "payload", "expected"),
    [
        ("", b"", b"DSSEv1 0  0 "),
        ("application/vnd.in-toto+json", b"{}", b"DSSEv1 28 application/vnd.in-toto+json 2 {}"),
        ("t\u00e9", b"\x00\xff", b"DSSEv1 3 t\xc3\xa9 2 \x00\xff"),  # lengths are bytes, not characters
        ("x", b"a b 1 c", b"DSSEv1 1 x 7 a b 1 c"),  # the body is opaque bytes
    ],
)
def test_pae_lengths_count_bytes(payload_type: str, payload: bytes, expected: bytes) -> None:
    assert dsse.pae(payload_type, payload) == expected


def test_sign_envelope_is_jcs_and_round_trips() -> None:
    key = Ed25519PrivateKey.generate()
    envelope = dsse.sign_envelope(b"hello world", "http://example.com/HelloWorld", key, "kid")
    assert jcs.is_canonical(envelope)
    parsed = dsse.parse_envelope(envelope)
    assert parsed.payload == b"hello world"
    assert parsed.payload_type == "http://example.com/HelloWorld"
    assert [s.keyid for s in parsed.signatures] == ["kid"]
    key.public_key().verify(parsed.signatures[0].sig, SPEC_PAE)  # raises if the signature is not over PAE


def test_signer_may_be_a_callable_or_a_key_object() -> None:
    key = Ed25519PrivateKey.generate()
    # Ed25519 is deterministic: both forms sign the same PAE bytes to the same envelope.
    assert dsse.sign_envelope(b"x", "t", key.sign, "k") == dsse.sign_envelope(b"x", "t", key, "k")


def test_b64decode_accepts_standard_and_url_safe_alphabets() -> None:
    data = bytes(range(250, 256)) * 3
    assert dsse.b64decode(base64.b64encode(data).decode()) == data
    assert dsse.b64decode(base64.urlsafe_b64encode(data).decode()) == data
    with pytest.raises(ValueError):
        dsse.b64decode("not base64!")


def _envelope(**fields: object) -> bytes:
    base = {"payload": "aGk=", "payloadType": "t", "signatures": [{"keyid": "k", "sig": "AAAA"}]}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "envelope-malformed"),
        (b"[]", "envelope-malformed"),
        (b'{"payload":"aGk=","payload":"aGk=","payloadType":"t","signatures":[]}', "envelope-malformed"),
        (_envelope(extra="x"), "envelope-malformed"),
        (_envelope(payload=None), "envelope-malformed"),
        (_envelope(payloadType=7), "envelope-malformed"),
        (_envelope(payload="***"), "base64-invalid"),
        (_envelope(signatures=[]), "signature-missing"),
        (_envelope(signatures=[{"keyid": "k"}]), "envelope-malformed"),
        (_envelope(signatures=[{"keyid": "k", "sig": "@@"}]), "base64-invalid"),
        (_envelope(signatures=[{"sig": "AAAA"}]), "envelope-malformed"),
        (_envelope(signatures=[{"keyid": "", "sig": "AAAA"}]), "envelope-malformed"),
        (_envelope(signatures=[{"keyid": "k", "sig": "AAAA"}] * 2), "signature-count"),
        (_envelope(signatures=[{"keyid": "k", "sig": "AAB="}]), "base64-not-canonical"),
        (_envelope(signatures=[{"keyid": "k", "sig": "-_8="}]), "base64-not-canonical"),
        (_envelope(signatures=[{"sig": "AAAA", "cert": "x"}]), "envelope-malformed"),
    ],
)
def test_parse_envelope_rejects_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(dsse.EnvelopeError) as caught:
        dsse.parse_envelope(data)
    assert caught.value.reason == reason


def test_envelope_digest_is_sha256_of_the_exact_bytes() -> None:
    assert dsse.envelope_digest(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_loads_strict_turns_a_giant_integer_into_its_own_error() -> None:
    # Python refuses to convert integers of more than 4300 digits with a plain ValueError
    with pytest.raises(jcs.CanonicalJsonError, match="not acceptable JSON"):
        jcs.loads_strict(b'{"n": ' + b"9" * 5000 + b"}")
