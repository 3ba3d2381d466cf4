"""Property-based tests of the envelope parser and verifier and the statement checks (issue 8): arbitrary bytes,
mutated genuine envelopes and hostile signed statements never raise anything but the documented errors, and any
byte form the verifier accepts is the genuine envelope itself (one payload and signature, one byte form).

Bounded by the `default` profile in `make test` (200 inputs per test); `make fuzz` tries 20,000 per test.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from gpucensus.agent.attest import sign_payload
from gpucensus.collector.ingest import signature
from gpucensus.collector.ingest.errors import BindingError, MalformedError, SignatureError, UnknownKeyError
from gpucensus.collector.store.base import NodeKey
from gpucensus.common import dsse, jcs, verify
from gpucensus.common.statement import PAYLOAD_TYPE, check_statement
from hypothesis import assume, event, given
from hypothesis import strategies as st

from tests.unit.attest_fixtures import new_key, signed_chain

pytestmark = pytest.mark.fuzz

KEY = new_key()
PUB = KEY.public_key()
KEYID = verify.public_key_id(PUB)
GOOD = signed_chain(KEY, 1)[0]
GOOD_OBJ = json.loads(GOOD)
STATEMENT = json.loads(base64.b64decode(GOOD_OBJ["payload"]))
NODE_KEY = NodeKey(KEYID, "", "node-a", "fra1", datetime(2026, 1, 1, tzinfo=UTC))

# JSON values of any shape (integers beyond the JCS range, deep nesting, odd strings included)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _jcs_or_compact(obj: Any) -> bytes:
    """JCS where the value has a JCS form, else compact sorted JSON (an integer beyond 2**53)."""
    try:
        return jcs.canonical_bytes(obj)
    except jcs.CanonicalJsonError:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# one mutation in four: most inputs carry a single change, so each check is reached on its own
rarely = st.integers(0, 3).map(lambda n: n == 0)


def _b64_variants(text: str) -> st.SearchStrategy[str]:
    raw = base64.b64decode(text)
    return st.just(text) | st.sampled_from(
        [
            text,
            base64.urlsafe_b64encode(raw).decode(),
            text.rstrip("="),
            text + "=",
            text[:-4] + text[-4:].lower(),
            " " + text,
            text + "\n",
        ]
    )


@st.composite
def mutated_envelopes(draw: st.DrawFn) -> bytes:
    """A genuine envelope changed the ways a copy holder can: other base64 forms, extra or missing fields and
    signatures, another keyid, other JSON serializations (spacing, key order, escapes), raw byte edits."""
    obj: dict[str, Any] = json.loads(GOOD)
    obj["payload"] = draw(_b64_variants(obj["payload"]))
    sig = dict(obj["signatures"][0])
    sig["sig"] = draw(_b64_variants(sig["sig"]))
    if draw(rarely):
        sig["keyid"] = draw(st.sampled_from([KEYID.upper(), "", "0" * 64]))
    if draw(rarely):
        sig[draw(st.sampled_from(["cert", "extra", "KEYID"]))] = draw(json_values)
    if draw(rarely):
        del sig[draw(st.sampled_from(["keyid", "sig"]))]
    signatures = [sig, *draw(st.lists(st.just({"keyid": KEYID, "sig": "AAAA"}), max_size=2))]
    if draw(rarely):
        obj["signatures"] = draw(st.sampled_from([list(reversed(signatures)), sig, []]))
    else:
        obj["signatures"] = signatures
    if draw(rarely):
        obj[draw(st.sampled_from(["extra", "payloadtype", "signature"]))] = draw(json_values)
    if draw(rarely):
        obj["payloadType"] = draw(st.sampled_from([PAYLOAD_TYPE.upper(), PAYLOAD_TYPE + " ", 7]))
    form = draw(st.just("jcs") | st.sampled_from(["spaced", "unsorted", "escaped-slash", "ascii-escapes"]))
    if form == "jcs":
        data = _jcs_or_compact(obj)
    elif form == "spaced":
        data = json.dumps(obj, sort_keys=True).encode()
    elif form == "unsorted":
        data = json.dumps(dict(reversed(list(obj.items()))), separators=(",", ":")).encode()
    elif form == "escaped-slash":
        data = _jcs_or_compact(obj).replace(b"/", b"\\/")
    else:
        data = _jcs_or_compact(obj).replace(b"A", b"\\u0041", 1)
    if draw(rarely):  # a raw edit of a few bytes
        position = draw(st.integers(0, len(data)))
        data = data[:position] + draw(st.binary(max_size=3)) + data[position + draw(st.integers(0, 3)) :]
    return data


def _accepts(data: bytes) -> bool:
    """The verifier's verdict; any exception other than a verdict fails the test."""
    result = verify.verify_envelope(data, PUB)
    event("verified" if result.ok else f"refused: {result.failures[0].reason}")
    assert (result.verified is None) == bool(result.failures)
    assert all(isinstance(f.reason, str) and f.reason for f in result.failures)
    return result.verified is not None


@given(st.binary(max_size=512))
def test_arbitrary_bytes_are_a_verdict_never_an_exception(data: bytes) -> None:
    assert not _accepts(data)
    with pytest.raises(MalformedError):
        signature.parse(data)


@given(json_values)
def test_arbitrary_json_documents_are_a_verdict_never_an_exception(value: Any) -> None:
    data = json.dumps(value).encode()
    assert not _accepts(data)
    try:
        signature.parse(data)
    except MalformedError:
        pass


@given(mutated_envelopes())
def test_a_mutated_envelope_verifies_only_if_it_is_byte_identical_to_the_genuine_one(data: bytes) -> None:
    if _accepts(data):
        assert data == GOOD
    try:
        parsed = signature.parse(data)
    except MalformedError:
        return
    try:
        verified = signature.verify_signed(parsed, signature.enrolled_key(parsed, {KEYID: NODE_KEY}.get), PUB)
    except (MalformedError, SignatureError, BindingError) as err:
        assert str(err)
        return
    except UnknownKeyError:
        return
    assert data == GOOD and verified.digest == dsse.envelope_digest(GOOD)


@st.composite
def hostile_statements(draw: st.DrawFn) -> Any:
    """The genuine statement with some part replaced by an arbitrary JSON value (or a wholly arbitrary one)."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    statement = json.loads(json.dumps(STATEMENT))
    target = statement
    path = draw(
        st.sampled_from(
            [
                (),
                ("predicate",),
                ("predicate", "node"),
                ("subject",),
                ("predicate", "last_checkpoint"),
                ("predicate", "devices"),
            ]
        )
    )
    for part in path:
        target = target[part]
    if isinstance(target, dict):
        keys = [*sorted(target), "new-field"]
        target[draw(st.sampled_from(keys))] = draw(json_values)
    else:
        target.append(draw(json_values))
    return statement


@given(hostile_statements())
def test_statement_checks_never_raise(statement: Any) -> None:
    problems = check_statement(statement)
    assert all(isinstance(reason, str) and isinstance(message, str) for reason, message in problems)


@given(hostile_statements())
def test_a_validly_signed_hostile_statement_is_a_documented_error_or_verified(statement: Any) -> None:
    """Signed with the node's own key: the signature holds, so everything rests on the statement checks."""
    payload = _jcs_or_compact(statement)  # not JCS when an integer is beyond 2**53: the verifier must say so
    assume(len(payload) < 64_000)
    envelope = sign_payload(payload, KEY)
    _accepts(envelope)
    try:
        verified = signature.verify_signed(envelope, NODE_KEY, PUB)
    except (MalformedError, SignatureError, BindingError) as err:
        assert str(err)
        return
    assert check_statement(verified.statement) == []
    assert verified.signed_at.tzinfo is UTC


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_= \né", max_size=16))
def test_canonical_base64_is_exactly_the_standard_encoding_of_what_it_decodes_to(text: str) -> None:
    try:
        expected = base64.b64encode(dsse.b64decode(text)).decode() == text
    except (ValueError, TypeError):  # binascii.Error is a ValueError
        expected = False
    try:
        data = dsse.b64decode_canonical(text, "text")
    except dsse.EnvelopeError as err:
        assert not expected and err.reason in ("base64-invalid", "base64-not-canonical")
        return
    assert expected and base64.b64encode(data).decode() == text
