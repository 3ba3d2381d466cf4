"""Strings from attestations (GPU names and UUIDs, sites, node ids, finding texts) and from the command line never
reach a terminal raw: every CLI, run as the operator runs it (a subprocess), escapes control characters."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gpucensus.agent.keys import generate_key
from gpucensus.collector.registry import hash_token, new_token
from gpucensus.collector.store import open_store
from gpucensus.collector.store.base import AttestationRecord, DeviceRecord, EnrollmentToken, Entity, Finding, Site

from .test_delivery import BIN, Proc, free_port, serving, wait_for

TITLE = "\x1b]0;pwned\x07"  # sets the terminal's title, rings the bell
CLEAR = "\x1b[2J"  # clears the screen
C1_CSI = "\x9b2J"  # the 8-bit form of CLEAR
BIDI = "\u202e"  # right-to-left override: makes text read backwards
EVIL_SITE = f"fra{CLEAR}1"
EVIL_NODE = f"node{TITLE}-1"
EVIL_UUID = f"GPU-{CLEAR}{C1_CSI}-1"
EVIL_NAME = f"H100{TITLE}{BIDI}"
RAW = (b"\x1b", b"\x07", b"\xc2\x9b", BIDI.encode(), b"\r")


def assert_no_raw_controls(result: subprocess.CompletedProcess[bytes]) -> None:
    for stream, data in (("stdout", result.stdout), ("stderr", result.stderr)):
        for raw in RAW:
            assert raw not in data, f"{result.args[:3]}: raw {raw!r} on {stream}:\n{data[:2000]!r}"


def run(tool: str, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run([str(BIN / tool), *argv], capture_output=True, timeout=60, cwd=cwd)
    assert_no_raw_controls(result)
    assert b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")
    return result


@pytest.fixture
def hostile_store(tmp_path: Path) -> Path:
    """A SQLite store holding a node, site, GPU and findings whose texts carry terminal escape sequences."""
    data = tmp_path / "data"
    store = open_store("sqlite", data_dir=str(data))
    now = datetime.now(UTC)
    try:
        store.add_entity(Entity("acme", "US", "none"))
        store.add_site(Site(EVIL_SITE, "DE", "acme"))
        _, record = new_token("fra1", now, timedelta(hours=1))
        store.add_token(record.__class__(record.token_hash, EVIL_SITE, record.created_at, record.expires_at))
        keyid = "a" * 64
        store.enroll(keyid, "PEM", EVIL_NODE, "", record.token_hash, now - timedelta(days=1))
        devices = (
            DeviceRecord(EVIL_UUID, name=EVIL_NAME, bus_id=f"0000:{CLEAR}", model="h100-sxm5", basis="catalogue",
                         tpp=15832, eccn="3A090.a", error=TITLE),
        )  # fmt: skip
        stored = AttestationRecord(keyid, 1, "d" * 64, b"{}", EVIL_NODE, EVIL_SITE, now - timedelta(days=1),
                                   now - timedelta(days=1), devices=devices)  # fmt: skip
        store.store_attestation(stored)
        store.add_findings([Finding("gpu.duplicate-uuid", "warning", f"gpu:{EVIL_UUID}", f"seen on {EVIL_NODE}{TITLE}",
                                    keyid=keyid, sequence=1, created_at=now)])  # fmt: skip
    finally:
        store.close()
    return data


@pytest.mark.parametrize(
    "argv",
    [
        ("report",),
        ("report", "--format", "csv"),
        ("report", "--format", "json"),
        ("report", "--compare", "ai-diffusion-2025"),
        ("node", "list"),
        ("node", "list", "--format", "json"),
        ("site", "list"),
        ("entity", "show", "acme"),
        ("node", "revoke", EVIL_NODE),
        ("node", "revoke", f"nobody{TITLE}"),
        ("entity", "show", f"x{CLEAR}"),
        ("gpu", "decommission", EVIL_UUID, "--reason", f"RMA{TITLE}"),
        ("gpu", "decommission", f"GPU-none{CLEAR}", "--reason", f"RMA{TITLE}"),
        ("site", "add", f"x{CLEAR}", "--country", "DE", "--entity", "acme"),
    ],
    ids=lambda argv: "-".join(a for a in argv if a.isalnum() or a.startswith("--"))[:40],
)
def test_collector_commands_escape_hostile_strings(hostile_store: Path, argv: tuple[str, ...]) -> None:
    result = run("gpucensus-collector", *argv, "--data-dir", str(hostile_store))
    text = (result.stdout + result.stderr).decode()
    if argv[:2] not in (("node", "revoke"), ("site", "add")):  # these do not echo the hostile value
        assert "\\u001b" in text or "\\x1b" in text, text  # shown, escaped (JSON style, or Python's repr)


def test_collector_tables_show_the_hostile_values_escaped_on_one_line(hostile_store: Path) -> None:
    out = run("gpucensus-collector", "report", "--data-dir", str(hostile_store)).stdout.decode()
    assert "fra\\u001b[2J1" in out  # the site, escaped where it stands in its table
    assert "gpu:GPU-\\u001b[2J\\u009b2J-1" in out  # the finding's subject
    assert "\\u001b]0;pwned\\u0007" in out


def test_report_json_stays_faithful(hostile_store: Path) -> None:
    out = run("gpucensus-collector", "report", "--format", "json", "--data-dir", str(hostile_store)).stdout
    doc = json.loads(out)
    assert EVIL_SITE in {s["id"] for s in doc["sites"]}
    assert f"gpu:{EVIL_UUID}" in {f["subject"] for f in doc["ingest_findings"]}


def test_report_csv_escapes_controls_and_neutralises_formulas(hostile_store: Path, tmp_path: Path) -> None:
    store = open_store("sqlite", data_dir=str(hostile_store))
    try:
        store.add_findings([Finding("chain.gap", "warning", "=HYPERLINK(\"http://x\")", "@SUM(A1)",
                                    created_at=datetime.now(UTC))])  # fmt: skip
    finally:
        store.close()
    out = run("gpucensus-collector", "report", "--format", "csv", "--data-dir", str(hostile_store)).stdout.decode()
    assert "fra\\u001b[2J1" in out
    assert "'=HYPERLINK" in out and "'@SUM(A1)" in out
    assert ",=" not in out and ",@" not in out


def test_agent_snapshot_escapes_gpu_names_uuids_and_site(tmp_path: Path) -> None:
    # a mock fact the collector would refuse (control characters) is a profile error, itself escaped
    profile = tmp_path / "evil.json"
    gpu = {"model": "h100-sxm5", "count": 2, "name": EVIL_NAME, "uuid": EVIL_UUID}
    profile.write_text(json.dumps({"description": f"evil{TITLE}", "gpus": [gpu]}))
    common = ("--backend", "mock", "--profile", str(profile), "--node-id", "n1", "--site", EVIL_SITE)
    refused = run("gpucensus-agent", "snapshot", *common)
    assert refused.returncode == 2 and b"H100\\x1b]0;pwned\\x07" in refused.stderr
    # a hostile site given on the command line is shown escaped and kept faithfully in JSON
    profile.write_text(json.dumps({"gpus": [{"model": "h100-sxm5", "count": 2}]}))
    table = run("gpucensus-agent", "snapshot", *common).stdout.decode()
    assert "fra\\u001b[2J1" in table
    doc = json.loads(run("gpucensus-agent", "snapshot", *common, "--format", "json").stdout)
    assert doc["node"]["site"] == EVIL_SITE


def test_agent_errors_escape_what_the_user_typed(tmp_path: Path) -> None:
    result = run("gpucensus-agent", "snapshot", "--backend", "mock", "--profile", str(tmp_path / f"p{TITLE}.toml"))
    assert result.returncode == 2 and b"\\x1b]0;pwned" in result.stderr


def test_audit_escapes_file_names_in_errors_and_failures(tmp_path: Path) -> None:
    key = tmp_path / f"key{CLEAR}.pub"
    result = run("gpucensus-audit", "verify", str(tmp_path / f"env{TITLE}.json"), "--key", str(key))
    assert result.returncode == 2 and b"key\\u001b[2J.pub" in result.stderr
    run("gpucensus-agent", "keygen", "--key", str(tmp_path / "node.key"))
    envelope = tmp_path / f"env{TITLE}.json"
    envelope.write_text("{}")
    result = run("gpucensus-audit", "verify", str(envelope), "--key", str(tmp_path / "node.key.pub"))
    assert result.returncode == 1 and b"env\\u001b]0;pwned\\u0007.json" in result.stdout
    assert run("gpucensus-audit", "verify", str(envelope), "--key", str(tmp_path / "node.key.pub"), "--format",
               "json").returncode == 1  # fmt: skip


def test_an_unknown_argument_is_echoed_escaped() -> None:
    result = run("gpucensus-collector", "site", "list", f"--bogus{TITLE}")
    assert result.returncode == 2 and b"--bogus\\u001b]0;pwned\\u0007" in result.stderr


def test_serve_and_run_logs_escape_a_hostile_site(hostile_store: Path, tmp_path: Path) -> None:
    """The collector logs the site of an enrolled node, and the agent logs the site the collector answered: both
    long-running processes write log lines through the same escaping."""
    store = open_store("sqlite", data_dir=str(hostile_store))
    now = datetime.now(UTC)
    try:
        store.add_token(EnrollmentToken(hash_token("evil-token"), EVIL_SITE, now, now + timedelta(hours=1)))
    finally:
        store.close()
    address = f"127.0.0.1:{free_port()}"
    config = tmp_path / "collector.toml"
    config.write_text(f'[store]\nkind = "sqlite"\ndata_dir = "{hostile_store}"\n[server]\nlisten = "{address}"\n')
    collector = Proc("collector", [str(BIN / "gpucensus-collector"), "serve", "--config", str(config)], tmp_path)
    state = tmp_path / "agent"
    state.mkdir()
    generate_key(state / "node.key")
    agent = tmp_path / "agent.toml"
    agent.write_text(
        f'[collector]\naddress = "{address}"\n[node]\nid = "node-9"\nstate_dir = "{state}"\n'
        '[enrollment]\ntoken = "evil-token"\n[inventory]\nbackend = "mock"\nprofile = "dgx-h100"\n'
    )
    collector.start()
    try:
        wait_for("the collector to serve", lambda: serving(address), [collector])
        result = run("gpucensus-agent", "run", "--config", str(agent), "--rounds", "1")
    finally:
        assert collector.terminate() == 0
    assert result.returncode == 0, result.stderr
    assert b"at site fra\\u001b[2J1" in result.stderr
    log = collector.logfile.read_bytes()
    assert b"\x1b" not in log and b"at site fra\\u001b[2J1" in log, log
