"""The agent's gRPC client against a scripted Census server on loopback: acks, statuses, enrollment, TLS."""

from __future__ import annotations

import datetime
import ipaddress
import json
from concurrent import futures

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gpucensus.agent import config as agent_config
from gpucensus.agent.spool import DELIVERED, REJECTED, Spool
from gpucensus.agent.uplink import RetryableError, Uplink, ensure_enrolled, open_channel
from gpucensus.common.errors import ConfigError
from gpucensus.protos import census_pb2, census_pb2_grpc

KEY = "ef" * 32
ROOT_B64 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


class ScriptedCensus(census_pb2_grpc.CensusServicer):
    """Acks envelopes by a script: sequence -> "accept" | "no-index" | "reject" | a grpc.StatusCode to abort."""

    def __init__(self) -> None:
        self.script: dict[int, object] = {}
        self.received: list[list[int]] = []  # sequences per stream
        self.enrolls: list[census_pb2.EnrollRequest] = []
        self.enroll_status: grpc.StatusCode | None = None

    def Enroll(self, request, context):
        self.enrolls.append(request)
        if self.enroll_status is not None:
            context.abort(self.enroll_status, "scripted")
        return census_pb2.EnrollResponse(keyid=KEY, node_id=request.node_id, site="site-1")

    def Report(self, request_iterator, context):
        stream: list[int] = []
        self.received.append(stream)
        for envelope in request_iterator:
            sequence = json.loads(envelope.dsse)["sequence"]
            stream.append(sequence)
            action = self.script.get(sequence, "accept")
            if isinstance(action, grpc.StatusCode):
                context.abort(action, f"scripted {action.name}")
            ack = census_pb2.Ack(keyid=KEY, sequence=sequence)
            if action == "accept":
                ack.status = census_pb2.ACK_STATUS_ACCEPTED
                ack.log_index = sequence - 1  # 0 is a valid index
                ack.checkpoint = f"test\n{sequence}\n{ROOT_B64}\n\n— test sig\n".encode()
            elif action == "no-index":
                ack.status = census_pb2.ACK_STATUS_ACCEPTED
            else:
                ack.status = census_pb2.ACK_STATUS_REJECTED
                ack.findings.add(
                    rule_id="chain.equivocation",
                    severity=census_pb2.SEVERITY_VIOLATION,
                    subject="node:n1",
                    message="two envelopes for one sequence",
                )
            yield ack


def start_server(servicer, credentials=None):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    census_pb2_grpc.add_CensusServicer_to_server(servicer, server)
    address = "127.0.0.1:0"
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    server.start()
    return server, port


@pytest.fixture
def census():
    servicer = ScriptedCensus()
    server, port = start_server(servicer)
    servicer.port = port
    yield servicer
    server.stop(grace=None)


@pytest.fixture
def spool(tmp_path):
    s = Spool(tmp_path / "spool.db", max_bytes=1_000_000)
    yield s
    s.close()


def config_for(tmp_path, port, **extra):
    values = {"collector.address": f"127.0.0.1:{port}", "node.state_dir": str(tmp_path / "state")}
    values.update(extra)
    return agent_config.load(None, env={}, overrides=values)


def uplink_for(config):
    return Uplink(open_channel(config), timeout_seconds=5)


def fill(spool, sequences):
    for seq in sequences:
        spool.append(KEY, seq, json.dumps({"sequence": seq}).encode())


def test_pending_goes_out_in_order_on_one_stream_and_is_delivered_on_acks(tmp_path, census, spool):
    fill(spool, [3, 1, 2])
    acks = []
    result = uplink_for(config_for(tmp_path, census.port)).drain(spool, on_ack=acks.append)
    assert census.received == [[1, 2, 3]]
    assert (result.sent, result.delivered, result.rejected) == (3, 3, 0)
    assert [(row.sequence, row.log_index) for row in spool.entries(DELIVERED)] == [(1, 0), (2, 1), (3, 2)]
    assert acks[-1].checkpoint.startswith(b"test\n3\n")  # handed to the caller (the log monitor checks it)


def test_accepted_without_log_index_stays_pending(tmp_path, census, spool):
    census.script = {2: "no-index"}
    fill(spool, [1, 2, 3])
    result = uplink_for(config_for(tmp_path, census.port)).drain(spool)
    assert [e.sequence for e in spool.pending()] == [2]
    assert "no log index" in result.error  # the caller backs off instead of resending at once


def test_rejected_ack_is_kept_in_the_spool_with_the_findings(tmp_path, census, spool):
    census.script = {2: "reject"}
    fill(spool, [1, 2, 3])
    result = uplink_for(config_for(tmp_path, census.port)).drain(spool)
    assert (result.delivered, result.rejected) == (2, 1)
    [row] = spool.entries(REJECTED)
    assert row.sequence == 2 and "chain.equivocation" in row.error


@pytest.mark.parametrize(
    "status",
    [grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED],
)  # RESOURCE_EXHAUSTED without the collector's retry-after trailer: the message was too big, a verdict
def test_final_status_flags_the_envelope_it_answered_and_keeps_the_rest(tmp_path, census, spool, status):
    census.script = {2: status}
    fill(spool, [1, 2, 3])
    result = uplink_for(config_for(tmp_path, census.port)).drain(spool)
    assert result.error.startswith(status.name)
    assert [row.sequence for row in spool.entries(DELIVERED)] == [1]
    assert [(row.sequence, row.error.split(":")[0]) for row in spool.entries(REJECTED)] == [(2, status.name)]
    assert [e.sequence for e in spool.pending()] == [3]


@pytest.mark.parametrize("status", [grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNIMPLEMENTED])
def test_a_status_that_is_no_verdict_keeps_every_unanswered_envelope_pending(tmp_path, census, spool, status):
    # e.g. the collector's idle-stream watchdog cancels a stalled stream: no envelope was judged
    census.script = {2: status}
    fill(spool, [1, 2, 3])
    result = uplink_for(config_for(tmp_path, census.port)).drain(spool)
    assert result.error.startswith(status.name) and result.rejected == 0
    assert [row.sequence for row in spool.entries(DELIVERED)] == [1]
    assert spool.entries(REJECTED) == []
    assert [e.sequence for e in spool.pending()] == [2, 3]


def test_unavailable_is_retryable_and_leaves_everything_pending(tmp_path, census, spool):
    census.script = {1: grpc.StatusCode.UNAVAILABLE}
    fill(spool, [1, 2])
    uplink = uplink_for(config_for(tmp_path, census.port))
    with pytest.raises(RetryableError, match="UNAVAILABLE"):
        uplink.drain(spool)
    assert [e.sequence for e in spool.pending()] == [1, 2]
    census.script = {}
    uplink.drain(spool)  # the next drain resends in order
    assert census.received[-1] == [1, 2] and spool.pending() == []


def test_no_server_is_retryable(tmp_path, spool):
    fill(spool, [1])
    with pytest.raises(RetryableError):
        uplink_for(config_for(tmp_path, 1)).drain(spool)
    assert len(spool.pending()) == 1


def test_enroll_once_and_keep_the_result_next_to_the_key(tmp_path, census):
    (tmp_path / "keys").mkdir()
    key_path = str(tmp_path / "keys" / "node.key")
    config = config_for(tmp_path, census.port, **{"node.key_path": key_path, "enrollment.token": "tok-1"})
    uplink = uplink_for(config)
    record = ensure_enrolled(config, uplink, "n1", "PEM", KEY)
    assert record["site"] == "site-1" and record["keyid"] == KEY
    assert json.loads((tmp_path / "keys" / "node.key.enrollment.json").read_text())["node_id"] == "n1"
    assert ensure_enrolled(config, uplink, "n1", "PEM", KEY) == record
    assert [(r.token, r.node_id, r.public_key_pem) for r in census.enrolls] == [("tok-1", "n1", "PEM")]
    # a record for another key (the key was replaced) does not count: that key enrolls anew
    assert ensure_enrolled(config, uplink, "n1", "PEM2", "12" * 32)["keyid"] == KEY
    assert [r.public_key_pem for r in census.enrolls] == ["PEM", "PEM2"]


def test_enroll_refused_is_a_config_error_unreachable_is_retryable(tmp_path, census):
    config = config_for(tmp_path, census.port, **{"enrollment.token": "used"})
    census.enroll_status = grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(ConfigError, match="refused enrollment"):
        ensure_enrolled(config, uplink_for(config), "n1", "PEM", KEY)
    census.enroll_status = grpc.StatusCode.UNAVAILABLE
    with pytest.raises(RetryableError):
        ensure_enrolled(config, uplink_for(config), "n1", "PEM", KEY)
    assert not config.enrollment_file.exists()


def test_enrolled_but_record_not_written_goes_on_enrolled(tmp_path, census, monkeypatch, caplog):
    # the token is used up once Enroll succeeded: failing to write the record must not make the agent ask again
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("gpucensus.agent.uplink.atomic_write", disk_full)
    config = config_for(tmp_path, census.port, **{"enrollment.token": "tok-1"})
    record = ensure_enrolled(config, uplink_for(config), "n1", "PEM", KEY)
    assert record is not None and record["keyid"] == KEY
    assert "could not be written" in caplog.text and "No space left" in caplog.text


@pytest.mark.parametrize("content", [b"{garbage", b"\xff\xfe", b"[]", b"42"])
def test_damaged_enrollment_record_is_a_config_error(tmp_path, census, content):
    config = config_for(tmp_path, census.port, **{"enrollment.token": "tok-1"})
    config.enrollment_file.parent.mkdir(parents=True, exist_ok=True)
    config.enrollment_file.write_bytes(content)
    with pytest.raises(ConfigError, match=r"enrollment record .* is unreadable"):
        ensure_enrolled(config, uplink_for(config), "n1", "PEM", KEY)
    assert census.enrolls == [] and config.enrollment_file.read_bytes() == content


def test_no_token_means_no_enroll_call(tmp_path, census):
    config = config_for(tmp_path, census.port)
    assert ensure_enrolled(config, uplink_for(config), "n1", "PEM", KEY) is None
    assert census.enrolls == []


def _cert(name, issuer_key, issuer_name, key, ca=False, san=None):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj):
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_mutual_tls(tmp_path, spool):
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    ca = _cert("test-ca", ca_key, ca_name, ca_key, ca=True)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    san = [x509.DNSName("collector.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server_cert = _cert("collector.test", ca_key, ca_name, server_key, san=san)
    client_cert = _cert("node-1", ca_key, ca_name, client_key)
    files = {"ca.pem": _pem(ca), "client.pem": _pem(client_cert), "client.key": _pem(client_key)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "client.key").chmod(0o600)  # a private key others may read is refused
    credentials = grpc.ssl_server_credentials(
        [(_pem(server_key), _pem(server_cert))], root_certificates=_pem(ca), require_client_auth=True
    )
    servicer = ScriptedCensus()
    server, port = start_server(servicer, credentials)
    try:
        fill(spool, [1])
        plain = config_for(tmp_path, port, **{"collector.timeout_seconds": 2.0})
        with pytest.raises(RetryableError):  # plaintext to a TLS port never gets an ack
            uplink_for(plain).drain(spool)
        no_client_cert = config_for(tmp_path, port, **{"collector.tls_ca_file": str(tmp_path / "ca.pem")})
        with pytest.raises(RetryableError):  # the server demands a client certificate
            uplink_for(no_client_cert).drain(spool)
        mtls = config_for(
            tmp_path,
            port,
            **{
                "collector.tls_ca_file": str(tmp_path / "ca.pem"),
                "collector.tls_cert_file": str(tmp_path / "client.pem"),
                "collector.tls_key_file": str(tmp_path / "client.key"),
                "collector.tls_server_name": "collector.test",
            },
        )
        result = uplink_for(mtls).drain(spool)
        assert result.delivered == 1 and servicer.received[-1] == [1]
    finally:
        server.stop(grace=None)


def test_unreadable_tls_file_is_a_config_error(tmp_path):
    config = config_for(tmp_path, 1, **{"collector.tls_ca_file": str(tmp_path / "missing-ca.pem")})
    with pytest.raises(ConfigError, match=r"collector\.tls_ca_file"):
        open_channel(config)
