"""`[server] reuse_port`: several `serve` processes on one host share one listen address (SO_REUSEPORT), each
with its own store connections and pipeline, to use more than one core. Without it a second collector on the
port is refused at start (never a silent split of the traffic)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from gpucensus.collector.config import ServerConfig
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.store import open_store
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration.server_fixtures import start


def _serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def test_collectors_share_a_port_only_when_each_asks(tmp_path: Path) -> None:
    stores = []
    for name in ("a", "b", "c"):
        store = open_store("sqlite", data_dir=str(tmp_path / name))
        store.migrate()
        stores.append(store)
    first, port = start(stores[0], ServerConfig(listen="127.0.0.1:0", reuse_port=True), log_dir=tmp_path / "a")
    try:
        shared = ServerConfig(listen=f"127.0.0.1:{port}", reuse_port=True)
        second, second_port = start(stores[1], shared, log_dir=tmp_path / "b")
        try:
            assert second_port == port
            with pytest.raises(ConfigError):  # one that did not ask is refused: no silent split
                start(stores[2], ServerConfig(listen=f"127.0.0.1:{port}"), log_dir=tmp_path / "c")
            assert _serving(port)
            first.stop(None).wait()
            assert _serving(port)  # the other process keeps the address served
        finally:
            second.stop(None).wait()
    finally:
        first.stop(None).wait()
        for store in stores:
            store.close()
