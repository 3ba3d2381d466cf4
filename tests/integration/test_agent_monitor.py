"""The agent as a monitor of its own entries: against a real collector (gRPC, SQLite), it trusts a checkpoint
only after the signature, the consistency with the one it trusted and the inclusion of its delivered envelopes
hold; a fork, a rollback or a dropped entry is an ERROR naming both checkpoints, counted, never adopted."""

from __future__ import annotations

import base64
import logging
import shutil
import stat
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from gpucensus.agent.monitor import STATE_FILE, LogMonitor
from gpucensus.agent.spool import Spool
from gpucensus.agent.uplink import Uplink
from gpucensus.collector.store import open_store
from gpucensus.common import merkle, note
from gpucensus.common.errors import StateError
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc
from prometheus_client import CollectorRegistry

from tests.ingest_nodes import TestNode, enroll
from tests.integration.log_fixtures import serve, vkey, wait_for_size


class Node:
    """One node's spool and monitor, talking to whatever collector listens at `port` now."""

    def __init__(self, tmp_path: Path, node: TestNode, configured_vkey: str = "") -> None:
        self.node, self.state_dir = node, tmp_path / "agent-state"
        self.spool = Spool(tmp_path / "spool.db", max_bytes=10_000_000)
        self.registry = CollectorRegistry()
        self.configured = configured_vkey
        self.channel: grpc.Channel | None = None
        self.monitor: LogMonitor | None = None

    def connect(self, port: int) -> None:
        if self.channel is not None:
            self.channel.close()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.registry = CollectorRegistry()
        self.monitor = LogMonitor(self.state_dir, 10.0, self.spool,
                                  configured_vkey=self.configured, registry=self.registry)  # fmt: skip

    def deliver(self, count: int) -> bytes:
        """Sign and deliver `count` envelopes; the last checkpoint an ack carried."""
        for _ in range(count):
            self.spool.append(self.node.keyid, self.node.sequence, self.node.next())
        carried: list[bytes] = []
        Uplink(self.channel, 10.0).drain(self.spool, on_ack=lambda ack: carried.append(ack.checkpoint))
        return carried[-1]

    def check(self) -> dict:
        return self.monitor.check(census_pb2_grpc.CensusStub(self.channel))

    @property
    def alarms(self) -> float:
        return self.registry.get_sample_value("gpucensus_agent_log_inconsistent_total") or 0.0

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        self.spool.close()


class Collector:
    def __init__(self, data: Path, log_dir: Path) -> None:
        self.data, self.log_dir = data, log_dir
        self.store = open_store("sqlite", data_dir=str(data))
        self.server, self.port = serve(self.store, log_dir)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = census_pb2_grpc.CensusStub(self.channel)

    def wait(self, size: int) -> note.Checkpoint:
        return wait_for_size(self.stub, vkey(self.log_dir), size)

    def close(self) -> None:
        if not self.server.terminated.is_set():
            self.channel.close()
            self.server.stop(None).wait()
            self.store.close()


@pytest.fixture
def setup(tmp_path: Path):
    data = tmp_path / "data"
    store = open_store("sqlite", data_dir=str(data))
    node = TestNode("node-1")
    enroll(store, node)
    store.close()
    agent = Node(tmp_path, node)
    collectors: list[Collector] = []

    def start() -> Collector:
        collector = Collector(data, tmp_path / "log")
        collectors.append(collector)
        agent.connect(collector.port)
        return collector

    yield agent, start, data
    for collector in collectors:
        collector.close()
    agent.close()


def _copy_db(source: Path, target: Path) -> None:
    target.mkdir(exist_ok=True)
    for name in ("collector.db", "collector.db-wal", "collector.db-shm"):
        if (source / name).exists():
            shutil.copy2(source / name, target / name)
        elif (target / name).exists():
            (target / name).unlink()


def test_the_monitor_trusts_a_verified_checkpoint_and_pins_the_key(setup) -> None:
    agent, start, _ = setup
    collector = start()
    agent.deliver(4)
    head = collector.wait(4)
    trusted = agent.check()
    assert trusted == {"size": 4, "root": base64.b64encode(head.root_hash).decode()} and agent.alarms == 0
    state = agent.state_dir / STATE_FILE
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert str(vkey(collector.log_dir)) in state.read_text()  # pinned on first use
    agent.deliver(3)
    collector.wait(7)
    assert agent.check()["size"] == 7 and agent.alarms == 0


def test_a_fork_after_a_restored_database_is_reported_and_not_adopted(setup, tmp_path: Path, caplog) -> None:
    agent, start, data = setup
    collector = start()
    agent.deliver(3)
    collector.wait(3)
    collector.close()
    _copy_db(data, tmp_path / "backup")
    collector = start()
    agent.deliver(3)
    collector.wait(6)
    trusted = agent.check()
    assert trusted["size"] == 6
    collector.close()
    _copy_db(tmp_path / "backup", data)  # the operator restores size 3 and forces a new checkpoint
    (tmp_path / "log" / "checkpoint").unlink()
    collector = start()
    other = TestNode("node-2")
    store = open_store("sqlite", data_dir=str(data))
    enroll(store, other)
    store.close()
    envelopes = [other.next() for _ in range(5)]
    list(collector.stub.Report((pb.Envelope(dsse=e) for e in envelopes), timeout=10))
    collector.wait(8)
    caplog.set_level(logging.ERROR, logger="gpucensus.agent.monitor")
    assert agent.check() == trusted  # the fork is not adopted
    assert agent.alarms == 1
    message = caplog.records[-1].getMessage()
    assert "FORKED" in message and "size 6" in message and "size 8" in message


def test_an_entry_missing_from_the_signed_tree_is_reported(setup, tmp_path: Path, caplog) -> None:
    """The collector keeps serving its last good checkpoint (size 6) after a restore to size 3; this node's next
    envelope gets a reused index below 6, and no proof leads from it to that checkpoint's root."""
    agent, start, data = setup
    collector = start()
    agent.deliver(3)
    collector.wait(3)
    collector.close()
    _copy_db(data, tmp_path / "backup")
    collector = start()
    agent.deliver(3)
    collector.wait(6)
    trusted = agent.check()
    collector.close()
    _copy_db(tmp_path / "backup", data)
    collector = start()
    agent.deliver(1)  # stored at index 3 again: the database forgot 3..5
    caplog.set_level(logging.ERROR, logger="gpucensus.agent.monitor")
    assert agent.check() == trusted and agent.alarms == 1
    assert "DROPPED" in caplog.text and "index 3" in caplog.text


def test_a_checkpoint_not_signed_by_the_configured_key_is_refused(tmp_path: Path, setup, caplog) -> None:
    agent, start, _ = setup
    stranger = note.SignerKey.generate("somebody-else").verifier()
    agent.configured = str(stranger)
    collector = start()
    agent.deliver(2)
    collector.wait(2)
    caplog.set_level(logging.ERROR, logger="gpucensus.agent.monitor")
    assert agent.check() == {} and agent.alarms == 1
    assert "not signed by its log key" in caplog.text


@pytest.mark.parametrize("content", [b"{", b'{"vkey": "x", "checkpoint": "", "next_row": 0}', b"\xff" * 10])
def test_a_damaged_monitor_state_is_a_state_error(setup, content: bytes) -> None:
    agent, start, _ = setup
    agent.state_dir.mkdir(parents=True, exist_ok=True)
    (agent.state_dir / STATE_FILE).write_bytes(content)
    with pytest.raises(StateError, match="log monitor state"):
        start()


class HostileCensus(census_pb2_grpc.CensusServicer):
    """A collector that answers the log RPCs with whatever the test sets: bad keys, junk notes, junk proofs."""

    def __init__(self) -> None:
        self.vkey, self.checkpoint = "", b""
        self.hashes: list[bytes] = []

    def GetCheckpoint(self, request, context):
        return pb.GetCheckpointResponse(checkpoint=self.checkpoint, log_vkey=self.vkey)

    def GetConsistencyProof(self, request, context):
        return pb.GetConsistencyProofResponse(hashes=self.hashes)

    def GetInclusionProof(self, request, context):
        return pb.GetInclusionProofResponse(log_index=request.log_index, tree_size=request.tree_size,
                                            hashes=self.hashes)  # fmt: skip


@pytest.fixture
def hostile(tmp_path: Path):
    servicer = HostileCensus()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    census_pb2_grpc.add_CensusServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    agent = Node(tmp_path, TestNode("node-1"))
    agent.connect(port)
    yield servicer, agent
    agent.close()
    server.stop(grace=None)


def test_a_hostile_collector_never_gets_a_checkpoint_trusted_nor_stops_the_agent(hostile, caplog) -> None:
    census, agent = hostile
    caplog.set_level(logging.WARNING, logger="gpucensus.agent.monitor")
    census.vkey = "not a key"
    assert agent.check() == {} and agent.alarms == 0  # nothing to trust, nothing claimed
    assert "is not a verifier key" in caplog.text
    log_key = note.SignerKey.generate("evil.example/log")
    census.vkey = str(log_key.verifier())
    census.checkpoint = b"\xff" * 100_000
    assert agent.check() == {} and agent.alarms == 1
    tree = merkle.MemoryTree()
    for i in range(9):
        tree.append(b"leaf %d" % i)
    census.checkpoint = note.Checkpoint("evil.example/log", 5, tree.root(5)).sign([log_key])
    assert agent.check()["size"] == 5  # first use: nothing of this node's to check yet
    census.checkpoint = note.Checkpoint("evil.example/log", 9, tree.root(9)).sign([log_key])
    for junk in ([b"x" * 5] * 3, [b"\0" * 32] * 200, []):
        census.hashes = junk
        assert agent.check()["size"] == 5
    assert agent.alarms == 4 and "FORKED" in caplog.text
    census.hashes = tree.consistency_proof(5, 9)
    assert agent.check()["size"] == 9 and agent.alarms == 4  # a real proof is accepted
    census.checkpoint = note.Checkpoint("evil.example/log", 7, tree.root(7)).sign([log_key])
    census.hashes = tree.consistency_proof(7, 9)
    assert agent.check()["size"] == 9 and agent.alarms == 4  # an older, consistent checkpoint: kept, no alarm
    census.hashes = [b"\0" * 32]
    assert agent.check()["size"] == 9 and agent.alarms == 5  # an older one that is not: ROLLED BACK
    census.checkpoint = note.Checkpoint("evil.example/log", 0, merkle.empty_root()).sign([log_key])
    assert agent.check()["size"] == 9 and agent.alarms == 6 and "ROLLED BACK" in caplog.text  # emptied
