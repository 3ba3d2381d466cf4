"""collector.limits and the bounded ack (collector.codec): stream slots, the per-key budget, the pre-judgement peek,
and an ack that fits the message limit whatever the findings."""

from __future__ import annotations

import base64
import json

import pytest
from gpucensus.collector import codec
from gpucensus.collector.ingest.model import ACCEPTED, REJECTED, Finding, IngestResult
from gpucensus.collector.limits import (
    KeyBudget,
    LimitError,
    StreamSlots,
    TooManyDevicesError,
    check_devices,
    peek,
    peer_address,
)
from gpucensus.collector.statuses import status_for
from hypothesis import given
from hypothesis import strategies as st

from tests.ingest_nodes import TestNode


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:10.0.0.7:51234", "ipv4:10.0.0.7"),
        ("ipv6:[::1]:51234", "ipv6:[::1]"),
        ("unix:/run/collector.sock", "unix:/run/collector.sock"),
        ("", ""),
    ],
)
def test_peer_address_drops_the_port(peer: str, address: str) -> None:
    assert peer_address(peer) == address


def test_stream_slots_refuse_beyond_the_total_and_per_peer_and_give_back() -> None:
    slots = StreamSlots(total=3, per_peer=2)
    slots.open("a")
    slots.open("a")
    with pytest.raises(LimitError, match="limit per client"):
        slots.open("a")
    slots.open("b")
    with pytest.raises(LimitError, match="its limit") as err:
        slots.open("c")
    assert err.value.retry_after >= 1 and status_for(err.value).name == "RESOURCE_EXHAUSTED"
    slots.close("a")
    slots.open("c")
    assert slots.count == 3


def test_the_envelope_budget_refills_over_the_minute() -> None:
    clock = FakeClock()
    budget = KeyBudget(envelopes_per_minute=2, bytes_per_minute=0, clock=clock)
    for _ in range(2):
        budget.check("k", 100)
        budget.charge("k", 100)
    with pytest.raises(LimitError, match="2 envelopes per minute") as err:
        budget.check("k", 100)
    assert err.value.retry_after == 30
    budget.check("other", 100)  # per key
    clock.now += 30
    budget.check("k", 100)


def test_the_byte_budget_refuses_what_does_not_fit_and_a_huge_envelope_waits_for_a_full_bucket() -> None:
    clock = FakeClock()
    budget = KeyBudget(envelopes_per_minute=0, bytes_per_minute=1000, clock=clock)
    budget.check("k", 5000)  # larger than the bucket: allowed when the bucket is full (the device limit bounds it)
    budget.charge("k", 600)
    with pytest.raises(LimitError, match="1000 bytes per minute"):
        budget.check("k", 600)
    clock.now += 12  # 200 bytes back
    budget.check("k", 600)


def test_zero_disables_a_budget() -> None:
    budget = KeyBudget(0, 0)
    for _ in range(100):
        budget.check("k", 10**9)
        budget.charge("k", 10**9)


def test_peek_reads_the_keyid_of_a_real_envelope_and_the_device_limit_is_invalid_argument() -> None:
    node = TestNode("node-1")
    seen = peek(node.sign())
    assert seen.keyid == node.keyid
    devices = len(node.predicate["devices"])
    check_devices(devices, devices)
    with pytest.raises(TooManyDevicesError, match="max_devices_per_envelope") as err:
        check_devices(devices, devices - 1)
    assert status_for(err.value).name == "INVALID_ARGUMENT"


def envelope_with(payload: bytes, keyid: object = "kid") -> bytes:
    return json.dumps({"payload": base64.b64encode(payload).decode(), "signatures": [{"keyid": keyid}]}).encode()


@pytest.mark.fuzz
@given(
    st.one_of(
        st.binary(max_size=300),
        st.builds(envelope_with, st.binary(max_size=300)),
        st.builds(lambda devices: envelope_with(json.dumps({"predicate": {"devices": devices}}).encode()),
                  st.recursive(st.none() | st.integers() | st.text(max_size=5),
                               lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner,
                                                                                           max_size=3),
                               max_leaves=20)),
    )
)  # fmt: skip
def test_peek_never_raises(data: bytes) -> None:
    assert isinstance(peek(data).keyid, str)


def test_peek_of_deeply_nested_json_is_empty_not_an_error() -> None:
    assert peek(b"[" * 100_000).keyid == ""


findings = st.builds(
    Finding,
    rule_id=st.sampled_from(["device.incomplete", "accounting.mismatch", "chain.gap"]) | st.text(max_size=40),
    severity=st.sampled_from(["info", "warning", "violation"]),
    subject=st.text(max_size=2000),
    message=st.text(max_size=2000),
)


@pytest.mark.fuzz
@given(st.lists(findings, max_size=400), st.integers(min_value=4096, max_value=1024 * 1024))
def test_an_ack_never_exceeds_the_limit_it_is_given(many: list[Finding], limit: int) -> None:
    result = IngestResult("ab" * 32, 7, ACCEPTED, log_index=3, findings=tuple(many), checkpoint=b"x" * 200)
    ack = codec.ack_to_pb(result, limit)
    assert ack.ByteSize() <= limit
    assert (ack.keyid, ack.sequence, ack.log_index) == ("ab" * 32, 7, 3)
    if len(many) <= codec.ACK_FINDINGS and ack.ByteSize() < limit // 2:
        assert len(ack.findings) == len(many)


def test_many_findings_are_summarised_per_rule_with_a_few_examples() -> None:
    many = tuple(Finding("device.incomplete", "warning", f"gpu:GPU-{i}", "not in catalogue") for i in range(10_000))
    many += (Finding("chain.gap", "violation", "node:n1", "sequence 3 missing"),)
    ack = codec.ack_to_pb(IngestResult("k", 1, REJECTED, findings=many))
    assert [(f.rule_id, f.subject) for f in ack.findings] == [
        ("device.incomplete", "count:10000"),
        ("device.incomplete", "gpu:GPU-0"),
        ("device.incomplete", "gpu:GPU-1"),
        ("device.incomplete", "gpu:GPU-2"),
        ("chain.gap", "node:n1"),
    ]
    assert "10000 findings of rule device.incomplete" in ack.findings[0].message
