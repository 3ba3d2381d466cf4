"""TLS and mutual TLS on the collector, with certificates made in the test (`cryptography`): with
`require_client_auth` a plaintext client, a client without a certificate and a client from an unknown CA are
all refused at the handshake, and a node may only speak for itself."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gpucensus.collector.config import ServerConfig
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.store import open_store
from gpucensus.collector.store.base import Store
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc

from tests.ingest_nodes import TestNode
from tests.integration.server_fixtures import DEADLINE, Clock, Collector, start, status_of

NOW = datetime.now(UTC)  # certificates are checked against the real clock


@dataclass
class Pem:
    key: bytes
    cert: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def issue(common_name: str, issuer: Pem | None = None, *, ca: bool = False, server: bool = False) -> Pem:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_key = serialization.load_pem_private_key(issuer.key, None) if issuer else key
    issuer_name = x509.load_pem_x509_certificate(issuer.cert).subject if issuer else _name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(minutes=5))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return Pem(key_pem, cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class Pki:
    server_ca: Pem
    nodes_ca: Pem
    server: Pem
    node_1: Pem
    node_2: Pem
    stranger: Pem  # CN node-1, from a CA the collector does not trust
    dir: Path

    def write(self, name: str, data: bytes) -> str:
        path = self.dir / name
        path.write_bytes(data)
        path.chmod(0o600)  # a private key others may read is refused
        return str(path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    server_ca, nodes_ca, other_ca = issue("server CA", ca=True), issue("nodes CA", ca=True), issue("other", ca=True)
    return Pki(
        server_ca,
        nodes_ca,
        issue("collector", server_ca, server=True),
        issue("node-1", nodes_ca),
        issue("node-2", nodes_ca),
        issue("node-1", other_ca),
        tmp_path_factory.mktemp("pki"),
    )


def tls_config(pki: Pki, *, require_client_auth: bool, query_clients: tuple[str, ...] = ()) -> ServerConfig:
    return ServerConfig(
        query_clients=query_clients,
        listen="127.0.0.1:0",
        tls_cert=pki.write("server.pem", pki.server.cert),
        tls_key=pki.write("server.key", pki.server.key),
        client_ca=pki.write("nodes-ca.pem", pki.nodes_ca.cert) if require_client_auth else "",
        require_client_auth=require_client_auth,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = open_store("sqlite", data_dir=str(tmp_path / "data"))
    yield store
    store.close()


def connect(port: int, pki: Pki, client: Pem | None = None, plaintext: bool = False) -> grpc.Channel:
    if plaintext:
        return grpc.insecure_channel(f"127.0.0.1:{port}")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.server_ca.cert,
        private_key=client.key if client else None,
        certificate_chain=client.cert if client else None,
    )
    return grpc.secure_channel(f"127.0.0.1:{port}", credentials)


@contextmanager
def collector_on(
    store: Store, config: ServerConfig, channel_factory: Callable[[int], grpc.Channel]
) -> Iterator[Collector]:
    clock = Clock()
    server, port = start(store, config, clock=clock)
    channel = channel_factory(port)
    try:
        yield Collector(server, port, store, channel, census_pb2_grpc.CensusStub(channel), clock)
    finally:
        channel.close()
        server.stop(None).wait()


def test_tls_serves_tls_clients_and_refuses_plaintext(store: Store, pki: Pki) -> None:
    with collector_on(store, tls_config(pki, require_client_auth=False), lambda p: connect(p, pki)) as collector:
        node = TestNode("node-1")
        collector.enroll(node)
        assert [a.status for a in collector.report([node.next()])] == [pb.ACK_STATUS_ACCEPTED]
        with connect(collector.port, pki, plaintext=True) as plain:
            stub = census_pb2_grpc.CensusStub(plain)
            code = status_of(lambda s=stub: s.GetSiteStatus(pb.GetSiteStatusRequest(), timeout=DEADLINE))
            assert code == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_accepts_a_node_certificate_from_the_nodes_ca(store: Store, pki: Pki) -> None:
    config = tls_config(pki, require_client_auth=True)
    with collector_on(store, config, lambda p: connect(p, pki, pki.node_1)) as collector:
        node = TestNode("node-1")
        assert collector.enroll(node).node_id == "node-1"
        assert [a.status for a in collector.report([node.next()])] == [pb.ACK_STATUS_ACCEPTED]


@pytest.mark.parametrize("client", ["plaintext", "no certificate", "unknown CA"])
def test_mutual_tls_refuses_at_the_handshake(store: Store, pki: Pki, client: str) -> None:
    config = tls_config(pki, require_client_auth=True)
    with collector_on(store, config, lambda p: connect(p, pki, pki.node_1)) as collector:
        channel = {
            "plaintext": lambda: connect(collector.port, pki, plaintext=True),
            "no certificate": lambda: connect(collector.port, pki),
            "unknown CA": lambda: connect(collector.port, pki, pki.stranger),
        }[client]()
        with channel:
            stub = census_pb2_grpc.CensusStub(channel)
            code = status_of(lambda s=stub: s.GetSiteStatus(pb.GetSiteStatusRequest(), timeout=DEADLINE))
            assert code == grpc.StatusCode.UNAVAILABLE
        # the collector still answers its own clients (node-1 is no query client, so it is told so)
        query = collector.stub.GetSiteStatus
        assert (
            status_of(lambda: query(pb.GetSiteStatusRequest(), timeout=DEADLINE)) == grpc.StatusCode.PERMISSION_DENIED
        )


def test_with_mutual_tls_a_node_speaks_only_for_itself(store: Store, pki: Pki) -> None:
    config = tls_config(pki, require_client_auth=True)
    with collector_on(store, config, lambda p: connect(p, pki, pki.node_1)) as collector:
        node_1, node_2 = TestNode("node-1"), TestNode("node-2")
        collector.enroll(node_1)
        assert status_of(lambda: collector.enroll(node_2)) == grpc.StatusCode.PERMISSION_DENIED
        with connect(collector.port, pki, pki.node_2) as channel:
            as_node_2 = census_pb2_grpc.CensusStub(channel)
            envelopes = iter([pb.Envelope(dsse=node_1.next())])
            code = status_of(lambda: list(as_node_2.Report(envelopes, timeout=DEADLINE)))
            assert code == grpc.StatusCode.PERMISSION_DENIED
        assert collector.store.last_attestation(node_1.keyid) is None


def test_with_mutual_tls_only_query_clients_read_the_inventory(store: Store, pki: Pki) -> None:
    dashboard = issue("dashboard", pki.nodes_ca)
    config = tls_config(pki, require_client_auth=True, query_clients=("dashboard",))
    with collector_on(store, config, lambda p: connect(p, pki, pki.node_1)) as collector:
        node = TestNode("node-1")
        collector.enroll(node)
        assert [a.status for a in collector.report([node.next()])] == [pb.ACK_STATUS_ACCEPTED]
        as_node = collector.stub  # a node certificate: it may report, not read everyone's inventory
        for call in (
            lambda: as_node.GetSiteStatus(pb.GetSiteStatusRequest(), timeout=DEADLINE),
            lambda: as_node.GetCountryTotals(pb.GetCountryTotalsRequest(), timeout=DEADLINE),
        ):
            assert status_of(call) == grpc.StatusCode.PERMISSION_DENIED
        with connect(collector.port, pki, dashboard) as channel:
            as_dashboard = census_pb2_grpc.CensusStub(channel)
            totals = as_dashboard.GetCountryTotals(pb.GetCountryTotalsRequest(), timeout=DEADLINE)
            assert [c.totals.gpus for c in totals.countries] == [8]
            assert len(as_dashboard.GetSiteStatus(pb.GetSiteStatusRequest(), timeout=DEADLINE).sites) == 1


def test_an_unreadable_certificate_is_a_config_error(store: Store, pki: Pki, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    config = ServerConfig(listen="127.0.0.1:0", tls_cert=missing, tls_key=pki.write("server.key", pki.server.key))
    with pytest.raises(ConfigError, match=r"cannot read the TLS certificate .*missing\.pem"):
        start(store, config)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"tls_cert": b"not a pem\n"}, r"TLS certificate .*cert\.pem is not a PEM certificate"),
        ({"tls_key": b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, r"TLS key .* is not an"),
        ({"tls_key": "other"}, r"TLS key .* does not belong to the certificate"),
        ({"client_ca": b"garbage"}, r"client CA .*ca\.pem is not a PEM certificate"),
    ],
)
def test_a_file_that_is_not_the_pem_it_should_be_is_a_config_error_naming_it(
    store: Store, pki: Pki, files: dict, message: str
) -> None:
    content = {"tls_cert": pki.server.cert, "tls_key": pki.server.key, "client_ca": pki.nodes_ca.cert}
    content.update({k: pki.node_1.key if v == "other" else v for k, v in files.items()})
    names = {"tls_cert": "cert.pem", "tls_key": "key.pem", "client_ca": "ca.pem"}
    paths = {k: pki.write(f"bad-{names[k]}", v) for k, v in content.items()}
    config = ServerConfig(listen="127.0.0.1:0", require_client_auth=True, **paths)
    with pytest.raises(ConfigError, match=message):
        start(store, config)
