"""`gpucensus-collector serve` as a process: SIGTERM lets the envelope in hand be stored and acknowledged, then
ends the stream with UNAVAILABLE (the agent's cue to reconnect and resend), and exits 0; nothing acknowledged
is missing from the store afterwards."""

from __future__ import annotations

import queue
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from gpucensus.collector.servicer import SHUTTING_DOWN
from gpucensus.collector.store import open_store
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc

from tests.ingest_nodes import TestNode, enroll
from tests.integration.server_fixtures import spawn_serve

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, int, Path]]:
    data = tmp_path / "data"
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[store]\nkind = "sqlite"\ndata_dir = "{data}"\n'
        '[server]\nlisten = "127.0.0.1:0"\nshutdown_grace_seconds = 20\n'
    )
    process = spawn_serve(config)
    try:
        for line in process.stderr:
            if "serving on" in line:
                port = int(line.rsplit(":", 1)[1])
                break
        else:
            pytest.fail(f"the collector did not start (exit {process.wait()})")
        yield process, port, data
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_sigterm_completes_the_ack_in_hand_then_ends_the_stream_and_exits_cleanly(served) -> None:
    process, port, data = served
    node = TestNode("node-1")
    store = open_store("sqlite", data_dir=str(data))
    enroll(store, node)
    store.close()
    outbox: queue.Queue[bytes | None] = queue.Queue()

    def requests() -> Iterator[pb.Envelope]:
        while (envelope := outbox.get()) is not None:
            yield pb.Envelope(dsse=envelope)

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        acks = census_pb2_grpc.CensusStub(channel).Report(requests(), timeout=60)
        acked: list[int] = []
        for _ in range(3):
            outbox.put(node.next())
            acked.append(next(acks).sequence)
        outbox.put(node.next())  # in flight when the signal arrives
        process.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.RpcError) as ended:
            for ack in acks:
                acked.append(ack.sequence)
                outbox.put(node.next())  # keep sending until the collector closes the stream
        outbox.put(None)
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert ended.value.details() == SHUTTING_DOWN
    assert acked[:4] == [1, 2, 3, 4]  # the envelope in flight at SIGTERM was acknowledged
    assert process.wait(timeout=30) == 0
    assert "stopped;" in process.stderr.read()
    store = open_store("sqlite", data_dir=str(data))
    try:
        assert all(store.get_attestation(node.keyid, sequence) is not None for sequence in acked)
    finally:
        store.close()
