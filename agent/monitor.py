"""The agent as a monitor of its own entries in the collector's transparency log.

Each round, after delivering, the agent takes the newest checkpoint (from the last ack, else `GetCheckpoint`),
verifies its signature with the log key (`[collector] log_vkey`, else the key the collector names on first use,
pinned from then on: trust on first use), then checks it against the checkpoint it trusts: never smaller, the
same root at the same size, and a valid consistency proof (`GetConsistencyProof`) when it grew; and that its own
delivered envelopes are in it (`GetInclusionProof`, at most MAX_PROOFS_PER_ROUND per round, the rest next round).
Only then the new checkpoint becomes the trusted one (saved atomically, 0600, in the state directory) and its
`{size, root}` goes into the next statement's `last_checkpoint`: a fork the collector shows one agent is
visible to everyone who reads that agent's attestations.

A fork, a rollback or a dropped entry is never adopted: a loud ERROR naming both checkpoints, and
`gpucensus_agent_log_inconsistent_total` counts it. A collector that cannot answer this round (unreachable,
proof not ready) changes nothing: the check is repeated next round.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from gpucensus.agent.spool import DELIVERED, PENDING, Spool
from gpucensus.common import merkle, note
from gpucensus.common.durable import atomic_write, make_private_dirs
from gpucensus.common.errors import ConfigError, StateError
from gpucensus.protos import census_pb2, census_pb2_grpc
from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger("gpucensus.agent.monitor")

STATE_FILE = "log-monitor.json"
MAX_PROOFS_PER_ROUND = 32
MAX_STATE_BYTES = 2 * note.MAX_NOTE_BYTES


@dataclass(frozen=True)
class Trusted:
    """What the monitor trusts: the log key, the latest verified checkpoint and how far its entries were checked."""

    vkey: str = ""
    checkpoint: bytes = b""  # the verified note, verbatim
    next_row: int = 0  # spool rows before this one were checked (delivered ones found in the log)


class LogInconsistency(Exception):
    """The collector's log forked, rolled back or dropped one of this agent's entries."""


def _describe(checkpoint: note.Checkpoint | None) -> str:
    if checkpoint is None:
        return "none"
    return f"size {checkpoint.size} root {base64.b64encode(checkpoint.root_hash).decode()}"


class LogMonitor:
    def __init__(
        self,
        state_dir: Path,
        timeout_seconds: float,
        spool: Spool,
        *,
        configured_vkey: str = "",
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._path = state_dir / STATE_FILE
        self._stub: census_pb2_grpc.CensusStub | None = None  # the round's (the channel may change between rounds)
        self._timeout = timeout_seconds
        self._spool = spool
        self._configured = _parse_vkey(configured_vkey, "[collector] log_vkey") if configured_vkey else None
        self.inconsistent = Counter(
            "gpucensus_agent_log_inconsistent",
            "Checkpoints refused because the collector's log forked, rolled back or dropped one of this node's "
            "envelopes",
            registry=registry or CollectorRegistry(),
        )
        self.trusted = self._load()

    # --- state --------------------------------------------------------------------------------------------
    def _load(self) -> Trusted:
        try:
            with self._path.open("rb") as f:
                data = f.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return Trusted()
        except OSError as err:
            raise StateError(f"cannot read the log monitor state {self._path}: {err.strerror}") from err
        try:
            if len(data) > MAX_STATE_BYTES:
                raise ValueError("too large")
            raw = json.loads(data)
            trusted = Trusted(str(raw["vkey"]), base64.b64decode(raw["checkpoint"], validate=True), raw["next_row"])
            if not isinstance(trusted.next_row, int) or trusted.next_row < 0:
                raise ValueError("next_row is not a non-negative integer")
            key = _parse_vkey(trusted.vkey, "its log key")
            if trusted.checkpoint:
                note.open_checkpoint(trusted.checkpoint, key)
        except (ValueError, KeyError, TypeError, ConfigError, note.NoteError) as err:
            raise StateError(
                f"the log monitor state {self._path} is damaged: {getattr(err, 'message', err)}",
                hint="restore it from a backup; removing it makes the agent trust the collector's next checkpoint",
            ) from err
        return trusted

    def _save(self, trusted: Trusted) -> None:
        record = {"vkey": trusted.vkey, "checkpoint": base64.b64encode(trusted.checkpoint).decode(),
                  "next_row": trusted.next_row}  # fmt: skip
        make_private_dirs(self._path.parent)
        atomic_write(self._path, (json.dumps(record, indent=2) + "\n").encode(), mode=0o600)
        self.trusted = trusted

    def last_checkpoint(self) -> dict[str, Any]:
        """{size, root} of the trusted checkpoint ({} before the first): the statement's `last_checkpoint`."""
        if not self.trusted.checkpoint:
            return {}
        parsed = note.Checkpoint.parse(note.parse_note(self.trusted.checkpoint).text)
        return {"size": parsed.size, "root": base64.b64encode(parsed.root_hash).decode()}

    # --- one round ----------------------------------------------------------------------------------------
    def check(self, stub: census_pb2_grpc.CensusStub, latest: bytes = b"") -> dict[str, Any]:
        """Verify the newest checkpoint (`latest` from an ack, else asked for over `stub`) and adopt it if it
        holds; the trusted `{size, root}` afterwards. Raises nothing for the collector's faults: they are logged."""
        self._stub = stub
        try:
            self._check(latest)
        except grpc.RpcError as err:
            log.warning("log check postponed: the collector answered %s: %s", err.code().name, err.details())
        except ConfigError as err:  # the collector named no usable log key: nothing to trust yet
            log.error("log check postponed: %s", err.message)
        except OSError as err:  # the state could not be saved (disk full): the old one stays trusted
            log.error("log check not recorded: cannot write %s: %s", self._path, err)
        except LogInconsistency as err:
            self.inconsistent.inc()
            log.error("%s; keeping the trusted checkpoint (%s)", err, _describe(self._trusted_checkpoint()))
        return self.last_checkpoint()

    def _rpc(self) -> census_pb2_grpc.CensusStub:
        assert self._stub is not None, "check() sets the stub first"
        return self._stub

    def _trusted_checkpoint(self) -> note.Checkpoint | None:
        if not self.trusted.checkpoint:
            return None
        return note.Checkpoint.parse(note.parse_note(self.trusted.checkpoint).text)

    def _key(self) -> tuple[note.VerifierKey, str]:
        if self._configured is not None:
            return self._configured, str(self._configured)
        if self.trusted.vkey:
            return _parse_vkey(self.trusted.vkey, "the pinned log key"), self.trusted.vkey
        response = self._rpc().GetCheckpoint(census_pb2.GetCheckpointRequest(), timeout=self._timeout)
        key = _parse_vkey(response.log_vkey, "the collector's log key")
        log.warning("trusting the collector's log key on first use and pinning it: %s", key)
        return key, str(key)

    def _check(self, latest: bytes) -> None:
        key, vkey = self._key()
        if not latest:
            latest = self._rpc().GetCheckpoint(census_pb2.GetCheckpointRequest(), timeout=self._timeout).checkpoint
        try:
            new, _ = note.open_checkpoint(latest, key)
        except note.NoteError as err:
            raise LogInconsistency(f"the collector served a checkpoint not signed by its log key {key}: {err}") from err
        old = self._trusted_checkpoint() if self.trusted.vkey == vkey else None
        if old is not None and new.origin != old.origin:
            raise LogInconsistency(f"the checkpoint is for log {new.origin!r}, not {old.origin!r}")
        if old is not None and new.size < old.size:  # an older checkpoint (another collector): fine if consistent
            rollback = f"the collector's log ROLLED BACK: trusted {_describe(old)}, served {_describe(new)}"
            if new.size == 0:
                raise LogInconsistency(rollback)
            self._consistent(new, old, rollback)
            new, latest = old, self.trusted.checkpoint
        elif old is not None and new.size == old.size and new.root_hash != old.root_hash:
            raise LogInconsistency(f"the collector's log FORKED (same size, another root): trusted {_describe(old)}, "
                                   f"served {_describe(new)}")  # fmt: skip
        elif old is not None and new.size > old.size:
            self._consistent(old, new, f"the collector's log FORKED: trusted {_describe(old)}, served {_describe(new)}")
        self._include(vkey, latest, new, old)

    def _consistent(self, old: note.Checkpoint, new: note.Checkpoint, fork: str) -> None:
        """LogInconsistency(`fork`) unless the collector proves `new` extends `old` (both signed by the log: a
        size it signed that it cannot prove from is evidence too). Every tree extends the empty one."""
        if old.size == 0 and new.size > 0:
            return
        request = census_pb2.GetConsistencyProofRequest(old_size=old.size, new_size=new.size)
        try:
            proof = self._rpc().GetConsistencyProof(request, timeout=self._timeout)
            merkle.verify_consistency(old.size, new.size, list(proof.hashes), old.root_hash, new.root_hash)
        except merkle.ProofError as err:
            raise LogInconsistency(f"{fork} (no valid consistency proof: {err})") from err
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.OUT_OF_RANGE:
                raise
            raise LogInconsistency(f"{fork} (the collector cannot prove it: {err.details()})") from err

    def _include(self, vkey: str, latest: bytes, head: note.Checkpoint, old: note.Checkpoint | None) -> None:
        """Check the delivered envelopes written since the last check are in `head`; then trust it."""
        next_row = self.trusted.next_row if old is not None else 0
        for row_id, state, index, envelope in self._spool.since(next_row, MAX_PROOFS_PER_ROUND):
            if state == PENDING or (state == DELIVERED and (index is None or index >= head.size)):
                break  # not delivered yet, or not in this checkpoint yet: next round
            if state == DELIVERED:
                self._proven(index, envelope, head, old)
            next_row = row_id + 1
        if (vkey, latest, next_row) != (self.trusted.vkey, self.trusted.checkpoint, self.trusted.next_row):
            self._save(Trusted(vkey, latest, next_row))

    def _proven(self, index: int, envelope: bytes, head: note.Checkpoint, old: note.Checkpoint | None) -> None:
        dropped = f"the collector's log DROPPED this node's envelope at index {index}: trusted {_describe(old)}, " \
                  f"served {_describe(head)}"  # fmt: skip
        request = census_pb2.GetInclusionProofRequest(log_index=index, tree_size=head.size)
        try:
            proof = self._rpc().GetInclusionProof(request, timeout=self._timeout)
            merkle.verify_inclusion(merkle.leaf_hash(envelope), index, head.size, list(proof.hashes), head.root_hash)
        except merkle.ProofError as err:
            raise LogInconsistency(f"{dropped} ({err})") from err
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.OUT_OF_RANGE:
                raise
            raise LogInconsistency(f"{dropped} (the collector cannot prove it: {err.details()})") from err


def _parse_vkey(text: str, what: str) -> note.VerifierKey:
    try:
        key = note.VerifierKey.parse(text)
    except note.NoteError as err:
        raise ConfigError(f"{what} {text[:80]!r} is not a verifier key: {err.message}") from err
    if key.sig_type != note.ED25519:
        raise ConfigError(f"{what} is not an Ed25519 signed-note key")
    return key
