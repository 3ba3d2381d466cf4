"""A witness of one log: it keeps the last checkpoint it accepted and accepts a new one only if the log proves
the new tree extends the held one (RFC 9162 consistency proof). A log that shows the witness a rolled-back or
forked history is caught here, with both checkpoints in the report.

State: `STATE/checkpoint`, the accepted signed note verbatim (0600, in a 0700 directory, replaced atomically).
A state that does not parse or does not verify with the log's key is refused, never overwritten: the witness
cannot know what it held, and starting over would let a rollback through.
On first use (no state) the offered checkpoint is accepted as the starting point, and the report says so.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

from gpucensus.collector.audit.bundle import decode_hashes
from gpucensus.collector.errors import ConfigError
from gpucensus.common import merkle, note
from gpucensus.common.durable import atomic_write, make_private_dirs
from gpucensus.common.errors import StateError

STATE_FILE = "checkpoint"
MAX_INPUT_BYTES = 64 << 10


@dataclass(frozen=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    lines: tuple[str, ...]  # first line: ACCEPT / REJECT / ROLLBACK / FORK and why; then the checkpoints


def describe(label: str, checkpoint: note.Checkpoint) -> str:
    root = base64.b64encode(checkpoint.root_hash).decode()
    return f"  {label}: origin {checkpoint.origin} size {checkpoint.size} root {root}"


def parse_consistency(data: bytes, where: str) -> ConsistencyProof:
    """`{"old_size", "new_size", "hashes": [base64 …]}` as `gpucensus-collector log consistency` prints it."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or set(doc) != {"old_size", "new_size", "hashes"}:
            raise ValueError('not an object with exactly "old_size", "new_size", "hashes"')
        sizes = (doc["old_size"], doc["new_size"])
        if any(type(v) is not int or v < 0 for v in sizes):
            raise ValueError("old_size and new_size must be non-negative integers")
        return ConsistencyProof(*sizes, decode_hashes(doc["hashes"]))
    except (ValueError, RecursionError) as err:
        raise ConfigError(f"{where} is not a consistency proof: {err}") from err


def judge(held: note.Checkpoint | None, offered: note.Checkpoint, proof: ConsistencyProof | None) -> Verdict:
    """Whether `offered` may replace `held` (both already verified with the log's key)."""
    if held is None:
        return Verdict(True, ("ACCEPT first checkpoint (nothing held yet: trusted on first use)",
                              describe("offered", offered)))  # fmt: skip
    both = (describe("held", held), describe("offered", offered))
    if offered.origin != held.origin:
        return Verdict(False, (f"REJECT wrong origin: this witness holds {held.origin!r}", *both))
    if offered.size < held.size:
        return Verdict(False, (f"ROLLBACK the log shows size {offered.size}, smaller than {held.size} held", *both))
    if offered.size == held.size:
        if offered.root_hash != held.root_hash:
            return Verdict(False, (f"FORK two different roots for size {held.size}", *both))
        return Verdict(True, ("ACCEPT the held checkpoint again (same size and root)", *both))
    if proof is None:
        return Verdict(False, (f"REJECT no consistency proof from size {held.size} to {offered.size} "
                               "(give --consistency PROOF.json)", *both))  # fmt: skip
    if (proof.old_size, proof.new_size) != (held.size, offered.size):
        return Verdict(False, (f"REJECT the proof is from size {proof.old_size} to {proof.new_size}, not from "
                               f"{held.size} to {offered.size}", *both))  # fmt: skip
    try:
        merkle.verify_consistency(held.size, offered.size, proof.hashes, held.root_hash, offered.root_hash)
    except merkle.ProofError as err:
        return Verdict(False, (f"FORK the offered tree does not extend the held one: {err.message}", *both))
    return Verdict(True, (f"ACCEPT consistent with the held checkpoint (size {held.size} -> {offered.size})", *both))


class WitnessState:
    def __init__(self, directory: Path, log_key: note.VerifierKey) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE
        self.log_key = log_key

    def held(self) -> note.Checkpoint | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StateError(f"cannot read witness state {self.path}: {err.strerror}") from err
        try:
            checkpoint, _ = note.open_checkpoint(data, self.log_key)
        except note.NoteError as err:
            raise StateError(
                f"witness state {self.path} is corrupt or not signed by {self.log_key}: {err.message}",
                hint="restore it from a backup; removing it makes the next checkpoint trusted on first use",
            ) from err
        return checkpoint

    def store(self, signed_note: bytes) -> None:
        try:
            make_private_dirs(self.directory)
            atomic_write(self.path, signed_note, mode=0o600)
        except OSError as err:
            raise StateError(f"cannot write witness state {self.path}: {err.strerror}") from err
