"""The enrolment CA: what it puts in a client certificate is its own decision, never the requester's, and a
request that is not a validly self-signed P-256/P-384 CSR gets a certificate for nothing."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from gpucensus.collector.enrolment_ca import EnrolmentCA
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.ingest.errors import MalformedError
from gpucensus.common.errors import KeyError_

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def csr_for(key, cn: str = "admin", extensions: bool = False) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if extensions:  # a requester asking to be a CA: ignored
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def ca() -> EnrolmentCA:
    return EnrolmentCA.create("test", NOW)


def test_the_certificate_names_the_node_the_key_is_bound_to_whatever_the_request_says(ca):
    tls_key = ec.generate_private_key(ec.SECP256R1())
    issued = ca.issue(csr_for(tls_key, cn="collector-admin", extensions=True), "gpu-node-7", NOW, 60)
    cert = issued.certificate
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gpu-node-7"
    assert cert.issuer == ca.certificate.subject
    assert cert.public_key() == tls_key.public_key()
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_after_utc == NOW + timedelta(minutes=60) == issued.not_after
    assert cert.not_valid_before_utc <= NOW
    cert.verify_directly_issued_by(ca.certificate)  # raises if the CA did not sign it


def test_a_p384_key_is_accepted_and_serials_differ(ca):
    one = ca.issue(csr_for(ec.generate_private_key(ec.SECP384R1())), "n1", NOW, 60)
    two = ca.issue(csr_for(ec.generate_private_key(ec.SECP256R1())), "n1", NOW, 60)
    assert one.certificate.serial_number != two.certificate.serial_number


@pytest.mark.parametrize(
    "key",
    [
        ed25519.Ed25519PrivateKey.generate(),
        rsa.generate_private_key(65537, 2048),
        ec.generate_private_key(ec.SECP521R1()),
    ],
    ids=["ed25519", "rsa", "p521"],
)
def test_a_tls_key_grpc_cannot_use_is_refused(ca, key):
    with pytest.raises(MalformedError, match="P-256 or P-384"):
        ca.issue(csr_for(key), "n1", NOW, 60)


def test_a_request_whose_self_signature_fails_or_that_is_no_csr_is_refused(ca):
    der = bytearray(csr_for(ec.generate_private_key(ec.SECP256R1()), cn="aaaaaaaa"))
    index = bytes(der).index(b"aaaaaaaa")
    der[index] = ord("b")  # the signed subject changed: the self-signature no longer verifies
    with pytest.raises(MalformedError, match="self-signature"):
        ca.issue(bytes(der), "n1", NOW, 60)
    with pytest.raises(MalformedError, match="not a PKCS#10"):
        ca.issue(b"\x30\x03\x02\x01\x00", "n1", NOW, 60)
    with pytest.raises(MalformedError, match="at most"):
        ca.issue(b"\x30" * 5000, "n1", NOW, 60)


def test_the_ca_is_made_once_private_and_reloaded(tmp_path):
    cert, key = tmp_path / "ca.pem", tmp_path / "ca.key"
    made = EnrolmentCA.load_or_create(cert, key, "site", NOW)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    again = EnrolmentCA.load_or_create(cert, key, "site", NOW)
    assert again.pem == made.pem


def test_a_broken_or_shared_ca_is_a_clear_error(tmp_path):
    cert, key = tmp_path / "ca.pem", tmp_path / "ca.key"
    EnrolmentCA.load_or_create(cert, key, "site", NOW)
    os.chmod(key, 0o640)
    with pytest.raises(KeyError_, match="group or others"):
        EnrolmentCA.load_or_create(cert, key, "site", NOW)
    os.chmod(key, 0o600)
    other = EnrolmentCA.create("other", NOW)
    cert.write_text(other.pem)
    with pytest.raises(ConfigError, match="does not belong"):
        EnrolmentCA.load(cert, key)
    key.unlink()
    with pytest.raises(ConfigError, match="incomplete"):  # never silently replaced by a new CA
        EnrolmentCA.load_or_create(cert, key, "site", NOW)
    cert.write_text("not a certificate")
    key.write_bytes(b"")
    os.chmod(key, 0o600)
    with pytest.raises(ConfigError, match="unusable"):
        EnrolmentCA.load(cert, key)
