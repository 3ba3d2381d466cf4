"""Clients that misbehave on the stream itself: streams opened and left silent, a client gone mid-stream. The
collector must keep serving everyone else and log no traceback."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from gpucensus.collector.config import ServerConfig
from gpucensus.collector.store import open_store
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc

from tests.ingest_nodes import TestNode, enroll
from tests.integration.server_fixtures import DEADLINE, start

WORKERS = 2


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[census_pb2_grpc.CensusStub, object]]:
    store = open_store("sqlite", data_dir=str(tmp_path / "data"))
    config = ServerConfig(listen="127.0.0.1:0", max_workers=WORKERS, stream_idle_timeout_seconds=1)
    server, port = start(store, config)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield census_pb2_grpc.CensusStub(channel), store
    finally:
        channel.close()
        server.stop(None).wait()
        store.close()


def silent(release: threading.Event) -> Iterator[pb.Envelope]:
    release.wait()
    yield from ()


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_streams_that_never_send_are_closed_and_do_not_starve_other_clients(served, caplog) -> None:
    stub, store = served
    release = threading.Event()
    idle = [stub.Report(silent(release), timeout=60) for _ in range(WORKERS + 1)]  # every worker, and one more
    try:
        node = TestNode("node-1")
        enroll(store, node)
        (ack,) = stub.Report(iter([pb.Envelope(dsse=node.next())]), timeout=DEADLINE)  # not starved
        assert ack.status == pb.ACK_STATUS_ACCEPTED
        assert stub.GetCountryTotals(pb.GetCountryTotalsRequest(), timeout=DEADLINE).countries
        for call in idle:
            with pytest.raises(grpc.RpcError) as err:
                list(call)
            assert err.value.code() == grpc.StatusCode.CANCELLED
    finally:
        release.set()
    assert any("sent nothing for 1 s" in r.getMessage() for r in caplog.records)
    assert errors_logged(caplog) == []


def test_a_client_gone_mid_stream_loses_nothing_acknowledged_and_breaks_nothing(served, caplog) -> None:
    stub, store = served
    node = TestNode("node-1")
    enroll(store, node)
    release = threading.Event()

    def two_then_hang() -> Iterator[pb.Envelope]:
        yield pb.Envelope(dsse=node.next())
        yield pb.Envelope(dsse=node.next())
        release.wait()

    call = stub.Report(two_then_hang(), timeout=DEADLINE)
    acks = [next(call), next(call)]
    call.cancel()  # the agent dies with the stream open
    release.set()
    assert [a.sequence for a in acks] == [1, 2]
    assert store.last_attestation(node.keyid).sequence == 2
    (ack,) = stub.Report(iter([pb.Envelope(dsse=node.next())]), timeout=DEADLINE)
    assert (ack.sequence, ack.status) == (3, pb.ACK_STATUS_ACCEPTED)
    assert errors_logged(caplog) == []
