"""The in-toto Statement v1 the agent signs: shape, chain fields, and its JCS serialization."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from gpucensus.common import jcs
from gpucensus.common.statement import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    TIMESTAMP_FORMAT,
    build_statement,
    check_statement,
    format_timestamp,
    parse_timestamp,
    subject_digest,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.attest_fixtures import predicate

DIGEST = "ab" * 32
CHAIN = {"sequence": 2, "previous": "cd" * 32, "timestamp": "2026-11-23T12:00:00Z"}


def statement(**overrides: Any) -> dict[str, Any]:
    fields = {**CHAIN, **overrides}
    return build_statement(predicate(), subject_sha256=DIGEST, **fields)


def test_statement_is_in_toto_v1_with_the_gpucensus_predicate() -> None:
    result = statement(last_checkpoint={"size": 3, "root": "A" * 43 + "="})
    assert result["_type"] == STATEMENT_TYPE == "https://in-toto.io/Statement/v1"
    assert result["predicateType"] == PREDICATE_TYPE == "https://gpucensus.dev/inventory/v1"
    assert PAYLOAD_TYPE == "application/vnd.in-toto+json"
    assert result["subject"] == [{"name": "node:node-a", "digest": {"sha256": DIGEST}}]
    body = result["predicate"]
    assert (body["sequence"], body["previous"], body["timestamp"]) == (2, "cd" * 32, "2026-11-23T12:00:00Z")
    assert body["last_checkpoint"] == {"size": 3, "root": "A" * 43 + "="}
    assert body["totals"] == predicate()["totals"]  # the snapshot predicate is carried unchanged
    assert check_statement(result) == []


def test_first_statement_has_empty_previous_and_empty_checkpoint() -> None:
    result = statement(sequence=1, previous="")
    assert result["predicate"]["previous"] == ""
    assert result["predicate"]["last_checkpoint"] == {}


def test_serialized_with_jcs_sorted_keys_no_whitespace() -> None:
    data = jcs.canonical_bytes(statement())
    assert data.startswith(b'{"_type":"https://in-toto.io/Statement/v1","predicate":{"devices":[{')
    assert b" " not in data.replace(b"NVIDIA H100 80GB HBM3", b"")
    assert jcs.is_canonical(data)


def test_subject_digest_is_sha256_of_the_raw_public_key() -> None:
    raw = bytes(range(32))
    assert subject_digest(raw) == hashlib.sha256(raw).hexdigest()
    with pytest.raises(ValueError, match="32 bytes"):
        subject_digest(b"\x00" * 44)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 11, 23, 12, 0, 0, 999999, tzinfo=UTC), "2026-11-23T12:00:00Z"),
        (datetime(2026, 11, 23, 13, 30, tzinfo=timezone(timedelta(hours=1, minutes=30))), "2026-11-23T12:00:00Z"),
    ],
)
def test_timestamp_is_utc_with_z(moment: datetime, expected: str) -> None:
    assert format_timestamp(moment) == expected


def test_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        format_timestamp(datetime(2026, 11, 23, 12, 0, 0))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sequence": 0}, "sequence"),
        ({"sequence": True}, "sequence"),
        ({"previous": "AB" * 32}, "previous"),
        ({"previous": "ab"}, "previous"),
        ({"sequence": 1}, "empty for sequence 1"),
        ({"timestamp": "2026-11-23 12:00:00"}, "timestamp"),
        ({"timestamp": "2026-02-30T12:00:00Z"}, "not a valid date"),
        ({"last_checkpoint": {"size": 1}}, "last_checkpoint"),
        ({"last_checkpoint": {"size": -1, "root": "A" * 43 + "="}}, "size"),
        ({"last_checkpoint": {"size": 1, "root": "!!"}}, "base64"),
        ({"last_checkpoint": {"size": 1, "root": "AAAA"}}, "32-byte"),
    ],
)
def test_bad_chain_fields_are_refused_before_signing(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        statement(**overrides)


def test_predicate_must_not_carry_chain_fields_or_lack_a_node_id() -> None:
    with pytest.raises(ValueError, match="sequence"):
        build_statement({**predicate(), "sequence": 9}, subject_sha256=DIGEST, **CHAIN)
    with pytest.raises(ValueError, match=r"node\.id"):
        build_statement(predicate(id=""), subject_sha256=DIGEST, **CHAIN)


def test_a_float_in_the_predicate_is_refused_with_its_path() -> None:
    bad = predicate()
    bad["devices"][0]["pd"] = 19.45
    with pytest.raises(jcs.CanonicalJsonError, match=r"devices\[0\]\.pd"):
        jcs.canonical_bytes(statement() | {"predicate": bad})


def _mutated(path: list[Any], value: Any) -> dict[str, Any]:
    result = statement()
    target = result
    for part in path[:-1]:
        target = target[part]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return result


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (["_type"], "https://in-toto.io/Statement/v0.1", "statement-type"),
        (["predicateType"], "https://slsa.dev/provenance/v1", "predicate-type"),
        (["subject"], [], "statement-shape"),
        (["subject", 0, "name"], "node:other", "statement-shape"),
        (["subject", 0, "digest"], {"sha512": "ab"}, "statement-shape"),
        (["predicate", "sequence"], KeyError, "statement-shape"),
        (["predicate", "devices"], {}, "statement-shape"),
        (["predicate", "node"], KeyError, "statement-shape"),
        (["predicate"], [], "statement-shape"),
    ],
)
def test_check_statement_names_each_problem(path: list[Any], value: Any, reason: str) -> None:
    problems = check_statement(_mutated(path, value))
    assert reason in {r for r, _ in problems}


def test_jcs_strict_parsing() -> None:
    assert jcs.loads_strict(b'{"a":[1,"x"]}') == {"a": [1, "x"]}
    for bad in (b'{"a":1,"a":2}', b'{"a":NaN}', b'{"a":1.5}', b"\xff", b"{"):
        with pytest.raises(jcs.CanonicalJsonError):
            jcs.loads_strict(bad)
    assert jcs.is_canonical(b'{"a":1,"b":"\xc3\xa9"}')
    assert not jcs.is_canonical(b'{"b":1,"a":2}')
    assert not jcs.is_canonical(b'{"a": 1}')
    assert not jcs.is_canonical(b'{"a":"\\u00e9"}')


_DIGITS = st.sampled_from("0123456789") | st.sampled_from("٢٣९")  # ASCII, and digits strptime's \d also takes
_PARTS = {"sep": st.sampled_from("-:T Z/+"), "width": st.integers(1, 3)}


@st.composite
def _timestamps(draw: st.DrawFn) -> str:
    """YYYY-MM-DDTHH:MM:SSZ-shaped text: valid, out-of-range fields, wrong separators, lengths and digits."""
    fields = [draw(st.text(_DIGITS, min_size=n - 1, max_size=n + 1)) for n in (4, 2, 2, 2, 2, 2)]
    if draw(st.booleans()):
        fields = [draw(st.text(st.sampled_from("0123456789"), min_size=n, max_size=n)) for n in (4, 2, 2, 2, 2, 2)]
    seps = [draw(st.sampled_from(["-", "-", "T", ":", ":", "Z"]) | _PARTS["sep"]) for _ in range(6)]
    if draw(st.booleans()):
        seps = ["-", "-", "T", ":", ":", "Z"]
    return "".join(f + s for f, s in zip(fields, seps, strict=True))


def _strptime(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, TIMESTAMP_FORMAT)
    except ValueError:
        return None


@settings(max_examples=2000, deadline=None)
@given(_timestamps())
def test_parse_timestamp_reads_exactly_what_strptime_reads(text: str) -> None:
    try:
        parsed: datetime | None = parse_timestamp(text)
    except ValueError:
        parsed = None
    assert parsed == _strptime(text)


@pytest.mark.parametrize(
    "text",
    ["2026-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:00:60Z",
     "0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "٢٠٢٦-01-01T00:00:00Z", "2026-01-01T00:00:00+"],
)  # fmt: skip
def test_parse_timestamp_edges(text: str) -> None:
    try:
        parsed: datetime | None = parse_timestamp(text)
    except ValueError:
        parsed = None
    assert parsed == _strptime(text)
