"""The node's hash-chain state: the next sequence number and the digest of the last signed envelope.

Kept in `chain.json` in the state directory (next to the key). The next sequence number is persisted with
fsync *before* signing, so a crash can leave a gap but never reuse a number; a corrupted state file is a
`StateError` naming the file, never a silent reset to 1 (a reset would look like a fork to the collector).
All writes are atomic: temp file, fsync, rename, fsync of the directory. An exclusive lock on `chain.lock`
keeps two attest runs from drawing the same number. Every value is checked when the file is read (sequence
numbers and checkpoint sizes within 1..2^63-1 / 0..2^63-1, the checkpoint root a base64 SHA-256), so a damaged
or hand-edited file stops the agent at start-up instead of failing every round. `spool` is the id of the spool
`gpucensus-agent run` uses with this chain: a spool that was emptied, removed or replaced is then noticed.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gpucensus.common.durable import atomic_write, make_private_dirs
from gpucensus.common.errors import StateError

log = logging.getLogger("gpucensus.agent.chain")

STATE_FILE = "chain.json"
LOCK_FILE = "chain.lock"
FORMAT = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SPOOL_ID = re.compile(r"[0-9a-f]{32}")
MAX_SEQUENCE = 2**63 - 1  # the collector stores sequences and checkpoint sizes as signed 64-bit integers
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
    spool: str = ""  # id of the spool `run` uses with this chain ("" before the first run)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def checkpoint_problem(checkpoint: Any) -> str:
    """Why `checkpoint` cannot be a `last_checkpoint` ({} or {size, root}); "" if it can."""
    if not isinstance(checkpoint, dict):
        return "is not an object"
    if not checkpoint:
        return ""
    if set(checkpoint) != {"size", "root"}:
        return "must be {} or have exactly size and root"
    if not _is_int(checkpoint["size"]) or not 0 <= checkpoint["size"] <= MAX_SEQUENCE:
        return f"size {checkpoint['size']!r} is not an integer in 0..2^63-1"
    root = checkpoint["root"]
    try:
        if not isinstance(root, str) or len(base64.b64decode(root, validate=True)) != 32:
            return "root is not the base64 of a 32-byte hash"
    except binascii.Error:
        return "root is not valid base64"
    return ""


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
    spool = obj.get("spool", "")
    if not _is_int(sequence) or not 1 <= sequence <= MAX_SEQUENCE:
        raise corrupt(f"next_sequence {sequence!r} is not an integer in 1..2^63-1")
    if not isinstance(previous, str) or not (previous == "" or _HEX64.fullmatch(previous)):
        raise corrupt(f"previous {previous!r} is not empty or a hex SHA-256")
    if sequence == 1 and previous:
        raise corrupt("previous is set but nothing was signed yet (next_sequence 1)")
    problem = checkpoint_problem(checkpoint)
    if problem:
        raise corrupt(f"last_checkpoint {problem}")
    if not isinstance(spool, str) or not (spool == "" or _SPOOL_ID.fullmatch(spool)):
        raise corrupt(f"spool {spool!r} is not a spool id")
    if obj.get("keyid") != keyid:
        raise StateError(
            f"chain state {path} belongs to key {obj.get('keyid')!r}, not to key {keyid}",
            hint="each key has its own chain: use another --state directory for this key",
        )
    return ChainState(keyid=keyid, next_sequence=sequence, previous=previous, last_checkpoint=checkpoint, spool=spool)


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
            make_private_dirs(self.directory)
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
        if state.spool:
            document["spool"] = state.spool
        data = json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
        try:
            atomic_write(self.path, data)
        except OSError as err:
            raise StateError(f"cannot write chain state {self.path}: {err.strerror}") from err

    def reserve(self, state: ChainState) -> None:
        """Persist that `state.next_sequence` is used (durably, before signing). Call under `locked()` with
        the state just loaded."""
        if state.next_sequence >= MAX_SEQUENCE:
            raise StateError(f"chain state {self.path}: sequence numbers are exhausted", hint="use a new node key")
        self.save(replace(state, next_sequence=state.next_sequence + 1))

    def commit(self, sequence: int, envelope_digest: str) -> None:
        """Record the envelope just signed with `sequence` as the one the next statement links to."""
        state = self.load()
        if state.next_sequence != sequence + 1:
            raise StateError(f"chain state {self.path} moved on while sequence {sequence} was being signed")
        self.save(replace(state, previous=envelope_digest))

    def record_spool(self, spool_id: str) -> None:
        """Remember which spool `run` uses with this chain (before anything is signed into it)."""
        with self.locked():
            self.save(replace(self.load(), spool=spool_id))

    def record_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Remember the latest checkpoint the log monitor verified (goes into the next statement); one that
        could not be read back at start-up is logged and ignored."""
        problem = checkpoint_problem(checkpoint)
        if problem:
            log.warning("ignoring a checkpoint from the collector: it %s", problem)
            return
        with self.locked():
            self.save(replace(self.load(), last_checkpoint=dict(checkpoint)))
