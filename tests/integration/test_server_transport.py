"""The collector is standard gRPC: health service, reflection, message limits, and a client built on another
gRPC implementation (grpclib) gets the same answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
from gpucensus.protos import census_pb2 as pb
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.ingest_nodes import TestNode
from tests.integration.server_fixtures import DEADLINE, Collector, sqlite_collector_fixture, status_of  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def test_health_reports_serving_for_the_server_and_the_census_service(sqlite_collector: Collector) -> None:
    stub = health_pb2_grpc.HealthStub(sqlite_collector.channel)
    for service in ("", "gpucensus.v1.Census"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=DEADLINE)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    unknown = health_pb2.HealthCheckRequest(service="no.such.Service")
    assert status_of(lambda: stub.Check(unknown, timeout=DEADLINE)) == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_census_service(sqlite_collector: Collector) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(sqlite_collector.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (reply,) = stub.ServerReflectionInfo(iter([request]), timeout=DEADLINE)
    names = {s.name for s in reply.list_services_response.service}
    assert {"gpucensus.v1.Census", "grpc.health.v1.Health"} <= names
    symbol = reflection_pb2.ServerReflectionRequest(file_containing_symbol="gpucensus.v1.Census")
    (reply,) = stub.ServerReflectionInfo(iter([symbol]), timeout=DEADLINE)
    assert reply.file_descriptor_response.file_descriptor_proto  # enough for grpcurl to call it


def test_a_message_over_one_mebibyte_is_resource_exhausted(sqlite_collector: Collector) -> None:
    oversized = b"{" + b" " * (1024 * 1024) + b"}"
    assert status_of(lambda: sqlite_collector.report([oversized])) == grpc.StatusCode.RESOURCE_EXHAUSTED
    node = TestNode("node-1")  # the server is still fine afterwards
    sqlite_collector.enroll(node)
    assert [a.status for a in sqlite_collector.report([node.next()])] == [pb.ACK_STATUS_ACCEPTED]


def test_unknown_country_is_not_found_and_a_known_country_without_gpus_is_zero(sqlite_collector: Collector) -> None:
    sqlite_collector.token(site="sin1", country="SG")
    stub = sqlite_collector.stub
    (sg,) = stub.GetCountryTotals(pb.GetCountryTotalsRequest(country="SG"), timeout=DEADLINE).countries
    assert (sg.country, sg.sites, sg.totals.gpus) == ("SG", 1, 0)
    request = pb.GetCountryTotalsRequest(country="ZZ")
    assert status_of(lambda: stub.GetCountryTotals(request, timeout=DEADLINE)) == grpc.StatusCode.NOT_FOUND


def grpclib_client(port: int, envelopes: list[bytes], tmp_path: Path) -> dict:
    paths = []
    for i, envelope in enumerate(envelopes):
        path = tmp_path / f"envelope-{i}.json"
        path.write_bytes(envelope)
        paths.append(str(path))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tests.integration.grpclib_client", str(port), *paths]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_grpclib_client_calls_health_and_report(sqlite_collector: Collector, tmp_path: Path) -> None:
    node = TestNode("node-1")
    sqlite_collector.enroll(node)
    first, second = node.next(), node.next()
    result = grpclib_client(sqlite_collector.port, [first, second, first], tmp_path)
    assert result["health"] == "SERVING"
    assert result["acks"] == [
        {"sequence": 1, "status": "ACK_STATUS_ACCEPTED", "duplicate": False},
        {"sequence": 2, "status": "ACK_STATUS_ACCEPTED", "duplicate": False},
        {"sequence": 1, "status": "ACK_STATUS_ACCEPTED", "duplicate": True},
    ]
    assert sqlite_collector.store.last_attestation(node.keyid).sequence == 2


def test_a_grpclib_client_gets_the_standard_status_for_an_unenrolled_key(
    sqlite_collector: Collector, tmp_path: Path
) -> None:
    result = grpclib_client(sqlite_collector.port, [TestNode("stranger").next()], tmp_path)
    assert (result["acks"], result["error"]) == ([], "PERMISSION_DENIED")
