"""The node's hash-chain state: the next sequence number and the digest of the last signed envelope.

Kept in `chain.json` in the state directory (next to the key). The next sequence number is persisted with
fsync *before* signing, so a crash can leave a gap but never reuse a number; a corrupted state file is a
`StateError` naming the file, never a silent reset to 1 (a reset would look like a fork to the collector).
All writes are atomic: temp file, fsync, rename, fsync of the directory. An exclusive lock on `chain.lock`
keeps two attest runs from drawing the same number.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent.durable import atomic_write
from agent.errors import StateError

STATE_FILE = "chain.json"
LOCK_FILE = "chain.lock"
FORMAT = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_RECOVERY_HINT = (
    "restore the file from a backup; do not delete it: starting again at sequence 1 with the same key "
    "is reported by the collector as a forked chain"
)


@dataclass(frozen=True)
class ChainState:
    keyid: str
    next_sequence: int = 1
    previous: str = ""  # hex SHA-256 of the last signed envelope's bytes, "" before the first
    last_checkpoint: dict[str, Any] = field(default_factory=dict)


def _parse(path: Path, data: bytes, keyid: str) -> ChainState:
    def corrupt(what: str) -> StateError:
        return StateError(f"chain state {path} is corrupted: {what}", hint=_RECOVERY_HINT)

    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise corrupt(f"not JSON ({err})") from err
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise corrupt(f"not a format-{FORMAT} chain state object")
    sequence, previous, checkpoint = obj.get("next_sequence"), obj.get("previous"), obj.get("last_checkpoint")
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 1:
        raise corrupt(f"next_sequence {sequence!r} is not an integer >= 1")
    if not isinstance(previous, str) or not (previous == "" or _HEX64.fullmatch(previous)):
        raise corrupt(f"previous {previous!r} is not empty or a hex SHA-256")
    if not isinstance(checkpoint, dict):
        raise corrupt("last_checkpoint is not an object")
    if obj.get("keyid") != keyid:
        raise StateError(
            f"chain state {path} belongs to key {obj.get('keyid')}, not to key {keyid}",
            hint="each key has its own chain: use another --state directory for this key",
        )
    return ChainState(keyid=keyid, next_sequence=sequence, previous=previous, last_checkpoint=checkpoint)


class ChainStore:
    """Chain state of one key in one directory."""

    def __init__(self, directory: Path, keyid: str) -> None:
        self.directory = directory
        self.keyid = keyid
        self.path = directory / STATE_FILE

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory's exclusive lock (creating the directory, mode 0700, if needed)."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise StateError(f"cannot use state directory {self.directory}: {err.strerror}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def load(self) -> ChainState:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return ChainState(keyid=self.keyid)
        except OSError as err:
            raise StateError(f"cannot read chain state {self.path}: {err.strerror}") from err
        return _parse(self.path, data, self.keyid)

    def save(self, state: ChainState) -> None:
        document = {
            "format": FORMAT,
            "keyid": state.keyid,
            "next_sequence": state.next_sequence,
            "previous": state.previous,
            "last_checkpoint": state.last_checkpoint,
        }
        data = json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
        try:
            atomic_write(self.path, data)
        except OSError as err:
            raise StateError(f"cannot write chain state {self.path}: {err.strerror}") from err

    def reserve(self, state: ChainState) -> None:
        """Persist that `state.next_sequence` is used (durably, before signing). Call under `locked()` with
        the state just loaded."""
        self.save(replace(state, next_sequence=state.next_sequence + 1))

    def commit(self, sequence: int, envelope_digest: str) -> None:
        """Record the envelope just signed with `sequence` as the one the next statement links to."""
        state = self.load()
        if state.next_sequence != sequence + 1:
            raise StateError(f"chain state {self.path} moved on while sequence {sequence} was being signed")
        self.save(replace(state, previous=envelope_digest))

    def record_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Remember the latest checkpoint the collector acknowledged (goes into the next statement)."""
        with self.locked():
            self.save(replace(self.load(), last_checkpoint=dict(checkpoint)))
