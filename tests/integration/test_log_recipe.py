"""docs/auditors.md's regulator recipe for the log, run exactly as shown: the checkpoint's signature with OpenSSL
(docs/recipes/verify-checkpoint.sh) and one inclusion proof with Python's standard library alone
(docs/recipes/verify-inclusion.py), on a bundle as export writes it, and on tampered copies."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gpucensus.common import note

from tests.audit_bundles import ORIGIN, BuiltLog, build_log, export

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT_RECIPE = ROOT / "docs" / "recipes" / "verify-checkpoint.sh"
INCLUSION_RECIPE = ROOT / "docs" / "recipes" / "verify-inclusion.py"
DOC = ROOT / "docs" / "auditors.md"
HEADING = "Verify a checkpoint and an inclusion proof without gpucensus"
PYTHON = shutil.which("python3") or "python3"  # the system's Python, not the project's venv


def log_key_with_plus() -> note.SignerKey:
    """A log key whose base64 key material holds a '+', the vkey's own separator (the recipe must cope)."""
    for _ in range(500):
        key = note.SignerKey.generate(ORIGIN)
        if "+" in str(key.verifier()).split("+", 2)[2]:
            return key
    raise AssertionError("no key with '+' in 500 tries")


@pytest.fixture(scope="module")
def log() -> BuiltLog:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is required for the regulator's recipe test (make tools installs it)")
    built = build_log()
    built.log_key = log_key_with_plus()
    return built


@pytest.fixture
def bundle(log: BuiltLog, tmp_path: Path) -> Path:
    return export(log, tmp_path / "bundle")


def check_signature(checkpoint: Path, vkey: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(CHECKPOINT_RECIPE), str(checkpoint), str(vkey)], capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def check_inclusion(bundle: Path, index: int, envelope: Path | None = None) -> subprocess.CompletedProcess[str]:
    envelope = envelope or bundle / "envelopes" / f"{index}.json"
    args = [PYTHON, "-I", str(INCLUSION_RECIPE), str(bundle / "checkpoint"), str(envelope),
            str(bundle / "proofs" / f"{index}.json")]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def test_the_checkpoint_signature_verifies_with_openssl(bundle: Path, log: BuiltLog) -> None:
    result = check_signature(bundle / "checkpoint", bundle / "log.vkey")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "Signature Verified Successfully", f"origin {ORIGIN}", "size 15",
        "root " + note.parse_note((bundle / "checkpoint").read_bytes()).text.split("\n")[2],
    ]  # fmt: skip


def test_a_tampered_checkpoint_fails(bundle: Path) -> None:
    text = (bundle / "checkpoint").read_text()
    (bundle / "checkpoint").write_text(text.replace("\n15\n", "\n16\n", 1))
    result = check_signature(bundle / "checkpoint", bundle / "log.vkey")
    assert result.returncode != 0 and "Signature Verification Failure" in result.stdout + result.stderr
    assert "origin" not in result.stdout


def test_another_log_key_fails(bundle: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.vkey"
    other.write_text(str(note.SignerKey.generate(ORIGIN).verifier()) + "\n")
    result = check_signature(bundle / "checkpoint", other)
    assert result.returncode != 0 and "no signature by" in result.stderr
    forged_id = tmp_path / "forged.vkey"  # the right name and key id, another key: the key id check catches it
    real = (bundle / "log.vkey").read_text().strip().split("+", 2)
    forged_id.write_text("+".join([*real[:2], other.read_text().strip().split("+", 2)[2]]))
    result = check_signature(bundle / "checkpoint", forged_id)
    assert result.returncode != 0 and "key id does not match" in result.stderr


def test_every_envelope_is_proven_with_the_standard_library(bundle: Path) -> None:
    for path in sorted((bundle / "envelopes").iterdir()):
        result = check_inclusion(bundle, int(path.stem))
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"OK {path} is leaf {path.stem} of {ORIGIN}, tree size 15")


def test_a_changed_envelope_byte_fails_the_proof(bundle: Path, tmp_path: Path) -> None:
    changed = tmp_path / "changed.json"
    data = bytearray((bundle / "envelopes" / "2.json").read_bytes())
    data[-2] ^= 0x01
    changed.write_bytes(bytes(data))
    result = check_inclusion(bundle, 2, changed)
    assert result.returncode == 1 and result.stderr.startswith("FAIL") and "is not leaf 2" in result.stderr


def test_a_proof_for_another_size_or_leaf_fails(bundle: Path, log: BuiltLog) -> None:
    proof = bundle / "proofs" / "2.json"
    older = json.loads(proof.read_text())
    older["tree_size"] = 14
    proof.write_text(json.dumps(older))
    result = check_inclusion(bundle, 2)
    assert result.returncode == 1 and "the checkpoint's size is 15" in result.stderr
    result = check_inclusion(bundle, 3, bundle / "envelopes" / "2.json")  # leaf 2 with leaf 3's proof
    assert result.returncode == 1 and "is not leaf 3" in result.stderr


def _block(text: str, language: str) -> str | None:
    heading = re.search(rf"^#+ {re.escape(HEADING)}\s*$", text, re.M)
    if heading is None:
        return None
    match = re.search(rf"^```{language}\n(.*?)^```", text[heading.end() :], re.S | re.M)
    return match.group(1) if match else ""


def test_the_auditors_guide_shows_exactly_the_recipes_that_are_tested() -> None:
    text = DOC.read_text()
    assert _block(text, "sh") == CHECKPOINT_RECIPE.read_text()
    assert _block(text, "python") == INCLUSION_RECIPE.read_text()


def test_the_installed_auditor_agrees_with_the_recipe(bundle: Path, tmp_path: Path) -> None:
    audit = Path(sys.executable).parent / "gpucensus-audit"  # as installed beside this Python
    pinned = tmp_path / "pinned.vkey"
    pinned.write_bytes((bundle / "log.vkey").read_bytes())

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(audit), "verify", str(bundle), "--vkey", str(pinned)], capture_output=True,
                              text=True, timeout=120)  # fmt: skip

    clean = verify()
    assert clean.returncode == 0 and clean.stdout.splitlines()[-1].startswith("OK bundle"), clean.stdout + clean.stderr
    data = bytearray((bundle / "envelopes" / "2.json").read_bytes())
    data[-2] ^= 0x01
    (bundle / "envelopes" / "2.json").write_bytes(bytes(data))
    damaged = verify()
    assert damaged.returncode == 1 and "Traceback" not in damaged.stderr
    assert any(line.startswith("FAIL proofs/2.json: inclusion: ") for line in damaged.stdout.splitlines())
    assert check_inclusion(bundle, 2).returncode == 1  # the recipe agrees
