"""A collector with a fast-signing transparency log, and what its tests share: waiting for a checkpoint, opening
it with the log's key, checking proofs the way a monitor would."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
from gpucensus.collector.config import CollectorConfig, LogConfig, ServerConfig
from gpucensus.collector.server import CollectorServer, run_server
from gpucensus.collector.store.base import Store
from gpucensus.common import merkle, note
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc

from tests.ingest_nodes import NOW

INTERVAL = 0.05  # seconds between checkpoints: the tests wait for them
DEADLINE = 10.0


def log_config(log_dir: Path, **extra: object) -> LogConfig:
    return LogConfig(
        key_file=str(log_dir / "log.key"),
        checkpoint_file=str(log_dir / "checkpoint"),
        checkpoint_interval=INTERVAL,
        **extra,  # type: ignore[arg-type]
    )


def serve(store: Store, log_dir: Path, **extra: object) -> tuple[CollectorServer, int]:
    config = CollectorConfig(server=ServerConfig(listen="127.0.0.1:0"), log=log_config(log_dir, **extra))
    return run_server(config, store, clock=lambda: NOW)


def vkey(log_dir: Path) -> note.VerifierKey:
    return note.SignerKey.parse((log_dir / "log.key").read_text()).verifier()


def checkpoint(stub: census_pb2_grpc.CensusStub, key: note.VerifierKey) -> note.Checkpoint:
    response = stub.GetCheckpoint(pb.GetCheckpointRequest(), timeout=DEADLINE)
    return note.open_checkpoint(response.checkpoint, key)[0]


def wait_for_size(stub: census_pb2_grpc.CensusStub, key: note.VerifierKey, size: int) -> note.Checkpoint:
    """The first served checkpoint of at least `size` leaves (AssertionError after 10 s)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            latest = checkpoint(stub, key)
            if latest.size >= size:
                return latest
        except grpc.RpcError:  # FAILED_PRECONDITION before the first checkpoint
            latest = None
        assert time.monotonic() < deadline, f"no checkpoint of size {size} within {DEADLINE} s (last: {latest})"
        time.sleep(INTERVAL / 2)


def assert_included(stub: census_pb2_grpc.CensusStub, envelope: bytes, index: int, head: note.Checkpoint) -> None:
    proof = stub.GetInclusionProof(pb.GetInclusionProofRequest(log_index=index, tree_size=head.size), timeout=DEADLINE)
    assert (proof.log_index, proof.tree_size) == (index, head.size)
    merkle.verify_inclusion(merkle.leaf_hash(envelope), index, head.size, list(proof.hashes), head.root_hash)
