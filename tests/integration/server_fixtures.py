"""A collector on 127.0.0.1 over a real store, for the server tests: `collector` (both store kinds, via
`make_store`) and `sqlite_collector` (transport-only tests, one kind is enough).

    from tests.integration.server_fixtures import collector_fixture, make_store, store_kind  # noqa: F401
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import grpc
import pytest
from gpucensus.collector.config import CollectorConfig, LogConfig, ServerConfig
from gpucensus.collector.registry import new_token
from gpucensus.collector.server import CollectorServer, run_server
from gpucensus.collector.store import open_store
from gpucensus.collector.store.base import Store
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc

from tests.ingest_nodes import NOW, TestNode, register
from tests.integration.store_fixtures import make_store, store_kind  # noqa: F401 (fixtures)

DEADLINE = 10.0  # seconds, on every client call


class Clock:
    """The collector's clock, settable by a test (staleness, future timestamps)."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Collector:
    server: CollectorServer
    port: int
    store: Store
    channel: grpc.Channel
    stub: census_pb2_grpc.CensusStub
    clock: Clock

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def token(self, site: str = "fra1", country: str = "DE") -> str:
        register(self.store, site, country)
        token, record = new_token(site, NOW, timedelta(hours=1))
        self.store.add_token(record)
        return token

    def enroll(self, node: TestNode, site: str = "fra1", country: str = "DE") -> pb.EnrollResponse:
        request = pb.EnrollRequest(
            token=self.token(site, country), node_id=node.node_id, public_key_pem=node.public_key_pem
        )
        return self.stub.Enroll(request, timeout=DEADLINE)

    def report(self, envelopes: Iterable[bytes]) -> list[pb.Ack]:
        """One stream: send every envelope, return every ack (raises grpc.RpcError if the stream fails)."""
        return list(self.stub.Report((pb.Envelope(dsse=e) for e in envelopes), timeout=DEADLINE))


def start(
    store: Store,
    server_config: ServerConfig | None = None,
    clock: Callable[[], datetime] = lambda: NOW,
    log_dir: Path | None = None,
) -> tuple[CollectorServer, int]:
    """A collector on `store`; its log key and checkpoint in `log_dir` (default: beside the SQLite file)."""
    log = (
        LogConfig(key_file=str(log_dir / "log.key"), checkpoint_file=str(log_dir / "checkpoint"))
        if log_dir
        else LogConfig()
    )
    config = CollectorConfig(server=server_config or ServerConfig(listen="127.0.0.1:0"), log=log)
    return run_server(config, store, clock=clock)


def serving(store: Store, config: CollectorConfig) -> Iterator[Collector]:
    """A collector built from `config` on `store` with a client channel, on one settable clock; stopped after."""
    clock = Clock()
    server, port = run_server(config, store, clock=clock)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Collector(server, port, store, channel, census_pb2_grpc.CensusStub(channel), clock)
    finally:
        channel.close()
        server.stop(None).wait()


def _collector(store: Store, log_dir: Path | None = None) -> Iterator[Collector]:
    clock = Clock()
    server, port = start(store, clock=clock, log_dir=log_dir)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Collector(server, port, store, channel, census_pb2_grpc.CensusStub(channel), clock)
    finally:
        channel.close()
        server.stop(None).wait()


@pytest.fixture(name="collector")
def collector_fixture(make_store, tmp_path: Path) -> Iterator[Collector]:  # noqa: F811 - the fixture, imported above
    yield from _collector(make_store(), tmp_path / "collector-log")


@pytest.fixture(name="sqlite_collector")
def sqlite_collector_fixture(tmp_path: Path) -> Iterator[Collector]:
    store = open_store("sqlite", data_dir=str(tmp_path / "collector-data"))
    try:
        yield from _collector(store)
    finally:
        store.close()


ROOT = Path(__file__).resolve().parents[2]


def spawn_serve(config: Path) -> subprocess.Popen[str]:
    """`gpucensus-collector serve --config CONFIG` as a child process, stderr piped for its start-up lines."""
    return subprocess.Popen(
        [sys.executable, "-m", "gpucensus.collector.cli", "serve", "--config", str(config)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
        text=True,
    )


def status_of(call: Callable[[], object]) -> grpc.StatusCode:
    """The status code of the RPC error `call` raises."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()
