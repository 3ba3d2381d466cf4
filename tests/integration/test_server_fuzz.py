"""Property-based tests over the gRPC handlers of a real loopback collector (SQLite): whatever a client sends to
Enroll, Report, GetSiteStatus or GetCountryTotals, as well-formed messages with arbitrary fields or as raw bytes
that are no protobuf at all, the answer is a status from the table (never INTERNAL or UNKNOWN) and the server
keeps serving. Bounded under `make test` (the default profile), many more inputs under `make fuzz`."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from gpucensus.collector.config import ServerConfig
from gpucensus.collector.store import open_store
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import given
from hypothesis import strategies as st

from tests.ingest_nodes import TestNode, enroll
from tests.integration.server_fixtures import start

pytestmark = pytest.mark.fuzz

SERVICE = "/gpucensus.v1.Census/"
NOT_A_VERDICT = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
TIMEOUT = 10.0
TRIED: collections.Counter[str] = collections.Counter()


class Target:
    def __init__(self, channel: grpc.Channel, node: TestNode, envelope: bytes) -> None:
        self.channel = channel
        self.node = node
        self.envelope = envelope  # a valid envelope of `node`, stored: the seed of the mutations
        raw = lambda b: b  # noqa: E731 - the message bytes as they are
        self.raw_unary = {
            name: channel.unary_unary(SERVICE + name, request_serializer=raw, response_deserializer=raw)
            for name in ("Enroll", "GetSiteStatus", "GetCountryTotals")
        }
        self.raw_report = channel.stream_stream(SERVICE + "Report", request_serializer=raw, response_deserializer=raw)
        envelope, ack = pb.Envelope.SerializeToString, pb.Ack.FromString
        self.typed_report = channel.stream_stream(
            SERVICE + "Report", request_serializer=envelope, response_deserializer=ack
        )


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    store = open_store("sqlite", data_dir=str(Path(tmp_path_factory.mktemp("fuzz")) / "data"))
    server, port = start(store, ServerConfig(listen="127.0.0.1:0", first_message_seconds=5))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    node = TestNode("node-1")
    enroll(store, node)
    envelope = node.next()
    (ack,) = census_pb2_grpc.CensusStub(channel).Report(iter([pb.Envelope(dsse=envelope)]), timeout=TIMEOUT)
    assert ack.status == pb.ACK_STATUS_ACCEPTED
    try:
        yield Target(channel, node, envelope)
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        print(f"\ngRPC handler fuzz, inputs tried per target: {dict(sorted(TRIED.items()))}")
    finally:
        channel.close()
        server.stop(None).wait()
        store.close()


def answered(what: str, call: Callable[[], object]) -> None:
    """Run one RPC: it may succeed or fail with a status from the table, never INTERNAL / UNKNOWN."""
    TRIED[what] += 1
    try:
        call()
    except grpc.RpcError as err:
        assert err.code() not in NOT_A_VERDICT, f"{what}: {err.code().name}: {err.details()}"


texts = st.text(max_size=300)


@given(token=texts, node_id=texts, pem=st.one_of(texts, st.just(TestNode("x").public_key_pem)))
def test_enroll_with_any_fields(target: Target, token: str, node_id: str, pem: str) -> None:
    request = pb.EnrollRequest(token=token, node_id=node_id, public_key_pem=pem)
    answered("Enroll", lambda: target.raw_unary["Enroll"](request.SerializeToString(), timeout=TIMEOUT))


@given(name=st.sampled_from(["Enroll", "GetSiteStatus", "GetCountryTotals"]), message=st.binary(max_size=2000))
def test_unary_rpcs_with_raw_bytes(target: Target, name: str, message: bytes) -> None:
    answered(f"{name} (raw bytes)", lambda: target.raw_unary[name](message, timeout=TIMEOUT))


@given(site=texts, country=texts)
def test_queries_with_any_fields(target: Target, site: str, country: str) -> None:
    site_request = pb.GetSiteStatusRequest(site=site).SerializeToString()
    totals_request = pb.GetCountryTotalsRequest(country=country).SerializeToString()
    answered("GetSiteStatus", lambda: target.raw_unary["GetSiteStatus"](site_request, timeout=TIMEOUT))
    answered("GetCountryTotals", lambda: target.raw_unary["GetCountryTotals"](totals_request, timeout=TIMEOUT))


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """The stored envelope with a few bytes flipped, inserted or cut."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "insert", "cut"]))
        if action == "flip" and position < len(data):
            data[position] ^= draw(st.integers(1, 255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[position : position + draw(st.integers(1, 64))]
    return bytes(data)


@given(data=st.data())
def test_report_with_mutated_envelopes(target: Target, data: st.DataObject) -> None:
    one = st.one_of(mutated(target.envelope), st.binary(max_size=500))
    envelopes = data.draw(st.lists(one, min_size=1, max_size=3))

    def call() -> None:
        acks = list(target.typed_report(iter(pb.Envelope(dsse=e) for e in envelopes), timeout=TIMEOUT))
        for ack in acks:  # a mutation that still verifies is about the one signed sequence (whether it counts
            assert ack.sequence == 1  # as a replay is the envelope parser's business: issue 8, finding 1)

    answered("Report (envelopes)", call)


@given(messages=st.lists(st.binary(max_size=500), min_size=1, max_size=3))
def test_report_with_raw_bytes(target: Target, messages: list[bytes]) -> None:
    answered("Report (raw bytes)", lambda: list(target.raw_report(iter(messages), timeout=TIMEOUT)))
