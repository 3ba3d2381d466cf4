"""The collector's transparency log at run time: integrate sequenced leaves in the background, sign checkpoints,
refuse to sign a tree inconsistent with the last signature, and answer proof requests from the stored hashes.

Integration and signing run in one daemon thread per collector process (never on the ack path): every
`[log] checkpoint_interval` it integrates everything sequenced (in batches, each one transaction holding the
tree row, so collectors sharing a PostgreSQL database take turns) and, if the tree grew, signs a checkpoint
after checking it extends the last one this process signed (`state`): a consistency proof from the stored
hashes, verified with `common.merkle.verify_consistency`. A tree that is smaller or does not extend it (the
database was restored from an old backup, or rewritten) is never signed: an ERROR naming both sizes and
roots, `gpucensus_log_signing_refused 1`, the last good checkpoint stays served, and ingest goes on (the
envelopes are stored and acknowledged; the operator decides what to do with the database, and agents and
witnesses holding the later checkpoint see the fork through their proofs).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gpucensus.collector.config import CollectorConfig
from gpucensus.collector.log import state
from gpucensus.collector.store.base import Store
from gpucensus.common import merkle, note
from gpucensus.common.errors import GpucensusError
from gpucensus.common.note import Checkpoint
from prometheus_client import CollectorRegistry, Gauge

log = logging.getLogger("gpucensus.collector.log")

INTEGRATION_BATCH = 4096  # leaves per integration transaction (a few ms of hashing: writers wait little)


class LogRangeError(GpucensusError):
    """A proof was asked for an index or size the log does not have (yet)."""

    exit_code = 2


class NoCheckpointError(GpucensusError):
    """No checkpoint signed yet (a new log): try again after the next integration."""

    exit_code = 6


class LogMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.refused = Gauge(
            "gpucensus_log_signing_refused",
            "1 while the collector refuses to sign the database's tree (not consistent with its last checkpoint)",
            registry=registry,
        )
        self.tree_size = Gauge("gpucensus_log_tree_size", "Leaves integrated into the stored tree", registry=registry)
        self.checkpoint_size = Gauge(
            "gpucensus_log_checkpoint_size", "Tree size of the last checkpoint this collector signed", registry=registry
        )


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


class TransparencyLog:
    def __init__(
        self,
        store: Store,
        key: note.SignerKey,
        checkpoint_path: Path,
        *,
        interval: float = 1.0,
        metrics: LogMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._key = key
        self._path = checkpoint_path
        self._interval = interval
        self._metrics = metrics or LogMetrics(CollectorRegistry())
        self._clock = clock
        self._signed = state.load_checkpoint(checkpoint_path, key)  # StateError at start if damaged
        self._served = b"" if self._signed is None else state.load_cosigned(checkpoint_path, self._signed)
        self._refused: tuple[int, bytes] | None = None
        self._lock = threading.Lock()  # one step at a time in this process
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self._signed is not None:
            self._metrics.checkpoint_size.set(self._signed.checkpoint.size)

    @property
    def verifier(self) -> note.VerifierKey:
        return self._key.verifier()

    def checkpoint(self) -> bytes:
        """The latest checkpoint note with the cosignatures held for it; b"" before the first one."""
        return self._served

    def signed(self) -> state.Signed | None:
        return self._signed

    # --- integration and signing ------------------------------------------------------------------------
    def step(self) -> None:
        """Integrate everything sequenced, then sign a checkpoint of the new tree if it extends the last one."""
        with self._lock:
            while True:
                old, new = self._store.integrate_log(INTEGRATION_BATCH)
                if new - old < INTEGRATION_BATCH:
                    break
            self._metrics.tree_size.set(new)
            self._sign(new)
            if self._signed is not None:  # a cosignature stored by `log cosign` since
                self._served = state.load_cosigned(self._path, self._signed)

    def _sign(self, size: int) -> None:
        root = merkle.tree_root(size, self._store.log_hashes)
        last = self._signed
        if last is not None and (size, root) == (last.checkpoint.size, last.checkpoint.root_hash):
            return
        problem = "" if last is None else self._inconsistency(last.checkpoint, size, root)
        if problem:
            if self._refused != (size, root):
                log.error(
                    "refusing to sign a checkpoint: the database's tree (size %d, root %s) %s the last checkpoint "
                    "this collector signed (size %d, root %s) in %s; was the database restored from an old backup? "
                    "Envelopes are still stored and acknowledged with the last good checkpoint",
                    size, b64(root), problem, last.checkpoint.size, b64(last.checkpoint.root_hash), self._path,
                )  # fmt: skip
                self._refused = (size, root)
            self._metrics.refused.set(1)
            return
        signed = state.sign(self._key, size, root)
        state.save_checkpoint(self._path, signed)  # durable first: what is served was recorded
        self._signed, self._served, self._refused = signed, signed.note, None
        self._metrics.refused.set(0)
        self._metrics.checkpoint_size.set(size)
        log.debug("signed checkpoint %d %s", size, b64(root))

    def _inconsistency(self, last: Checkpoint, size: int, root: bytes) -> str:
        """Why the tree (size, root) does not extend the checkpoint `last`; "" if it does."""
        old_size, old_root = last.size, last.root_hash
        if size < old_size:
            return "is smaller than"
        if old_size == 0:
            return ""
        try:
            proof = merkle.consistency_proof(old_size, size, self._store.log_hashes)
            merkle.verify_consistency(old_size, size, proof, old_root, root)
        except merkle.ProofError:
            return "is not consistent with"
        return ""

    def start(self) -> None:
        """Run `step` now and then every interval in a daemon thread until `stop`."""
        self._thread = threading.Thread(target=self._run, name="census-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            started = self._clock()
            try:
                self.step()
            except GpucensusError as err:  # the store is down, the checkpoint file cannot be written: next round
                log.error("transparency log integration failed (%s); retrying in %g s", err.message, self._interval)
            except Exception:  # a bug: logged with its traceback, and the thread keeps running
                log.exception("transparency log integration failed; retrying in %g s", self._interval)
            if self._stop.wait(max(0.0, self._interval - (self._clock() - started))):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    # --- proofs -----------------------------------------------------------------------------------------
    def _size(self, size: int) -> int:
        """`size`, or the latest checkpoint's for 0; LogRangeError beyond the integrated tree."""
        if size == 0:
            if self._signed is None:
                raise NoCheckpointError("the log has no checkpoint yet; ask again in a moment")
            size = self._signed.checkpoint.size
        integrated = self._store.log_size()
        if size > integrated:
            raise LogRangeError(f"tree size {size} is beyond the log's integrated tree ({integrated} leaves)")
        return size

    def inclusion_proof(self, index: int, size: int = 0) -> tuple[int, list[bytes]]:
        """(tree size, RFC 9162 inclusion proof of leaf `index`)."""
        size = self._size(size)
        if index >= size:
            raise LogRangeError(f"leaf index {index} is not in a tree of size {size}")
        return size, merkle.inclusion_proof(index, size, self._store.log_hashes)

    def consistency_proof(self, old: int, new: int = 0) -> tuple[int, list[bytes]]:
        """(new size, RFC 9162 consistency proof from `old` to `new`)."""
        new = self._size(new)
        if not 0 < old <= new:
            raise LogRangeError(f"no consistency proof from size {old} to size {new} (need 0 < old <= new)")
        return new, merkle.consistency_proof(old, new, self._store.log_hashes)


def data_dir(config: CollectorConfig, store: Store | None = None) -> str:
    """The directory the log key and checkpoint files default to: the SQLite database's own directory (the data
    directory the store really uses), else `[store] data_dir` (PostgreSQL)."""
    path = getattr(store, "path", None) or (config.store.kind == "sqlite" and config.store.path)
    return str(Path(path).parent) if path else config.store.data_dir


def open_log(config: CollectorConfig, store: Store, registry: CollectorRegistry | None = None) -> TransparencyLog:
    """The log `[log]` describes over `store`: its key (generated on first use) and last checkpoint loaded.
    KeyError_ / StateError / ConfigError (one line, an exit code) when either file cannot be used."""
    where = data_dir(config, store)
    key = state.load_or_create_key(config.log.key_path(where), config.log.origin)
    metrics = LogMetrics(registry) if registry is not None else None
    return TransparencyLog(
        store, key, config.log.checkpoint_path(where), interval=config.log.checkpoint_interval, metrics=metrics
    )
