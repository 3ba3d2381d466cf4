"""The collector's transparency log over real gRPC: acks carry leaf indices and checkpoints signed with the log
key, the proof RPCs answer with RFC 9162 proofs that verify, bad requests get a clear status, and a database
restored from an old copy makes the collector refuse to sign while a monitor holding the later checkpoint sees
the fork."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from gpucensus.collector.log import cosign
from gpucensus.collector.log.service import b64 as merkle_b64
from gpucensus.collector.store import open_store
from gpucensus.common import merkle, note
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc

from tests.ingest_nodes import TestNode, enroll
from tests.integration.log_fixtures import DEADLINE, assert_included, checkpoint, serve, vkey, wait_for_size
from tests.integration.server_fixtures import status_of

pytest_plugins = ["tests.integration.store_fixtures"]  # make_store, store_kind
ROOT = Path(__file__).resolve().parents[2]


def report(stub: census_pb2_grpc.CensusStub, envelopes: list[bytes]) -> list[pb.Ack]:
    return list(stub.Report((pb.Envelope(dsse=e) for e in envelopes), timeout=DEADLINE))


@pytest.fixture
def running(make_store, tmp_path: Path):
    store = make_store()
    server, port = serve(store, tmp_path / "log")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield store, census_pb2_grpc.CensusStub(channel), vkey(tmp_path / "log"), server
    finally:
        channel.close()
        server.stop(None).wait()


def test_acks_carry_leaf_indices_and_proofs_verify_against_the_signed_checkpoint(running) -> None:
    store, stub, key, _ = running
    node = TestNode("node-1")
    enroll(store, node)
    envelopes = [node.next() for _ in range(7)]
    acks = report(stub, envelopes)
    assert [a.log_index for a in acks] == list(range(7))
    head = wait_for_size(stub, key, 7)
    assert head.origin == key.name and head.size == 7
    for ack, envelope in zip(acks, envelopes, strict=True):
        assert_included(stub, envelope, ack.log_index, head)
    envelopes.append(node.next())
    later = report(stub, envelopes[-1:])[0]
    assert later.checkpoint and note.open_checkpoint(later.checkpoint, key)[0].size >= 7  # the latest, maybe older
    newest = wait_for_size(stub, key, 8)
    tree = merkle.MemoryTree()
    for envelope in envelopes:
        tree.append(envelope)
    assert newest.root_hash == tree.root()
    old = stub.GetConsistencyProof(pb.GetConsistencyProofRequest(old_size=3), timeout=DEADLINE)  # new: latest
    assert old.hashes and all(len(h) == 32 for h in old.hashes)
    merkle.verify_consistency(3, newest.size, list(old.hashes), tree.root(3), newest.root_hash)
    default = stub.GetInclusionProof(pb.GetInclusionProofRequest(log_index=2), timeout=DEADLINE)  # size 0: latest
    assert default.tree_size == newest.size


def test_a_cosignature_given_with_log_cosign_is_served_with_the_checkpoint(running, tmp_path: Path) -> None:
    store, stub, key, server = running
    node = TestNode("node-1")
    enroll(store, node)
    report(stub, [node.next() for _ in range(2)])
    wait_for_size(stub, key, 2)
    signed = server.log.signed()
    witness = note.SignerKey.generate("witness.example/w", note.COSIGNATURE_V1)
    parsed = note.parse_note(signed.note)
    answer = note.cosign(parsed, witness, 1_700_000_000).line().encode()  # the witness's line alone
    cosign.add_cosignatures(tmp_path / "log" / "checkpoint", signed, answer, [witness.verifier()])
    deadline = time.monotonic() + DEADLINE
    while (
        len(note.parse_note(stub.GetCheckpoint(pb.GetCheckpointRequest(), timeout=DEADLINE).checkpoint).signatures) < 2
    ):
        assert time.monotonic() < deadline, "the cosignature was not served"
        time.sleep(0.02)
    served = stub.GetCheckpoint(pb.GetCheckpointRequest(), timeout=DEADLINE)
    assert note.verify_cosignature(note.parse_note(served.checkpoint), witness.verifier()) == 1_700_000_000
    assert note.open_checkpoint(served.checkpoint, key)[0].size == 2 and served.log_vkey == str(key)


def test_a_duplicate_gets_its_original_index(running) -> None:
    store, stub, _, _ = running
    node = TestNode("node-1")
    enroll(store, node)
    envelopes = [node.next() for _ in range(3)]
    report(stub, envelopes)
    (again,) = report(stub, [envelopes[1]])
    assert (again.duplicate, again.log_index) == (True, 1)


@pytest.mark.parametrize(
    ("call", "request_", "code", "words"),
    [
        ("GetInclusionProof", pb.GetInclusionProofRequest(log_index=5, tree_size=3), "OUT_OF_RANGE", "not in a tree"),
        ("GetInclusionProof", pb.GetInclusionProofRequest(log_index=0, tree_size=99), "OUT_OF_RANGE", "beyond"),
        ("GetInclusionProof", pb.GetInclusionProofRequest(log_index=2**64 - 1), "OUT_OF_RANGE", "not in a tree"),
        ("GetConsistencyProof", pb.GetConsistencyProofRequest(old_size=0, new_size=3), "OUT_OF_RANGE", "0 < old"),
        ("GetConsistencyProof", pb.GetConsistencyProofRequest(old_size=3, new_size=2), "OUT_OF_RANGE", "0 < old"),
        (
            "GetConsistencyProof",
            pb.GetConsistencyProofRequest(old_size=1, new_size=2**64 - 1),
            "OUT_OF_RANGE",
            "beyond",
        ),
    ],
)
def test_proofs_for_what_the_log_does_not_have_are_out_of_range(running, call, request_, code, words) -> None:
    store, stub, key, _ = running
    node = TestNode("node-1")
    enroll(store, node)
    report(stub, [node.next() for _ in range(3)])
    wait_for_size(stub, key, 3)
    with pytest.raises(grpc.RpcError) as caught:
        getattr(stub, call)(request_, timeout=DEADLINE)
    assert caught.value.code() is getattr(grpc.StatusCode, code)
    assert words in caught.value.details()


def test_bytes_that_are_no_request_are_invalid_argument(running) -> None:
    server = running[3]
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        for method in ("GetCheckpoint", "GetInclusionProof", "GetConsistencyProof"):
            raw = channel.unary_unary(f"/gpucensus.v1.Census/{method}")  # no serializer: raw bytes
            assert status_of(lambda r=raw: r(b"\xff\xff\xff", timeout=DEADLINE)) is grpc.StatusCode.INVALID_ARGUMENT
    finally:
        channel.close()


def _subprocess(module: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)  # fmt: skip


def audit(*argv: str) -> subprocess.CompletedProcess[str]:
    return _subprocess("gpucensus.collector.audit_cli", *argv)


def collector_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return _subprocess("gpucensus.collector.cli", *argv)


def config_for(tmp_path: Path, data: Path, log_dir: Path) -> Path:
    config = tmp_path / "collector.toml"
    config.write_text(f'[store]\ndata_dir = "{data}"\n[log]\nkey_file = "{log_dir / "log.key"}"\n'
                      f'checkpoint_file = "{log_dir / "checkpoint"}"\n')  # fmt: skip
    return config


def _copy_db(source: Path, target: Path) -> None:
    target.mkdir(exist_ok=True)
    for name in ("collector.db", "collector.db-wal", "collector.db-shm"):
        if (source / name).exists():
            shutil.copy2(source / name, target / name)
        elif (target / name).exists():
            (target / name).unlink()


def test_a_database_restored_from_an_old_copy_is_never_signed_and_the_fork_shows(tmp_path: Path, caplog) -> None:
    data, backup, log_dir = tmp_path / "data", tmp_path / "backup", tmp_path / "log"
    first, second = TestNode("node-1"), TestNode("node-2")

    def run(nodes_envelopes, wait: int | None):
        store = open_store("sqlite", data_dir=str(data))
        server, port = serve(store, log_dir)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = census_pb2_grpc.CensusStub(channel)
        try:
            acks = report(stub, nodes_envelopes) if nodes_envelopes else []
            head = wait_for_size(stub, vkey(log_dir), wait) if wait is not None else None
            return acks, head, stub, server, channel, store
        except BaseException:
            close(server, channel, store)
            raise

    def close(server, channel, store) -> None:
        channel.close()
        server.stop(None).wait()
        store.close()

    store = open_store("sqlite", data_dir=str(data))
    enroll(store, first)
    enroll(store, second)
    store.close()
    early = [first.next() for _ in range(5)]
    _, _, _, *handles = run(early, 5)
    close(*handles)
    _copy_db(data, backup)  # the operator's backup at size 5
    late = [first.next() for _ in range(5)]
    _, signed, _, *handles = run(late, 10)
    close(*handles)
    assert signed.size == 10
    signed_note = (log_dir / "checkpoint").read_bytes()
    _copy_db(backup, data)  # restored: the log forgets leaves 5..9

    caplog.set_level(logging.ERROR, logger="gpucensus.collector.log")
    other = [second.next() for _ in range(7)]
    acks_after, _, stub, server, channel, store = run(other, None)
    try:
        assert [a.log_index for a in acks_after] == list(range(5, 12))  # ingest goes on: stored and acknowledged
        deadline = time.monotonic() + DEADLINE
        while "tree (size 12" not in caplog.text:  # first "size 5 ... is smaller than", then 12: not consistent
            assert time.monotonic() < deadline, f"no refusal at size 12 logged: {caplog.text}"
            time.sleep(0.02)
        message = next(r.getMessage() for r in caplog.records if "tree (size 12" in r.getMessage())
        assert "refusing to sign" in message and "not consistent with" in message
        assert f"(size 10, root {merkle_b64(signed.root_hash)})" in message  # both tree sizes and roots named
        assert server.metrics.registry.get_sample_value("gpucensus_log_signing_refused") == 1
        served = checkpoint(stub, vkey(log_dir))
        assert (served.size, served.root_hash) == (10, signed.root_hash)  # the last good one stays served
        assert (
            acks_after[-1].checkpoint and note.open_checkpoint(acks_after[-1].checkpoint, vkey(log_dir))[0].size == 10
        )
        # a monitor holding the checkpoint of size 10 checks its entry 7: the database's tree does not lead there
        proof = stub.GetInclusionProof(pb.GetInclusionProofRequest(log_index=7, tree_size=10), timeout=DEADLINE)
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(merkle.leaf_hash(late[2]), 7, 10, list(proof.hashes), signed.root_hash)
    finally:
        close(server, channel, store)

    # the operator forces it (removes the checkpoint file): the new checkpoint is a fork a witness rejects
    witness = tmp_path / "witness"
    (tmp_path / "held").write_bytes(signed_note)
    key = str(vkey(log_dir))
    held = audit("witness", "--state", str(witness), "--vkey", key, str(tmp_path / "held"))
    assert held.returncode == 0, held.stdout + held.stderr  # the witness holds the checkpoint of size 10
    (log_dir / "checkpoint").unlink()
    _, forked, stub, *handles = run([], 12)
    close(*handles)
    assert forked.size == 12
    (tmp_path / "offered").write_bytes((log_dir / "checkpoint").read_bytes())
    proof = collector_cli("log", "consistency", "--old", "10", "--data-dir", str(data),
                          "--config", str(config_for(tmp_path, data, log_dir)))  # fmt: skip
    assert proof.returncode == 0, proof.stderr
    (tmp_path / "proof.json").write_text(proof.stdout)
    report_ = audit("witness", "--state", str(witness), "--vkey", key, "--consistency", str(tmp_path / "proof.json"),
                    str(tmp_path / "offered"))  # fmt: skip
    assert report_.returncode == 1, report_.stdout + report_.stderr
    assert "10" in report_.stdout + report_.stderr and "12" in report_.stdout + report_.stderr
    assert (witness / "checkpoint").read_bytes() == signed_note  # the witness keeps the later, good checkpoint


def test_a_collector_that_signed_nothing_yet_says_so(make_store, tmp_path: Path) -> None:
    """`[log] integrate = false` (another collector integrates and signs) and no checkpoint file of its own."""
    store = make_store()
    server, port = serve(store, tmp_path / "log", integrate=False)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = census_pb2_grpc.CensusStub(channel)
        node = TestNode("node-1")
        enroll(store, node)
        (ack,) = report(stub, [node.next()])
        assert ack.log_index == 0 and ack.checkpoint == b""  # sequenced, nothing signed to send along
        assert status_of(lambda: stub.GetCheckpoint(pb.GetCheckpointRequest(), timeout=DEADLINE)) is (
            grpc.StatusCode.FAILED_PRECONDITION
        )
        request = pb.GetInclusionProofRequest(log_index=0)
        assert status_of(lambda: stub.GetInclusionProof(request, timeout=DEADLINE)) is (
            grpc.StatusCode.FAILED_PRECONDITION
        )
        assert store.log_size() == 0  # this collector never integrated
    finally:
        channel.close()
        server.stop(None).wait()
