"""Collector-issued client certificates (`collector.request_certificate = true`).

The agent keeps a TLS key of its own (ECDSA P-256; never the node's attestation key) and a certificate for it,
next to the node key (`<key>.client.key`, mode 0600, and `<key>.client.pem`). It asks the collector's enrolment
listener for one when there is none, when the one it has does not match its key or is unreadable, and after two
thirds of its lifetime (like SPIFFE X509-SVID rotation): each request carries a fresh TLS key and a CSR signed
by the enrolled node key (`common.csr_binding`). The key is written before the certificate, so an interrupted
renewal leaves a pair that does not match, which the next round replaces.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gpucensus.agent.keys import NodeKey
from gpucensus.common import csr_binding
from gpucensus.common.durable import atomic_write
from gpucensus.common.errors import ConfigError
from gpucensus.protos import census_pb2, census_pb2_grpc

log = logging.getLogger(__name__)

RENEW_AFTER = 2 / 3  # of the certificate's lifetime
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED)


class CertificateUnavailable(Exception):
    """The collector could not be asked now (retry later); the message says why."""


def renewal_reason(cert_path: Path, key_path: Path, now: datetime) -> tuple[str, bool]:
    """Why a new certificate is needed now ("" if the one on disk is good for a while), and whether the one on
    disk can still be used meanwhile (it matches its key and has not expired)."""
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError:
        return "none yet", False
    except (OSError, ValueError, TypeError) as err:
        return f"the certificate or key is unreadable ({err})", False
    if certificate.public_key() != key.public_key():
        return "the certificate does not match the TLS key (an interrupted renewal)", False
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if now >= end:
        return f"it expired at {end.isoformat()}", False
    if now >= start + (end - start) * RENEW_AFTER:
        return f"two thirds of its lifetime have passed (it expires at {end.isoformat()})", True
    return "", True


def request_certificate(
    channel: grpc.Channel, node_key: NodeKey, cert_path: Path, key_path: Path, timeout: float
) -> datetime:
    """Ask the collector for a certificate for a fresh TLS key and store both; returns its expiry.

    CertificateUnavailable when the collector cannot answer now; ConfigError when it refuses (not enrolled,
    revoked, or it issues no certificates)."""
    tls_key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_key.keyid[:32])]))
        .sign(tls_key, hashes.SHA256())
    )
    csr_der = csr.public_bytes(serialization.Encoding.DER)
    request = census_pb2.CertificateRequest(
        keyid=node_key.keyid, csr_der=csr_der, signature=node_key.private_key.sign(csr_binding.signed_message(csr_der))
    )
    try:
        response = census_pb2_grpc.CensusStub(channel).IssueCertificate(request, timeout=timeout)
    except grpc.RpcError as err:
        if err.code() in RETRYABLE:
            raise CertificateUnavailable(f"IssueCertificate: {err.code().name}: {err.details()}") from None
        raise ConfigError(
            f"the collector refused a client certificate: {err.code().name}: {err.details()}",
            hint="the node key must be enrolled and not revoked, and the collector must set [enrollment] "
            "issue_client_certificates = true",
        ) from None
    try:
        certificate = x509.load_pem_x509_certificate(response.certificate_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as err:
        raise ConfigError(f"the collector sent an unusable client certificate: {err}") from None
    if certificate.public_key() != tls_key.public_key():
        raise ConfigError("the collector sent a client certificate for another key; nothing was stored")
    key_pem = tls_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    atomic_write(key_path, key_pem, mode=0o600)
    atomic_write(cert_path, response.certificate_pem.encode("ascii"), mode=0o644)
    expiry = certificate.not_valid_after_utc
    log.info("stored a client certificate from the collector in %s, valid until %s", cert_path, expiry.isoformat())
    return expiry


def utc_now() -> datetime:
    return datetime.now(UTC)
