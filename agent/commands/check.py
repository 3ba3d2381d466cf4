"""`gpucensus-agent check [--config FILE]`: is this node ready to report? One line per check, a hint per failure.

Checks, in order: the collector address, the node key (present, private, Ed25519), the TLS files, the chain
state and the spool (the start-up checks of `run`, opening the spool read-only), the connection to the
collector (a grpc.health.v1 Check over the configured plaintext / TLS / mutual TLS: it proves the address, the
port and the TLS set-up both ways), enrolment and the clock. Nothing is signed, sent or written.

Enrolment is judged from the local record `<key>.enrollment.json` that `run` writes when the collector accepts
the key: the protocol has no call that asks "is this key enrolled?" without spending a token or sending a
signed envelope (which would take a sequence number), so `check` does neither. A key with no record and no
token configured fails; with a token it passes as "will enrol on the first run" (the token is not spent here).

The clock: the collector's answers carry no time, so the clock is judged by the collector's verdicts already in
the spool (an envelope rejected as dated in the future, or before the key's enrolment); without such a verdict
it passes and says that it relied on them.

Exit 0 when every check passes, 1 when one fails, 2 for a config that cannot be read (like every command).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gpucensus.agent import config as agent_config
from gpucensus.agent.chain import ChainStore
from gpucensus.agent.commands.run import open_spool_of_chain, refuse_lost_spool
from gpucensus.agent.keys import NodeKey, load_key
from gpucensus.agent.spool import REJECTED, Spool
from gpucensus.agent.tls import read_tls_files
from gpucensus.common.errors import GpucensusError
from gpucensus.common.safe_text import printable
from prometheus_client import CollectorRegistry

# gRPC and its health service (and the hints, which read gRPC status codes) are imported by the checks that use
# them: every command's parser is built on every run (agent/commands/__init__.py).

CLOCK_RULES = ("future-timestamp", "before the key's enrolment")


@dataclass(frozen=True)
class Outcome:
    name: str
    ok: bool
    detail: str
    hint: str = ""


class Failed(Exception):
    """A check failed: `detail` says what was found, `hint` what to do."""

    def __init__(self, detail: str, hint: str = "") -> None:
        super().__init__(detail)
        self.detail, self.hint = detail, hint


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check the config, key, state, connection, enrolment and clock; one line per check",
        description="Reads the config, the node key, the chain state and the spool, connects to the collector "
        "as `run` would (TLS as configured) and checks enrolment and the clock. Prints one line per check with "
        "a hint for each failure. Sends, signs and writes nothing. Exit 0 if all pass, 1 if one fails, 2 for a "
        "config that cannot be read.",
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="agent TOML (deploy/agent.example.toml)")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    config = agent_config.load(args.config)
    outcomes = run_checks(config)
    for outcome in outcomes:
        print(f"{'ok  ' if outcome.ok else 'FAIL'} {outcome.name}: {printable(outcome.detail)}")
        if outcome.hint:
            print(f"     hint: {printable(outcome.hint)}")
    failed = sum(not o.ok for o in outcomes)
    verdict = "ready to report" if not failed else f"{failed} of {len(outcomes)} checks failed"
    print(f"gpucensus-agent check: {verdict}", file=sys.stderr)
    return 1 if failed else 0


def run_checks(config: agent_config.AgentConfig) -> list[Outcome]:
    key: list[NodeKey] = []
    checks: list[tuple[str, Callable[[], str]]] = [
        ("address", lambda: _address(config)),
        ("key", lambda: _key(config, key)),
        ("tls files", lambda: _tls_files(config)),
        ("chain state and spool", lambda: _state(config, key)),
        ("collector", lambda: _collector(config)),
        ("enrollment", lambda: _enrollment(config, key)),
        ("clock", lambda: _clock(config)),
    ]
    outcomes = []
    for name, check in checks:
        try:
            outcomes.append(Outcome(name, True, check()))
        except Failed as failed:
            outcomes.append(Outcome(name, False, failed.detail, failed.hint))
        except GpucensusError as err:
            outcomes.append(Outcome(name, False, err.message, err.hint))
    return outcomes


def _address(config: agent_config.AgentConfig) -> str:
    from gpucensus.agent.hints import address_problem

    problem = address_problem(config.collector_address)
    if problem:
        raise Failed(problem, "remove the scheme from collector.address")
    return config.collector_address


def _key(config: agent_config.AgentConfig, found: list[NodeKey]) -> str:
    key = load_key(config.key_path)
    found.append(key)
    return f"{config.key_path} (key id {key.keyid[:16]})"


def _tls_files(config: agent_config.AgentConfig) -> str:
    if not config.tls_enabled:
        return "not configured: plaintext gRPC"
    if config.collector_request_certificate:
        cert, key = config.issued_certificate_files
        read_tls_files(config.collector_tls_ca_file, "", "")
        if not cert.exists():
            return f"mutual TLS with a certificate the collector issues (none in {cert} yet: `run` requests it)"
        read_tls_files(config.collector_tls_ca_file, str(cert), str(key))
        return f"mutual TLS with the collector-issued certificate {cert}"
    read_tls_files(config.collector_tls_ca_file, config.collector_tls_cert_file, config.collector_tls_key_file)
    return "mutual TLS" if config.collector_tls_cert_file else "TLS (server certificate only)"


def _state(config: agent_config.AgentConfig, key: list[NodeKey]) -> str:
    if not key:
        raise Failed("not checked: the chain state belongs to the node key, which could not be loaded")
    chain = ChainStore(Path(config.node_state_dir), key[0].keyid)
    state = chain.load()
    refuse_lost_spool(chain, config.spool_file)
    if not config.spool_file.is_file() or config.spool_file.stat().st_size == 0:
        return f"next sequence {state.next_sequence}; spool {config.spool_file} not created yet (the first run does)"
    spool = open_spool_of_chain(chain, config, CollectorRegistry(), read_only=True)
    try:
        counts = spool.counts()
    finally:
        spool.close()
    summary = ", ".join(f"{n} {state_name}" for state_name, n in counts.items() if n)
    return f"next sequence {state.next_sequence}; spool {config.spool_file}: {summary or 'empty'}"


def _collector(config: agent_config.AgentConfig) -> str:
    import grpc
    from gpucensus.agent.hints import connection_hint
    from gpucensus.agent.uplink import open_channel
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    # no issued certificate yet: what `run` reaches first is the enrolment address, without a client certificate
    enrolment = config.collector_request_certificate and not config.issued_certificate_files[0].exists()
    channel = open_channel(config, enrolment=enrolment)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(), timeout=config.collector_timeout_seconds)
    except grpc.RpcError as err:
        code, details = err.code(), err.details() or ""
        hint = connection_hint(code, details, config)
        raise Failed(f"{config.collector_address}: {code.name}: {details}", hint) from None
    finally:
        channel.close()
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        raise Failed(f"{config.collector_address} answers but is {status}", "see the collector's log")
    return f"{config.collector_address} is {status} ({'TLS' if config.tls_enabled else 'plaintext'})"


def _enrollment(config: agent_config.AgentConfig, key: list[NodeKey]) -> str:
    if not key:
        raise Failed("not checked: no node key")
    keyid, path = key[0].keyid, config.enrollment_file
    if path.exists():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise Failed(f"enrollment record {path} is unreadable: {err}", "delete it and set a fresh token") from err
        if isinstance(record, dict) and record.get("keyid") == keyid:
            site = record.get("site") or "?"
            return f"key {keyid[:16]} enrolled as node {record.get('node_id')} at site {site} (record {path})"
    if config.read_token():
        return f"key {keyid[:16]} not enrolled yet: `run` enrols it with the configured token (not spent by check)"
    raise Failed(
        f"key {keyid[:16]} is not enrolled: no enrollment record {path} for it and no enrollment token configured",
        "set enrollment.token or enrollment.token_file to a token from `gpucensus-collector token create --site "
        "SITE`; every envelope of a key that is not enrolled is rejected",
    )


def _clock(config: agent_config.AgentConfig) -> str:
    from gpucensus.agent.hints import rejection_hint

    path = config.spool_file
    if not path.is_file() or path.stat().st_size == 0:
        return "no verdict of the collector yet (the protocol carries no time; judged by rejected envelopes)"
    try:
        spool = Spool(path, config.spool_max_bytes, read_only=True)
    except GpucensusError as err:
        raise Failed(f"not checked: {err.message}") from err
    try:
        rejected = spool.entries(REJECTED)
    finally:
        spool.close()
    for row in reversed(rejected):
        if any(rule in row.error for rule in CLOCK_RULES):
            raise Failed(f"the collector rejected sequence {row.sequence}: {row.error}", rejection_hint(row.error))
    return "no envelope in the spool was rejected for its time (the protocol carries no time to compare with)"
