"""An envelope's identity is what was signed (issue 8, finding 1): only the canonical byte form of a payload and
its one signature verifies, and duplicate / equivocation are judged on the signed payload, by the collector's
chain step and by `gpucensus-audit` alike. Also: the ingest path parses each envelope once (issue 9)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
from gpucensus.collector import audit_cli
from gpucensus.collector.ingest.chain import ChainContext, Link, check_chain
from gpucensus.collector.ingest.errors import MalformedError
from gpucensus.collector.ingest.pipeline import Pipeline
from gpucensus.collector.store import open_store
from gpucensus.common import verify

from tests.envelope_variants import VARIANTS, with_distinct_variants
from tests.ingest_nodes import NOW, TestNode, enroll
from tests.unit.attest_fixtures import new_key, signed_chain

KEY = with_distinct_variants(new_key, lambda key: signed_chain(key, 1)[0])
PUB = KEY.public_key()
GOOD = signed_chain(KEY, 1)[0]
D1, D2, D3, P1, P2 = ("1" * 64, "2" * 64, "3" * 64, "a" * 64, "b" * 64)

EXPECTED_REASON = {
    "extra-signature": "signature-count",
    "url-safe-base64": "base64-not-canonical",
    "non-zero-pad-bits": "base64-not-canonical",
    "unpadded-base64": "base64-invalid",
    "no-keyid": "envelope-malformed",
    "unknown-signature-field": "envelope-malformed",
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_variant_made_without_the_key_does_not_verify(variant: str) -> None:
    forged = VARIANTS[variant](GOOD)
    result = verify.verify_envelope(forged, PUB)
    assert result.verified is None
    assert EXPECTED_REASON[variant] in [f.reason for f in result.failures]


def test_the_keyid_must_name_the_verifying_key() -> None:
    obj = json.loads(GOOD)
    obj["signatures"][0]["keyid"] = "0" * 64
    from gpucensus.common import jcs

    result = verify.verify_envelope(jcs.canonical_bytes(obj), PUB)
    assert [f.reason for f in result.failures] == ["wrong-key"]


def test_the_verified_statement_carries_what_later_steps_need() -> None:
    verified = verify.verify_envelope(GOOD, PUB).verified
    assert verified is not None
    payload = verified.payload
    assert verified.payload_digest == hashlib.sha256(payload).hexdigest()
    assert verified.digest == hashlib.sha256(GOOD).hexdigest()
    assert verified.signed_at.isoformat().startswith(verified.timestamp[:10])


def test_an_envelope_stored_in_a_lenient_form_has_the_payload_digest_of_the_genuine_one() -> None:
    """A variant stored before canonical form was required: the genuine envelope is then a replay of it."""
    from tests.envelope_variants import url_safe

    verified = verify.verify_envelope(GOOD, PUB).verified
    assert verified is not None
    assert verify.stored_payload_digest(url_safe(GOOD)) == verified.payload_digest
    assert verify.stored_payload_digest(b"not json") == ""


def test_same_sequence_same_payload_other_envelope_bytes_is_a_replay_not_a_fork() -> None:
    stored = Link(2, D2, D1, payload_digest=P1)
    context = ChainContext(stored=stored, predecessor=Link(1, D1), last=stored)
    same_payload = check_chain(
        node_id="n", new=Link(2, D3, D1, payload_digest=P1), timestamp=NOW, context=context, now=NOW
    )
    assert (same_payload.duplicate, same_payload.rejected, same_payload.findings) == (True, False, ())
    other = check_chain(node_id="n", new=Link(2, D3, D1, payload_digest=P2), timestamp=NOW, context=context, now=NOW)
    assert other.rejected and [f.rule_id for f in other.findings] == ["chain.equivocation"]


def test_the_audit_calls_a_fork_only_for_two_different_signed_payloads() -> None:
    first = verify.verify_envelope(GOOD, PUB, "a.json").verified
    assert first is not None
    resigned = replace(first, digest="f" * 64, source="b.json")  # same payload, other envelope bytes
    assert [f.reason for f in verify.check_chains([first, resigned])] == [verify.DUPLICATE]
    other_payload = replace(resigned, payload=b"another payload")
    assert [f.reason for f in verify.check_chains([first, other_payload])] == [verify.FORK]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_audit_reports_a_variant_as_malformed_and_finds_no_fork(tmp_path: Path, variant: str) -> None:
    (tmp_path / "genuine.json").write_bytes(GOOD)
    (tmp_path / "variant.json").write_bytes(VARIANTS[variant](GOOD))
    verified, failures = audit_cli.verify_files([tmp_path / "genuine.json", tmp_path / "variant.json"], [PUB])
    assert [v.source for v in verified] == [str(tmp_path / "genuine.json")]
    assert failures and all(f.source.endswith("variant.json") for f in failures)
    assert verify.FORK not in [f.reason for f in failures]


def test_the_collector_refuses_a_variant_before_looking_up_any_key() -> None:
    from gpucensus.collector.ingest import signature

    looked_up: list[str] = []
    for make in VARIANTS.values():
        with pytest.raises(MalformedError):
            signature.enrolled_key(signature.parse(make(GOOD)), lambda keyid: looked_up.append(keyid))  # type: ignore[func-returns-value]
    assert looked_up == []


def test_the_ingest_path_parses_an_envelope_and_its_payload_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store("sqlite", data_dir=str(tmp_path / "data"))
    try:
        node = TestNode("node-1")
        enroll(store, node)
        envelope = node.next()
        payload_text = verify.verify_envelope(envelope, node.key.public_key()).verified.payload.decode()
        envelope_text = envelope.decode()
        parsed: list[str] = []
        real_loads = json.loads

        def counting_loads(text, *args, **kwargs):
            if text in (envelope_text, envelope, payload_text):
                parsed.append("envelope" if text in (envelope_text, envelope) else "payload")
            return real_loads(text, *args, **kwargs)

        monkeypatch.setattr(json, "loads", counting_loads)
        result = Pipeline(store, clock=lambda: NOW).ingest(envelope)
        assert result.status == "accepted"
        assert sorted(parsed) == ["envelope", "payload"]
    finally:
        store.close()
