"""`gpucensus-agent keygen|attest` and `gpucensus-audit verify` as a user runs them (real processes, files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
NODE = ["--backend", "mock", "--profile", "dgx-h100", "--node-id", "node-a", "--site", "fra1"]


def run(tool: str, *args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / tool), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60)


def assert_clean_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    assert text in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture()
def node(tmp_path: Path) -> Path:
    """A directory with a node key (node.key, node.key.pub)."""
    result = run("gpucensus-agent", "keygen", "--key", "node.key", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) == 64
    return tmp_path


def attest(directory: Path, *extra: object) -> subprocess.CompletedProcess[str]:
    return run("gpucensus-agent", "attest", *NODE, "--key", "node.key", "--state", "state", *extra, cwd=directory)


def test_keygen_prints_the_key_id_openssl_computes(tmp_path: Path) -> None:
    made = run("gpucensus-agent", "keygen", "--key", "node.key", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", "node.key.pub", "-outform", "DER"],
        cwd=tmp_path,
        capture_output=True,
        check=True,
    ).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-r"], input=der, capture_output=True, check=True)
    assert made.stdout == digest.stdout.split()[0].decode() + "\n"
    assert oct((tmp_path / "node.key").stat().st_mode & 0o777) == "0o600"
    assert_clean_error(run("gpucensus-agent", "keygen", "--key", "node.key", cwd=tmp_path), 4, "already exists")
    first = attest(tmp_path, "--out", "e1.json")
    assert first.returncode == 0, first.stderr
    assert json.loads((tmp_path / "e1.json").read_bytes())["signatures"][0]["keyid"] == made.stdout.strip()


def test_attest_twice_then_audit_verify_holds(node: Path) -> None:
    assert attest(node, "--out", "e1.json").returncode == 0
    second = attest(node)  # to stdout, exact bytes
    assert second.returncode == 0, second.stderr
    assert "signed sequence 2" in second.stderr
    (node / "e2.json").write_text(second.stdout)
    payload = json.loads((node / "e2.json").read_bytes())
    assert payload["payloadType"] == "application/vnd.in-toto+json"
    audit = run("gpucensus-audit", "verify", "e2.json", "e1.json", "--key", "node.key.pub", cwd=node)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "OK 2 envelope(s) from 1 node(s) (node-a), sequences 1..2" in audit.stdout
    as_json = run(
        "gpucensus-audit", "verify", "e1.json", "e2.json", "--key", "node.key.pub", "--format", "json", cwd=node
    )
    document = json.loads(as_json.stdout)
    assert document["ok"] is True and [v["sequence"] for v in document["verified"]] == [1, 2]


def test_audit_prints_each_failure_with_its_reason(node: Path) -> None:
    for name in ("e1.json", "e2.json", "e3.json"):
        assert attest(node, "--out", name).returncode == 0
    envelope = json.loads((node / "e3.json").read_bytes())
    envelope["payloadType"] = "application/json"
    (node / "e3-tampered.json").write_text(json.dumps(envelope, separators=(",", ":"), sort_keys=True))
    audit = run("gpucensus-audit", "verify", "e1.json", "e3.json", "e3-tampered.json", "e1.json",
                "--key", "node.key.pub", cwd=node)  # fmt: skip
    assert audit.returncode == 1
    lines = audit.stdout.splitlines()
    assert any(line.startswith("FAIL e3-tampered.json: payload-type:") for line in lines)
    assert any(line.startswith("FAIL e3-tampered.json: signature-invalid:") for line in lines)
    assert any("sequence 3: gap:" in line for line in lines)
    assert any("sequence 1: duplicate:" in line for line in lines)


def test_audit_with_the_wrong_key_fails(node: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    assert attest(node, "--out", "e1.json").returncode == 0
    other = tmp_path_factory.mktemp("other")
    assert run("gpucensus-agent", "keygen", "--key", "other.key", cwd=other).returncode == 0
    audit = run("gpucensus-audit", "verify", node / "e1.json", "--key", other / "other.key.pub", cwd=node)
    assert audit.returncode == 1
    assert "wrong-key" in audit.stdout
    both = run("gpucensus-audit", "verify", node / "e1.json", "--key", other / "other.key.pub",
               "--key", node / "node.key.pub", cwd=node)  # fmt: skip
    assert both.returncode == 0, both.stdout


def test_audit_bad_input_is_exit_2(node: Path) -> None:
    assert attest(node, "--out", "e1.json").returncode == 0
    assert_clean_error(
        run("gpucensus-audit", "verify", "absent.json", "--key", "node.key.pub", cwd=node), 2, "absent.json"
    )
    (node / "junk.pem").write_text("not a key\n")
    assert_clean_error(run("gpucensus-audit", "verify", "e1.json", "--key", "junk.pem", cwd=node), 2, "junk.pem")
    assert_clean_error(run("gpucensus-audit", "verify", "e1.json", "--key", "node.key", cwd=node), 2, "node.key")


def test_attest_refuses_an_unsafe_key_without_a_traceback(node: Path) -> None:
    os.chmod(node / "node.key", 0o644)
    assert_clean_error(attest(node), 4, "accessible by group or others")
    assert not (node / "state").exists()


def test_attest_with_corrupted_state_names_the_file(node: Path) -> None:
    assert attest(node, "--out", "e1.json").returncode == 0
    state = node / "state" / "chain.json"
    state.write_text("{garbage")
    assert_clean_error(attest(node), 5, str(Path("state") / "chain.json"))
    assert state.read_text() == "{garbage"


def test_attest_never_overwrites_out_and_uses_no_number(node: Path) -> None:
    assert attest(node, "--out", "e1.json").returncode == 0
    before = (node / "e1.json").read_bytes()
    assert_clean_error(attest(node, "--out", "e1.json"), 2, "already exists")
    assert (node / "e1.json").read_bytes() == before
    assert json.loads((node / "state" / "chain.json").read_text())["next_sequence"] == 2
