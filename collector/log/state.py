"""What the log keeps OUTSIDE the database, beside each other in the data directory: the log's signing key and
the last checkpoint this collector signed (plus the witness cosignatures it was given for it).

Why outside: a database restored from an old backup must not be able to roll back the log's memory of what it
signed; the collector compares the database's tree with this file before every signature (`collector.log.log`).

- key file: one line, the signed-note signer key `PRIVATE+KEY+<name>+<id>+<base64>` (golang.org/x/mod/sumdb/note
  encoding), mode 0600, refused when group or others may read it (like the node keys). Generated on first use,
  linked into place (two collectors starting together end up with one key). Collectors sharing one database
  share one log, so they share this file (the same key material, copied), never one key each.
- checkpoint file: the signed note, verbatim, written atomically (temp file, fsync, rename, fsync of the
  directory). One per collector process.
- cosignatures file (`<checkpoint file>.cosigned`): the checkpoint with the witness cosignature lines
  `gpucensus-collector log cosign` accepted for it appended; served while it matches the current checkpoint.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from gpucensus.common import note
from gpucensus.common.durable import atomic_write, make_private_dirs, refuse_shared_private_key
from gpucensus.common.errors import ConfigError, KeyError_, StateError
from gpucensus.common.note import Checkpoint

log = logging.getLogger("gpucensus.collector.log")

MAX_FILE_BYTES = note.MAX_NOTE_BYTES


def default_name() -> str:
    """The name of a generated log key (and the default origin): `<host name>/gpucensus-log`."""
    host = "".join(c for c in socket.getfqdn() if c.isascii() and (c.isalnum() or c in ".-")) or "localhost"
    return f"{host}/gpucensus-log"


def _read(path: Path, what: str, error: type[Exception]) -> bytes | None:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise error(f"cannot read the {what} {path}: {err.strerror}") from err
    if len(data) > MAX_FILE_BYTES:
        raise error(f"the {what} {path} is larger than {MAX_FILE_BYTES} bytes: it is not one")
    return data


def load_or_create_key(path: Path, origin: str = "") -> note.SignerKey:
    """The log key in `path`, generated (named `origin`, else `default_name()`) if the file does not exist.

    KeyError_ (exit 4): unreadable, malformed, readable by group or others, or named other than `origin`."""
    data = _read(path, "log key", KeyError_)
    if data is None:
        key = note.SignerKey.generate(origin or default_name())
        make_private_dirs(path.parent)
        try:
            atomic_write(path, f"{key}\n".encode("ascii"), mode=0o600, overwrite=False)
        except FileExistsError:
            return load_or_create_key(path, origin)  # another collector created it meanwhile: use that one
        except OSError as err:
            raise KeyError_(f"cannot write the log key {path}: {err.strerror}") from err
        log.warning("generated a new transparency log key %s: %s", path, key.verifier())
        return key
    refuse_shared_private_key(path, path.stat(), "the log key")
    try:
        key = note.SignerKey.parse(data.decode("ascii"))
    except (UnicodeDecodeError, note.NoteError) as err:
        raise KeyError_(
            f"the log key {path} is not a signed-note signer key: {getattr(err, 'message', err)}",
            hint="restore it from a backup (PRIVATE+KEY+<name>+<id>+<base64>); without it the log cannot sign",
        ) from err
    if key.sig_type != note.ED25519:
        raise KeyError_(f"the log key {path} is not an Ed25519 signed-note key")
    if origin and key.name != origin:
        raise ConfigError(
            f"[log] origin {origin!r} is not the name of the log key {path} ({key.name!r})",
            hint="the origin is fixed when the key is generated: remove [log] origin or set it to the key's name",
        )
    return key


@dataclass(frozen=True)
class Signed:
    """A checkpoint this collector signed: the note and what it says."""

    note: bytes
    checkpoint: Checkpoint


def sign(key: note.SignerKey, size: int, root: bytes) -> Signed:
    checkpoint = Checkpoint(key.name, size, root)
    return Signed(checkpoint.sign([key]), checkpoint)


def open_signed(data: bytes, key: note.SignerKey, what: str) -> Signed:
    """The checkpoint in `data`, which must be signed by `key`; StateError naming `what` otherwise."""
    try:
        checkpoint, _ = note.open_checkpoint(data, key.verifier())
    except note.NoteError as err:
        raise StateError(f"{what} is not a checkpoint signed by this log's key: {err.message}") from err
    if checkpoint.origin != key.name:
        raise StateError(f"{what} is for the log {checkpoint.origin!r}, not {key.name!r}")
    return Signed(data, checkpoint)


def load_checkpoint(path: Path, key: note.SignerKey) -> Signed | None:
    """The last checkpoint signed, or None if the file does not exist (a new log). StateError (exit 5) if it
    cannot be read or is not a checkpoint signed by `key`: the collector must not sign without it."""
    data = _read(path, "checkpoint file", StateError)
    if data is None:
        return None
    try:
        return open_signed(data, key, f"the checkpoint file {path}")
    except StateError as err:
        raise StateError(
            err.message,
            hint="restore it from a backup of this collector's data directory; removing it makes the collector "
            "trust whatever tree the database holds",
        ) from err


def save_checkpoint(path: Path, signed: Signed) -> None:
    """Record `signed` durably before it is served. StateError if it cannot be written (then it is not served)."""
    try:
        make_private_dirs(path.parent)
        atomic_write(path, signed.note, mode=0o600)  # public data, but the data directory stays private
    except OSError as err:
        raise StateError(f"cannot write the checkpoint file {path}: {err.strerror}") from err


def cosigned_path(checkpoint_path: Path) -> Path:
    return checkpoint_path.with_name(checkpoint_path.name + ".cosigned")


def load_cosigned(checkpoint_path: Path, signed: Signed) -> bytes:
    """`signed`'s note with the witness cosignatures held for it appended (just the note if there are none or
    the file is for another checkpoint). A damaged file is logged and ignored: cosignatures are extra."""
    data = _read(cosigned_path(checkpoint_path), "cosignatures file", StateError)
    if data is None:
        return signed.note
    try:
        held = note.parse_note(data)
    except note.NoteError as err:
        log.warning("ignoring the cosignatures file %s: %s", cosigned_path(checkpoint_path), err.message)
        return signed.note
    ours = note.parse_note(signed.note)
    if held.text != ours.text:
        return signed.note
    return ours.with_signatures(s for s in held.signatures if s not in ours.signatures).format()
