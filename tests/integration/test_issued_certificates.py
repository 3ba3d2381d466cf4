"""Collector-issued client certificates, end to end: one `gpucensus-collector serve` requiring mutual TLS with
`[enrollment] issue_client_certificates` and an enrolment listener, and `gpucensus-agent run` processes that
have nothing but the server CA, a site token and `request_certificate = true`.

The agent enrols on the enrolment listener, gets a certificate for CN = its node id, reports over mutual TLS and
renews the certificate (with a fresh TLS key) once two thirds of its lifetime have passed. The attacks: the
enrolment listener serves neither Report nor the queries; a request signed by a key other than the enrolled one,
for an unknown key or for a revoked key gets no certificate; an issued node certificate cannot query the
inventory; a client without a certificate is refused at the handshake; a collector that issues none says so.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from gpucensus.agent.keys import generate_key
from gpucensus.collector.enrolment_ca import EnrolmentCA
from gpucensus.common import csr_binding
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration.server_fixtures import DEADLINE, sqlite_collector_fixture  # noqa: F401 - fixture
from tests.integration.test_delivery import BIN, WAIT_SECONDS, Proc, free_port, wait_for

pytestmark = pytest.mark.slow

BOOTSTRAP = Path(__file__).resolve().parents[2] / "deploy" / "certs" / "bootstrap.sh"
SITE = "fra1"


@dataclass
class Installation:
    root: Path
    address: str
    enrol_address: str
    config: Path
    collector: Proc

    @property
    def server_ca(self) -> bytes:
        return (self.root / "pki" / "ca.pem").read_bytes()

    def enrolment_ca(self) -> EnrolmentCA:
        data = self.root / "data"
        return EnrolmentCA.load(data / "enrolment-ca.pem", data / "enrolment-ca.key")

    def cli(self, *args: str) -> str:
        argv = [str(BIN / "gpucensus-collector"), *args, "--config", str(self.config)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_SECONDS)
        assert done.returncode == 0, f"{argv}: {done.stderr}"
        return done.stdout

    def enrolment_stub(self) -> tuple[grpc.Channel, census_pb2_grpc.CensusStub]:
        channel = grpc.secure_channel(self.enrol_address, grpc.ssl_channel_credentials(self.server_ca))
        return channel, census_pb2_grpc.CensusStub(channel)

    def stored(self, keyid: str) -> int:
        db = sqlite3.connect(f"file:{self.root / 'data' / 'collector.db'}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute("SELECT COUNT(*) FROM attestations WHERE keyid = ?", (keyid,)).fetchone()[0]
        finally:
            db.close()


@pytest.fixture(scope="module")
def installation(tmp_path_factory) -> Iterator[Installation]:
    root = tmp_path_factory.mktemp("issued")
    made = subprocess.run(
        ["bash", str(BOOTSTRAP), "--out", str(root / "pki"), "--san", "127.0.0.1", "--days", "2"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    address, enrol_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    config = root / "collector.toml"
    config.write_text(
        f'[store]\nkind = "sqlite"\ndata_dir = "data"\n'
        f'[server]\nlisten = "{address}"\nshutdown_grace_seconds = 2\n'
        'tls_cert = "pki/server.pem"\ntls_key = "pki/server.key"\nrequire_client_auth = true\n'
        f'[enrollment]\nlisten = "{enrol_address}"\nissue_client_certificates = true\ncertificate_minutes = 60\n',
        encoding="utf-8",
    )
    collector = Proc("collector", [str(BIN / "gpucensus-collector"), "serve", "--config", str(config)], root)
    inst = Installation(root, address, enrol_address, config, collector)
    inst.cli("entity", "add", "acme", "--headquarters", "US", "--authorization", "uveu")
    inst.cli("site", "add", SITE, "--country", "DE", "--entity", "acme")
    collector.start()

    def serving() -> bool:
        channel, _ = inst.enrolment_stub()
        with channel:
            try:
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
            except grpc.RpcError:
                return False
        return True

    try:
        wait_for("the enrolment listener", serving, [collector])
        yield inst
    finally:
        code = collector.terminate()
    assert code == 0, collector.log()


class Agent:
    def __init__(self, inst: Installation, name: str) -> None:
        self.inst, self.name, self.state = inst, name, inst.root / name
        self.state.mkdir()
        self.key = generate_key(self.state / "node.key")
        self.cert_file, self.key_file = self.state / "node.key.client.pem", self.state / "node.key.client.key"
        self.config = self.state / "agent.toml"
        self.config.write_text(
            f'[collector]\naddress = "{inst.address}"\nenroll_address = "{inst.enrol_address}"\n'
            f'tls_ca_file = "{inst.root / "pki" / "ca.pem"}"\nrequest_certificate = true\n'
            "timeout_seconds = 5.0\nretry_initial_seconds = 0.05\nretry_max_seconds = 0.4\n"
            f'[node]\nid = "{name}"\nsite = "{SITE}"\nstate_dir = "."\n'
            f'[enrollment]\ntoken = "{inst.cli("token", "create", "--site", SITE).splitlines()[0]}"\n'
            "[schedule]\ninterval_seconds = 0.2\njitter_fraction = 0.1\n"
            '[inventory]\nbackend = "mock"\nprofile = "dgx-h100"\n',
            encoding="utf-8",
        )

    def run(self, rounds: int) -> subprocess.CompletedProcess[str]:
        argv = [str(BIN / "gpucensus-agent"), "run", "--config", str(self.config), "--rounds", str(rounds)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_SECONDS, cwd=self.state)

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_file.read_bytes())

    def request(self, signer: ed25519.Ed25519PrivateKey | None = None, keyid: str = "") -> pb.CertificateRequest:
        tls_key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
            .sign(tls_key, hashes.SHA256())
            .public_bytes(serialization.Encoding.DER)
        )
        signature = (signer or self.key.private_key).sign(csr_binding.signed_message(csr))
        return pb.CertificateRequest(keyid=keyid or self.key.keyid, csr_der=csr, signature=signature)


@pytest.fixture(scope="module")
def enrolled(installation) -> Agent:
    agent = Agent(installation, "gpu-01")
    done = agent.run(2)
    assert done.returncode == 0, done.stderr
    return agent


def test_an_agent_with_only_the_server_ca_and_a_token_gets_a_certificate_and_reports(installation, enrolled):
    cert = enrolled.certificate()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gpu-01"
    cert.verify_directly_issued_by(installation.enrolment_ca().certificate)
    assert stat.S_IMODE(os.stat(enrolled.key_file).st_mode) == 0o600
    lifetime = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(minutes=55) < lifetime <= timedelta(minutes=60)
    assert installation.stored(enrolled.key.keyid) == 2  # both rounds, over mutual TLS with the issued certificate


def test_the_agent_renews_after_two_thirds_of_the_lifetime_with_a_fresh_tls_key(installation, enrolled):
    tls_key = serialization.load_pem_private_key(enrolled.key_file.read_bytes(), password=None)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .sign(tls_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    # a certificate for the agent's key, issued 50 minutes ago for 60: 5/6 of it has passed, but still valid
    old = installation.enrolment_ca().issue(csr, "gpu-01", datetime.now(UTC) - timedelta(minutes=50), 60)
    enrolled.cert_file.write_text(old.pem)
    done = enrolled.run(1)
    assert done.returncode == 0, done.stderr
    renewed = enrolled.certificate()
    assert renewed.not_valid_after_utc > old.not_after + timedelta(minutes=45)
    assert renewed.public_key() != tls_key.public_key()  # a fresh TLS key, not the old one re-certified
    assert installation.stored(enrolled.key.keyid) == 3


def test_the_enrolment_listener_serves_neither_reports_nor_queries(installation):
    channel, stub = installation.enrolment_stub()
    with channel:
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Report(iter([pb.Envelope(dsse=b"{}")]), timeout=DEADLINE))
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as err:
            stub.GetSiteStatus(pb.GetSiteStatusRequest(), timeout=DEADLINE)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_request_not_signed_by_the_enrolled_key_or_for_no_enrolled_key_gets_nothing(installation, enrolled):
    intruder = ed25519.Ed25519PrivateKey.generate()
    channel, stub = installation.enrolment_stub()
    with channel:
        with pytest.raises(grpc.RpcError) as err:  # knows the victim's key id, not its private key
            stub.IssueCertificate(enrolled.request(signer=intruder), timeout=DEADLINE)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as err:
            stub.IssueCertificate(enrolled.request(keyid="ab" * 32), timeout=DEADLINE)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        request = enrolled.request()
        request.csr_der = request.csr_der[:-3] + b"\x00\x00\x00"  # signed by the node key, CSR itself broken
        request.signature = enrolled.key.private_key.sign(csr_binding.signed_message(request.csr_der))
        with pytest.raises(grpc.RpcError) as err:
            stub.IssueCertificate(request, timeout=DEADLINE)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_an_issued_node_certificate_cannot_query_and_no_certificate_cannot_connect(installation, enrolled):
    credentials = grpc.ssl_channel_credentials(
        installation.server_ca, enrolled.key_file.read_bytes(), enrolled.cert_file.read_bytes()
    )
    with grpc.secure_channel(installation.address, credentials) as channel:
        with pytest.raises(grpc.RpcError) as err:
            census_pb2_grpc.CensusStub(channel).GetSiteStatus(pb.GetSiteStatusRequest(), timeout=DEADLINE)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "gpu-01" in err.value.details()  # the collector saw the issued certificate's node id
    with grpc.secure_channel(installation.address, grpc.ssl_channel_credentials(installation.server_ca)) as channel:
        with pytest.raises(grpc.RpcError) as err:
            census_pb2_grpc.CensusStub(channel).GetSiteStatus(pb.GetSiteStatusRequest(), timeout=DEADLINE)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # refused at the handshake


def test_a_revoked_key_gets_no_new_certificate_and_the_agent_stops_with_the_reason(installation):
    agent = Agent(installation, "gpu-02")
    assert agent.run(1).returncode == 0
    installation.cli("node", "revoke", "gpu-02")
    channel, stub = installation.enrolment_stub()
    with channel:
        with pytest.raises(grpc.RpcError) as err:
            stub.IssueCertificate(agent.request(), timeout=DEADLINE)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "revoked" in err.value.details()
    agent.cert_file.unlink()
    done = agent.run(1)
    assert done.returncode != 0
    assert "refused a client certificate: PERMISSION_DENIED" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_collector_that_issues_no_certificates_says_so(sqlite_collector):
    node = ed25519.Ed25519PrivateKey.generate()
    request = pb.CertificateRequest(keyid="ab" * 32, csr_der=b"x", signature=node.sign(b"x"))
    with pytest.raises(grpc.RpcError) as err:
        sqlite_collector.stub.IssueCertificate(request, timeout=DEADLINE)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "issue_client_certificates" in err.value.details()
