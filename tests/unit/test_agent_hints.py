"""`agent.hints`: the hints for failures the integration tests cannot provoke on loopback (DNS, a silent
firewall, a server that is not a collector), from grpc's own wording."""

from __future__ import annotations

import grpc
import pytest
from gpucensus.agent import config as agent_config
from gpucensus.agent.hints import address_problem, connection_hint, rejection_hint

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("code", "details", "expected"),
    [
        (
            UNAVAILABLE,
            "errors resolving no-such-host.invalid:7443: [field:hostname lookup error:address lookup failed for "
            "no-such-host.invalid:7443: Domain name not found]",
            "does not resolve",
        ),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", "within collector.timeout_seconds"),
        (grpc.StatusCode.UNIMPLEMENTED, "Method not found!", "not a gpucensus collector"),
        (UNAVAILABLE, "something new", ""),
    ],
)
def test_connection_hints(code: grpc.StatusCode, details: str, expected: str) -> None:
    config = agent_config.load(None, env={}, overrides={"collector.address": "no-such-host.invalid:7443"})
    hint = connection_hint(code, details, config)
    assert (expected in hint) if expected else hint == ""


@pytest.mark.parametrize("address", ["collector:7443", "dns:///collector:7443", "ipv4:127.0.0.1:7443"])
def test_grpc_targets_are_not_blamed_for_a_scheme(address: str) -> None:
    assert address_problem(address) == ""


@pytest.mark.parametrize("address", ["https://collector:7443", "HTTP://collector:7443/", "grpcs://collector:7443"])
def test_url_schemes_are(address: str) -> None:
    assert "write 'collector:7443'" in address_problem(address)


def test_rejection_hints() -> None:
    assert "not enrolled" in rejection_hint("PERMISSION_DENIED: key ab is not enrolled")
    assert "ahead" in rejection_hint("REJECTED: chain.future-timestamp: sequence 1 is dated 7200 s after")
    assert "behind" in rejection_hint("REJECTED: chain.backdated: dated ..., before the key's enrolment less")
    assert rejection_hint("INVALID_ARGUMENT: bad field") == ""
