"""Envelope files as an auditor holds them: each verified with the node keys given, then the chains across them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from gpucensus.collector.errors import ConfigError
from gpucensus.common.dsse import EnvelopeError
from gpucensus.common.verify import (
    EnvelopeResult,
    Failure,
    VerifiedStatement,
    check_chains,
    parse_envelope,
    verify_parsed,
)


def read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror}") from err


def verify_file(data: bytes, keys: Sequence[Ed25519PublicKey], source: str) -> EnvelopeResult:
    """Verify one envelope against the given keys: the result of the first key that verifies it, else the
    result for the key its keyid names (or the first key)."""
    if data.endswith(b"\n"):  # a terminal newline (cat, editors) is not part of the envelope's JCS bytes
        data = data[:-1]
    try:
        parsed = parse_envelope(data)  # once, whatever the number of keys
    except EnvelopeError as err:
        return EnvelopeResult([Failure(err.reason, err.message, source=source)])
    if not keys:
        return EnvelopeResult([Failure("wrong-key", "no node public key to verify it with", source=source)])
    results = [verify_parsed(parsed, key, source) for key in keys]
    for result in results:
        if result.ok:
            return result
    for result in results:
        if all(f.reason != "wrong-key" for f in result.failures):
            return result
    return results[0]


def verify_files(
    files: Sequence[Path], keys: Sequence[Ed25519PublicKey]
) -> tuple[list[VerifiedStatement], list[Failure]]:
    contents = [(path, read_file(path, "envelope file")) for path in files]
    verified: list[VerifiedStatement] = []
    failures: list[Failure] = []
    for path, data in contents:
        result = verify_file(data, keys, str(path))
        failures += result.failures
        if result.verified is not None:
            verified.append(result.verified)
    failures += check_chains(verified)
    return verified, failures
