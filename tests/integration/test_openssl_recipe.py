"""docs/auditors.md's "Verify an attestation without gpucensus" recipe, run as shipped with real openssl and jq."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "deploy" / "verify-attestation.sh"
RECIPE_DOC = ROOT / "docs" / "auditors.md"
RECIPE_HEADING = "Verify an attestation without gpucensus"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A node key and two envelopes produced by the agent's CLI with the mock backend."""
    for tool in ("openssl", "jq", "base64"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is required for the regulator's recipe test (make tools installs it)")
    work = tmp_path_factory.mktemp("recipe")
    agent = str(BIN / "gpucensus-agent")
    subprocess.run([agent, "keygen", "--key", "node.key"], cwd=work, check=True, capture_output=True)
    for name in ("e1.json", "e2.json"):
        subprocess.run(
            [agent, "attest", "--backend", "mock", "--profile", "dgx-h100", "--node-id", "node-a",
             "--key", "node.key", "--state", "state", "--out", name],
            cwd=work, check=True, capture_output=True,
        )  # fmt: skip
    return work


def recipe(work: Path, envelope: str, pub: str = "node.key.pub") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(RECIPE), envelope, pub], cwd=work, capture_output=True, text=True, timeout=60)


def test_recipe_verifies_an_agent_envelope(signed: Path) -> None:
    result = recipe(signed, "e2.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Signature Verified Successfully" in result.stdout
    summary = json.loads(result.stdout.splitlines()[-1])
    assert (summary["node"], summary["sequence"]) == ("node-a", 2)
    assert summary["totals"]["gpus"] == 8


def test_previous_is_the_sha256_of_the_previous_file(signed: Path) -> None:
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-r", "e1.json"], cwd=signed, capture_output=True, text=True)
    assert json.loads(recipe(signed, "e2.json").stdout.splitlines()[-1])["previous"] == digest.stdout.split()[0]


def _tamper(signed: Path, name: str, change) -> str:
    envelope = json.loads((signed / "e2.json").read_bytes())
    change(envelope)
    (signed / name).write_text(json.dumps(envelope))
    return name


def _flip_payload_byte(envelope: dict) -> None:
    payload = bytearray(base64.b64decode(envelope["payload"]))
    index = payload.index(b'"gpus":8') + len(b'"gpus":')
    payload[index] = ord("9")  # claim 9 GPUs instead of 8
    envelope["payload"] = base64.b64encode(bytes(payload)).decode()


def _change_type(envelope: dict) -> None:
    envelope["payloadType"] = "application/vnd.in-toto+jsoN"


@pytest.mark.parametrize("change", [_flip_payload_byte, _change_type], ids=["payload-byte", "payload-type"])
def test_recipe_rejects_a_tampered_copy(signed: Path, change) -> None:
    result = recipe(signed, _tamper(signed, f"tampered-{change.__name__}.json", change))
    assert result.returncode != 0
    assert "Signature Verification Failure" in result.stdout + result.stderr
    assert "Signature Verified Successfully" not in result.stdout
    assert '"node"' not in result.stdout  # nothing from an unverified payload is printed


def test_recipe_rejects_another_nodes_key(signed: Path, tmp_path: Path) -> None:
    subprocess.run([str(BIN / "gpucensus-agent"), "keygen", "--key", str(tmp_path / "other.key")], check=True,
                   capture_output=True)  # fmt: skip
    result = recipe(signed, "e2.json", str(tmp_path / "other.key.pub"))
    assert result.returncode != 0
    assert "Signature Verification Failure" in result.stdout + result.stderr


def recipe_block(text: str) -> str | None:
    """The first ```sh block after the recipe heading, or None when the document has no such section."""
    heading = re.search(rf"^#+ {re.escape(RECIPE_HEADING)}\s*$", text, re.M)
    if heading is None:
        return None
    match = re.search(r"^```(?:sh|shell|bash)\n(.*?)^```", text[heading.end() :], re.S | re.M)
    return match.group(1) if match else ""


def test_auditors_guide_shows_exactly_the_recipe_that_is_tested() -> None:
    text = RECIPE_DOC.read_text()
    block = recipe_block(text)
    assert block is not None, f"docs/auditors.md has no '{RECIPE_HEADING}' section with the recipe"
    assert block == RECIPE.read_text()
