"""Chain state: numbers persisted before signing, never reused; corrupted state is an error naming the file."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from gpucensus.agent import attest as attest_module
from gpucensus.agent.attest import attest, statement_payload
from gpucensus.agent.chain import STATE_FILE, ChainStore, _parse
from gpucensus.agent.keys import key_id
from gpucensus.common.dsse import envelope_digest, parse_envelope
from gpucensus.common.durable import atomic_write
from gpucensus.common.errors import StateError
from gpucensus.common.verify import check_chains, verify_envelope
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.attest_fixtures import fixed_clock, new_key, predicate


def _statement(envelope: bytes) -> dict:
    return json.loads(parse_envelope(envelope).payload)["predicate"]


def _store(tmp_path: Path, key) -> ChainStore:
    return ChainStore(tmp_path / "state", key_id(key.public_key()))


def test_first_attestation_is_sequence_1_and_each_links_to_the_one_before(tmp_path: Path) -> None:
    key = new_key()
    store = _store(tmp_path, key)
    results = [attest(predicate(), key, store, fixed_clock) for _ in range(3)]
    assert [r.sequence for r in results] == [1, 2, 3]
    assert _statement(results[0].envelope)["previous"] == ""
    assert _statement(results[1].envelope)["previous"] == envelope_digest(results[0].envelope)
    assert _statement(results[2].envelope)["previous"] == results[1].digest
    assert _statement(results[2].envelope)["timestamp"] == "2026-11-23T12:00:00Z"
    state = store.load()
    assert (state.next_sequence, state.previous) == (4, results[2].digest)
    verified = [verify_envelope(r.envelope, key.public_key()).verified for r in results]
    assert check_chains(verified) == []


def test_sequence_is_persisted_before_signing_so_a_crash_leaves_a_gap_not_a_reuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key()
    store = _store(tmp_path, key)
    first = attest(predicate(), key, store, fixed_clock)

    def crash(payload: bytes, private_key) -> bytes:
        on_disk = json.loads(store.path.read_text())
        assert on_disk["next_sequence"] == 3  # sequence 2 is already used up, durably
        raise KeyboardInterrupt("power cut while signing")

    monkeypatch.setattr(attest_module, "sign_payload", crash)
    with pytest.raises(KeyboardInterrupt):
        attest(predicate(), key, store, fixed_clock)
    monkeypatch.undo()
    after = attest(predicate(), key, store, fixed_clock)
    assert after.sequence == 3
    assert _statement(after.envelope)["previous"] == first.digest  # nothing was signed in between
    verified = [verify_envelope(e, key.public_key()).verified for e in (first.envelope, after.envelope)]
    assert [f.reason for f in check_chains(verified)] == ["gap"]


def test_a_predicate_that_cannot_be_signed_does_not_use_a_number(tmp_path: Path) -> None:
    key = new_key()
    store = _store(tmp_path, key)
    bad = predicate()
    bad["totals"]["pd"] = 1.5
    with pytest.raises(ValueError, match="float"):
        attest(bad, key, store, fixed_clock)
    assert attest(predicate(), key, store, fixed_clock).sequence == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not JSON"),
        (b"{truncated", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "not a format-1"),
        (b'{"format": 1, "next_sequence": "7", "previous": "", "last_checkpoint": {}}', "next_sequence"),
        (b'{"format": 1, "next_sequence": 0, "previous": "", "last_checkpoint": {}}', "next_sequence"),
        (b'{"format": 1, "next_sequence": 3, "previous": "xyz", "last_checkpoint": {}}', "previous"),
        (b'{"format": 1, "next_sequence": 3, "previous": "", "last_checkpoint": []}', "last_checkpoint"),
    ],
)
def test_corrupted_state_is_an_error_naming_the_file_and_is_left_alone(
    tmp_path: Path, content: bytes, message: str
) -> None:
    key = new_key()
    store = _store(tmp_path, key)
    store.directory.mkdir()
    store.path.write_bytes(content)
    with pytest.raises(StateError) as caught:
        attest(predicate(), key, store, fixed_clock)
    assert str(store.path) in caught.value.message and message in caught.value.message
    assert "do not delete" in caught.value.hint
    assert store.path.read_bytes() == content  # never silently reset


def test_state_of_another_key_is_refused(tmp_path: Path) -> None:
    key, other = new_key(), new_key()
    attest(predicate(), key, _store(tmp_path, key), fixed_clock)
    with pytest.raises(StateError, match="belongs to key"):
        attest(predicate(), other, _store(tmp_path, other), fixed_clock)


def test_concurrent_attest_runs_never_share_a_number(tmp_path: Path) -> None:
    key = new_key()
    results = []

    def run() -> None:
        store = _store(tmp_path, key)  # separate store objects, as separate processes would have
        results.extend(attest(predicate(), key, store, fixed_clock) for _ in range(8))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.sequence for r in results) == list(range(1, 25))
    verified = [verify_envelope(r.envelope, key.public_key()).verified for r in results]
    assert check_chains(verified) == []


def test_checkpoint_recorded_goes_into_the_next_statement(tmp_path: Path) -> None:
    key = new_key()
    store = _store(tmp_path, key)
    attest(predicate(), key, store, fixed_clock)
    store.record_checkpoint({"size": 5, "root": "A" * 43 + "="})
    second = attest(predicate(), key, store, fixed_clock)
    assert _statement(second.envelope)["last_checkpoint"] == {"size": 5, "root": "A" * 43 + "="}
    assert store.load().next_sequence == 3


def test_atomic_write_never_overwrites_when_asked_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write(target, b"first", mode=0o644, overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_write(target, b"second", overwrite=False)
    assert target.read_bytes() == b"first"
    atomic_write(target, b"third")
    assert target.read_bytes() == b"third"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_state_file_is_readable_json(tmp_path: Path) -> None:
    key = new_key()
    store = _store(tmp_path, key)
    result = attest(predicate(), key, store, fixed_clock)
    document = json.loads((store.directory / STATE_FILE).read_text())
    assert document == {
        "format": 1,
        "keyid": result.keyid,
        "next_sequence": 2,
        "previous": result.digest,
        "last_checkpoint": {},
    }


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=4,
)
_FIELD_VALUES = {
    "next_sequence": st.integers(min_value=-2, max_value=2**64) | st.floats(allow_nan=False) | _JSON,
    "previous": st.sampled_from(["", "a" * 64, "A" * 64, "a" * 63]) | _JSON,
    "last_checkpoint": st.fixed_dictionaries(
        {
            "size": st.integers(min_value=-2, max_value=2**64) | st.floats(allow_nan=False) | _JSON,
            "root": st.sampled_from(["A" * 43 + "=", "A" * 44, "not base64", ""]) | _JSON,
        }
    )
    | _JSON,
    "spool": st.sampled_from(["", "0" * 32, "0" * 31]) | _JSON,
    "format": st.just(1) | _JSON,
}


@pytest.mark.fuzz
@given(changes=st.dictionaries(st.sampled_from(sorted(_FIELD_VALUES)), st.none(), max_size=5).flatmap(
    lambda keys: st.fixed_dictionaries({k: _FIELD_VALUES[k] for k in keys})
))  # fmt: skip
def test_a_chain_state_that_loads_can_always_be_signed_with(changes: dict) -> None:
    """Whatever chain.json holds: StateError at load, or a state every round can sign with (never a round
    that fails after start-up)."""
    key = _FUZZ_KEY
    document = {"format": 1, "keyid": key_id(key.public_key()), "next_sequence": 2, "previous": "b" * 64,
                "last_checkpoint": {}} | changes  # fmt: skip
    try:
        state = _parse(Path("chain.json"), json.dumps(document).encode(), key_id(key.public_key()))
    except StateError:
        return
    statement_payload(
        predicate(),
        key.public_key(),
        sequence=state.next_sequence,
        previous=state.previous,
        timestamp="2026-01-01T00:00:00Z",
        last_checkpoint=state.last_checkpoint,
    )
    assert 1 <= state.next_sequence < 2**63


_FUZZ_KEY = new_key()
