"""`gpucensus-agent check` against real collectors on loopback (plaintext, TLS, mutual TLS), one misconfiguration
per test, each answered by a FAIL line with the right hint and exit 1; and `run` says the same in its log, and
exits non-zero when the envelopes it made were rejected."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gpucensus.agent.keys import generate_key
from gpucensus.collector.config import CollectorConfig, ServerConfig
from gpucensus.collector.registry import new_token
from gpucensus.collector.server import run_server
from gpucensus.collector.store import open_store

from tests.ingest_nodes import register
from tests.integration.test_delivery import free_port
from tests.integration.test_server_tls import Pem, issue

AGENT = [sys.executable, "-m", "gpucensus.agent.cli"]
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60


class Certificates:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.server_ca, self.nodes_ca, self.other_ca = (issue(n, ca=True) for n in ("server CA", "nodes CA", "other"))
        self.server = issue("collector", self.server_ca, server=True)  # names localhost and 127.0.0.1
        self.unnamed_server = issue("collector", self.server_ca)  # no subjectAltName: names no address
        self.node = issue("node-1", self.nodes_ca)
        self.stranger = issue("node-1", self.other_ca)

    def write(self, name: str, data: bytes) -> str:
        path = self.dir / name
        path.write_bytes(data)
        path.chmod(0o600)
        return str(path)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("check-pki"))


@contextmanager
def collector(
    tmp_path: Path,
    certs: Certificates,
    *,
    tls: str = "",
    server: Pem | None = None,
    clock_offset: timedelta = timedelta(0),
) -> Iterator[tuple[str, str]]:
    """A collector on 127.0.0.1 (plaintext, "tls" or "mtls"); yields its address and a fresh site token."""
    store = open_store("sqlite", data_dir=str(tmp_path / "collector"))
    register(store, "fra1", "DE")
    token, record = new_token("fra1", datetime.now(UTC), timedelta(hours=1))
    store.add_token(record)
    server_pem = server or certs.server
    settings = ServerConfig(listen="127.0.0.1:0")
    if tls:
        settings = ServerConfig(
            listen="127.0.0.1:0",
            tls_cert=certs.write("server.pem", server_pem.cert),
            tls_key=certs.write("server.key", server_pem.key),
            client_ca=certs.write("nodes-ca.pem", certs.nodes_ca.cert) if tls == "mtls" else "",
            require_client_auth=tls == "mtls",
        )
    grpc_server, port = run_server(
        CollectorConfig(server=settings), store, clock=lambda: datetime.now(UTC) + clock_offset
    )
    try:
        yield f"127.0.0.1:{port}", token
    finally:
        grpc_server.stop(None).wait()
        store.close()


def agent_config(
    tmp_path: Path,
    address: str,
    certs: Certificates,
    *,
    token: str = "",
    ca: Pem | None = None,
    client: Pem | None = None,
    key: bool = True,
) -> Path:
    state = tmp_path / "agent"
    state.mkdir(exist_ok=True)
    if key and not (state / "node.key").exists():
        generate_key(state / "node.key")
    tls = ""
    if ca is not None:
        tls += f"tls_ca_file = '{certs.write('agent-ca.pem', ca.cert)}'\n"
    if client is not None:
        tls += f"tls_cert_file = '{certs.write('agent.pem', client.cert)}'\n"
        tls += f"tls_key_file = '{certs.write('agent.key', client.key)}'\n"
    config = tmp_path / "agent.toml"
    config.write_text(
        f"[collector]\naddress = '{address}'\n{tls}timeout_seconds = 3\n"
        "retry_initial_seconds = 0.05\nretry_max_seconds = 0.2\n"
        "[node]\nid = 'node-1'\nsite = 'fra1'\nstate_dir = 'agent'\n"
        f"[enrollment]\ntoken = '{token}'\n"
        "[schedule]\ninterval_seconds = 0.05\njitter_fraction = 0\n"
        "[inventory]\nbackend = 'mock'\nprofile = 'dgx-h100'\n"
    )
    return config


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*AGENT, *args], capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=ROOT)


def check(config: Path) -> tuple[int, dict[str, str], str]:
    """Exit code, {check name: its line and hint}, and the whole output of `gpucensus-agent check`."""
    done = cli("check", "--config", str(config))
    assert "Traceback" not in done.stderr, done.stderr
    lines: dict[str, str] = {}
    name = ""
    for line in done.stdout.splitlines():
        if line.startswith(("ok  ", "FAIL")):
            name = line[5:].split(":", 1)[0]
            lines[name] = line
        else:
            lines[name] += "\n" + line
    return done.returncode, lines, done.stdout + done.stderr


def assert_only_failure(config: Path, name: str, *hint_words: str, not_checked: frozenset[str] = frozenset()) -> str:
    """`check` exits 1 with `name` the only failure (besides the checks `not_checked` because of it)."""
    code, lines, output = check(config)
    assert code == 1, output
    failed = {n for n, line in lines.items() if line.startswith("FAIL")}
    assert failed == {name, *not_checked}, output
    assert all(f"FAIL {n}: not checked: " in lines[n] for n in not_checked), output
    for word in hint_words:
        assert word in lines[name], (word, output)
    return lines[name]


def test_check_passes_once_run_enrolled_the_node(tmp_path: Path, certs: Certificates) -> None:
    with collector(tmp_path, certs) as (address, token):
        config = agent_config(tmp_path, address, certs, token=token)
        done = cli("run", "--config", str(config), "--rounds", "1")
        assert done.returncode == 0, done.stderr
        code, lines, output = check(config)
    assert code == 0, output
    assert set(lines) == {"address", "key", "tls files", "chain state and spool", "collector", "enrollment", "clock"}
    assert all(line.startswith("ok  ") for line in lines.values()), output
    assert "enrolled as node node-1 at site fra1" in lines["enrollment"]
    assert "1 delivered" in lines["chain state and spool"], output


def test_check_passes_over_mutual_tls_with_a_token_not_yet_spent(tmp_path: Path, certs: Certificates) -> None:
    with collector(tmp_path, certs, tls="mtls") as (address, token):
        config = agent_config(tmp_path, address, certs, token=token, ca=certs.server_ca, client=certs.node)
        code, lines, output = check(config)
    assert code == 0, output
    assert "SERVING (TLS)" in lines["collector"] and "mutual TLS" in lines["tls files"]
    assert "not enrolled yet" in lines["enrollment"]


def test_wrong_port(tmp_path: Path, certs: Certificates) -> None:
    config = agent_config(tmp_path, f"127.0.0.1:{free_port()}", certs, token="t")
    assert_only_failure(config, "collector", "nothing listens on", "check the port")


def test_scheme_in_the_address(tmp_path: Path, certs: Certificates) -> None:
    with collector(tmp_path, certs) as (address, token):
        config = agent_config(tmp_path, f"https://{address}", certs, token=token)
        code, lines, output = check(config)
    assert code == 1, output
    assert lines["address"].startswith("FAIL") and f"write '{address}'" in lines["address"], output
    assert lines["collector"].startswith("FAIL") and "URL scheme" in lines["collector"], output


def test_plaintext_agent_against_a_tls_collector(tmp_path: Path, certs: Certificates) -> None:
    with collector(tmp_path, certs, tls="tls") as (address, token):
        config = agent_config(tmp_path, address, certs, token=token)
        assert_only_failure(config, "collector", "requires TLS", "collector.tls_ca_file")


def test_tls_agent_against_a_plaintext_collector(tmp_path: Path, certs: Certificates) -> None:
    with collector(tmp_path, certs) as (address, token):
        config = agent_config(tmp_path, address, certs, token=token, ca=certs.server_ca)
        assert_only_failure(config, "collector", "does not speak TLS")


def test_hostname_not_in_the_certificate(tmp_path: Path, certs: Certificates) -> None:
    with collector(tmp_path, certs, tls="tls", server=certs.unnamed_server) as (address, token):
        config = agent_config(tmp_path, address, certs, token=token, ca=certs.server_ca)
        assert_only_failure(config, "collector", "does not name '127.0.0.1'", "tls_server_name")


def test_unknown_ca(tmp_path: Path, certs: Certificates) -> None:
    with collector(tmp_path, certs, tls="tls") as (address, token):
        config = agent_config(tmp_path, address, certs, token=token, ca=certs.other_ca)
        assert_only_failure(config, "collector", "not signed by the CA in collector.tls_ca_file")


def test_client_certificate_the_collector_does_not_trust(tmp_path: Path, certs: Certificates) -> None:
    with collector(tmp_path, certs, tls="mtls") as (address, token):
        config = agent_config(tmp_path, address, certs, token=token, ca=certs.server_ca, client=certs.stranger)
        assert_only_failure(config, "collector", "refused this node's client certificate", "client_ca")


def test_no_client_certificate_for_a_mutual_tls_collector(tmp_path: Path, certs: Certificates) -> None:
    with collector(tmp_path, certs, tls="mtls") as (address, token):
        config = agent_config(tmp_path, address, certs, token=token, ca=certs.server_ca)
        assert_only_failure(config, "collector", "requires a client certificate", "tls_cert_file")


def test_not_enrolled_fails_check_and_run_rounds_exits_1(tmp_path: Path, certs: Certificates) -> None:
    with collector(tmp_path, certs) as (address, _token):
        config = agent_config(tmp_path, address, certs)  # no token, never enrolled
        assert_only_failure(config, "enrollment", "is not enrolled", "enrollment.token")
        done = cli("run", "--config", str(config), "--rounds", "2")
    assert done.returncode == 1, done.stderr
    assert "error: the collector rejected 2 envelope(s) during this run" in done.stderr, done.stderr
    assert "hint: this node's key is not enrolled: set enrollment.token" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("problem", ["missing", "loose mode"])
def test_key_missing_or_readable_by_others(tmp_path: Path, certs: Certificates, problem: str) -> None:
    with collector(tmp_path, certs) as (address, token):
        config = agent_config(tmp_path, address, certs, token=token, key=problem != "missing")
        if problem == "loose mode":
            (tmp_path / "agent" / "node.key").chmod(0o644)
        code, lines, output = check(config)
    assert code == 1, output
    assert lines["key"].startswith("FAIL"), output
    assert ("gpucensus-agent keygen" if problem == "missing" else "chmod 600") in lines["key"], output
    assert lines["collector"].startswith("ok  "), output  # the other checks still run


def test_damaged_spool(tmp_path: Path, certs: Certificates) -> None:
    with collector(tmp_path, certs) as (address, token):
        config = agent_config(tmp_path, address, certs, token=token)
        assert cli("run", "--config", str(config), "--rounds", "1").returncode == 0
        spool = tmp_path / "agent" / "spool.db"
        data = spool.read_bytes()
        spool.write_bytes(data[:100] + b"\xff" * (len(data) - 100))
        before = spool.read_bytes()
        line = assert_only_failure(config, "chain state and spool", "is damaged", not_checked=frozenset({"clock"}))
    assert spool.read_bytes() == before, "check wrote to the spool"
    assert str(spool) in line


def test_clock_ahead_of_the_collector(tmp_path: Path, certs: Certificates) -> None:
    with collector(tmp_path, certs, clock_offset=-timedelta(hours=2)) as (address, token):
        config = agent_config(tmp_path, address, certs, token=token)
        done = cli("run", "--config", str(config), "--rounds", "1")
        assert done.returncode == 1, done.stderr
        assert "clock is ahead of the collector's" in done.stderr, done.stderr
        assert_only_failure(config, "clock", "future-timestamp", "time synchronisation")


def test_run_logs_the_same_hint_while_it_retries(tmp_path: Path, certs: Certificates) -> None:
    with collector(tmp_path, certs, tls="tls") as (address, token):
        config = agent_config(tmp_path, address, certs, token=token)  # plaintext against TLS
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [*AGENT, "run", "--config", str(config)], stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )
        try:
            deadline, log = time.monotonic() + TIMEOUT, ""
            while "hint:" not in log and time.monotonic() < deadline and proc.poll() is None:
                log += proc.stderr.readline()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=TIMEOUT)
    assert "collector unavailable" in log and "it probably requires TLS" in log, log


def test_a_config_that_cannot_be_read_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text("[collector]\naddress = 'no-port'\n")
    done = cli("check", "--config", str(tmp_path / "agent.toml"))
    assert done.returncode == 2 and "must be host:port" in done.stderr and "Traceback" not in done.stderr, done
