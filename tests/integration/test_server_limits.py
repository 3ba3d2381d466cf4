"""What one client may cost the collector (issue 8, findings 3 and 4), over a real loopback server and SQLite:
acks that always fit the message limit, the per-envelope device limit, the per-key budget, the stream limits and
the first-message deadline. A refusal stores nothing; "retry later" refusals carry a retry-after trailer that the
agent honours (the envelope stays pending, never flagged rejected)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from gpucensus.agent import config as agent_config
from gpucensus.agent.spool import REJECTED, Spool
from gpucensus.agent.uplink import RetryableError, Uplink, open_channel
from gpucensus.collector.config import ServerConfig
from gpucensus.collector.limits import RETRY_AFTER_KEY
from gpucensus.collector.store import open_store
from gpucensus.collector.store.base import Store
from gpucensus.common import canonical, verify
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc

from tests.ingest_nodes import TestNode, enroll
from tests.integration.server_fixtures import DEADLINE, start

MAX_MESSAGE = 1024 * 1024


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = open_store("sqlite", data_dir=str(tmp_path / "data"))
    yield store
    store.close()


class Served:
    def __init__(self, store: Store, **settings: object) -> None:
        self.server, self.port = start(store, ServerConfig(listen="127.0.0.1:0", **settings))
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = census_pb2_grpc.CensusStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.server.stop(None).wait()


@pytest.fixture
def serve(store: Store) -> Iterator:
    opened: list[Served] = []

    def make(**settings: object) -> Served:
        opened.append(Served(store, **settings))
        return opened[-1]

    yield make
    for served in opened:
        served.close()


def many_devices(node: TestNode, count: int) -> bytes:
    """A validly signed envelope listing `count` minimal devices: each draws findings of its own."""
    devices = [{"index": i, "uuid": f"GPU-{i:08d}"} for i in range(count)]
    return node.sign(predicate=node.edited(lambda p: p.update(devices=devices)))


def ended(served: Served, reason: str) -> float | None:
    registry = served.server.metrics.registry
    return registry.get_sample_value("gpucensus_collector_report_streams_ended_total", {"reason": reason})


def failure(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_the_ack_of_an_envelope_with_10000_devices_fits_the_message_limit(store, serve) -> None:
    served = serve(max_devices_per_envelope=10_000)
    node = TestNode("node-1")
    enroll(store, node)
    envelope = many_devices(node, 10_000)
    assert len(envelope) < MAX_MESSAGE
    (ack,) = served.stub.Report(iter([pb.Envelope(dsse=envelope)]), timeout=60)
    assert ack.status == pb.ACK_STATUS_ACCEPTED and ack.HasField("log_index")
    assert ack.ByteSize() <= MAX_MESSAGE
    summaries = [f for f in ack.findings if f.subject.startswith("count:")]
    assert summaries and all("the collector stores every one" in f.message for f in summaries)
    assert len(store.get_attestation(node.keyid, 1).devices) >= 10_000
    assert len(store.list_findings(keyid=node.keyid)) > 10_000  # the store keeps each finding, the ack a summary


def test_an_envelope_over_the_device_limit_is_refused_before_anything_is_stored(store, serve) -> None:
    served = serve(max_devices_per_envelope=9_999)
    node = TestNode("node-1")
    enroll(store, node)
    err = failure(lambda: list(served.stub.Report(iter([pb.Envelope(dsse=many_devices(node, 10_000))]), timeout=60)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "10000 devices" in err.details() and "max_devices_per_envelope" in err.details()
    assert store.get_attestation(node.keyid, 1) is None and store.list_findings(keyid=node.keyid) == []
    (ack,) = served.stub.Report(iter([pb.Envelope(dsse=node.next())]), timeout=DEADLINE)  # the node goes on
    assert ack.status == pb.ACK_STATUS_ACCEPTED


def test_the_devices_of_an_envelope_whose_signature_fails_are_never_read(store, serve, monkeypatch) -> None:
    """Verify before parse: the device limit is checked on the verified predicate, so a forged envelope over the
    limit is refused for its signature and its payload is never parsed (the collector parses a payload once)."""
    served = serve(max_devices_per_envelope=10)
    node, forger = TestNode("node-1"), TestNode("node-1")
    enroll(store, node)
    forged = many_devices(forger, 50).replace(forger.keyid.encode(), node.keyid.encode())
    parsed: list[bytes] = []
    real = canonical.parse_canonical
    monkeypatch.setattr(canonical, "parse_canonical", lambda data: parsed.append(data) or real(data))
    monkeypatch.setattr(verify, "parse_canonical", canonical.parse_canonical)
    err = failure(lambda: list(served.stub.Report(iter([pb.Envelope(dsse=forged)]), timeout=DEADLINE)))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert parsed == [forged]  # the envelope's outer JSON only
    parsed.clear()
    err = failure(lambda: list(served.stub.Report(iter([pb.Envelope(dsse=many_devices(node, 50))]), timeout=60)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "50 devices" in err.details()
    assert len(parsed) == 2  # the envelope, then its payload once
    assert store.get_attestation(node.keyid, 1) is None


def test_a_key_over_its_envelope_budget_gets_retry_later_and_nothing_is_stored(store, serve) -> None:
    served = serve(node_envelopes_per_minute=2)
    node = TestNode("node-1")
    enroll(store, node)
    envelopes = [node.next() for _ in range(3)]
    call = served.stub.Report(iter(pb.Envelope(dsse=e) for e in envelopes), timeout=DEADLINE)
    acks = []
    err = failure(lambda: acks.extend(call))
    assert [a.sequence for a in acks] == [1, 2]
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "2 envelopes per minute" in err.details() and "retry in" in err.details()
    assert dict(err.trailing_metadata())[RETRY_AFTER_KEY] == "30"
    assert store.get_attestation(node.keyid, 3) is None
    other = TestNode("node-2")  # the budget is per key
    enroll(store, other)
    (ack,) = served.stub.Report(iter([pb.Envelope(dsse=other.next())]), timeout=DEADLINE)
    assert ack.sequence == 1


def test_a_key_over_its_byte_budget_gets_retry_later(store, serve) -> None:
    node = TestNode("node-1")
    enroll(store, node)
    first = node.next()
    served = serve(node_bytes_per_minute=len(first) * 3 // 2)
    (ack,) = served.stub.Report(iter([pb.Envelope(dsse=first)]), timeout=DEADLINE)
    assert ack.sequence == 1
    err = failure(lambda: list(served.stub.Report(iter([pb.Envelope(dsse=node.next())]), timeout=DEADLINE)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "bytes per minute" in err.details()
    assert store.get_attestation(node.keyid, 2) is None


def test_envelopes_that_fail_their_signature_do_not_spend_the_named_key_s_budget(store, serve) -> None:
    served = serve(node_envelopes_per_minute=1)
    node, forger = TestNode("node-1"), TestNode("node-1")
    enroll(store, node)
    forged = forger.sign().replace(forger.keyid.encode(), node.keyid.encode())  # names the node's key
    for _ in range(3):
        err = failure(lambda: list(served.stub.Report(iter([pb.Envelope(dsse=forged)]), timeout=DEADLINE)))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    (ack,) = served.stub.Report(iter([pb.Envelope(dsse=node.next())]), timeout=DEADLINE)
    assert ack.status == pb.ACK_STATUS_ACCEPTED


def test_the_agent_keeps_a_budget_refusal_pending_and_retries_later(store, serve, tmp_path) -> None:
    served = serve(node_envelopes_per_minute=2)
    node = TestNode("node-1")
    enroll(store, node)
    spool = Spool(tmp_path / "spool.db", max_bytes=10_000_000)
    try:
        for _ in range(3):
            sequence = node.sequence
            spool.append(node.keyid, sequence, node.next())
        config = agent_config.load(
            None, env={}, overrides={"collector.address": f"127.0.0.1:{served.port}", "node.state_dir": str(tmp_path)}
        )
        with pytest.raises(RetryableError, match="RESOURCE_EXHAUSTED"):
            Uplink(open_channel(config), timeout_seconds=DEADLINE).drain(spool)
        assert spool.entries(REJECTED) == []
        assert [e.sequence for e in spool.pending()] == [3]
    finally:
        spool.close()


def silent(release: threading.Event) -> Iterator[pb.Envelope]:
    release.wait(timeout=60)
    yield from ()


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"max_streams": 2, "max_streams_per_peer": 10}, "its limit"),
        ({"max_streams": 10, "max_streams_per_peer": 2}, "the limit per client"),
    ],
)
def test_streams_beyond_the_limits_are_refused_with_retry_later(store, serve, settings, says) -> None:
    served = serve(first_message_seconds=30, **settings)
    release = threading.Event()
    held = [served.stub.Report(silent(release), timeout=DEADLINE) for _ in range(2)]
    try:
        deadline = time.monotonic() + DEADLINE
        while served.server.servicer.streams.count < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        err = failure(lambda: list(served.stub.Report(silent(release), timeout=DEADLINE)))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and says in err.details()
        assert RETRY_AFTER_KEY in dict(err.trailing_metadata())
        assert ended(served, "over_limit") == 1
    finally:
        release.set()
    for call in held:
        assert list(call) == []  # the client closed its side: the stream ended cleanly
    node = TestNode("node-1")  # the slots were given back
    enroll(store, node)
    (ack,) = served.stub.Report(iter([pb.Envelope(dsse=node.next())]), timeout=DEADLINE)
    assert ack.sequence == 1


def test_a_stream_that_sends_nothing_is_closed_after_the_first_message_deadline(store, serve) -> None:
    served = serve(first_message_seconds=1, stream_idle_timeout_seconds=30)
    release = threading.Event()
    started = time.monotonic()
    try:
        err = failure(lambda: list(served.stub.Report(silent(release), timeout=DEADLINE)))
    finally:
        release.set()
    assert err.code() == grpc.StatusCode.CANCELLED and "sent nothing for 1 s" in err.details()
    assert time.monotonic() - started < DEADLINE / 2
    assert ended(served, "first_message") == 1 and ended(served, "idle") == 0


def test_a_stream_silent_after_an_ack_is_closed_after_the_idle_timeout(store, serve) -> None:
    served = serve(first_message_seconds=30, stream_idle_timeout_seconds=1)
    node = TestNode("node-1")
    enroll(store, node)
    release = threading.Event()

    def one_then_silent() -> Iterator[pb.Envelope]:
        yield pb.Envelope(dsse=node.next())
        release.wait(timeout=60)

    acks: list[pb.Ack] = []
    try:
        err = failure(lambda: acks.extend(served.stub.Report(one_then_silent(), timeout=DEADLINE)))
    finally:
        release.set()
    assert [a.sequence for a in acks] == [1]
    assert err.code() == grpc.StatusCode.CANCELLED and "was idle for 1 s" in err.details()
    assert ended(served, "idle") == 1
