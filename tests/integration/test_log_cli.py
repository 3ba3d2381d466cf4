"""`gpucensus-collector log key|checkpoint|prove|consistency|cosign` as an operator runs them (subprocesses on
the data directory of a collector that signed checkpoints), and damaged log files refused at `serve` start with
one line and an exit code."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from gpucensus.collector.store import open_store
from gpucensus.common import merkle, note
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc

from tests.ingest_nodes import TestNode, enroll
from tests.integration.log_fixtures import DEADLINE, serve, vkey, wait_for_size

ROOT = Path(__file__).resolve().parents[2]
LEAVES = 6


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpucensus.collector.cli", *argv],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def signed_log(tmp_path_factory: pytest.TempPathFactory):
    """A data directory whose collector stored LEAVES envelopes and signed a checkpoint covering them."""
    data = tmp_path_factory.mktemp("log-cli") / "data"
    store = open_store("sqlite", data_dir=str(data))
    node = TestNode("node-1")
    enroll(store, node)
    server, port = serve(store, data)
    envelopes = [node.next() for _ in range(LEAVES)]
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = census_pb2_grpc.CensusStub(channel)
        list(stub.Report((pb.Envelope(dsse=e) for e in envelopes), timeout=DEADLINE))
        head = wait_for_size(stub, vkey(data), LEAVES)
    finally:
        channel.close()
        server.stop(None).wait()
        store.close()
    return data, envelopes, head


def test_key_prints_the_verifier_key_on_one_line(signed_log) -> None:
    data, _, head = signed_log
    result = cli("log", "key", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    key = note.VerifierKey.parse(result.stdout.strip())
    assert key == vkey(data) and key.name == head.origin


def test_checkpoint_prints_the_signed_note_verbatim(signed_log) -> None:
    data, _, head = signed_log
    result = subprocess.run(
        [sys.executable, "-m", "gpucensus.collector.cli", "log", "checkpoint", "--data-dir", str(data)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == (data / "checkpoint").read_bytes()
    assert note.open_checkpoint(result.stdout, vkey(data))[0] == head


def test_prove_and_consistency_print_the_proofs_as_json(signed_log) -> None:
    data, envelopes, head = signed_log
    result = cli("log", "prove", "--index", "2", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    proof = json.loads(result.stdout)
    assert list(proof) == ["log_index", "tree_size", "hashes"] and proof["tree_size"] == head.size
    hashes = [base64.b64decode(h) for h in proof["hashes"]]
    merkle.verify_inclusion(merkle.leaf_hash(envelopes[2]), 2, head.size, hashes, head.root_hash)
    result = cli("log", "consistency", "--old", "3", "--new", str(LEAVES), "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    proof = json.loads(result.stdout)
    assert list(proof) == ["old_size", "new_size", "hashes"] and (proof["old_size"], proof["new_size"]) == (3, LEAVES)
    tree = merkle.MemoryTree()
    for envelope in envelopes:
        tree.append(envelope)
    hashes = [base64.b64decode(h) for h in proof["hashes"]]
    merkle.verify_consistency(3, LEAVES, hashes, tree.root(3), head.root_hash)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("prove", "--index", str(LEAVES)), "is not in a tree of size"),
        (("prove", "--index", "0", "--size", "99"), "beyond the log's integrated tree"),
        (("prove", "--index", "-1"), "not in 0..2^63-1"),
        (("prove", "--index", "x"), "not a whole number"),
        (("consistency", "--old", "0"), "0 < old <= new"),
        (("consistency", "--old", "5", "--new", "4"), "0 < old <= new"),
    ],
)
def test_a_proof_the_log_cannot_give_is_one_line_and_exit_2(signed_log, argv, words) -> None:
    data = signed_log[0]
    result = cli("log", *argv, "--data-dir", str(data))
    assert result.returncode == 2
    assert words in result.stderr and "Traceback" not in result.stderr and result.stdout == ""


def test_cosign_attaches_a_witness_cosignature_to_the_served_checkpoint(signed_log, tmp_path: Path) -> None:
    data, _, head = signed_log
    witness = note.SignerKey.generate("witness.example/w1", note.COSIGNATURE_V1)
    stranger = note.SignerKey.generate("witness.example/w2", note.COSIGNATURE_V1)
    served = (data / "checkpoint").read_bytes()
    parsed = note.parse_note(served)
    mine = tmp_path / "cosigned"
    mine.write_bytes(parsed.with_signatures([note.cosign(parsed, witness, 1_700_000_000)]).format())
    theirs = tmp_path / "cosigned-by-a-stranger"
    theirs.write_bytes(parsed.with_signatures([note.cosign(parsed, stranger, 1_700_000_000)]).format())

    refused = cli("log", "cosign", str(theirs), "--vkey", str(witness.verifier()), "--data-dir", str(data))
    assert refused.returncode == 2 and "no cosignature by a known witness key" in refused.stderr
    other = tmp_path / "other-checkpoint"
    other.write_bytes(note.cosign(parsed, witness, 1).line().encode() + b"garbage\n")
    refused = cli("log", "cosign", str(other), "--vkey", str(witness.verifier()), "--data-dir", str(data))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr

    kept = cli("log", "cosign", str(mine), "--vkey", str(witness.verifier()), "--data-dir", str(data))
    assert kept.returncode == 0, kept.stderr
    shown = cli("log", "checkpoint", "--data-dir", str(data)).stdout.encode()
    cosigned = note.parse_note(shown)
    assert cosigned.text == parsed.text and len(cosigned.signatures) == 2
    assert note.verify_cosignature(cosigned, witness.verifier()) == 1_700_000_000
    assert note.open_checkpoint(shown, vkey(data))[0] == head  # the log's own signature still verifies


def _serve_fails(data: Path) -> subprocess.CompletedProcess[str]:
    config = data.parent / "serve.toml"
    config.write_text(f'[store]\ndata_dir = "{data}"\n[server]\nlisten = "127.0.0.1:0"\n')
    return cli("serve", "--config", str(config))


@pytest.mark.parametrize(
    ("damage", "code", "words"),
    [
        (lambda d: (d / "log.key").chmod(0o644), 4, "accessible by group or others"),
        (lambda d: (d / "log.key").write_text("PRIVATE+KEY+x+00000000+AAAA\n"), 4, "not a signed-note signer key"),
        (lambda d: (d / "log.key").write_bytes(b"\xff" * 100), 4, "not a signed-note signer key"),
        (lambda d: (d / "checkpoint").write_bytes(b"not a note"), 5, "checkpoint file"),
        (
            lambda d: (d / "checkpoint").write_bytes(
                note.Checkpoint("x", 1, b"\0" * 32).sign([note.SignerKey.generate("x")])
            ),
            5,
            "not a checkpoint signed by this log's key",
        ),
        (lambda d: (d / "checkpoint").write_bytes(b"\xff" * (70 * 1024)), 5, "larger than"),
    ],
)
def test_a_damaged_log_key_or_checkpoint_file_stops_serve_with_one_line(
    signed_log, tmp_path: Path, damage, code, words
) -> None:
    data = tmp_path / "data"
    store = open_store("sqlite", data_dir=str(data))  # a fresh collector whose files are then damaged
    store.close()
    source = signed_log[0]
    for name in ("log.key", "checkpoint"):
        (data / name).write_bytes((source / name).read_bytes())
    (data / "log.key").chmod(0o600)
    damage(data)
    result = _serve_fails(data)
    assert result.returncode == code, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr
