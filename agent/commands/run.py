"""`gpucensus-agent run --config FILE`: the daemon. Composition root of the agent's uplink.

Loads the configuration, the node key, the chain state and the spool, checks that a snapshot can be taken
(a missing driver or a bad profile is a start-up error with its own exit code), then runs the loop until
SIGTERM/SIGINT: every interval, snapshot -> sign -> spool -> deliver. On SIGTERM it makes one last delivery
attempt and exits 0; whatever is not delivered stays in the spool for the next start.
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from gpucensus.agent import config as agent_config
from gpucensus.agent.attest import attest
from gpucensus.agent.chain import ChainStore
from gpucensus.agent.spool import Spool
from gpucensus.common.errors import ConfigError, GpucensusError, StateError

# The uplink (gRPC, the protos), the metrics, the keys and the location evidence are imported by `handle`: every
# command's parser is built on every run, and `snapshot`, `classify`, `keygen`, `attest` and `spool` need none of it.
if TYPE_CHECKING:
    from gpucensus.agent.runner import Runner
    from gpucensus.agent.uplink import DrainResult
    from prometheus_client import CollectorRegistry

log = logging.getLogger("gpucensus.agent")

FLAGS = {  # flag dest -> config "section.key"
    "collector": "collector.address",
    "node_id": "node.id",
    "site": "node.site",
    "state_dir": "node.state_dir",
    "key": "node.key_path",
    "interval": "schedule.interval_seconds",
    "backend": "inventory.backend",
    "profile": "inventory.profile",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the agent: attest every interval and deliver to the collector",
        description="Every interval (jittered): take a snapshot, sign it, write it to the durable spool and "
        "deliver the spool to the collector over gRPC. Enrolls on first start with the configured token. "
        "Flags override the environment (GPUCENSUS_AGENT_<SECTION>_<KEY>), which overrides the file.",
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="agent TOML (deploy/agent.example.toml)")
    parser.add_argument("--collector", metavar="HOST:PORT", help="collector address")
    parser.add_argument("--node-id", help="node id (default: the machine id)")
    parser.add_argument("--site", help="site id")
    parser.add_argument("--state-dir", metavar="DIR", help="state directory (chain state, key, spool)")
    parser.add_argument("--key", metavar="FILE", help="node private key (default <state-dir>/node.key)")
    parser.add_argument("--interval", type=float, metavar="SECONDS", help="seconds between attestations")
    parser.add_argument("--backend", help="GPU discovery backend (nvml, mock)")
    parser.add_argument("--profile", help="mock backend profile")
    parser.add_argument("--rounds", type=int, metavar="N", help="stop after N rounds, once the spool drained")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization
    from gpucensus.agent.commands.snapshot import predicate_from_args
    from gpucensus.agent.compact import FullPolicy
    from gpucensus.agent.connection import Connection
    from gpucensus.agent.hints import connection_hint
    from gpucensus.agent.host import node_info
    from gpucensus.agent.keys import load_key
    from gpucensus.agent.location import LandmarkInfo, LocationEvidence
    from gpucensus.agent.metrics import AgentMetrics
    from gpucensus.agent.monitor import LogMonitor
    from gpucensus.agent.runner import Runner
    from gpucensus.agent.spool import SpoolEntry
    from gpucensus.agent.uplink import Backoff, RetryableError, ensure_enrolled
    from gpucensus.common.statement import COMPACT_PREDICATE_TYPE, compact_predicate
    from prometheus_client import CollectorRegistry

    overrides = {dotted: getattr(args, dest) for dest, dotted in FLAGS.items()}
    config = agent_config.load(args.config, overrides=overrides)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    key = load_key(config.key_path)
    node_id = node_info(config.node_id or None, config.node_site).id
    snapshot_args = SimpleNamespace(
        backend=config.inventory_backend,
        profile=config.inventory_profile or None,
        sysfs_root=config.inventory_sysfs_root or None,
        node_id=node_id,
        site=config.node_site,
    )
    predicate_from_args(snapshot_args)  # start-up check: driver, profile, catalogue
    chain = ChainStore(Path(config.node_state_dir), key.keyid)
    registry = CollectorRegistry()
    spool = open_spool_of_chain(chain, config, registry)
    metrics = AgentMetrics(registry)
    if config.metrics_listen:
        _serve_metrics(config.metrics_listen, registry)
    connection = Connection(config, key)
    if not config.collector_request_certificate:
        connection.uplink()  # start-up check: the TLS files (an issued certificate is fetched on the first round)
    _adopt_spool(chain, spool)
    monitor = LogMonitor(
        Path(config.node_state_dir), config.collector_timeout_seconds, spool,
        configured_vkey=config.collector_log_vkey, registry=registry,
    )  # fmt: skip
    public_pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    enrolled = False

    location = LocationEvidence(
        key.private_key,
        lambda: [LandmarkInfo(lm.name, lm.address, lm.public_key_pem) for lm in connection.uplink().list_landmarks()],
        interval_seconds=config.location_interval_seconds,
        samples=config.location_samples,
        timeout_seconds=config.location_timeout_seconds,
    )

    fulls = FullPolicy(config.schedule_full_every_seconds)

    def attest_once() -> SpoolEntry:
        predicate = predicate_from_args(snapshot_args)
        evidence = location.for_statement() if config.location_interval_seconds > 0 else []
        if evidence:
            predicate["location_evidence"] = evidence
        metrics.snapshot(predicate.get("devices", []))
        now = time.monotonic()
        named = fulls.compact_for(predicate, now)
        if named is not None:  # unchanged since the last full one: a compact statement naming it
            compact = compact_predicate(predicate["node"]["id"], named.sequence, named.digest)
            result = attest(compact, key.private_key, chain, lambda: datetime.now(UTC), COMPACT_PREDICATE_TYPE)
            return SpoolEntry(result.keyid, result.sequence, result.envelope)
        try:
            result = attest(predicate, key.private_key, chain, lambda: datetime.now(UTC))
        except Exception:
            location.give_back(evidence)
            raise
        fulls.signed_full(predicate, result.sequence, result.digest, now)
        return SpoolEntry(result.keyid, result.sequence, result.envelope)

    def deliver() -> DrainResult:
        try:
            result = deliver_once()
        except RetryableError as err:
            metrics.unreachable()
            err.hint = err.hint or connection_hint(err.code, err.details, config)
            raise
        metrics.delivered(result.delivered, result.error)
        if result.rejected:
            fulls.rejected()  # e.g. a compact statement after a decommission: the next round is full
        return result

    def deliver_once() -> DrainResult:
        nonlocal enrolled
        if not enrolled:
            record = ensure_enrolled(config, connection.enrolment_uplink(), node_id, public_pem, key.keyid)
            if record is None:
                log.warning("no enrollment token configured: assuming key %s is enrolled", key.keyid[:16])
            enrolled = True
        carried: list[bytes] = []  # the checkpoints acks carried: the newest is checked before it is trusted
        uplink = connection.uplink()
        result = uplink.drain(spool, on_ack=lambda ack: carried.append(ack.checkpoint) if ack.checkpoint else None)
        verified = monitor.check(uplink.stub, carried[-1] if carried else b"")
        if verified and verified != chain.load().last_checkpoint:
            chain.record_checkpoint(verified)
        return result

    runner = Runner(
        spool=spool,
        attest=attest_once,
        deliver=deliver,
        interval_seconds=config.schedule_interval_seconds,
        jitter_fraction=config.schedule_jitter_fraction,
        backoff=Backoff(config.collector_retry_initial_seconds, config.collector_retry_max_seconds),
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: runner.stop())
    log.info(
        "agent started: node %s, key %s, collector %s, interval %.1fs, spool %s",
        node_id, key.keyid[:16], config.collector_address, config.schedule_interval_seconds, config.spool_file,
    )  # fmt: skip
    try:
        runner.run(max_rounds=args.rounds)
    finally:
        counts = spool.counts()
        spool.close()
        connection.close()
    log.info("agent stopped: %d rounds, %d envelopes created, spool %s", runner.rounds, runner.created, counts)
    if args.rounds is not None and runner.unsigned_rounds:
        raise _rounds_failed(runner)
    if args.rounds is not None and runner.rejected:
        raise _envelopes_rejected(runner)
    return 0


def _envelopes_rejected(runner: Runner) -> GpucensusError:
    """`--rounds N`: envelopes the collector refused during the run are a failure (exit 1), not a success."""
    from gpucensus.agent.hints import rejection_hint

    reason = runner.last_rejection
    return GpucensusError(
        f"the collector rejected {runner.rejected} envelope(s) during this run (kept in the spool as rejected); "
        f"the last because: {reason}",
        hint=rejection_hint(reason) or "`gpucensus-agent spool list --state rejected` shows every reason",
    )


def _rounds_failed(runner: Runner) -> GpucensusError:
    """`--rounds N` (cron, scripts): a round that signed and spooled nothing is a failure, with the last cause's
    exit code (5 for a chain state that became unusable, 1 otherwise)."""
    cause = runner.last_failure
    message = f"{runner.unsigned_rounds} of {runner.rounds} rounds spooled no new attestation; the last because: "
    if isinstance(cause, GpucensusError):
        return type(cause)(message + cause.message, hint=cause.hint)
    return GpucensusError(message + str(cause), hint="see the log above")


def open_spool_of_chain(
    chain: ChainStore, config: agent_config.AgentConfig, registry: CollectorRegistry, *, read_only: bool = False
) -> Spool:
    """Open the spool, refusing (StateError, exit 5, nothing written) one that cannot be the chain's own once the
    chain has signed something: missing or emptied, replaced by another, or behind the chain state.
    `read_only` (for `check`) opens an existing spool without writing to it."""
    refuse_lost_spool(chain, config.spool_file)
    spool = Spool(config.spool_file, config.spool_max_bytes, registry, config.spool_keep_delivered, read_only=read_only)
    state = chain.load()
    try:
        if state.next_sequence > 1 and state.spool and spool.spool_id != state.spool:
            raise StateError(
                f"spool {spool.path} (id {spool.spool_id}) is not the spool {state.spool} that the chain state "
                f"{chain.path} was used with: it was replaced, so envelopes not yet delivered may be lost",
                hint="restore this node's own spool (or point spool.path at it)",
            )
        _check_chain_is_ahead_of_spool(chain, spool)
    except BaseException:
        spool.close()
        raise
    return spool


def refuse_lost_spool(chain: ChainStore, path: Path) -> None:
    """StateError if the chain has signed envelopes but the spool at `path` is missing or empty (0 bytes)."""
    state = chain.load()
    size = path.stat().st_size if path.is_file() else None
    if state.next_sequence > 1 and ((size is None and state.spool) or size == 0):
        found = "missing" if size is None else "empty (0 bytes)"
        raise StateError(
            f"spool {path} is {found}, but the chain state {chain.path} shows that envelopes up to sequence "
            f"{state.next_sequence - 1} were signed: envelopes not yet delivered may be lost",
            hint="restore the spool from a backup (or point spool.path at it); the agent does not start on an "
            "empty spool, so that the loss is noticed",
        )


def _adopt_spool(chain: ChainStore, spool: Spool) -> None:
    """Record in the chain state the id of the spool it is used with, after every start-up check and before
    anything is signed: on the first start, with a chain state written by an older agent, or while the chain
    has signed nothing yet."""
    state = chain.load()
    if state.spool != spool.spool_id and (not state.spool or state.next_sequence == 1):
        chain.record_spool(spool.spool_id)


def _check_chain_is_ahead_of_spool(chain: ChainStore, spool: Spool) -> None:
    """A chain state behind the spool was reset or restored from an old backup: signing would reuse numbers."""
    next_sequence, spooled = chain.load().next_sequence, spool.last_sequence(chain.keyid)
    if spooled >= next_sequence:
        missing = "is missing: " if not chain.path.exists() else ""
        raise StateError(
            f"chain state {chain.path} {missing}the next sequence is {next_sequence}, but the spool {spool.path} "
            f"already holds or delivered sequence {spooled} of this key",
            hint="restore the latest chain.json; never sign a sequence number twice (the collector reports a fork)",
        )


def _serve_metrics(listen: str, registry: CollectorRegistry) -> None:
    from prometheus_client import start_http_server

    host, _, port = listen.rpartition(":")
    try:
        start_http_server(int(port), addr=host or "0.0.0.0", registry=registry)
    except (ValueError, OSError) as err:
        raise ConfigError(f"cannot serve metrics on {listen!r}: {err}", hint="metrics.listen is host:port") from err
