"""Verification: every tampering the issue names is rejected with its own reason; all failures are collected."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any

import pytest
import rfc8785
from gpucensus.agent.attest import sign_payload, sign_predicate
from gpucensus.agent.keys import key_id
from gpucensus.common import dsse, jcs
from gpucensus.common.canonical import parse_canonical
from gpucensus.common.dsse import envelope_digest
from gpucensus.common.verify import (
    check_chain,
    check_chains,
    public_key_from_pem,
    public_key_id,
    verify_envelope,
)

from tests.unit.attest_fixtures import new_key, predicate, signed_chain

KEY = new_key()
PUB = KEY.public_key()


def reasons(envelope: bytes, public_key=PUB) -> list[str]:
    return [f.reason for f in verify_envelope(envelope, public_key).failures]


def edit(envelope: bytes, **changes: Any) -> bytes:
    """Re-encode an envelope with some fields changed (the way an attacker would), canonically."""
    obj = json.loads(envelope)
    obj.update(changes)
    return jcs.canonical_bytes(obj)


def payload_of(envelope: bytes) -> bytes:
    return base64.b64decode(json.loads(envelope)["payload"])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


GOOD = signed_chain(KEY, 1)[0]


def test_a_good_envelope_verifies_and_exposes_its_statement() -> None:
    result = verify_envelope(GOOD, PUB, "e1.json")
    assert result.ok and result.failures == []
    verified = result.verified
    assert verified is not None
    assert (verified.node_id, verified.sequence, verified.previous) == ("node-a", 1, "")
    assert verified.digest == envelope_digest(GOOD)
    assert verified.keyid == key_id(PUB) == public_key_id(PUB)
    assert verified.predicate["totals"]["tpp"] == 15832
    assert verified.source == "e1.json"


@pytest.mark.parametrize("position", [0, 1, 100, -1])
def test_one_flipped_payload_byte_is_signature_invalid(position: int) -> None:
    payload = bytearray(payload_of(GOOD))
    payload[position] ^= 0x01
    assert reasons(edit(GOOD, payload=b64(bytes(payload)))) == ["signature-invalid"]


def test_a_different_key_is_wrong_key() -> None:
    other = new_key()
    forged = signed_chain(other, 1)[0]  # well formed, signed by someone else's key (its own keyid)
    assert reasons(forged) == ["wrong-key"]
    assert reasons(GOOD, other.public_key()) == ["wrong-key"]


def test_a_signature_replaced_under_our_keyid_is_signature_invalid() -> None:
    other = new_key()
    sig = other.sign(dsse.pae("application/vnd.in-toto+json", payload_of(GOOD)))
    forged = edit(GOOD, signatures=[{"keyid": key_id(PUB), "sig": b64(sig)}])
    assert reasons(forged) == ["signature-invalid"]


def test_a_changed_payload_type_is_rejected_for_type_and_signature() -> None:
    assert sorted(reasons(edit(GOOD, payloadType="application/json"))) == ["payload-type", "signature-invalid"]


def test_a_payload_type_signed_as_such_is_still_rejected() -> None:
    envelope = dsse.sign_envelope(payload_of(GOOD), "application/json", KEY, key_id(PUB))
    assert reasons(envelope) == ["payload-type"]


def test_a_reserialized_payload_breaks_the_signature() -> None:
    pretty = json.dumps(json.loads(payload_of(GOOD)), indent=1).encode()
    assert reasons(edit(GOOD, payload=b64(pretty))) == ["signature-invalid"]


def test_a_reserialized_payload_is_rejected_even_when_signed() -> None:
    # A signer that did not use JCS: the signature holds, but the payload is not its own canonical form.
    statement = json.loads(payload_of(GOOD))
    for variant in (
        json.dumps(statement, indent=1).encode(),  # whitespace added
        payload_of(GOOD) + b"\n",  # trailing newline
        json.dumps(dict(reversed(statement.items())), separators=(",", ":")).encode(),  # keys reordered
        payload_of(GOOD).replace(b'"hostname":"gpu-a"', b'"hostname":"gpu-\\u0061"'),  # escaped letter
    ):
        assert variant != payload_of(GOOD) and json.loads(variant) == statement
        assert reasons(sign_payload(variant, KEY)) == ["payload-not-canonical"]


def test_an_envelope_that_is_not_jcs_is_rejected() -> None:
    pretty = json.dumps(json.loads(GOOD), indent=2).encode()
    assert reasons(pretty) == ["envelope-not-canonical"]


def test_verify_before_parse_an_unsigned_payload_is_not_read() -> None:
    assert reasons(edit(GOOD, payload=b64(b"{not json"))) == ["signature-invalid"]
    assert reasons(sign_payload(b"{not json", KEY)) == ["payload-malformed"]


def test_every_failure_is_collected() -> None:
    tampered = json.dumps({**json.loads(GOOD), "payloadType": "text/plain"}, indent=1).encode()
    assert sorted(reasons(tampered)) == ["envelope-not-canonical", "payload-type", "signature-invalid"]


def test_statement_problems_are_reported_after_the_signature_holds() -> None:
    statement = json.loads(payload_of(GOOD))
    statement["predicateType"] = "https://example.com/other"
    del statement["predicate"]["sequence"]
    found = reasons(sign_payload(jcs.canonical_bytes(statement), KEY))
    assert sorted(found) == ["predicate-type", "statement-shape"]


def test_subject_must_be_the_signing_key() -> None:
    statement = json.loads(payload_of(GOOD))
    statement["subject"][0]["digest"]["sha256"] = "00" * 32
    assert reasons(sign_payload(jcs.canonical_bytes(statement), KEY)) == ["subject-key-mismatch"]


def test_hostile_payloads_are_failures_not_exceptions() -> None:
    statement = json.loads(payload_of(GOOD))
    statement["predicate"]["totals"]["tpp"] = 2**60  # beyond the I-JSON integer range JCS allows
    huge = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    assert reasons(sign_payload(huge, KEY)) == ["payload-not-canonical"]
    assert reasons(sign_payload(b"[" * 200_000, KEY)) == ["payload-malformed"]


def test_a_payload_with_a_lone_surrogate_key_or_a_giant_integer_is_a_failure_not_an_exception() -> None:
    # rfc8785 raised UnicodeEncodeError (not its own error) for the key; int() refuses 4301+ digits with ValueError
    assert reasons(sign_payload(b'{"\\ud800":1}', KEY)) == ["payload-not-canonical", "statement-type",
                                                          "predicate-type", "statement-shape"]  # fmt: skip
    assert reasons(sign_payload(b'{"a":' + b"9" * 5000 + b"}", KEY)) == ["payload-malformed"]


JCS_CASES = [
    b'{"a":1,"b":2}', b'{"b":2,"a":1}', b'{"a":1, "b":2}', b'{"a":[1,{"c":"d","b":"e"}]}',
    b'{"\xc3\xa9":1,"z":2}', b'{"z":1,"\xc3\xa9":2}', b'{"\\u00e9":1}', b'{"\\u0041":1}',
    # U+E000 sorts after U+1F600 by code point but before it in UTF-16 (surrogates are 0xD83D ...)
    '{"\U0001f600":1,"\ue000":2}'.encode(), '{"\ue000":1,"\U0001f600":2}'.encode(),
    b'["\\u001f","\\u0000","\\b\\f\\n\\r\\t"]', b'["\\u001F"]', b'["\\/"]', b'["/"]', b'["\x7f"]',
    '["\u2028\u2029"]'.encode(), b'["\\ud800"]', b'["\\ud83d\\ude00"]', '["\U0001f600"]'.encode(),
    b"[9007199254740991,-9007199254740991]", b"[9007199254740992]", b"[-9007199254740992]", b"[1000000000000000]",
    b"[-0]", b"[0]", b"[00]", b"[true,false,null]", b"{}", b"[]", b'""', b"7", b" 7", b"7\n", b'{"a":{}}',
]  # fmt: skip


@pytest.mark.parametrize("data", JCS_CASES)
def test_the_fast_canonical_check_agrees_with_rfc8785(data: bytes) -> None:
    try:
        expected = rfc8785.dumps(json.loads(data)) == data
    except json.JSONDecodeError:
        expected = None
    except (ValueError, rfc8785.CanonicalizationError):  # no JCS form (a lone surrogate, an unsafe integer)
        expected = False
    if expected is None:
        with pytest.raises(jcs.CanonicalJsonError):
            parse_canonical(data)
    else:
        value, canonical = parse_canonical(data)
        assert (value, canonical) == (json.loads(data), expected)


@pytest.mark.parametrize("data", [b'{"a":1,"a":1}', b'{"a":1.0}', b'{"a":NaN}', b"\xff", b'{"a":1e3}'])
def test_the_fast_canonical_check_is_as_strict_as_the_agents_parser(data: bytes) -> None:
    with pytest.raises(jcs.CanonicalJsonError):
        jcs.loads_strict(data)
    with pytest.raises(jcs.CanonicalJsonError):
        parse_canonical(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "envelope-malformed"),
        (b"[" * 200_000, "envelope-malformed"),
        (b'{"payload":"","payloadType":"t","signatures":[],"x":' + b"9" * 5000 + b"}", "envelope-malformed"),
        (b'{"payload":"%%%","payloadType":"t","signatures":[]}', "base64-invalid"),
    ],
)
def test_garbage_is_a_failure_not_an_exception(data: bytes, reason: str) -> None:
    assert reasons(data) == [reason]


# --- across envelopes -----------------------------------------------------------------------------------


def verified(envelopes: list[bytes], public_key=PUB) -> list:
    results = [verify_envelope(e, public_key, f"e{i}") for i, e in enumerate(envelopes)]
    assert all(r.ok for r in results), [r.failures for r in results]
    return [r.verified for r in results]


CHAIN = verified(signed_chain(KEY, 4))


def test_an_intact_chain_holds_in_any_input_order() -> None:
    assert check_chains(CHAIN) == []
    assert check_chains(list(reversed(CHAIN))) == []


def test_a_replayed_envelope_is_a_duplicate() -> None:
    found = check_chains([*CHAIN, verified([CHAIN[2].envelope_bytes])[0]])
    assert [(f.reason, f.sequence) for f in found] == [("duplicate", 3)]
    assert [f.reason for f in check_chain(CHAIN[:3], CHAIN[2])] == ["duplicate"]


def test_a_reordered_stream_is_out_of_order() -> None:
    seen: list = []
    found = []
    for record in (CHAIN[0], CHAIN[2], CHAIN[1], CHAIN[3]):
        found += check_chain(seen, record)
        seen.append(record)
    assert [(f.reason, f.sequence) for f in found] == [("gap", 3), ("previous-mismatch", 3), ("out-of-order", 2)]


def test_a_forked_chain_is_detected() -> None:
    fork = sign_predicate(
        predicate(hostname="elsewhere"), KEY, sequence=3, previous=CHAIN[1].digest, timestamp="2026-11-23T13:00:00Z"
    )
    found = check_chains([*CHAIN, *verified([fork])])
    assert [(f.reason, f.sequence) for f in found] == [("fork", 3)]
    assert CHAIN[2].digest in found[0].message


def test_a_missing_envelope_is_a_gap_and_a_broken_link() -> None:
    found = check_chains([CHAIN[0], CHAIN[1], CHAIN[3]])
    assert [(f.reason, f.sequence) for f in found] == [("gap", 4), ("previous-mismatch", 4)]
    assert "sequence(s) 3 missing" in found[0].message


def test_a_gap_from_a_crash_keeps_the_link_intact() -> None:
    first = signed_chain(KEY, 1)
    after_crash = signed_chain(KEY, 1, first=3, previous=envelope_digest(first[0]))
    found = check_chains(verified(first + after_crash))
    assert [f.reason for f in found] == ["gap"]


def test_a_wrong_previous_link_is_a_mismatch() -> None:
    broken = signed_chain(KEY, 1, first=2, previous="ee" * 32)
    found = check_chains([CHAIN[0], *verified(broken)])
    assert [(f.reason, f.sequence) for f in found] == [("previous-mismatch", 2)]


def test_chains_of_different_keys_are_checked_separately() -> None:
    other = new_key()
    theirs = verified(signed_chain(other, 2), other.public_key())
    assert check_chains([*CHAIN, *theirs]) == []


def test_public_key_from_pem() -> None:
    from cryptography.hazmat.primitives import serialization

    pem = PUB.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert public_key_id(public_key_from_pem(pem)) == key_id(PUB)
    with pytest.raises(ValueError):
        public_key_from_pem(b"junk")


def test_verify_does_not_import_the_agents_file_io_modules() -> None:
    code = (
        "import sys, gpucensus.common.verify; "
        "bad = sorted(m for m in sys.modules if m.startswith('gpucensus.agent.')); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
