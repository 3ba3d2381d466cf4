"""`gpucensus-collector export` writes an audit bundle that `gpucensus-audit verify` accepts (all of it, one
country's, one site's), whose one changed envelope byte the auditor catches; a non-empty DIR, an unknown site or
a database that no longer matches the signed checkpoint is one line and an exit code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from gpucensus.collector.store import open_store
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc

from tests.ingest_nodes import TestNode, enroll
from tests.integration.log_fixtures import DEADLINE, serve, vkey, wait_for_size

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def export(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run("gpucensus.collector.cli", "export", "--data-dir", str(data), "--out", str(out), *extra)


def audit(bundle: Path, key: str) -> subprocess.CompletedProcess[str]:
    return run("gpucensus.collector.audit_cli", "verify", "--vkey", key, str(bundle))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collector's data directory: two nodes in DE and one in PL, ROUNDS attestations each, checkpoint signed."""
    data = tmp_path_factory.mktemp("export") / "data"
    store = open_store("sqlite", data_dir=str(data))
    nodes = [(TestNode("node-a"), "fra1", "DE"), (TestNode("node-b"), "fra1", "DE"), (TestNode("node-c"), "waw1", "PL")]
    for node, site, country in nodes:
        enroll(store, node, site, country)
    server, port = serve(store, data)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = census_pb2_grpc.CensusStub(channel)
        for _ in range(ROUNDS):
            for node, _, _ in nodes:
                (ack,) = stub.Report(iter([pb.Envelope(dsse=node.next())]), timeout=DEADLINE)
                assert ack.status == pb.ACK_STATUS_ACCEPTED
        wait_for_size(stub, vkey(data), ROUNDS * len(nodes))
    finally:
        channel.close()
        server.stop(None).wait()
        store.close()
    return data


def test_an_exported_bundle_verifies_and_a_changed_byte_does_not(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    result = export(data, out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "envelopes", "keys", "log.vkey", "manifest.json",
                                                     "policy", "proofs"]  # fmt: skip
    assert len(list((out / "envelopes").iterdir())) == ROUNDS * 3 and len(list((out / "keys").iterdir())) == 3
    assert (out / "checkpoint").read_bytes() == (data / "checkpoint").read_bytes()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["checkpoint_size"] == ROUNDS * 3
    assert {s["id"] for s in manifest["registry"]["sites"]} == {"fra1", "waw1"}
    key = str(vkey(data))
    verified = audit(out, key)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    tampered = tmp_path / "tampered"
    shutil.copytree(out, tampered)
    victim = tampered / "envelopes" / "4.json"
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    victim.write_bytes(bytes(raw))
    caught = audit(tampered, key)
    assert caught.returncode == 1 and "envelopes/4.json" in caught.stdout + caught.stderr


@pytest.mark.parametrize(("scope", "envelopes", "sites"), [(("--country", "PL"), ROUNDS, {"waw1"}),
                                                           (("--site", "fra1"), 2 * ROUNDS, {"fra1"})])  # fmt: skip
def test_a_country_or_site_export_holds_only_its_envelopes_and_verifies(data, tmp_path, scope, envelopes, sites):
    out = tmp_path / "bundle"
    result = export(data, out, *scope, "--since", "2020-01-01")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(list((out / "envelopes").iterdir())) == envelopes
    assert {s["id"] for s in manifest["registry"]["sites"]} == sites
    assert manifest["selection"][scope[0].removeprefix("--")] == scope[1]
    verified = audit(out, str(vkey(data)))
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (("--site", "nowhere"), 2, "no site 'nowhere'"),
        (("--country", "XX"), 2, "not an ISO 3166-1 alpha-2 code"),
        (("--since", "yesterday"), 2, "is not a date"),
        (("--site", "fra1", "--country", "DE"), 2, "not allowed with"),
    ],
)
def test_bad_export_arguments_are_one_line(data: Path, tmp_path: Path, argv, code, words) -> None:
    result = export(data, tmp_path / "bundle", *argv)
    assert result.returncode == code and words in result.stderr and "Traceback" not in result.stderr


def test_a_non_empty_directory_is_refused(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "something").write_text("mine")
    result = export(data, out)
    assert result.returncode == 2 and "is not empty" in result.stderr
    assert [p.name for p in out.iterdir()] == ["something"]


def test_a_database_that_no_longer_matches_the_checkpoint_is_not_exported(data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    store = open_store("sqlite", data_dir=str(copy))
    with store._tx(True) as cur:  # the tree as an old backup had it: fewer leaves than the checkpoint signed
        cur.execute("UPDATE log_tree SET size = 2")
    store.close()
    result = export(copy, tmp_path / "bundle")
    assert result.returncode == 2 and "does not match the checkpoint" in result.stderr
