"""The collector's enrolment CA: short-lived TLS client certificates for enrolled node keys.

With `[enrollment] issue_client_certificates = true`, an agent proves it holds an enrolled, unrevoked node key
(`common.csr_binding`) and gets a certificate for its own TLS key with CN = the node id the key is bound to, valid
for `certificate_minutes`. Mutual TLS then needs no per-node secret distribution: the CA certificate is the only
file the collector's `client_ca` trust needs, and a revoked key gets no new certificate (its current one lapses
within one lifetime; its envelopes are refused at once anyway, as the key is checked on every Report).

The CA key (ECDSA P-256: BoringSSL, which grpcio uses, does not take Ed25519 in TLS) is made on first start if
absent, mode 0600 beside the certificate in the data directory, outside the database; a CA key readable by group or
others is refused like every other private key.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.ingest.errors import MalformedError
from gpucensus.common.csr_binding import MAX_CSR_BYTES
from gpucensus.common.durable import atomic_write, refuse_shared_private_key

log = logging.getLogger(__name__)

ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1)  # what BoringSSL and every TLS stack accept for client auth
CA_YEARS = 10
BACKDATE = timedelta(minutes=5)  # tolerate clocks a little behind the collector's


@dataclass(frozen=True)
class IssuedCertificate:
    certificate: x509.Certificate
    pem: str
    not_after: datetime


class EnrolmentCA:
    def __init__(self, certificate: x509.Certificate, private_key: ec.EllipticCurvePrivateKey) -> None:
        self.certificate = certificate
        self._key = private_key
        self.pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @classmethod
    def load_or_create(cls, cert_path: Path, key_path: Path, name: str, now: datetime) -> EnrolmentCA:
        """The CA in `cert_path`/`key_path`; both made (never overwriting either) if neither exists."""
        if not cert_path.exists() and not key_path.exists():
            ca = cls.create(name, now)
            key_pem = ca._key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            atomic_write(key_path, key_pem, mode=0o600, overwrite=False)
            atomic_write(cert_path, ca.pem.encode("ascii"), mode=0o644, overwrite=False)
            log.warning("created the enrolment CA %s (key %s): agents trust the collector's server CA, the "
                        "collector trusts client certificates from this CA", cert_path, key_path)  # fmt: skip
            return ca
        return cls.load(cert_path, key_path)

    @classmethod
    def create(cls, name: str, now: datetime) -> EnrolmentCA:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} enrolment CA")])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + timedelta(days=365 * CA_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> EnrolmentCA:
        hint = "[enrollment] ca_cert and ca_key: the enrolment CA the collector made on first start, or your own"
        try:
            certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
            refuse_shared_private_key(key_path, key_path.stat(), "the enrolment CA key")
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except FileNotFoundError as err:
            raise ConfigError(f"the enrolment CA is incomplete: {err.filename} is missing", hint=hint) from None
        except OSError as err:
            raise ConfigError(f"cannot read the enrolment CA {err.filename}: {err.strerror}", hint=hint) from None
        except (ValueError, TypeError, UnsupportedAlgorithm) as err:
            raise ConfigError(f"the enrolment CA {cert_path} / {key_path} is unusable: {err}", hint=hint) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ALLOWED_CURVES):
            raise ConfigError(f"the enrolment CA key {key_path} must be ECDSA P-256 or P-384", hint=hint)
        if certificate.public_key() != key.public_key():
            raise ConfigError(f"the enrolment CA key {key_path} does not belong to {cert_path}", hint=hint)
        return cls(certificate, key)

    def issue(self, csr_der: bytes, node_id: str, now: datetime, minutes: int) -> IssuedCertificate:
        """A client certificate for the key of `csr_der` with CN = `node_id` (the CSR's own subject and
        extensions are ignored: the collector decides what the certificate says). MalformedError for a request
        that is not a validly self-signed P-256/P-384 PKCS#10 request."""
        if len(csr_der) > MAX_CSR_BYTES:
            raise MalformedError(f"csr_der is {len(csr_der)} bytes; at most {MAX_CSR_BYTES}")
        try:
            csr = x509.load_der_x509_csr(csr_der)
            public_key = csr.public_key()
            self_signed = csr.is_signature_valid
        except (ValueError, UnsupportedAlgorithm, InvalidSignature) as err:
            raise MalformedError(f"csr_der is not a PKCS#10 certificate request: {err}") from None
        if not self_signed:
            raise MalformedError("csr_der: its self-signature does not verify")
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(public_key.curve, ALLOWED_CURVES):
            raise MalformedError("csr_der: the TLS key must be ECDSA P-256 or P-384")
        not_after = now + timedelta(minutes=minutes)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
        return IssuedCertificate(certificate, pem, not_after)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )  # fmt: skip
