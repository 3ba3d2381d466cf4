"""The agent's TLS files (`collector.tls_ca_file`, `tls_cert_file`, `tls_key_file`), checked when read.

grpc only looks at them when it connects, and a bad file then fails every attempt with an UNAVAILABLE
("Failed to create security handshaker") that the agent would retry forever as if the collector were down.
So a file that is not PEM, a key that is encrypted or does not belong to the certificate, is a ConfigError
naming the setting and the file, at start; a key that group or others may read is a KeyError_ (exit 4).
A certificate outside its validity period is only a warning: the clock may be wrong, and the collector is the
one that decides.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from gpucensus.common.durable import refuse_shared_private_key
from gpucensus.common.errors import ConfigError

log = logging.getLogger("gpucensus.agent.tls")

SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
HINT = "collector.tls_ca_file and tls_cert_file are PEM certificates, tls_key_file the certificate's PEM key"


@dataclass(frozen=True)
class TlsFiles:
    root_certificates: bytes | None
    private_key: bytes | None
    certificate_chain: bytes | None


def read_tls_files(ca_file: str, cert_file: str, key_file: str, now: datetime | None = None) -> TlsFiles:
    """The PEM bytes for `grpc.ssl_channel_credentials`; ConfigError if a file is unreadable or wrong."""
    root, _ = _certificates(ca_file, "collector.tls_ca_file")
    chain, certificates = _certificates(cert_file, "collector.tls_cert_file")
    key = _read(key_file, "collector.tls_key_file")
    if key is not None:
        refuse_shared_private_key(key_file, Path(key_file).stat(), "collector.tls_key_file")
        try:
            private_key = serialization.load_pem_private_key(key, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as err:  # TypeError: encrypted
            raise ConfigError(
                f"collector.tls_key_file {key_file} is not an unencrypted PEM private key: {err}", hint=HINT
            ) from err
        certified = certificates[0].public_key().public_bytes(*SPKI) if certificates else None
        if certified is not None and private_key.public_key().public_bytes(*SPKI) != certified:
            raise ConfigError(
                f"collector.tls_key_file {key_file} is not the key of the certificate in {cert_file}",
                hint="tls_cert_file must start with the certificate of tls_key_file",
            )
    if certificates:
        _warn_if_not_valid(certificates[0], cert_file, now or datetime.now(UTC))
    return TlsFiles(root, key, chain)


def _read(path: str, setting: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {setting} {path}: {err.strerror}") from err


def _certificates(path: str, setting: str) -> tuple[bytes | None, list[x509.Certificate]]:
    data = _read(path, setting)
    if data is None:
        return None, []
    try:
        return data, x509.load_pem_x509_certificates(data)
    except ValueError as err:
        raise ConfigError(f"{setting} {path} is not a PEM certificate: {err}", hint=HINT) from err


def _warn_if_not_valid(certificate: x509.Certificate, path: str, now: datetime) -> None:
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if not start <= now <= end:
        log.warning(
            "the client certificate %s is valid from %s to %s, not now (%s): the collector will refuse it",
            path, start.isoformat(), end.isoformat(), now.isoformat(timespec="seconds"),
        )  # fmt: skip
