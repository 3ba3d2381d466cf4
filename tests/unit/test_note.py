"""common.note against the published examples (tests/vectors/note/), then our own round trips and the ways a
hostile or damaged note, key or checkpoint must be refused."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest
from gpucensus.common import note
from gpucensus.common.merkle import MemoryTree
from gpucensus.common.note import Checkpoint, NoteError, SignerKey, VerifierKey
from hypothesis import given
from hypothesis import strategies as st

KNOWN = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "note" / "known_answers.json").read_text("utf-8"))
C2SP = KNOWN["c2sp_signed_note_example"]
COSIGNED = KNOWN["c2sp_cosigned_checkpoint_example"]
XMOD = KNOWN["x_mod_sumdb_note"]
ROOT = bytes(range(32))


# --- known answers ---------------------------------------------------------------------------------------------


def test_the_c2sp_example_note_verifies_with_its_vkey() -> None:
    vkey = VerifierKey.parse(C2SP["vkey"])
    parsed, signers = note.open_note(C2SP["note"].encode(), [vkey])
    assert parsed.text == "This is an example message.\n"
    assert signers == [(vkey, None)]
    assert str(vkey) == C2SP["vkey"] and vkey.key_id.hex() == "530d903a"


def test_the_x_mod_signer_key_signs_exactly_as_go_does() -> None:
    signer = SignerKey.parse(XMOD["skey"])
    assert str(signer.verifier()) == XMOD["vkey"]
    assert str(signer) == XMOD["skey"]
    assert note.sign_note(XMOD["text"], [signer]).decode() == XMOD["signed"]
    assert XMOD["skey"].rsplit("+", 1)[1] not in repr(signer)  # the seed never shows in a repr


def test_x_mod_open_one_known_and_one_unknown_signature() -> None:
    data = (XMOD["text"] + "\n" + XMOD["signed"].split("\n\n", 1)[1] + XMOD["other_signature_line"]).encode()
    peter, enoch = VerifierKey.parse(XMOD["vkey"]), VerifierKey.parse(XMOD["other_vkey"])
    parsed, signers = note.open_note(data, [peter])
    assert [key for key, _ in signers] == [peter] and len(parsed.signatures) == 2
    _, both = note.open_note(data, [peter, enoch])
    assert [key for key, _ in both] == [peter, enoch]
    with pytest.raises(NoteError, match="no signature by a known key"):
        note.open_note(data, [VerifierKey.parse(C2SP["vkey"])])


def test_every_mangling_of_a_vkey_is_refused() -> None:
    """As x/mod's TestNewVerifier: every proper substring and every single-byte change is refused."""
    vkey = XMOD["vkey"]
    VerifierKey.parse(vkey)
    for i in range(len(vkey) + 1):
        for j in range(i + 1, len(vkey) + 1):
            if (i, j) != (0, len(vkey)) and vkey[i:j].strip() != vkey:
                with pytest.raises(NoteError):
                    VerifierKey.parse(vkey[i:j])
    for i in range(len(vkey)):
        with pytest.raises(NoteError):
            VerifierKey.parse(vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1 :])


def test_every_single_byte_change_of_a_signer_key_is_refused() -> None:
    skey = XMOD["skey"]
    for i in range(len(skey)):
        with pytest.raises(NoteError):
            SignerKey.parse(skey[:i] + chr(ord(skey[i]) + 1) + skey[i + 1 :])


def test_the_c2sp_cosigned_checkpoint_parses_to_its_fields_and_timestamp() -> None:
    parsed = note.parse_note(COSIGNED["note"].encode())
    checkpoint = Checkpoint.parse(parsed.text)
    assert (checkpoint.origin, checkpoint.size) == (COSIGNED["origin"], COSIGNED["size"])
    assert base64.b64encode(checkpoint.root_hash).decode() == COSIGNED["root"]
    assert checkpoint.body() == parsed.text
    witness = parsed.signatures[1]
    assert witness.name == "witness.example.com/w1" and len(witness.signature) == 8 + 64
    assert int.from_bytes(witness.signature[:8], "big") == COSIGNED["cosignature_timestamp"]
    assert parsed.format().decode() == COSIGNED["note"]


# --- keys ------------------------------------------------------------------------------------------------------


def test_key_id_is_the_spec_hash() -> None:
    signer = SignerKey.generate("log.example/gpucensus")
    vkey = signer.verifier()
    expected = hashlib.sha256(b"log.example/gpucensus\n\x01" + vkey.public_key).digest()[:4]
    assert vkey.key_id == expected
    assert (
        str(vkey) == f"log.example/gpucensus+{expected.hex()}+" + base64.b64encode(b"\x01" + vkey.public_key).decode()
    )
    cosigner = SignerKey.generate("witness.example/w1", note.COSIGNATURE_V1)
    raw = cosigner.verifier().public_key
    assert cosigner.verifier().key_id == hashlib.sha256(b"witness.example/w1\n\x04" + raw).digest()[:4]
    assert VerifierKey.parse(str(cosigner.verifier())) == cosigner.verifier()
    assert SignerKey.parse(str(cosigner)).verifier() == cosigner.verifier()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "name"),
        ("a b+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "not valid"),
        ("example.com/foo+530D903A+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "lowercase hex"),
        ("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2", "base64"),
        ("example.com/foo+530d903a+", "empty"),
        ("example.com/foo+00000000+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "does not match"),
        ("example.com/foo+530d903a+BekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "not supported"),
        ("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv", "32 bytes"),
    ],
)
def test_malformed_vkeys_get_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        VerifierKey.parse(text)


# --- notes -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def log_key() -> SignerKey:
    return SignerKey.generate("log.example/gpucensus")


def test_round_trip_and_tampering(log_key: SignerKey) -> None:
    data = note.sign_note("hello\n\nworld\n", [log_key])  # the text may hold blank lines: the last one splits
    parsed, _ = note.open_note(data, [log_key.verifier()])
    assert parsed.text == "hello\n\nworld\n" and parsed.format() == data
    with pytest.raises(NoteError, match="does not verify"):
        note.open_note(data.replace(b"world", b"World"), [log_key.verifier()])


def test_a_known_key_with_a_bad_signature_fails_even_beside_a_good_one(log_key: SignerKey) -> None:
    other = SignerKey.generate("other.example/k")
    good = note.parse_note(note.sign_note("text\n", [log_key, other]))
    bad_sig = note.Signature(other.name, other.verifier().key_id, b"\0" * 64)
    damaged = good.with_signatures([bad_sig])
    assert len(damaged.signatures) == 2  # replaced, not appended
    damaged.verify([log_key.verifier()])  # other's signature is unknown here: ignored
    with pytest.raises(NoteError, match=r"other\.example/k.*does not verify"):
        damaged.verify([log_key.verifier(), other.verifier()])


def test_a_signature_from_a_key_sharing_only_the_name_is_ignored(log_key: SignerKey) -> None:
    impostor = SignerKey.generate(log_key.name)
    data = note.sign_note("text\n", [impostor, log_key])
    _, signers = note.open_note(data, [log_key.verifier()])
    assert [key for key, _ in signers] == [log_key.verifier()]
    with pytest.raises(NoteError, match="no signature by a known key"):
        note.open_note(note.sign_note("text\n", [impostor]), [log_key.verifier()])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("no blank line\n\u2014 x AAAAAAA=\n".encode(), "no blank line"),
        (b"text\n\n", "no signature lines"),
        ("text\n\n\u2014 a AAAAAAA=".encode(), "do not end in a newline"),
        (b"text\n\n- a AAAAAAA=\n", "em dash"),
        ("text\n\n\u2014 a+b AAAAAAA=\n".encode(), "not valid"),
        ("text\n\n\u2014 a AAAA\n".encode(), "too short"),
        ("text\n\n\u2014 a AAAAAA!=\n".encode(), "not base64"),
        ("text\n\n\u2014 a AAAAAAB=\n".encode(), "not canonical"),
        ("te\txt\n\n\u2014 a AAAAAAA=\n".encode(), "control characters"),
        (b"text \xff\n\n\xe2\x80\x94 a AAAAAAA=\n", "UTF-8"),
        (b"x" * (note.MAX_NOTE_BYTES + 1), "more than"),
        (("text\n\n" + "\u2014 a AAAAAAA=\n" * (note.MAX_SIGNATURES + 1)).encode(), "more than 100 signatures"),
    ],
)
def test_malformed_notes_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        note.parse_note(data)


def test_sign_refuses_text_without_final_newline(log_key: SignerKey) -> None:
    with pytest.raises(NoteError, match="end in a newline"):
        note.sign_note("text", [log_key])


# --- checkpoints and cosignatures ------------------------------------------------------------------------------


def test_checkpoint_round_trip(log_key: SignerKey) -> None:
    checkpoint = Checkpoint("log.example/gpucensus", 1234, ROOT, ("ext one",))
    data = checkpoint.sign([log_key])
    assert data.decode().startswith(f"log.example/gpucensus\n1234\n{base64.b64encode(ROOT).decode()}\next one\n\n")
    opened, _ = note.open_checkpoint(data, log_key.verifier())
    assert opened == checkpoint
    with pytest.raises(NoteError, match="no signature by a known key"):
        note.open_checkpoint(data, SignerKey.generate("x").verifier())
    assert Checkpoint.parse(Checkpoint("o", 0, ROOT).body()).size == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("o\n12\n", "needs an origin"),
        ("o\n012\n" + base64.b64encode(ROOT).decode() + "\n", "leading zeros"),
        ("o\n+12\n" + base64.b64encode(ROOT).decode() + "\n", "decimal"),
        ("o\n\u0661\n" + base64.b64encode(ROOT).decode() + "\n", "decimal"),  # an Arabic-Indic digit one
        ("o\n99999999999999999999\n" + base64.b64encode(ROOT).decode() + "\n", "decimal"),
        ("o\n1\n" + base64.b64encode(ROOT[:31]).decode() + "\n", "not 32"),
        ("\n1\n" + base64.b64encode(ROOT).decode() + "\n", "origin"),
        ("o\n1\n" + base64.b64encode(ROOT).decode() + "\n\n", "extension"),
        ("o\n1\n" + base64.b64encode(ROOT).decode(), "end in a newline"),
    ],
)
def test_malformed_checkpoints_are_refused(text: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        Checkpoint.parse(text)


def test_cosignature_round_trip_and_tampering(log_key: SignerKey) -> None:
    witness = SignerKey.generate("witness.example/w1", note.COSIGNATURE_V1)
    signed = note.parse_note(Checkpoint("log.example/gpucensus", 7, ROOT).sign([log_key]))
    line = note.cosign(signed, witness, 1_700_000_000)
    cosigned = note.parse_note(signed.with_signatures([line]).format())
    assert note.verify_cosignature(cosigned, witness.verifier()) == 1_700_000_000
    assert cosigned.verify([log_key.verifier()])  # the log's own signature still verifies beside it
    # the signed message is the spec's: header, time line, checkpoint body
    witness.verifier().ed25519().verify(line.signature[8:], b"cosignature/v1\ntime 1700000000\n" + signed.text.encode())
    later = line.signature[:7] + bytes([line.signature[7] ^ 1]) + line.signature[8:]
    with pytest.raises(NoteError, match="does not verify"):
        note.verify_cosignature(
            signed.with_signatures([note.Signature(line.name, line.key_id, later)]), witness.verifier()
        )
    with pytest.raises(NoteError, match="not a cosignature/v1 key"):
        note.cosign(signed, log_key, 1)
    with pytest.raises(NoteError, match="timestamp"):
        note.cosign(signed, witness, -1)
    with pytest.raises(NoteError, match="no signature by a known key"):
        note.verify_cosignature(signed, witness.verifier())
    # what a collector does with the line a witness sends back
    attached = signed.with_signatures([note.parse_signature_line(line.line())])
    assert note.verify_cosignature(attached, witness.verifier()) == 1_700_000_000


@pytest.mark.parametrize(
    "line", ["", "\u2014 w AAAAAAA=\n\u2014 w AAAAAAA=\n", "\u2014 w AAAA\n", "- w AAAAAAA=", "\u2014 w\tx AAAAAAA="]
)
def test_malformed_signature_lines_are_refused(line: str) -> None:
    with pytest.raises(NoteError):
        note.parse_signature_line(line)


def test_the_checkpoint_example_in_formats_md_verifies() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "formats.md").read_text(encoding="utf-8")
    section = text[text.index("## Checkpoints") :]
    example = re.search(r"^```text\n(.*?)^```", section, re.S | re.M).group(1)
    vkey = re.search(r"verifier key `([^`]+)`", section).group(1)
    checkpoint, _ = note.open_checkpoint(example.encode(), VerifierKey.parse(vkey))
    tree = MemoryTree()
    for i in range(15):
        tree.append(f"leaf {i}".encode())
    assert (checkpoint.origin, checkpoint.size, checkpoint.root_hash) == ("log.example/gpucensus", 15, tree.root())


# --- hostile input never escapes as anything but NoteError -------------------------------------------------

_SIGNER = SignerKey.generate("fuzz.example/log")
_NOTE_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=200)


@given(st.binary(max_size=400) | _NOTE_TEXT.map(lambda t: t.encode()))
def test_arbitrary_bytes_parse_or_raise_note_error(data: bytes) -> None:
    try:
        parsed = note.parse_note(data)
    except NoteError:
        return
    assert parsed.format() == data  # whatever parses, formats back to the same bytes
    with pytest.raises(NoteError):
        parsed.verify([_SIGNER.verifier()])  # and nobody forged our signature by chance


@given(st.lists(st.text(st.characters(min_codepoint=0x20, blacklist_categories=("Cs",)), min_size=1, max_size=30),
                min_size=1, max_size=6))  # fmt: skip
def test_any_clean_text_round_trips(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    data = note.sign_note(text, [_SIGNER])
    parsed, signers = note.open_note(data, [_SIGNER.verifier()])
    assert parsed.text == text and signers == [(_SIGNER.verifier(), None)]


@given(st.text(max_size=120))
def test_arbitrary_vkey_strings_parse_or_raise_note_error(text: str) -> None:
    try:
        key = VerifierKey.parse(text)
    except NoteError:
        return
    assert VerifierKey.parse(str(key)) == key
