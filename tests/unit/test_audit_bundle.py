"""`gpucensus-audit verify DIR`: a bundle as export writes it verifies; each way of damaging one (a changed
envelope byte, a removed envelope, a proof for another size or with a changed hash, a checkpoint signed by
another key, figures the catalogue does not give, a key bound to another node) is caught with its reason, also
when the attacker rewrites the manifest to match; an unusable directory exits 2."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from gpucensus.collector import audit_cli
from gpucensus.collector.audit.bundle import MANIFEST, parse_proof, proof_document, sha256_hex
from gpucensus.common import note
from hypothesis import given
from hypothesis import strategies as st

from tests.audit_bundles import BuiltLog, build_log, export


@pytest.fixture(scope="module")
def log() -> BuiltLog:
    return build_log()


@pytest.fixture
def bundle(log: BuiltLog, tmp_path: Path) -> Path:
    return export(log, tmp_path / "bundle")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = audit_cli.main(["verify", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def reasons(lines: list[str]) -> set[str]:
    """The reason ids of the FAIL lines ("FAIL source: [sequence N: ]reason: message")."""
    found = set()
    for line in lines:
        if line.startswith("FAIL "):
            parts = line[5:].split(": ")
            found.add(parts[2] if parts[1].startswith("sequence ") else parts[1])
    return found


def rewrite_manifest(bundle: Path) -> None:
    """What a careful attacker does after changing files: list exactly what is there, with fresh digests."""
    manifest = json.loads((bundle / MANIFEST).read_text())
    files = sorted(p for p in bundle.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest["files"] = [{"path": str(p.relative_to(bundle)), "sha256": sha256_hex(p.read_bytes()),
                          "bytes": p.stat().st_size} for p in files]  # fmt: skip
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def envelope_of(bundle: Path, node: str, sequence: int) -> Path:
    for path in sorted((bundle / "envelopes").iterdir()):
        payload = json.loads(base64.b64decode(json.loads(path.read_bytes())["payload"]))
        if payload["predicate"]["node"]["id"] == node and payload["predicate"]["sequence"] == sequence:
            return path
    raise AssertionError(f"no envelope of {node} sequence {sequence}")


def test_a_bundle_as_exported_verifies(bundle: Path, log: BuiltLog, capsys) -> None:
    code, out, _ = run(capsys, str(bundle))
    assert code == 0, out
    assert out[-1].startswith("OK bundle") and "size 15, 9 envelope(s) from 3 node(s)" in out[-1]
    assert any("bundle's own log.vkey" in line for line in out)  # unpinned: said so
    assert "NOTE site fra1 (DE): 2 node(s), 2 GPU(s), TPP 31664" in "\n".join(out)
    assert "NOTE exported by gpucensus-collector 0.0.0-test (whole log)" in out
    code, out, _ = run(capsys, str(bundle), "--vkey", str(log.log_key.verifier()))
    assert code == 0 and any("pinned key" in line for line in out)
    code, out, _ = run(capsys, str(bundle), "--format", "json")
    document = json.loads("\n".join(out))
    assert document["ok"] and document["checkpoint"]["size"] == 15 and document["verified"] == 9


@pytest.mark.parametrize("attacker_rewrites_manifest", [False, True])
def test_one_envelope_byte_changed(bundle: Path, capsys, attacker_rewrites_manifest: bool) -> None:
    path = envelope_of(bundle, "node-b", 2)
    data = bytearray(path.read_bytes())
    data[data.index(b'"payload":"') + 20] ^= 0x01  # one base64 character of the payload
    path.write_bytes(bytes(data))
    if attacker_rewrites_manifest:
        rewrite_manifest(bundle)
    code, out, _ = run(capsys, str(bundle))
    found = reasons(out)
    assert code == 1
    assert "inclusion" in found  # the log never held these bytes
    assert found & {"signature-invalid", "payload-malformed", "base64-invalid", "base64-not-canonical"}
    assert ("manifest-digest" in found) is not attacker_rewrites_manifest


@pytest.mark.parametrize("attacker_rewrites_manifest", [False, True])
def test_an_envelope_removed(bundle: Path, capsys, attacker_rewrites_manifest: bool) -> None:
    path = envelope_of(bundle, "node-a", 2)
    path.unlink()
    (bundle / "proofs" / path.name).unlink()
    if attacker_rewrites_manifest:
        rewrite_manifest(bundle)
    code, out, _ = run(capsys, str(bundle))
    found = reasons(out)
    assert code == 1 and "gap" in found
    assert ("manifest-missing-file" in found) is not attacker_rewrites_manifest


def test_an_envelope_removed_but_its_proof_kept(bundle: Path, capsys) -> None:
    envelope_of(bundle, "node-c", 3).unlink()
    code, out, _ = run(capsys, str(bundle))
    assert code == 1 and {"envelope-missing", "manifest-missing-file"} <= reasons(out)


def test_a_proof_for_the_wrong_size(bundle: Path, log: BuiltLog, capsys) -> None:
    path = envelope_of(bundle, "node-a", 1)
    index = int(path.stem)
    hashes = [base64.b64encode(h).decode() for h in log.tree.inclusion_proof(index, 10)]
    older = {"log_index": index, "tree_size": 10, "hashes": hashes}
    (bundle / "proofs" / path.name).write_text(json.dumps(older))
    rewrite_manifest(bundle)
    code, out, _ = run(capsys, str(bundle))
    assert code == 1 and reasons(out) == {"proof-size"}
    older["tree_size"] = 15  # the same hashes claimed for the checkpoint's size
    (bundle / "proofs" / path.name).write_text(json.dumps(older))
    rewrite_manifest(bundle)
    code, out, _ = run(capsys, str(bundle))
    assert code == 1 and reasons(out) == {"inclusion"}


def test_a_tampered_proof_hash(bundle: Path, capsys) -> None:
    path = bundle / "proofs" / envelope_of(bundle, "node-b", 3).name
    proof = json.loads(path.read_text())
    first = bytearray(base64.b64decode(proof["hashes"][0]))
    first[0] ^= 0x80
    proof["hashes"][0] = base64.b64encode(bytes(first)).decode()
    path.write_text(json.dumps(proof))
    rewrite_manifest(bundle)
    code, out, _ = run(capsys, str(bundle))
    assert code == 1 and reasons(out) == {"inclusion"}


def test_a_checkpoint_signed_by_another_key(bundle: Path, log: BuiltLog, capsys) -> None:
    impostor = note.SignerKey.generate(log.log_key.name)
    (bundle / "checkpoint").write_bytes(note.Checkpoint.parse(note.parse_note(log.checkpoint()).text).sign([impostor]))
    rewrite_manifest(bundle)
    code, out, _ = run(capsys, str(bundle))
    assert code == 1 and reasons(out) == {"checkpoint-signature"}
    # an attacker who also replaces log.vkey fools only an auditor who did not pin the log's key
    (bundle / "log.vkey").write_text(str(impostor.verifier()) + "\n")
    rewrite_manifest(bundle)
    assert run(capsys, str(bundle))[0] == 0
    code, out, _ = run(capsys, str(bundle), "--vkey", str(log.log_key.verifier()))
    assert code == 1 and reasons(out) == {"checkpoint-signature", "vkey-mismatch"}


def test_required_witness_cosignatures(bundle: Path, log: BuiltLog, capsys) -> None:
    witness, other = (note.SignerKey.generate(f"w{i}.example/w", note.COSIGNATURE_V1) for i in (1, 2))
    signed = note.parse_note((bundle / "checkpoint").read_bytes())
    cosigned = signed.with_signatures([note.cosign(signed, witness, 1_764_460_800)])
    (bundle / "checkpoint").write_bytes(cosigned.format())
    rewrite_manifest(bundle)
    code, out, _ = run(capsys, str(bundle), "--witness", str(witness.verifier()))
    assert code == 0, out
    assert f"NOTE checkpoint cosigned by witness {witness.verifier()} at 2025-11-30T00:00:00Z" in out
    code, out, _ = run(capsys, str(bundle), "--witness", str(witness.verifier()), "--witness", str(other.verifier()))
    assert code == 1 and reasons(out) == {"cosignature"} and str(other.verifier()) in "\n".join(out)
    line = cosigned.signatures[-1]
    forged = note.Signature(line.name, line.key_id, line.signature[:8] + bytes(64))
    (bundle / "checkpoint").write_bytes(signed.with_signatures([forged]).format())
    rewrite_manifest(bundle)
    code, out, _ = run(capsys, str(bundle), "--witness", str(witness.verifier()))
    assert code == 1 and reasons(out) == {"cosignature"}
    code, _, err = run(capsys, str(bundle), "--witness", str(log.log_key.verifier()))
    assert code == 2 and "not a cosignature/v1 key" in err


def test_a_checkpoint_of_another_size_than_the_proofs(bundle: Path, log: BuiltLog, capsys) -> None:
    (bundle / "checkpoint").write_bytes(log.checkpoint(14))
    code, out, _ = run(capsys, str(bundle))
    assert code == 1 and {"proof-size", "manifest-mismatch", "manifest-digest"} <= reasons(out)


def test_figures_the_catalogue_does_not_give(log: BuiltLog, tmp_path: Path, capsys) -> None:
    from gpucensus.agent.attest import sign_predicate

    from tests.audit_bundles import node_predicate

    claimed = node_predicate("node-a", "fra1")
    claimed["devices"][0]["tpp"] = 1000  # the agent under-reports one H100
    forged = build_log(rounds=1, noise=0)
    forged.leaves[0] = sign_predicate(claimed, forged.node_keys["node-a"], sequence=1, previous="",
                                      timestamp="2026-11-23T12:00:00Z")  # fmt: skip
    forged.tree = type(forged.tree)()
    for leaf in forged.leaves:
        forged.tree.append(leaf)
    code, out, _ = run(capsys, str(export(forged, tmp_path / "b")))
    assert code == 1 and reasons(out) == {"figures"}
    assert "tpp agent 1000 auditor 15832" in "\n".join(out)


def test_a_key_bound_to_another_node(bundle: Path, capsys) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["registry"]["nodes"][0]["node_id"] = "node-z"
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    code, out, _ = run(capsys, str(bundle))
    assert code == 1 and reasons(out) == {"registry-mismatch"}


def test_layout_breaches_and_malformed_parts(bundle: Path, capsys) -> None:
    proof = bundle / "proofs" / envelope_of(bundle, "node-a", 3).name
    (bundle / "envelopes" / "007.json").write_bytes(b"{}")
    (bundle / "notes.txt").write_text("hello")
    (bundle / "policy" / "ai-diffusion-2025.toml").write_text("format = 99\n")
    proof.write_text('{"log_index": "x"}')
    code, out, _ = run(capsys, str(bundle))
    found = reasons(out)
    assert code == 1
    assert {"bundle-layout", "policy-malformed", "proof-malformed", "manifest-digest"} <= found


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: (b / MANIFEST).unlink(), "manifest"),
        (lambda b: (b / MANIFEST).write_text("{not json"), "not JSON"),
        (lambda b: (b / MANIFEST).write_text('{"format": "other"}'), "not a gpucensus-audit-bundle/1"),
        (lambda b: (b / "checkpoint").unlink(), "checkpoint"),
        (lambda b: (b / "envelopes" / "2.json").write_bytes(b" " * (2 << 20)), "more than"),
    ],
)
def test_an_unusable_bundle_exits_2(bundle: Path, capsys, damage, message: str) -> None:
    damage(bundle)
    code, _, err = run(capsys, str(bundle))
    assert code == 2 and message in err and "Traceback" not in err


def test_files_still_need_a_key(bundle: Path, capsys) -> None:
    code, _, err = run(capsys, str(bundle / "envelopes" / "2.json"))
    assert code == 2 and "--key" in err
    code, _, err = run(capsys, str(bundle), "--vkey", "not-a-key")
    assert code == 2 and "--vkey not-a-key" in err


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["log_index", "tree_size", "hashes", "x"]), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.binary(max_size=200) | _JSON.map(lambda v: json.dumps(v).encode()))
def test_hostile_proof_files_are_refused_with_a_reason(data: bytes) -> None:
    try:
        proof = parse_proof(data)
    except ValueError as err:
        assert str(err)
        return
    # whatever parses is well-typed: it writes back as a proof file that parses to the same proof
    again = proof_document(proof.log_index, proof.tree_size, list(proof.hashes))
    assert parse_proof(json.dumps(again).encode()) == proof
