"""Damaged local state, as an operator meets it (real console scripts as subprocesses): a damaged or emptied spool,
a removed or out-of-range `chain.json`, a damaged `collector.db`. Each is reported with its exit code (5 for the
agent's state, 6 for the collector's store), no traceback, the damaged file left byte for byte as it was, and
nothing signed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gpucensus.agent.chain import STATE_FILE
from gpucensus.agent.cli import main as agent_main
from gpucensus.agent.commands import run as run_command
from gpucensus.agent.keys import generate_key
from gpucensus.agent.spool import Spool
from gpucensus.common.errors import StateError

AGENT = [sys.executable, "-m", "gpucensus.agent.cli"]
COLLECTOR = [sys.executable, "-m", "gpucensus.collector.cli"]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENT, *args], capture_output=True, text=True, timeout=timeout)


def fingerprint(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def agent_config(tmp_path: Path, extra: str = "") -> tuple[Path, str]:
    """A config over tmp_path/state (mock backend, a collector nobody listens on) and a fresh key's id."""
    state = tmp_path / "state"
    state.mkdir()
    key = generate_key(state / "node.key")
    config = tmp_path / "agent.toml"
    config.write_text(
        "[collector]\naddress = '127.0.0.1:9'\ntimeout_seconds = 1\n"
        "retry_initial_seconds = 0.05\nretry_max_seconds = 0.1\n"
        "[node]\nid = 'n1'\nstate_dir = 'state'\n[inventory]\nbackend = 'mock'\n" + extra
    )
    return config, key.keyid


def spool_with(path: Path, keyid: str, sequences: range, *, keep_delivered: int = 100, delivered: int = 0) -> None:
    spool = Spool(path, max_bytes=10_000_000, keep_delivered=keep_delivered)
    for sequence in sequences:
        spool.append(keyid, sequence, b'{"sequence":%d}' % sequence + b" " * 3000)
    for sequence in list(sequences)[:delivered]:
        spool.mark_delivered(keyid, sequence, log_index=sequence)
    spool.close()


def chain_document(keyid: str, next_sequence: object = 13, fields: dict | None = None) -> bytes:
    document = {"format": 1, "keyid": keyid, "next_sequence": next_sequence, "previous": "", "last_checkpoint": {}}
    return json.dumps(document | (fields or {})).encode()


def assert_refused(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


def damage_past_header(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 8192
    path.write_bytes(data[:4096] + b"\xff" * (len(data) - 4096))  # the header page intact, every table page gone


def test_a_spool_damaged_past_its_header_is_exit_5_for_list_and_run_and_left_as_it_was(tmp_path: Path) -> None:
    config, keyid = agent_config(tmp_path)
    spool = tmp_path / "state" / "spool.db"
    spool_with(spool, keyid, range(1, 30))
    (tmp_path / "state" / STATE_FILE).write_bytes(chain_document(keyid, 30))
    damage_past_header(spool)
    before = fingerprint(spool)
    assert_refused(run("spool", "list", "--spool", str(spool)), 5, str(spool), "damaged")
    assert_refused(run("spool", "retry", "--all-rejected", "--spool", str(spool)), 5, str(spool), "damaged")
    assert_refused(run("run", "--config", str(config), "--rounds", "1"), 5, str(spool), "damaged")
    assert fingerprint(spool) == before
    assert json.loads((tmp_path / "state" / STATE_FILE).read_bytes())["next_sequence"] == 30  # nothing signed


def test_spool_list_never_writes_to_the_spool(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool_with(path, "ab" * 32, range(1, 5), delivered=1)
    (tmp_path / "spool.db-wal").unlink(missing_ok=True)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = fingerprint(path)
    for state in ("all", "pending", "delivered"):
        result = run("spool", "list", "--spool", str(path), "--state", state, "--format", "json")
        assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["counts"]["pending"] == 3
    assert fingerprint(path) == before


@pytest.mark.parametrize("damage", ["zero-bytes", "removed", "replaced"])
def test_a_spool_emptied_or_removed_under_a_used_chain_is_exit_5_and_nothing_is_signed(
    tmp_path: Path, damage: str
) -> None:
    config, _ = agent_config(tmp_path)
    spool = tmp_path / "state" / "spool.db"
    start = subprocess.Popen([*AGENT, "run", "--config", str(config), "--interval", "0.05"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _pending(spool) < 3:
            time.sleep(0.05)
    finally:
        start.terminate()
        start.wait(timeout=30)
    assert _pending(spool) >= 3  # twelve undelivered envelopes in the issue; three are enough
    chain_before = (tmp_path / "state" / STATE_FILE).read_bytes()
    for extra in ("-wal", "-shm"):
        Path(f"{spool}{extra}").unlink(missing_ok=True)
    if damage == "zero-bytes":
        os.truncate(spool, 0)
    elif damage == "removed":
        spool.unlink()
    else:  # another (empty) spool in its place
        spool.unlink()
        Spool(tmp_path / "other.db", max_bytes=1000).close()
        shutil.move(tmp_path / "other.db", spool)
    replaced = spool.read_bytes() if spool.exists() else None
    result = run("run", "--config", str(config), "--rounds", "1", timeout=30)
    assert_refused(result, 5, str(spool), "chain.json")
    assert (tmp_path / "state" / STATE_FILE).read_bytes() == chain_before  # nothing signed
    assert (spool.read_bytes() if spool.exists() else None) == replaced  # not turned into a new, empty spool


def _pending(path: Path) -> int:
    if not path.exists():
        return 0
    spool = Spool(path, max_bytes=10_000_000)
    try:
        return spool.counts()["pending"]
    finally:
        spool.close()


def test_keep_delivered_0_and_chain_json_removed_never_signs_a_used_sequence_again(tmp_path: Path) -> None:
    config, keyid = agent_config(tmp_path, "[spool]\nkeep_delivered = 0\n")
    spool = tmp_path / "state" / "spool.db"
    spool_with(spool, keyid, range(1, 4), keep_delivered=0, delivered=3)  # all delivered, none kept
    assert not (tmp_path / "state" / STATE_FILE).exists()  # chain.json removed
    result = run("run", "--config", str(config), "--rounds", "1", timeout=30)
    assert_refused(result, 5, "chain.json", "sequence 3")
    assert not (tmp_path / "state" / STATE_FILE).exists()  # nothing signed


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"next_sequence": 2**63}, "next_sequence"),
        ({"next_sequence": -1}, "next_sequence"),
        ({"next_sequence": 2.0}, "next_sequence"),
        ({"last_checkpoint": {"size": 1.5, "root": "A" * 43 + "="}}, "last_checkpoint"),
        ({"last_checkpoint": {"size": -1, "root": "A" * 43 + "="}}, "last_checkpoint"),
        ({"last_checkpoint": {"size": 2**63, "root": "A" * 43 + "="}}, "last_checkpoint"),
        ({"last_checkpoint": {"size": 3, "root": "not base64"}}, "last_checkpoint"),
        ({"last_checkpoint": {"size": 3}}, "last_checkpoint"),
        ({"keyid": 7}, "key"),
    ],
)
def test_chain_state_out_of_range_is_refused_at_start_up(tmp_path: Path, fields: dict, named: str) -> None:
    config, keyid = agent_config(tmp_path)
    content = chain_document(keyid, 13, fields)
    (tmp_path / "state" / STATE_FILE).write_bytes(content)
    result = run("run", "--config", str(config), "--rounds", "1", timeout=30)
    assert_refused(result, 5, "chain.json", named)
    assert (tmp_path / "state" / STATE_FILE).read_bytes() == content


def test_a_zero_byte_collector_db_is_refused_not_served_as_a_new_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "collector.db").write_bytes(b"")
    result = subprocess.run(
        [*COLLECTOR, "site", "list", "--data-dir", str(data)], capture_output=True, text=True, timeout=60
    )
    assert_refused(result, 6, str(data / "collector.db"), "empty")
    assert (data / "collector.db").read_bytes() == b""
    assert sorted(p.name for p in data.iterdir()) == ["collector.db"]
    fresh = tmp_path / "fresh"
    result = subprocess.run(
        [*COLLECTOR, "site", "list", "--data-dir", str(fresh)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr  # only a missing file is a fresh install
    shutil.rmtree(fresh)


@pytest.mark.parametrize(("failure", "code"), [(StateError("chain state went away"), 5), (OSError("disk gone"), 1)])
def test_run_rounds_never_exits_0_after_a_round_that_signed_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], failure: Exception, code: int
) -> None:
    # a failure that start-up could not see (the issue: a chain.json that passed start-up, then every round failed)
    config, _ = agent_config(tmp_path)

    def attest_fails(*_: object) -> None:
        raise failure

    monkeypatch.setattr(run_command, "attest", attest_fails)
    assert agent_main(["run", "--config", str(config), "--rounds", "2", "--interval", "0.01"]) == code
    err = capsys.readouterr().err
    assert f"error: 2 of 2 rounds spooled no new attestation; the last because: {failure}" in err
    assert isinstance(failure, OSError) or "Traceback" not in err  # an unexpected error is logged with its trace
