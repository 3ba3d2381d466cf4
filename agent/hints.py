"""What to do about a failed call to the collector: one function, used by `gpucensus-agent check` and by `run`'s log.

grpc reports almost every connection problem as UNAVAILABLE and retries it; only the details (and what the
agent is configured to do: plaintext or TLS, with or without a client certificate) tell a wrong port from a
TLS mismatch. `connection_hint` turns (status code, details, config) into one sentence for the operator;
`rejection_hint` does the same for a collector's verdict on an envelope.
"""

from __future__ import annotations

import re

import grpc
from gpucensus.agent.config import AgentConfig

SCHEME = re.compile(r"^(https?|grpcs?|tcp)://", re.IGNORECASE)


def address_problem(address: str) -> str:
    """Why `collector.address` cannot be a collector's host:port, or "" (grpc's own `dns:///` targets are fine)."""
    if SCHEME.match(address):
        bare = SCHEME.sub("", address).rstrip("/")
        return (
            f"collector.address {address!r} has a URL scheme: gRPC takes host:port (write {bare!r}); TLS is "
            "chosen by collector.tls_ca_file, not by https://"
        )
    return ""


def connection_hint(code: grpc.StatusCode | None, details: str, config: AgentConfig) -> str:
    """One sentence saying what is probably wrong when a call to the collector failed with `code` / `details`."""
    address = config.collector_address
    scheme = address_problem(address)
    if scheme:
        return scheme
    text = details.lower()
    tls = config.tls_enabled
    if "connection refused" in text:
        return f"nothing listens on {address}: check the port in collector.address and that the collector is running"
    if "domain name not found" in text or "dns resolution failed" in text or "address lookup failed" in text:
        return f"the host in collector.address {address!r} does not resolve: check the name (DNS, /etc/hosts)"
    if "wrong_version_number" in text and tls:
        return (
            f"the collector at {address} does not speak TLS: remove collector.tls_ca_file/tls_cert_file/"
            "tls_key_file, or give the collector [server] tls_cert and tls_key"
        )
    if "hostname verification" in text or "peer name" in text:
        name = config.collector_tls_server_name or address.rsplit(":", 1)[0]
        return (
            f"the collector's certificate does not name {name!r}: connect by a name in its subjectAltName, or set "
            "collector.tls_server_name to one"
        )
    if "certificate_verify_failed" in text or "unable to get local issuer" in text or "self signed" in text:
        return (
            f"the collector's certificate is not signed by the CA in collector.tls_ca_file "
            f"({config.collector_tls_ca_file}): use the CA that issued the collector's certificate"
        )
    if "socket closed" in text or "connection reset" in text:
        if not tls:
            return (
                f"the collector at {address} closed the connection: it probably requires TLS; set "
                "collector.tls_ca_file (and tls_cert_file/tls_key_file for mutual TLS)"
            )
        if not config.client_certificate_files[0]:
            return "the collector closed the TLS handshake: it requires a client certificate; set tls_cert_file/key"
        return (
            "the collector refused this node's client certificate: it must be signed by the collector's "
            "[server] client_ca and be valid now"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"no answer from {address} within collector.timeout_seconds: a firewall dropping packets, or overload"
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return f"{address} answers gRPC but is not a gpucensus collector (or an older one)"
    return ""


def rejection_hint(reason: str) -> str:
    """What to do about an envelope the collector refused for `reason` ("" if nothing specific is known)."""
    text = reason.lower()
    if "not enrolled" in text:
        return (
            "this node's key is not enrolled: set enrollment.token (or token_file) to a token from "
            "`gpucensus-collector token create`, then `gpucensus-agent spool retry --all-rejected`"
        )
    if "future-timestamp" in text:
        return "this node's clock is ahead of the collector's: fix time synchronisation (chrony, systemd-timesyncd)"
    if "before the key's enrolment" in text:
        return (
            "this node's clock is behind the collector's (fix time synchronisation: chrony, systemd-timesyncd), "
            "or the envelope was signed long before the key was enrolled"
        )
    if "revoked" in text:
        return "this node's key was revoked at the collector: enrol a new key"
    return ""
