"""Mutual TLS end to end: certificates made by `deploy/certs/bootstrap.sh`, one `gpucensus-collector serve`
process with `require_client_auth = true` over SQLite, and `gpucensus-agent run` processes.

An agent with its own node certificate delivers every envelope it spools. An agent holding another node's
certificate is refused (PERMISSION_DENIED, at enrollment and on Report): its envelopes stay in its spool,
flagged, and nothing is stored. An agent without a client certificate, with one from another CA, or without
TLS at all is refused at the handshake: it keeps retrying, SIGTERM ends it with exit 0, its spool is intact,
and with the right certificate it then delivers everything. Waits poll with a bound; nothing sleeps for a
fixed time.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from gpucensus.agent.chain import STATE_FILE
from gpucensus.agent.keys import generate_key
from gpucensus.agent.tls import read_tls_files
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration.test_delivery import BIN, WAIT_SECONDS, Proc, free_port, wait_for

pytestmark = pytest.mark.slow

BOOTSTRAP = Path(__file__).resolve().parents[2] / "deploy" / "certs" / "bootstrap.sh"
NODES = ("node-a", "node-b", "node-c", "node-d", "node-e", "node-f")  # one certificate each from the CA
SITE = "fra1"


def bootstrap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(BOOTSTRAP), *args], capture_output=True, text=True, timeout=60)


@dataclass
class Installation:
    """One collector with mutual TLS required, its PKI (`pki`) and a second, unrelated CA (`foreign`)."""

    root: Path
    pki: Path
    foreign: Path
    address: str
    config: Path
    collector: Proc

    def cli(self, *args: str) -> str:
        argv = [str(BIN / "gpucensus-collector"), *args, "--config", str(self.config)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_SECONDS)
        assert done.returncode == 0, f"{argv}: {done.stderr}"
        return done.stdout

    def token(self) -> str:
        return self.cli("token", "create", "--site", SITE).splitlines()[0]

    def stored(self, keyid: str) -> list[tuple[int, int, str]]:
        """(sequence, log index, digest) of every envelope the collector stored for `keyid`."""
        db = sqlite3.connect(f"file:{self.root / 'data' / 'collector.db'}?mode=ro", uri=True, timeout=5)
        try:
            query = "SELECT sequence, log_index, digest FROM attestations WHERE keyid = ? ORDER BY 1"
            return db.execute(query, (keyid,)).fetchall()
        finally:
            db.close()

    def channel(self, cert: Path) -> grpc.Channel:
        """A mutual-TLS channel presenting `cert` (and the key next to it)."""
        credentials = grpc.ssl_channel_credentials(
            (self.pki / "ca.pem").read_bytes(), cert.with_suffix(".key").read_bytes(), cert.read_bytes()
        )
        return grpc.secure_channel(self.address, credentials)

    def serving(self) -> bool:
        with self.channel(self.pki / "nodes" / "node-a.pem") as channel:
            try:
                response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
            except grpc.RpcError:
                return False
        return response.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def installation(tmp_path_factory) -> Iterator[Installation]:
    root = tmp_path_factory.mktemp("mtls")
    pki, foreign = root / "pki", root / "foreign-pki"
    nodes = [arg for node in NODES for arg in ("--node", node)]
    made = bootstrap("--out", str(pki), "--san", "127.0.0.1", "--san", "localhost", *nodes, "--days", "2")
    assert made.returncode == 0, made.stderr
    made = bootstrap("--out", str(foreign), "--name", "elsewhere", "--node", "node-e", "--days", "2")
    assert made.returncode == 0, made.stderr
    address = f"127.0.0.1:{free_port()}"
    config = root / "collector.toml"
    config.write_text(
        f'[store]\nkind = "sqlite"\ndata_dir = "data"\n'
        f'[server]\nlisten = "{address}"\nshutdown_grace_seconds = 2\n'
        f'tls_cert = "pki/server.pem"\ntls_key = "pki/server.key"\nclient_ca = "pki/ca.pem"\n'
        "require_client_auth = true\n",
        encoding="utf-8",
    )
    collector = Proc("collector", [str(BIN / "gpucensus-collector"), "serve", "--config", str(config)], root)
    inst = Installation(root, pki, foreign, address, config, collector)
    inst.cli("entity", "add", "acme", "--headquarters", "US", "--authorization", "uveu")
    inst.cli("site", "add", SITE, "--country", "DE", "--entity", "acme")
    collector.start()
    try:
        wait_for("the collector to serve over mutual TLS", inst.serving, [collector])
        yield inst
    finally:
        code = collector.terminate()
    assert code == 0, collector.log()


class Agent:
    """One `gpucensus-agent run` with its own state directory; `configure` picks its TLS files and token."""

    def __init__(self, inst: Installation, name: str) -> None:
        self.inst, self.name = inst, name
        self.state = inst.root / name
        self.state.mkdir()
        key = generate_key(self.state / "node.key")
        self.keyid, self.public_key_pem = key.keyid, (self.state / "node.key.pub").read_text()
        self.config = self.state / "agent.toml"
        self.proc = Proc(name, [str(BIN / "gpucensus-agent"), "run", "--config", str(self.config)], inst.root)

    def configure(self, cert: Path | None, token: str = "", ca: bool = True) -> Agent:
        tls = f'tls_ca_file = "{self.inst.pki / "ca.pem"}"\n' if ca else ""
        if cert is not None:
            tls += f'tls_cert_file = "{cert}"\ntls_key_file = "{cert.with_suffix(".key")}"\n'
        self.config.write_text(
            f'[collector]\naddress = "{self.inst.address}"\n{tls}timeout_seconds = 5.0\n'
            "retry_initial_seconds = 0.05\nretry_max_seconds = 0.4\n"
            f'[node]\nid = "{self.name}"\nsite = "{SITE}"\nstate_dir = "."\n'
            f'[enrollment]\ntoken = "{token}"\n'
            "[schedule]\ninterval_seconds = 0.2\njitter_fraction = 0.1\n"
            '[inventory]\nbackend = "mock"\nprofile = "dgx-h100"\n',
            encoding="utf-8",
        )
        return self

    def run(self, rounds: int) -> int:
        """`run --rounds N` to the end; its exit code."""
        self.proc.argv[4:] = ["--rounds", str(rounds)]
        self.proc.start()
        try:
            return self.proc.popen.wait(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"{self.name} did not finish {rounds} rounds\n{self.proc.log()}")

    def start(self) -> Proc:
        self.proc.argv[4:] = []
        return self.proc.start()

    def spool(self) -> list[dict]:
        """`gpucensus-agent spool list --format json`: every spooled envelope (state, log index, error)."""
        argv = [str(BIN / "gpucensus-agent"), "spool", "list", "--config", str(self.config), "--format", "json"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_SECONDS)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["envelopes"]

    def digests(self) -> dict[int, str]:
        """sequence -> SHA-256 of the spooled bytes (read-only, safe while the agent runs)."""
        db = sqlite3.connect(f"file:{self.state / 'spool.db'}?mode=ro", uri=True, timeout=5)
        try:
            return dict(db.execute("SELECT sequence, sha256 FROM envelopes WHERE keyid = ?", (self.keyid,)))
        except sqlite3.OperationalError:  # the agent has not created the spool yet
            return {}
        finally:
            db.close()

    def reserved(self) -> int:
        """Sequence numbers the chain state has used."""
        return json.loads((self.state / STATE_FILE).read_text())["next_sequence"] - 1

    def log_count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.proc.log(0)))


def test_bootstrap_issues_node_certificates_with_private_keys_and_never_overwrites(installation):
    pki = installation.pki
    ca = x509.load_pem_x509_certificate((pki / "ca.pem").read_bytes())
    for name in ("ca", "server", *(f"nodes/{node}" for node in NODES)):
        assert stat.S_IMODE(os.stat(pki / f"{name}.key").st_mode) == 0o600, name
    cert = x509.load_pem_x509_certificate((pki / "nodes" / "node-b.pem").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "node-b"
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().curve.name == "secp256r1"
    cert.verify_directly_issued_by(ca)
    server = x509.load_pem_x509_certificate((pki / "server.pem").read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]

    before = {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()}
    again = bootstrap("--out", str(pki), "--san", "127.0.0.1", "--node", "node-z")
    assert again.returncode == 1 and "server.pem exists: refusing to overwrite it" in again.stderr
    assert {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()} == before  # node-z not made either
    assert bootstrap("--out", str(pki), "--node", "bad/id").returncode == 2


def test_agent_delivers_every_envelope_over_mutual_tls(installation):
    agent = Agent(installation, "node-a").configure(installation.pki / "nodes" / "node-a.pem", installation.token())
    assert agent.run(rounds=2) == 0, agent.proc.log()

    spooled = agent.spool()
    assert len(spooled) == agent.reserved() >= 2
    assert {e["state"] for e in spooled} == {"delivered"}, spooled
    stored = installation.stored(agent.keyid)
    assert [(e["sequence"], e["log_index"]) for e in spooled] == [(s, i) for s, i, _ in stored]
    assert {s: d for s, _, d in stored} == agent.digests()  # byte for byte
    nodes = json.loads(installation.cli("node", "list", "--site", SITE, "--format", "json"))
    mine = [n for n in nodes if n["node"] == "node-a"]
    assert len(mine) == 1 and mine[0]["sequence"] == agent.reserved() and mine[0]["state"] == "ok", nodes


def test_certificate_of_another_node_is_refused_and_nothing_is_stored(installation):
    impostor_cert = installation.pki / "nodes" / "node-c.pem"  # CN node-c, used by node-b
    token = installation.token()
    agent = Agent(installation, "node-b").configure(impostor_cert, token)

    # 1. Enroll as node-b with node-c's certificate: refused; the token is not used up.
    assert agent.run(rounds=2) == 2, agent.proc.log()
    assert "PERMISSION_DENIED" in agent.proc.log() and "'node-c'" in agent.proc.log()
    assert [e["state"] for e in agent.spool()] == ["pending"]

    # 2. node-b's key enrolled properly (its own certificate, the same token), then Report with node-c's.
    with installation.channel(installation.pki / "nodes" / "node-b.pem") as channel:
        request = pb.EnrollRequest(token=token, node_id="node-b", public_key_pem=agent.public_key_pem)
        assert census_pb2_grpc.CensusStub(channel).Enroll(request, timeout=10).keyid == agent.keyid
    agent.configure(impostor_cert)  # no token: the key is enrolled
    assert agent.run(rounds=2) == 1, agent.proc.log()  # every envelope it made was rejected: not a success
    assert "error: the collector rejected" in agent.proc.log(), agent.proc.log()

    spooled = agent.spool()
    assert len(spooled) == agent.reserved() >= 3
    assert {e["state"] for e in spooled} == {"rejected"}, spooled
    assert all(e["error"].startswith("PERMISSION_DENIED") and "'node-c'" in e["error"] for e in spooled), spooled
    assert installation.stored(agent.keyid) == []


@pytest.mark.parametrize(
    "client",
    ["no client certificate", "certificate from another CA", "plaintext"],
)
def test_refused_at_handshake_agent_keeps_retrying_and_loses_nothing(installation, client):
    name = {"no client certificate": "node-d", "certificate from another CA": "node-e", "plaintext": "node-f"}[client]
    cert = installation.foreign / "nodes" / "node-e.pem" if client == "certificate from another CA" else None
    token = installation.token()
    agent = Agent(installation, name).configure(cert, token, ca=client != "plaintext")
    agent.start()
    try:
        wait_for(
            "three refused delivery attempts and two spooled envelopes",
            lambda: agent.log_count(r"collector unavailable \(enroll: UNAVAILABLE") >= 3 and len(agent.digests()) >= 2,
            [agent.proc, installation.collector],
        )
    finally:
        code = agent.proc.terminate()
    assert code == 0, agent.proc.log()
    spooled = agent.spool()
    assert [e["state"] for e in spooled] == ["pending"] * agent.reserved(), spooled
    assert installation.stored(agent.keyid) == []

    # with its own certificate the same agent (same token: never used) delivers everything it kept
    kept = agent.digests()
    agent.configure(installation.pki / "nodes" / f"{name}.pem", token)
    assert agent.run(rounds=1) == 0, agent.proc.log()
    stored = {s: d for s, _, d in installation.stored(agent.keyid)}
    assert kept.items() <= stored.items() and stored == agent.digests()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"cert": "nodes/node-a.pem", "key": "nodes/node-b.key"}, r"tls_key_file \S+node-b.key is not the key of"),
        ({"cert": "nodes/node-a.key", "key": "nodes/node-a.pem"}, r"tls_cert_file \S+ is not a PEM certificate"),
        ({"ca": "ca.key"}, r"tls_ca_file \S+ca.key is not a PEM certificate"),
        ({"key": "encrypted.key"}, r"tls_key_file \S+ is not an unencrypted PEM private key"),
    ],
    ids=["key of another certificate", "cert and key swapped", "CA file is a key", "encrypted key"],
)
def test_wrong_tls_file_stops_the_agent_at_start_naming_it(installation, tmp_path, files, message):
    """Not an endless retry of "Failed to create security handshaker": exit 2 before anything is signed."""
    pki = installation.pki
    key = serialization.load_pem_private_key((pki / "nodes" / "node-a.key").read_bytes(), password=None)
    encrypted = serialization.BestAvailableEncryption(b"passphrase")
    (tmp_path / "encrypted.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encrypted)
    )
    (tmp_path / "encrypted.key").chmod(0o600)  # else refused (exit 4) for its mode before it is read
    chosen = {"ca": "ca.pem", "cert": "nodes/node-a.pem", "key": "nodes/node-a.key"} | files
    chosen = {k: tmp_path / v if v == "encrypted.key" else pki / v for k, v in chosen.items()}
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[collector]\naddress = "{installation.address}"\ntls_ca_file = "{chosen["ca"]}"\n'
        f'tls_cert_file = "{chosen["cert"]}"\ntls_key_file = "{chosen["key"]}"\n'
        f'[node]\nid = "node-a"\nsite = "{SITE}"\nstate_dir = "."\n'
        '[inventory]\nbackend = "mock"\nprofile = "dgx-h100"\n',
        encoding="utf-8",
    )
    generate_key(tmp_path / "node.key")
    argv = [str(BIN / "gpucensus-agent"), "run", "--config", str(config), "--rounds", "1"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_SECONDS)
    assert done.returncode == 2, done.stderr
    assert re.search(message, done.stderr) and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / STATE_FILE).exists()  # nothing signed


def test_client_certificate_outside_its_validity_is_a_warning(installation, caplog):
    pki = installation.pki
    files = read_tls_files(
        str(pki / "ca.pem"),
        str(pki / "nodes" / "node-a.pem"),
        str(pki / "nodes" / "node-a.key"),
        now=datetime(2100, 1, 1, tzinfo=UTC),
    )
    assert files.certificate_chain == (pki / "nodes" / "node-a.pem").read_bytes()
    assert "the collector will refuse it" in caplog.text
    caplog.clear()
    read_tls_files(str(pki / "ca.pem"), str(pki / "nodes" / "node-a.pem"), str(pki / "nodes" / "node-a.key"))
    assert caplog.text == ""
