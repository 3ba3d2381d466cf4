"""C2SP signed notes (c2sp.org/signed-note): keys, signing, parsing and verification.

Why our own: the log's checkpoints and the witnesses' cosignatures must be checkable by independent tools
(Go's golang.org/x/mod/sumdb/note, the transparency-dev witnesses), so the bytes follow the spec exactly: the
note text ends in a newline, one blank line, then signature lines `— <name> <base64(key id ‖ signature)>`.
Two signature types are supported: 0x01 Ed25519 over the text (the log's key), and 0x04 timestamped Ed25519
cosignatures over `cosignature/v1\\ntime <t>\\n` + text (c2sp.org/tlog-cosignature, the witnesses' keys). A
key is a name, a 4-byte id = SHA-256(name ‖ 0x0A ‖ type ‖ public key)[:4], a type and 32 bytes; the id is an
identifier only, so a signature line is matched to a key by name *and* id and then verified.

Hostile input: a note is at most MAX_NOTE_BYTES and MAX_SIGNATURES lines, valid UTF-8 without control
characters other than newline; base64 must be canonical. Every refusal is a NoteError naming what failed.
Standard library and `cryptography` only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from gpucensus.common.errors import GpucensusError

ED25519 = 0x01  # signed-note Ed25519 signature over the note text
COSIGNATURE_V1 = 0x04  # tlog-cosignature: timestamped Ed25519 over "cosignature/v1\ntime <t>\n" + text
SUPPORTED_TYPES = {ED25519: "Ed25519", COSIGNATURE_V1: "Ed25519 cosignature/v1"}
MAX_NOTE_BYTES = 64 * 1024
MAX_SIGNATURES = 100  # the spec asks verifiers to accept at least 16
MAX_TIMESTAMP = 2**63 - 1
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
SIGNER_PREFIX = "PRIVATE+KEY+"  # golang.org/x/mod/sumdb/note's signer key encoding


class NoteError(GpucensusError):
    """A note, key or signature is malformed or does not verify."""


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as err:
        raise NoteError(f"{what} is not base64") from err
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError(f"{what} is not canonical base64")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def check_name(name: str) -> str:
    """A key name: non-empty, no Unicode space, no '+' (signed-note §Format)."""
    if not isinstance(name, str) or not name or "+" in name or any(c.isspace() for c in name):
        raise NoteError(f"key name {name!r} is not valid (non-empty, no spaces, no '+')")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise NoteError(f"key name {name!r} contains control characters")
    return name


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """SHA-256(name ‖ 0x0A ‖ type ‖ public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def _check_type(sig_type: int) -> None:
    if sig_type not in SUPPORTED_TYPES:
        raise NoteError(f"signature type 0x{sig_type:02x} is not supported (0x01 Ed25519, 0x04 cosignature/v1)")


def cosigned_message(text: bytes, timestamp: int) -> bytes:
    """What a tlog-cosignature/v1 Ed25519 signature covers."""
    return b"cosignature/v1\ntime %d\n" % timestamp + text


@dataclass(frozen=True)
class VerifierKey:
    """A public key as a vkey string `<name>+<hex id>+<base64(type ‖ key)>`."""

    name: str
    sig_type: int
    public_key: bytes  # 32 raw Ed25519 bytes

    def __post_init__(self) -> None:
        check_name(self.name)
        _check_type(self.sig_type)
        if len(self.public_key) != 32:
            raise NoteError(f"an Ed25519 public key is 32 bytes, not {len(self.public_key)}")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.sig_type, self.public_key)

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        parts = text.strip().split("+", 2) if isinstance(text, str) else []
        if len(parts) != 3:
            raise NoteError("a verifier key is <name>+<8 hex digits>+<base64 key>")
        name, hex_id, b64 = parts
        check_name(name)
        if len(hex_id) != 8 or any(c not in "0123456789abcdef" for c in hex_id):
            raise NoteError(f"verifier key id {hex_id!r} is not 8 lowercase hex digits")
        raw = _b64decode(b64, "verifier key material")
        if not raw:
            raise NoteError("verifier key material is empty")
        key = cls(name, raw[0], raw[1:])
        if key.key_id.hex() != hex_id:
            raise NoteError(f"verifier key id {hex_id} does not match its name and key ({key.key_id.hex()})")
        return key

    @classmethod
    def from_ed25519(cls, name: str, public_key: Ed25519PublicKey, sig_type: int = ED25519) -> VerifierKey:
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(name, sig_type, raw)

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([self.sig_type]) + self.public_key)}"

    def ed25519(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.public_key)

    def verify(self, text: bytes, signature: bytes) -> int | None:
        """Raise NoteError unless `signature` (without the key id) signs `text`; the cosignature's timestamp."""
        timestamp = None
        message = text
        if self.sig_type == COSIGNATURE_V1:
            if len(signature) != 8 + 64:
                raise NoteError(f"cosignature by {self.name} is {len(signature)} bytes, not 72")
            timestamp = int.from_bytes(signature[:8], "big")
            if timestamp > MAX_TIMESTAMP:
                raise NoteError(f"cosignature by {self.name} has a timestamp beyond 2^63-1")
            message, signature = cosigned_message(text, timestamp), signature[8:]
        elif len(signature) != 64:
            raise NoteError(f"signature by {self.name} is {len(signature)} bytes, not 64")
        try:
            self.ed25519().verify(signature, message)
        except InvalidSignature as err:
            raise NoteError(f"signature by {self.name}+{self.key_id.hex()} does not verify") from err
        return timestamp


@dataclass(frozen=True)
class SignerKey:
    """A private key as `PRIVATE+KEY+<name>+<hex id>+<base64(type ‖ 32-byte seed)>` (x/mod's encoding)."""

    name: str
    sig_type: int
    private_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        check_name(self.name)
        _check_type(self.sig_type)

    @classmethod
    def generate(cls, name: str, sig_type: int = ED25519) -> SignerKey:
        return cls(name, sig_type, Ed25519PrivateKey.generate())

    @classmethod
    def parse(cls, text: str) -> SignerKey:
        text = text.strip() if isinstance(text, str) else ""
        if not text.startswith(SIGNER_PREFIX):
            raise NoteError(f"a signer key starts with {SIGNER_PREFIX}")
        parts = text[len(SIGNER_PREFIX) :].split("+", 2)
        if len(parts) != 3:
            raise NoteError("a signer key is PRIVATE+KEY+<name>+<8 hex digits>+<base64 seed>")
        name, hex_id, b64 = parts
        raw = _b64decode(b64, "signer key material")
        if len(raw) != 33:
            raise NoteError("signer key material is not a type byte and a 32-byte Ed25519 seed")
        key = cls(name, raw[0], Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if key.verifier().key_id.hex() != hex_id:
            raise NoteError(f"signer key id {hex_id!r} does not match its name and key")
        return key

    def __str__(self) -> str:
        seed = self.private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return f"{SIGNER_PREFIX}{self.name}+{self.verifier().key_id.hex()}+{_b64(bytes([self.sig_type]) + seed)}"

    def __repr__(self) -> str:  # never print the seed by accident
        return f"SignerKey({self.verifier()})"

    def verifier(self) -> VerifierKey:
        return VerifierKey.from_ed25519(self.name, self.private_key.public_key(), self.sig_type)

    def sign(self, text: bytes, timestamp: int | None = None) -> Signature:
        """A signature line over the note text; a cosigner key needs the POSIX `timestamp` it vouches at."""
        if self.sig_type == COSIGNATURE_V1:
            if timestamp is None or not 0 <= timestamp <= MAX_TIMESTAMP:
                raise NoteError("a cosignature needs a timestamp in 0..2^63-1")
            raw = timestamp.to_bytes(8, "big") + self.private_key.sign(cosigned_message(text, timestamp))
        else:
            raw = self.private_key.sign(text)
        return Signature(self.name, self.verifier().key_id, raw)


@dataclass(frozen=True)
class Signature:
    """One signature line: who (name, key id) and the signature bytes after the key id."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{SIGNATURE_PREFIX}{self.name} {_b64(self.key_id + self.signature)}\n"


@dataclass(frozen=True)
class Note:
    """A parsed note: its text (ending in a newline) and its signature lines, none verified yet."""

    text: str
    signatures: tuple[Signature, ...]

    def format(self) -> bytes:
        return (self.text + "\n" + "".join(s.line() for s in self.signatures)).encode("utf-8")

    def with_signatures(self, extra: Iterable[Signature]) -> Note:
        """This note plus `extra`, a signature by the same (name, key id) replacing the old one."""
        added = list(extra)
        replaced = {(s.name, s.key_id) for s in added}
        kept = [s for s in self.signatures if (s.name, s.key_id) not in replaced]
        return Note(self.text, tuple(kept + added))

    def verify(self, known: Sequence[VerifierKey]) -> list[tuple[VerifierKey, int | None]]:
        """The known keys whose signatures verify (each with its cosignature timestamp). Unknown signatures are
        ignored; a known key's bad signature is an error; so is no known signature at all."""
        by_id = {(k.name, k.key_id): k for k in known}
        verified: dict[tuple[str, bytes], tuple[VerifierKey, int | None]] = {}
        text = self.text.encode("utf-8")
        for sig in self.signatures:
            key = by_id.get((sig.name, sig.key_id))
            if key is None or (sig.name, sig.key_id) in verified:
                continue
            verified[(sig.name, sig.key_id)] = (key, key.verify(text, sig.signature))
        if not verified:
            names = ", ".join(f"{k.name}+{k.key_id.hex()}" for k in known) or "none given"
            raise NoteError(f"the note carries no signature by a known key ({names})")
        return list(verified.values())


def _check_text(data: bytes) -> str:
    if len(data) > MAX_NOTE_BYTES:
        raise NoteError(f"note is {len(data)} bytes, more than {MAX_NOTE_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise NoteError("note is not valid UTF-8") from err
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("note contains control characters other than newline")
    return text


def parse_note(data: bytes) -> Note:
    """Split a signed note into text and signature lines (no verification: see Note.verify)."""
    text = _check_text(data)
    split = text.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    body, lines = text[: split + 1], text[split + 2 :]
    if not lines or not lines.endswith("\n"):
        raise NoteError("note has no signature lines, or they do not end in a newline")
    signatures = []
    for number, line in enumerate(lines[:-1].split("\n"), start=1):
        if number > MAX_SIGNATURES:
            raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")
        signatures.append(parse_signature_line(line, f"signature line {number}"))
    return Note(body, tuple(signatures))


def parse_signature_line(line: str, what: str = "signature line") -> Signature:
    """One `— <name> <base64>` line (a trailing newline allowed), e.g. a cosignature a witness sent back."""
    line = line.removesuffix("\n")
    if "\n" in line or any(ord(c) < 0x20 for c in line):
        raise NoteError(f"{what} is not one line of text")
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteError(f"{what} does not start with an em dash and a space")
    name, _, b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
    check_name(name)
    raw = _b64decode(b64, what)
    if len(raw) < 5:
        raise NoteError(f"{what} is too short for a key id and a signature")
    return Signature(name, raw[:4], raw[4:])


def sign_note(text: str, signers: Sequence[SignerKey], timestamp: int | None = None) -> bytes:
    """A signed note of `text` (which must end in a newline) signed by every signer."""
    if not text.endswith("\n"):
        raise NoteError("note text must end in a newline")
    _check_text(text.encode("utf-8"))
    data = text.encode("utf-8")
    return Note(text, tuple(s.sign(data, timestamp) for s in signers)).format()


def open_note(data: bytes, known: Sequence[VerifierKey]) -> tuple[Note, list[tuple[VerifierKey, int | None]]]:
    """Parse and verify: the note and the known keys that signed it."""
    note = parse_note(data)
    return note, note.verify(known)


# --- c2sp.org/tlog-checkpoint and c2sp.org/tlog-cosignature ---------------------------------------------------

MAX_TREE_SIZE = 2**63 - 1


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head as the text of a signed note: origin, decimal size, base64 root, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise NoteError("checkpoint origin must be one non-empty line")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 0 <= self.size <= MAX_TREE_SIZE:
            raise NoteError(f"checkpoint size {self.size!r} is not an integer 0..2^63-1")
        if len(self.root_hash) != 32:
            raise NoteError(f"checkpoint root hash is {len(self.root_hash)} bytes, not 32")
        if any(not line or "\n" in line for line in self.extensions):
            raise NoteError("checkpoint extension lines must be non-empty single lines")

    def body(self) -> str:
        return "".join(f"{line}\n" for line in (self.origin, str(self.size), _b64(self.root_hash), *self.extensions))

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """The checkpoint in a note's text (exactly as tlog-checkpoint lays it out)."""
        if not text.endswith("\n"):
            raise NoteError("checkpoint text must end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError("checkpoint needs an origin, a size and a root hash line")
        origin, size, root, *extensions = lines
        if not size.isascii() or not size.isdigit() or (size != "0" and size.startswith("0")) or len(size) > 19:
            raise NoteError(f"checkpoint size {size[:40]!r} is not a decimal number without leading zeros")
        return cls(origin, int(size), _b64decode(root, "checkpoint root hash"), tuple(extensions))

    def sign(self, signers: Sequence[SignerKey]) -> bytes:
        return sign_note(self.body(), signers)


def open_checkpoint(data: bytes, log_key: VerifierKey) -> tuple[Checkpoint, Note]:
    """Verify a signed checkpoint with the log's key and parse it. The origin is not required to equal the key
    name (the spec says SHOULD): a caller that pins an origin compares it."""
    note = parse_note(data)
    note.verify([log_key])
    return Checkpoint.parse(note.text), note


def cosign(note: Note, cosigner: SignerKey, timestamp: int) -> Signature:
    """A tlog-cosignature/v1 over the checkpoint in `note` (verify the log's signature and consistency first)."""
    if cosigner.sig_type != COSIGNATURE_V1:
        raise NoteError(f"cosigner key {cosigner.name} is not a cosignature/v1 key (type 0x04)")
    Checkpoint.parse(note.text)
    return cosigner.sign(note.text.encode("utf-8"), timestamp)


def verify_cosignature(note: Note, cosigner: VerifierKey) -> int:
    """The timestamp of `cosigner`'s valid cosignature on `note`; NoteError if it has none or a bad one."""
    if cosigner.sig_type != COSIGNATURE_V1:
        raise NoteError(f"key {cosigner.name} is not a cosignature/v1 key (type 0x04)")
    [(_, timestamp)] = note.verify([cosigner])
    assert timestamp is not None  # a type 0x04 key always yields one
    return timestamp
