"""`gpucensus-audit witness`: a chain of growing checkpoints is accepted with consistency proofs; a fork, a
rollback, another origin, another signer or a missing proof is refused with both checkpoints shown, exit 1, state
unchanged; a corrupt state is refused (exit 2), never overwritten; an accepted checkpoint can be cosigned."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gpucensus.collector import audit_cli
from gpucensus.common import note
from gpucensus.common.merkle import MemoryTree

from tests.audit_bundles import ORIGIN

BIN = Path(sys.executable).parent


class Log:
    """A log as the witness sees it: checkpoints and consistency proofs from a MemoryTree."""

    def __init__(self, leaves: list[bytes], key: note.SignerKey, origin: str = ORIGIN) -> None:
        self.tree = MemoryTree()
        for leaf in leaves:
            self.tree.append(leaf)
        self.key, self.origin = key, origin

    def checkpoint(self, directory: Path, size: int, name: str = "") -> Path:
        path = directory / (name or f"checkpoint-{size}")
        path.write_bytes(note.Checkpoint(self.origin, size, self.tree.root(size)).sign([self.key]))
        return path

    def consistency(self, directory: Path, old: int, new: int) -> Path:
        hashes = [base64.b64encode(h).decode() for h in self.tree.consistency_proof(old, new)]
        path = directory / f"proof-{old}-{new}.json"
        path.write_text(json.dumps({"old_size": old, "new_size": new, "hashes": hashes}))
        return path


LEAVES = [f"leaf {i}".encode() for i in range(40)]


@pytest.fixture(scope="module")
def log_key() -> note.SignerKey:
    return note.SignerKey.generate(ORIGIN)


@pytest.fixture
def log(log_key: note.SignerKey) -> Log:
    return Log(LEAVES, log_key)


def witness(capsys, state: Path, checkpoint: Path, vkey: str, *extra: str) -> tuple[int, str, str]:
    code = audit_cli.main(["witness", "--state", str(state), str(checkpoint), "--vkey", vkey, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_growing_log_is_accepted_step_by_step(log: Log, tmp_path: Path, capsys) -> None:
    state, vkey = tmp_path / "state", str(log.key.verifier())
    code, out, _ = witness(capsys, state, log.checkpoint(tmp_path, 3), vkey)
    assert code == 0 and "trusted on first use" in out
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(state / "checkpoint").st_mode) == 0o600
    for old, new in [(3, 7), (7, 8), (8, 16), (16, 40)]:
        code, out, _ = witness(capsys, state, log.checkpoint(tmp_path, new), vkey,
                               "--consistency", str(log.consistency(tmp_path, old, new)))  # fmt: skip
        assert code == 0 and out.startswith(f"ACCEPT consistent with the held checkpoint (size {old} -> {new})")
    assert (state / "checkpoint").read_bytes() == log.checkpoint(tmp_path, 40).read_bytes()
    code, out, _ = witness(capsys, state, log.checkpoint(tmp_path, 40), vkey)
    assert code == 0 and "same size and root" in out


def _hold(log: Log, tmp_path: Path, capsys, size: int) -> Path:
    state = tmp_path / "state"
    assert witness(capsys, state, log.checkpoint(tmp_path, size), str(log.key.verifier()))[0] == 0
    return state


def _refused(capsys, state: Path, checkpoint: Path, vkey: str, *extra: str) -> str:
    before = (state / "checkpoint").read_bytes()
    code, out, err = witness(capsys, state, checkpoint, vkey, *extra)
    assert code == 1, out + err
    assert (state / "checkpoint").read_bytes() == before and "state unchanged" in err
    return out


def test_a_fork_is_reported_with_both_checkpoints(log: Log, tmp_path: Path, capsys) -> None:
    state = _hold(log, tmp_path, capsys, 20)
    forked = Log([*LEAVES[:11], b"rewritten", *LEAVES[12:]], log.key)
    offered = forked.checkpoint(tmp_path, 30, "forked-30")
    out = _refused(capsys, state, offered, str(log.key.verifier()), "--consistency",
                   str(forked.consistency(tmp_path, 20, 30)))  # fmt: skip
    lines = out.splitlines()
    assert lines[0].startswith("FORK the offered tree does not extend the held one")
    assert lines[1] == f"  held: origin {ORIGIN} size 20 root {base64.b64encode(log.tree.root(20)).decode()}"
    assert lines[2] == f"  offered: origin {ORIGIN} size 30 root {base64.b64encode(forked.tree.root(30)).decode()}"
    # the honest proof does not rescue the forked checkpoint either
    _refused(capsys, state, offered, str(log.key.verifier()), "--consistency", str(log.consistency(tmp_path, 20, 30)))
    same_size = _refused(capsys, state, forked.checkpoint(tmp_path, 20, "forked-20"), str(log.key.verifier()))
    assert same_size.startswith("FORK two different roots for size 20")


def test_a_rollback_is_reported(log: Log, tmp_path: Path, capsys) -> None:
    state = _hold(log, tmp_path, capsys, 20)
    out = _refused(capsys, state, log.checkpoint(tmp_path, 12), str(log.key.verifier()))
    assert out.startswith("ROLLBACK the log shows size 12, smaller than 20 held")
    assert "held: origin" in out and "offered: origin" in out


def test_another_origin_is_refused(log: Log, tmp_path: Path, capsys) -> None:
    state = _hold(log, tmp_path, capsys, 20)
    other = Log(LEAVES, log.key, origin="other.example/log")
    out = _refused(capsys, state, other.checkpoint(tmp_path, 30, "other"), str(log.key.verifier()),
                   "--consistency", str(log.consistency(tmp_path, 20, 30)))  # fmt: skip
    assert out.startswith("REJECT wrong origin")


def test_a_bad_signature_is_refused(log: Log, tmp_path: Path, capsys) -> None:
    state = _hold(log, tmp_path, capsys, 20)
    impostor = Log(LEAVES, note.SignerKey.generate(ORIGIN))
    out = _refused(capsys, state, impostor.checkpoint(tmp_path, 30, "impostor"), str(log.key.verifier()),
                   "--consistency", str(log.consistency(tmp_path, 20, 30)))  # fmt: skip
    assert out.startswith("REJECT") and "no signature by a known key" in out


def test_a_missing_or_mismatched_proof_is_refused(log: Log, tmp_path: Path, capsys) -> None:
    state = _hold(log, tmp_path, capsys, 20)
    offered = log.checkpoint(tmp_path, 30)
    assert _refused(capsys, state, offered, str(log.key.verifier())).startswith("REJECT no consistency proof")
    out = _refused(capsys, state, offered, str(log.key.verifier()), "--consistency",
                   str(log.consistency(tmp_path, 19, 30)))  # fmt: skip
    assert out.startswith("REJECT the proof is from size 19 to 30, not from 20 to 30")


def test_a_corrupt_state_is_refused_not_overwritten(log: Log, tmp_path: Path, capsys) -> None:
    state = _hold(log, tmp_path, capsys, 20)
    (state / "checkpoint").write_bytes(b"garbage")
    code, _, err = witness(capsys, state, log.checkpoint(tmp_path, 30), str(log.key.verifier()),
                           "--consistency", str(log.consistency(tmp_path, 20, 30)))  # fmt: skip
    assert code == 2 and "is corrupt" in err and "restore it from a backup" in err
    assert (state / "checkpoint").read_bytes() == b"garbage"


@pytest.mark.parametrize(
    ("content", "message"),
    [("{", "not a consistency proof"), ('{"old_size": 1, "new_size": 2}', "exactly"),
     ('{"old_size": 1, "new_size": 2, "hashes": ["!!"]}', "not base64")],
)  # fmt: skip
def test_a_malformed_proof_file_is_unusable_input(log: Log, tmp_path: Path, capsys, content: str, message: str) -> None:
    state = _hold(log, tmp_path, capsys, 20)
    (tmp_path / "bad.json").write_text(content)
    code, _, err = witness(capsys, state, log.checkpoint(tmp_path, 30), str(log.key.verifier()),
                           "--consistency", str(tmp_path / "bad.json"))  # fmt: skip
    assert code == 2 and message in err


def test_an_accepted_checkpoint_is_cosigned(log: Log, tmp_path: Path, capsys) -> None:
    key_file = tmp_path / "witness.key"
    assert audit_cli.main(["witness-key", "regulator.example/w1", "--out", str(key_file)]) == 0
    cosigner_vkey = note.VerifierKey.parse(capsys.readouterr().out)
    assert cosigner_vkey.sig_type == note.COSIGNATURE_V1
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert audit_cli.main(["witness-key", "regulator.example/w1", "--out", str(key_file)]) == 2  # never overwrites
    capsys.readouterr()
    checkpoint = log.checkpoint(tmp_path, 20)
    before = int(time.time())
    code, _, _ = witness(capsys, tmp_path / "state", checkpoint, str(log.key.verifier()),
                         "--cosign-key", str(key_file), "--out", str(tmp_path / "cosig"))  # fmt: skip
    assert code == 0
    line = (tmp_path / "cosig").read_text()
    assert line.startswith("\u2014 regulator.example/w1 ") and line.endswith("\n")
    cosigned = note.parse_note(checkpoint.read_bytes() + line.encode())  # appended as the collector does
    assert before <= note.verify_cosignature(cosigned, cosigner_vkey) <= int(time.time())
    cosigned.verify([log.key.verifier()])
    # to stdout without --out
    code, out, _ = witness(
        capsys, tmp_path / "state", checkpoint, str(log.key.verifier()), "--cosign-key", str(key_file)
    )
    assert code == 0 and out.splitlines()[-1].startswith("\u2014 regulator.example/w1 ")


def test_unwritable_state_or_output_is_a_clear_error(log: Log, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = witness(capsys, blocker / "state", log.checkpoint(tmp_path, 5), str(log.key.verifier()))
    assert code == 2 and "cannot" in err and "Traceback" not in err
    key_file = tmp_path / "w.key"
    assert audit_cli.main(["witness-key", "w", "--out", str(key_file)]) == 0
    code, _, err = witness(capsys, tmp_path / "state", log.checkpoint(tmp_path, 5), str(log.key.verifier()),
                           "--cosign-key", str(key_file), "--out", str(blocker / "cosig"))  # fmt: skip
    assert code == 2 and "checkpoint accepted, but cannot write" in err and "run the same command again" in err
    code, out, _ = witness(capsys, tmp_path / "state", log.checkpoint(tmp_path, 5), str(log.key.verifier()),
                           "--cosign-key", str(key_file))  # fmt: skip
    assert code == 0 and out.splitlines()[-1].startswith("\u2014 w ")


def test_unsafe_or_wrong_cosigner_keys_are_refused(log: Log, tmp_path: Path, capsys) -> None:
    shared = tmp_path / "shared.key"
    shared.write_text(str(note.SignerKey.generate("w", note.COSIGNATURE_V1)))
    shared.chmod(0o644)
    code, _, err = witness(capsys, tmp_path / "state", log.checkpoint(tmp_path, 5), str(log.key.verifier()),
                           "--cosign-key", str(shared))  # fmt: skip
    assert code == 2 and "accessible by group or others" in err
    log_type = tmp_path / "log.key"
    log_type.write_text(str(note.SignerKey.generate("w")))
    log_type.chmod(0o600)
    code, _, err = witness(capsys, tmp_path / "state", log.checkpoint(tmp_path, 5), str(log.key.verifier()),
                           "--cosign-key", str(log_type))  # fmt: skip
    assert code == 2 and "not a cosignature/v1 key" in err
    assert not (tmp_path / "state" / "checkpoint").exists()  # nothing accepted on a bad key


def test_the_installed_command_as_an_operator_runs_it(log: Log, tmp_path: Path) -> None:
    vkey_file = tmp_path / "log.vkey"
    vkey_file.write_text(str(log.key.verifier()) + "\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "gpucensus-audit"), "witness", "--state", str(tmp_path / "s"), *args,
                               "--vkey", str(vkey_file)], capture_output=True, text=True, timeout=60)  # fmt: skip

    assert run(str(log.checkpoint(tmp_path, 10))).returncode == 0
    grown = run(str(log.checkpoint(tmp_path, 25)), "--consistency", str(log.consistency(tmp_path, 10, 25)))
    assert grown.returncode == 0, grown.stderr
    rollback = run(str(log.checkpoint(tmp_path, 10)))
    assert rollback.returncode == 1 and rollback.stdout.startswith("ROLLBACK") and "Traceback" not in rollback.stderr
    missing = run(str(tmp_path / "absent"))
    assert missing.returncode == 2 and "absent" in missing.stderr and "Traceback" not in missing.stderr
