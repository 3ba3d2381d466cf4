"""Hostile but well-formed input over real gRPC, on SQLite and on PostgreSQL: each gets its status or finding,
nothing stored is lost, the collector keeps serving, and a client's mistake never logs a traceback."""

from __future__ import annotations

import logging

import grpc
import pytest
from gpucensus.protos import census_pb2 as pb

from tests.ingest_nodes import TestNode, mock_predicate
from tests.integration.server_fixtures import (  # noqa: F401 (fixtures)
    DEADLINE,
    Collector,
    collector_fixture,
    make_store,
    status_of,
    store_kind,
)


@pytest.fixture
def node(collector: Collector) -> TestNode:
    node = TestNode("node-1")
    collector.enroll(node)
    assert collector.report([node.next()])[0].status == pb.ACK_STATUS_ACCEPTED  # something stored to keep
    return node


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def details_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details()


def still_serving(collector: Collector, node: TestNode) -> None:
    """The first envelope is intact and the node's next honest envelope is accepted."""
    assert collector.store.get_attestation(node.keyid, 1) is not None
    (ack,) = collector.report([node.next()])
    assert ack.status == pb.ACK_STATUS_ACCEPTED, list(ack.findings)


UNKNOWN_PART = next(d for d in mock_predicate("n", "unknown-device")["devices"] if d.get("basis") == "derived")


def signed(node: TestNode, edit) -> bytes:
    return node.sign(predicate=node.edited(edit))


@pytest.mark.parametrize(
    ("case", "edit"),
    [
        ("a NUL in a GPU name", lambda p: p["devices"][0].update(name="H100\x00")),  # PostgreSQL text has no NUL
        ("a NUL in a key", lambda p: p["devices"][0].update({"x\x00": 1})),
        ("a device that is not an object", lambda p: p["devices"].append("GPU-hidden")),  # would drop from the count
        ("a PCI function that is not an object", lambda p: p["pci_functions"].append(7)),
    ],
)
def test_a_signed_statement_no_store_can_hold_is_invalid_argument(
    collector: Collector, node: TestNode, caplog: pytest.LogCaptureFixture, case: str, edit
) -> None:
    envelope = signed(node, edit)
    assert status_of(lambda: collector.report([envelope])) == grpc.StatusCode.INVALID_ARGUMENT, case
    assert collector.store.last_attestation(node.keyid).sequence == 1
    assert no_tracebacks(caplog) == []
    still_serving(collector, node)


@pytest.mark.parametrize(
    ("field", "edit"),
    [
        ("devices[3].pci.device_id", lambda p: p["devices"][3]["pci"].update(device_id="0xZZ30")),
        ("devices[1].sm_count", lambda p: p["devices"][1].update(sm_count=-132)),
        ("devices[1].max_sm_clock_mhz", lambda p: p["devices"][1].update(max_sm_clock_mhz=-1980)),
        ("devices[0].index", lambda p: p["devices"][0].update(index=2**53 - 1)),  # no NVML index is that large
        ("devices[0].uuid", lambda p: p["devices"][0].update(uuid="GPU-" + "x" * 2000)),
        ("pci_functions[0].device_id", lambda p: p["pci_functions"][0].update(device_id="not-hex")),
    ],
)
def test_a_malformed_signed_fact_is_invalid_argument_naming_the_field_and_never_internal(
    collector: Collector, node: TestNode, caplog: pytest.LogCaptureFixture, field: str, edit
) -> None:
    envelope = signed(node, edit)
    for _ in range(2):  # every time: the agent would retry INTERNAL and block its spool
        code, details = details_of(lambda: collector.report([envelope]))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(f"{field}: "), details
    assert collector.store.last_attestation(node.keyid).sequence == 1
    assert no_tracebacks(caplog) == []
    still_serving(collector, node)


def test_an_envelope_with_a_giant_integer_is_invalid_argument(
    collector: Collector, node: TestNode, caplog: pytest.LogCaptureFixture
) -> None:
    giant = node.sign()[:-1] + b',"x":' + b"9" * 5000 + b"}"  # Python refuses to convert 4301+ digits
    assert status_of(lambda: collector.report([giant])) == grpc.StatusCode.INVALID_ARGUMENT
    assert no_tracebacks(caplog) == []
    still_serving(collector, node)


def test_weird_but_valid_facts_are_stored_on_every_store(
    collector: Collector, node: TestNode, caplog: pytest.LogCaptureFixture
) -> None:
    big = 2**53 - 1  # the largest integer a signed JCS statement can carry

    def edit(p: dict) -> None:
        p["devices"][0].update(index=65_535, uuid="GPU-é😀\u2028" + "x" * 200, name="Ｈ１００ \u202e")
        p["devices"][1] = {**UNKNOWN_PART, "sm_count": big, "max_sm_clock_mhz": big}
        p["node"]["hostname"] = {"deep": [[[[{"a": [-big]}]]]]}

    (ack,) = collector.report([node.next(predicate=node.edited(edit))])
    assert ack.status == pb.ACK_STATUS_ACCEPTED
    assert "accounting.out-of-range" in [f.rule_id for f in ack.findings]
    devices = collector.store.get_attestation(node.keyid, 2).devices
    assert devices[0].index == 65_535 and devices[0].uuid.startswith("GPU-é😀")
    assert devices[1].tpp is None  # absurd facts: unaccounted, never a number no column can hold
    assert no_tracebacks(caplog) == []
    still_serving(collector, node)


def test_thousands_of_devices_in_one_envelope_under_one_mebibyte(collector: Collector, node: TestNode) -> None:
    template = node.predicate["devices"][0]
    # 1000 devices of ~950 envelope bytes each (the bandwidth facts of issue 11 added ~150 per device)
    devices = [{**template, "index": i, "uuid": f"GPU-{i:08d}"} for i in range(1000)]
    envelope = node.next(predicate=node.edited(lambda p: p.update(devices=devices)))
    assert 512 * 1024 < len(envelope) < 1024 * 1024
    (ack,) = collector.report([envelope])
    assert ack.status == pb.ACK_STATUS_ACCEPTED
    assert len(collector.store.get_attestation(node.keyid, 2).devices) >= 1000
    still_serving(collector, node)


def test_a_public_key_with_trailing_junk_is_enrolled_as_the_clean_key(collector: Collector, caplog) -> None:
    # The PEM parser ignores what follows the key; the store kept the text as sent (PostgreSQL refused the NUL).
    node = TestNode("node-2")
    request = pb.EnrollRequest(
        token=collector.token(), node_id=node.node_id, public_key_pem=node.public_key_pem + "junk\x00é"
    )
    assert collector.stub.Enroll(request, timeout=DEADLINE).keyid == node.keyid
    assert collector.store.get_key(node.keyid).public_key_pem == node.public_key_pem
    assert collector.report([node.next()])[0].status == pb.ACK_STATUS_ACCEPTED
    assert no_tracebacks(caplog) == []
