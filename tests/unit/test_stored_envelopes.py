"""Envelopes stored compressed (`collector.store.envelopes`): every encoding gives back the exact bytes received,
whatever their form, and a hostile or damaged stored value (garbage, truncated, trailing bytes, a decompression
bomb, an unknown encoding) is a StoreError naming the row, never another exception or unbounded memory."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import zlib
from pathlib import Path

import pytest
from gpucensus.agent.attest import sign_predicate
from gpucensus.collector.errors import StoreError
from gpucensus.collector.store import envelopes
from hypothesis import given
from hypothesis import strategies as st

from tests.ingest_nodes import mock_predicate
from tests.unit.attest_fixtures import new_key, signed_chain

GENUINE = signed_chain(new_key(), 1)[0]


def _respelled(envelope: bytes, **changes: object) -> bytes:
    obj = json.loads(envelope)
    obj.update(changes)
    return json.dumps(obj, indent=1).encode()


def test_a_signed_envelope_is_stored_with_its_payload_out_of_base64_and_comes_back_exactly() -> None:
    codec, stored = envelopes.encode(GENUINE)
    assert codec == envelopes.DSSE_ZLIB
    assert len(stored) < len(zlib.compress(GENUINE)) < len(GENUINE)  # better than zlib of the base64 form
    assert envelopes.decode(codec, stored, "here") == GENUINE


@pytest.mark.parametrize(
    "envelope",
    [
        _respelled(GENUINE),  # other spacing: still split, rebuilt byte for byte
        GENUINE.replace(b'"payload":"', b'"payload" :  "'),
        GENUINE.replace(b"/", b"\\/"),  # a JSON escape inside the base64: not split, zlib of the bytes
        _respelled(GENUINE, payload=json.loads(GENUINE)["payload"].rstrip("=")),  # unpadded base64: not canonical
        _respelled(GENUINE, payload=base64.urlsafe_b64encode(b"x" * 3000).decode()),
        b"\x00\xff{not json at all" * 50,
        b"{}",  # too small to shrink: stored as received
        b"",
    ],
)
def test_every_form_of_envelope_comes_back_byte_for_byte(envelope: bytes) -> None:
    codec, stored = envelopes.encode(envelope)
    assert envelopes.decode(codec, stored, "here") == envelope
    assert len(stored) <= len(envelope)
    if codec == envelopes.RAW:
        assert stored == envelope


@given(st.binary(max_size=3000), st.booleans())
def test_any_bytes_come_back_exactly(data: bytes, as_payload: bool) -> None:
    envelope = _respelled(GENUINE, payload=base64.b64encode(data).decode()) if as_payload else data
    codec, stored = envelopes.encode(envelope)
    assert envelopes.decode(codec, stored, "here") == envelope


def _bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9)
    chunk = b"\0" * (1 << 20)
    return b"".join(compressor.compress(chunk) for _ in range(size >> 20)) + compressor.flush()


@pytest.mark.parametrize(
    ("codec", "stored", "says"),
    [
        (envelopes.ZLIB, b"not zlib at all", "does not decompress"),
        (envelopes.ZLIB, zlib.compress(GENUINE)[:-9], "truncated"),
        (envelopes.ZLIB, zlib.compress(GENUINE) + b"junk", "trailing"),
        (envelopes.DSSE_ZLIB, zlib.compress(b"\0\0"), "header is truncated"),
        (envelopes.DSSE_ZLIB, zlib.compress(struct.pack(">II", 10, 2**31) + b"short"), "lengths exceed"),
        (7, b"{}", "unknown encoding"),
    ],
)
def test_a_damaged_stored_envelope_is_a_store_error_naming_the_row(codec: int, stored: bytes, says: str) -> None:
    with pytest.raises(StoreError, match=says) as caught:
        envelopes.decode(codec, stored, "k-fra1#3")
    assert "k-fra1#3" in caught.value.message


@pytest.mark.parametrize("codec", [envelopes.ZLIB, envelopes.DSSE_ZLIB])
def test_a_decompression_bomb_stops_at_the_bound(monkeypatch: pytest.MonkeyPatch, codec: int) -> None:
    monkeypatch.setattr(envelopes, "MAX_DECODED", 4 << 20)
    bomb = _bomb(64 << 20)  # 64 MiB of zeros in about 64 KB
    assert len(bomb) < 100_000
    with pytest.raises(StoreError, match="more than 4194304 bytes"):
        envelopes.decode(codec, bomb, "k#1")


def test_an_envelope_over_the_bound_is_stored_as_received(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envelopes, "MAX_DECODED", 1000)
    big = _respelled(GENUINE)
    assert envelopes.encode(big) == (envelopes.RAW, big)


@given(st.data())
def test_a_mutated_stored_value_decodes_exactly_or_is_a_store_error(data: st.DataObject) -> None:
    codec, stored = envelopes.encode(GENUINE)
    mutated = bytearray(stored)
    for _ in range(data.draw(st.integers(1, 4))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    try:
        decoded = envelopes.decode(codec, bytes(mutated[:cut] if data.draw(st.booleans()) else mutated), "k#1")
    except StoreError:
        return
    assert isinstance(decoded, bytes)  # zlib's checksum almost always catches it; a miss is still only bytes


def test_the_dictionary_is_the_pinned_one_and_another_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # rows compressed with the dictionary decode only with it: editing it would make them unreadable
    shipped = (Path(envelopes.__file__).parent / envelopes.DICTIONARY).read_bytes()
    assert hashlib.sha256(shipped).hexdigest() == envelopes.DICTIONARY_SHA256
    monkeypatch.setattr(envelopes, "DICTIONARY_SHA256", "0" * 64)
    envelopes._dictionary.cache_clear()
    try:
        with pytest.raises(StoreError, match="is not the one"):
            envelopes.decode(envelopes.DSSE_ZLIB, envelopes.encode(GENUINE)[1], "k#1")
    finally:
        envelopes._dictionary.cache_clear()


def test_an_eight_gpu_envelope_is_stored_in_a_tenth_of_its_size() -> None:
    envelope = sign_predicate(mock_predicate("node-x", "dgx-h100"), new_key(), sequence=7, previous="ab" * 32,
                              timestamp="2026-11-30T03:00:00Z")  # fmt: skip
    codec, stored = envelopes.encode(envelope)
    assert codec == envelopes.DSSE_ZLIB and len(stored) < len(envelope) / 10
    assert envelopes.decode(codec, stored, "here") == envelope
