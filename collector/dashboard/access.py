"""Who may read the dashboard: loopback by default; over TLS, client certificates by common name or HTTP basic
auth against a salted PBKDF2-SHA256 hash kept in the config (never the password).

Hash format: `pbkdf2-sha256$ITERATIONS$SALT_HEX$HASH_HEX`, made by `gpucensus-collector dashboard-password`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
import threading

from gpucensus.collector.errors import ConfigError

SCHEME = "pbkdf2-sha256"
ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
MIN_ITERATIONS = 100_000


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def hash_password(password: str, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def _parts(encoded: str) -> tuple[int, bytes, bytes]:
    scheme, iterations, salt, digest = encoded.split("$")
    if scheme != SCHEME or not iterations.isdigit():
        raise ValueError(encoded)
    return int(iterations), bytes.fromhex(salt), bytes.fromhex(digest)


def check_password_hash(encoded: str, where: str) -> None:
    try:
        iterations, salt, digest = _parts(encoded)
    except ValueError:
        raise ConfigError(f"{where} is not a {SCHEME} hash",
                          hint="make one with: gpucensus-collector dashboard-password") from None  # fmt: skip
    if iterations < MIN_ITERATIONS or len(salt) < 8 or len(digest) != 32:
        raise ConfigError(f"{where}: at least {MIN_ITERATIONS} iterations, a salt of 8 bytes and a SHA-256 digest")


class BasicAuth:
    """Checks `Authorization: Basic ...` headers. A header that verified once is remembered (by its SHA-256, at
    most 64 of them), so PBKDF2 runs once per client rather than once per request."""

    def __init__(self, user: str, encoded: str) -> None:
        self._user = user
        self._iterations, self._salt, self._digest = _parts(encoded)
        self._known: set[bytes] = set()
        self._lock = threading.Lock()

    def allows(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        key = hashlib.sha256(header.encode("utf-8", "surrogateescape")).digest()
        with self._lock:
            if key in self._known:
                return True
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), self._salt, self._iterations)
        ok = hmac.compare_digest(user.encode(), self._user.encode()) & hmac.compare_digest(digest, self._digest)
        if ok:
            with self._lock:
                if len(self._known) >= 64:
                    self._known.clear()
                self._known.add(key)
        return ok


def common_name(peer_certificate: dict | None) -> str | None:
    """The subject commonName of a verified peer certificate (`ssl.SSLSocket.getpeercert()`), if any."""
    for rdn in (peer_certificate or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None
