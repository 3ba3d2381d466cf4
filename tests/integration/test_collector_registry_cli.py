"""`gpucensus-collector entity|site|token|gpu|node` against real stores (SQLite file, PostgreSQL schema)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gpucensus.collector.cli import main
from gpucensus.collector.registry import hash_token
from gpucensus.collector.store.base import AttestationRecord, DeviceRecord, TokenRejectedError

pytest_plugins = ["tests.integration.store_fixtures"]  # make_store, store_kind


@pytest.fixture
def cli(make_store, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Run the CLI in-process with `--config` pointing at this test's store; returns (exit code, out, err)."""
    config = tmp_path / "collector.toml"
    config.write_text(make_store.toml())

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--config", str(config)])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def setup_registry(cli) -> None:
    assert cli("entity", "add", "acme", "--headquarters", "us", "--authorization", "uveu")[0] == 0
    assert cli("site", "add", "fra1", "--country", "DE", "--entity", "acme")[0] == 0


def test_entities_and_sites(cli) -> None:
    setup_registry(cli)
    assert cli("entity", "add", "globex", "--headquarters", "SG")[0] == 0
    code, out, _ = cli("entity", "list", "--format", "json")
    assert code == 0 and json.loads(out) == [
        {"id": "acme", "headquarters": "US", "authorization": "uveu"},
        {"id": "globex", "headquarters": "SG", "authorization": "none"},
    ]
    code, out, _ = cli("entity", "show", "acme", "--format", "json")
    assert json.loads(out) == [{"id": "acme", "headquarters": "US", "authorization": "uveu", "sites": ["fra1"]}]
    code, out, _ = cli("site", "list")
    assert code == 0 and out.split("\n")[1].split() == ["fra1", "DE", "acme"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("entity", "add", "acme", "--headquarters", "US"), "entity 'acme' already exists"),
        (("entity", "add", "x", "--headquarters", "UK"), "'UK' is not an ISO 3166-1 alpha-2"),
        (("entity", "show", "nobody"), "entity 'nobody' does not exist"),
        (("site", "add", "fra1", "--country", "FR", "--entity", "acme"), "site 'fra1' already exists"),
        (("site", "add", "sin1", "--country", "SG", "--entity", "nobody"), "entity 'nobody' does not exist"),
        (("site", "add", "bad id", "--country", "SG", "--entity", "acme"), "invalid site id"),
        (("token", "create", "--site", "nowhere"), "site 'nowhere' does not exist"),
        (("token", "create", "--site", "fra1", "--ttl", "1y"), "invalid token lifetime"),
        (("gpu", "decommission", "GPU-never-seen"), "GPU 'GPU-never-seen' has never been reported"),
        (("node", "revoke", "nobody"), "no key or node 'nobody'"),
    ],
)
def test_user_mistakes_exit_2_with_a_message_and_no_traceback(cli, argv: tuple[str, ...], message: str) -> None:
    setup_registry(cli)
    code, out, err = cli(*argv)
    assert code == 2
    assert f"gpucensus-collector: error: {message}" in err
    assert "Traceback" not in err and out == ""


def test_a_created_token_is_printed_once_stored_hashed_and_single_use(cli, make_store) -> None:
    setup_registry(cli)
    code, out, err = cli("token", "create", "--site", "fra1", "--ttl", "2h")
    assert code == 0 and "fra1" in err and "only once" in err
    (token,) = out.splitlines()
    store = make_store()
    now = datetime.now(UTC)
    with store._tx(False) as cur:
        rows = cur.execute("SELECT token_hash, site, expires_at FROM enrollment_tokens").fetchall()
    assert [(r[0], r[1]) for r in rows] == [(hash_token(token), "fra1")]
    assert timedelta(hours=1, minutes=59) < store._dt(rows[0][2]) - now <= timedelta(hours=2)
    key = store.enroll("k1", "PEM", "node-1", "", hash_token(token), now)
    assert key.site == "fra1"
    with pytest.raises(TokenRejectedError):
        store.enroll("k2", "PEM", "node-2", "", hash_token(token), now)


def test_nodes_list_revoke_and_gpu_decommission(cli, make_store) -> None:
    setup_registry(cli)
    _, token, _ = cli("token", "create", "--site", "fra1")
    store = make_store()
    now = datetime.now(UTC)
    store.enroll("a" * 64, "PEM", "node-1", "", hash_token(token.strip()), now - timedelta(hours=1))
    devices = (DeviceRecord("GPU-1", model="h100-sxm5", basis="catalogue", tpp=15832),)
    store.store_attestation(AttestationRecord("a" * 64, 1, "d", b"e", "node-1", "fra1", now, now, devices=devices))

    code, out, _ = cli("node", "list", "--format", "json")
    (node,) = json.loads(out)
    assert (node["node"], node["site"], node["sequence"], node["gpus"], node["state"]) == ("node-1", "fra1", 1, 1,
                                                                                          "ok")  # fmt: skip
    code, out, _ = cli("gpu", "decommission", "GPU-1", "--reason", "RMA 77")
    assert code == 0 and "GPU-1 decommissioned" in out
    assert store.gpu_states(["GPU-1"])["GPU-1"].decommission_reason == "RMA 77"

    assert cli("node", "revoke", "node-1") == (0, f"key {'a' * 64} revoked\n", "")
    assert store.get_key("a" * 64).revoked
    assert cli("node", "revoke", "a" * 64)[1] == f"{'a' * 64}: already revoked\n"
    assert json.loads(cli("node", "list", "--format", "json")[1])[0]["state"] == "revoked"


def test_a_store_from_a_newer_version_is_refused_with_exit_6(cli, make_store) -> None:
    store = make_store()
    with store._tx(True) as cur:
        cur.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (999, "future"))
    code, _, err = cli("entity", "list")
    assert code == 6 and "schema version 999" in err and "upgrade gpucensus-collector" in err


def test_a_bad_config_file_exits_2_naming_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[store]\nkind = "sqlite"\ndatadir = "x"\n')
    assert main(["site", "list", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "'datadir'" in err and "Traceback" not in err


def test_the_console_script_with_a_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gpucensus.collector.cli", *argv, "--data-dir", str(data)],
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    assert run("entity", "add", "acme", "--headquarters", "US").returncode == 0
    assert run("site", "add", "fra1", "--country", "DE", "--entity", "acme").returncode == 0
    created = run("token", "create", "--site", "fra1")
    assert created.returncode == 0 and len(created.stdout.split()) == 1
    token = created.stdout.strip().encode()
    assert (data / "collector.db").exists()
    for path in data.iterdir():  # the token itself is never written, only its hash
        assert token not in path.read_bytes()
    assert hash_token(token.decode()).encode() in b"".join(p.read_bytes() for p in data.iterdir())


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "collector.db").write_bytes(b"not a database, just some text " * 100)
    assert main(["entity", "list", "--data-dir", str(tmp_path)]) == 6
    err = capsys.readouterr().err
    assert "collector.db" in err and "not a database" in err and "Traceback" not in err
