"""Two `gpucensus-collector serve` processes on one database ingest concurrently into ONE log: they share the
log key file (one log, one key), keep a checkpoint file each, every leaf index is used exactly once, and one
checkpoint covers both collectors' envelopes (an inclusion proof verifies for every one of them)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path

import grpc
from gpucensus.common import merkle
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc

from tests.ingest_nodes import TestNode, enroll
from tests.integration.log_fixtures import DEADLINE, assert_included, vkey, wait_for_size
from tests.integration.server_fixtures import spawn_serve

pytest_plugins = ["tests.integration.store_fixtures"]  # make_store, store_kind

NODES, ENVELOPES = 6, 8


def start(make_store, tmp_path: Path, name: str) -> tuple[subprocess.Popen[str], int]:
    config = tmp_path / f"{name}.toml"
    log = {"key_file": str(tmp_path / "log.key"), "checkpoint_file": str(tmp_path / f"{name}.checkpoint"),
           "checkpoint_interval": 0.05}  # fmt: skip
    config.write_text(
        make_store.toml()
        + '[server]\nlisten = "127.0.0.1:0"\nshutdown_grace_seconds = 2\n[log]\n'
        + "".join(f"{key} = {json.dumps(value)}\n" for key, value in log.items())
    )
    process = spawn_serve(config)
    seen = ""
    for line in process.stderr:  # type: ignore[union-attr]
        seen += line
        if "serving on" in line:
            return process, int(line.rsplit(":", 1)[1])
    raise AssertionError(f"{name} did not start: {seen}")


def test_two_collectors_on_one_database_write_one_log(make_store, tmp_path: Path) -> None:
    store = make_store()
    nodes = [TestNode(f"node-{n}") for n in range(NODES)]
    for node in nodes:
        enroll(store, node)
    processes, channels = [], []
    try:
        for name in ("a", "b"):
            process, port = start(make_store, tmp_path, name)
            processes.append(process)
            channels.append(grpc.insecure_channel(f"127.0.0.1:{port}"))
        stubs = [census_pb2_grpc.CensusStub(c) for c in channels]
        sent: dict[int, bytes] = {}
        failures: list[BaseException] = []
        lock = threading.Lock()

        def deliver(node: TestNode, stub: census_pb2_grpc.CensusStub) -> None:
            try:
                for _ in range(ENVELOPES):  # one envelope per stream: the two collectors interleave finely
                    envelope = node.next()
                    (ack,) = stub.Report(iter([pb.Envelope(dsse=envelope)]), timeout=DEADLINE)
                    assert ack.status == pb.ACK_STATUS_ACCEPTED and ack.HasField("log_index")
                    with lock:
                        assert ack.log_index not in sent, f"leaf index {ack.log_index} given twice"
                        sent[ack.log_index] = envelope
            except BaseException as err:
                failures.append(err)

        threads = [threading.Thread(target=deliver, args=(n, stubs[i % 2])) for i, n in enumerate(nodes)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        total = NODES * ENVELOPES
        assert sorted(sent) == list(range(total))  # every index used exactly once, none skipped
        key = vkey(tmp_path)  # the one key both collectors sign with
        heads = [wait_for_size(stub, key, total) for stub in stubs]
        assert heads[0].root_hash == heads[1].root_hash  # one tree
        tree = merkle.MemoryTree()
        for index in range(total):
            tree.append(sent[index])
        assert heads[0].root_hash == tree.root()
        for index, envelope in sent.items():  # the checkpoint of collector a covers what b acknowledged too
            assert_included(stubs[0], envelope, index, heads[0])
        assert (tmp_path / "a.checkpoint").exists() and (tmp_path / "b.checkpoint").exists()
    finally:
        for channel in channels:
            channel.close()
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
            process.stderr.close()  # type: ignore[union-attr]
