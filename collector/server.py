"""The collector's gRPC server: the Census service, the standard health service, server reflection, message
size and keepalive limits, TLS / mutual TLS, a graceful stop, and the Prometheus endpoint (`[metrics] listen`).

`run_server(settings, store)` is the one composition of all of it; `gpucensus-collector serve` and the tests
both call it (port 0 = any free port, returned). The server is a `grpc.aio` server on an event loop of its own
(a daemon thread), so callers stay synchronous: an open stream is a coroutine, not a thread; the blocking work
runs in bounded thread pools (`[server] max_workers` for ingest, `unary_workers` for Enroll and the queries).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent import futures
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIServer

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from gpucensus.collector import limits
from gpucensus.collector.compliance.state import ComplianceState
from gpucensus.collector.config import CollectorConfig, ServerConfig, validate
from gpucensus.collector.enrolment_ca import EnrolmentCA
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.ingest.pipeline import Pipeline, StepTimings, utc_now
from gpucensus.collector.location.ingest import LocationCheck, location_config
from gpucensus.collector.log.service import TransparencyLog, open_log
from gpucensus.collector.metrics import CollectorMetrics
from gpucensus.collector.policy import load_pack
from gpucensus.collector.retention import start_pruning
from gpucensus.collector.servicer import CensusServicer, add_enrolment_to_server, add_to_server
from gpucensus.collector.store.base import Store
from gpucensus.common.accounting import load_rules
from gpucensus.common.catalogue import load_catalogue
from gpucensus.common.durable import refuse_shared_private_key
from gpucensus.protos import census_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger(__name__)
T = TypeVar("T")

SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
PEM_HINT = "check [server] tls_cert, tls_key and client_ca in the config (PEM files)"
SERVICE_NAME = census_pb2.DESCRIPTOR.services_by_name["Census"].full_name  # "gpucensus.v1.Census"


def channel_options(server: ServerConfig) -> list[tuple[str, int]]:
    """Message size limit (both directions) and keepalive, from `[server]`."""
    return [
        ("grpc.max_receive_message_length", server.max_message_bytes),
        ("grpc.max_send_message_length", server.max_message_bytes),
        ("grpc.keepalive_time_ms", server.keepalive_time_seconds * 1000),
        ("grpc.keepalive_timeout_ms", server.keepalive_timeout_seconds * 1000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", server.min_ping_interval_seconds * 1000),
        ("grpc.http2.max_pings_without_data", 0),
        # a second collector on the same port is an error, not a silent split, unless every one asks to share it
        ("grpc.so_reuseport", 1 if server.reuse_port else 0),
    ]


class EventLoopThread:
    """An asyncio event loop running in a daemon thread; `run` executes a coroutine on it from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="census-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
            pending = asyncio.all_tasks(self.loop)  # calls the grpc server left behind: end them, then close
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.wait(pending, timeout=5))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()
            self.stopped.set()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        """Stop the loop (from any thread, the loop's own included); `stopped` is set once it has closed."""
        self.loop.call_soon_threadsafe(self.loop.stop)


@dataclass
class CollectorServer:
    """A running server: the grpc.aio server, its event loop and pools, plus what a graceful stop needs."""

    grpc_server: grpc.aio.Server
    port: int
    servicer: CensusServicer
    health: HealthServicer
    timings: StepTimings
    metrics: CollectorMetrics
    metrics_http: WSGIServer | None = None  # the Prometheus endpoint, when [metrics] listen is set
    log: TransparencyLog | None = None  # its integrator thread stops with the server
    compliance: ComplianceState | None = None  # the policy state kept current at ingest (docs/architecture.md)
    compliance_stop: threading.Event = field(default_factory=threading.Event)  # ends its watcher thread
    loop: EventLoopThread = field(default_factory=EventLoopThread)
    pools: tuple[futures.ThreadPoolExecutor, ...] = ()
    enrolment_server: grpc.aio.Server | None = None  # [enrollment] listen: Enroll and IssueCertificate only
    enrolment_port: int | None = None
    terminated: threading.Event = field(default_factory=threading.Event)
    _stopping: bool = False

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_http.server_port if self.metrics_http else None

    def stop(self, grace: float | None) -> threading.Event:
        """Refuse new calls, let each stream finish the envelope in hand (its ack included), then close.
        Returns an event set when the server has stopped. The metrics endpoint closes at once."""
        self.servicer.stopping.set()
        self.compliance_stop.set()
        if self.metrics_http is not None:
            http, self.metrics_http = self.metrics_http, None
            http.shutdown()
            http.server_close()
        if self._stopping:
            return self.terminated
        self._stopping = True

        async def shutdown() -> None:
            try:
                await self.health.enter_graceful_shutdown()
                if self.enrolment_server is not None:
                    await self.enrolment_server.stop(grace)
                await self.grpc_server.stop(grace)
            finally:
                threading.Thread(target=self._release, name="census-stop", daemon=True).start()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop.loop)
        return self.terminated

    def _release(self) -> None:
        if self.log is not None:
            self.log.stop()
        for pool in self.pools:  # work already handed to a pool finishes (its envelope is committed or not)
            pool.shutdown(wait=True, cancel_futures=True)
        self.loop.close()
        self.loop.stopped.wait()
        self.terminated.set()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Like grpc.Server.wait_for_termination: True if `timeout` passed before the server stopped."""
        return not self.terminated.wait(timeout)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(
            f"cannot read the {what} {path}: {err.strerror}", hint="check [server] in the config"
        ) from err


def _certificates(path: str, what: str) -> tuple[bytes, list[x509.Certificate]]:
    data = _read(path, what)
    try:
        return data, x509.load_pem_x509_certificates(data)
    except ValueError as err:
        raise ConfigError(f"the {what} {path} is not a PEM certificate: {err}", hint=PEM_HINT) from err


def _private_key(path: str) -> tuple[bytes, bytes]:
    """The key file's bytes and its public key (DER SubjectPublicKeyInfo); KeyError_ (exit 4) if group or others
    have any permission on it."""
    data = _read(path, "TLS key")
    refuse_shared_private_key(path, Path(path).stat(), "the TLS key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:  # TypeError: the key is encrypted
        raise ConfigError(f"the TLS key {path} is not an unencrypted PEM private key: {err}", hint=PEM_HINT) from err
    return data, key.public_key().public_bytes(serialization.Encoding.DER, SPKI)


def server_credentials(
    settings: ServerConfig, extra_client_ca: bytes = b"", *, client_auth: bool = True
) -> grpc.ServerCredentials | None:
    """TLS credentials from a validated `[server]` (`collector.config.validate`); None for plaintext.
    `extra_client_ca` (the enrolment CA) is trusted for client certificates besides `client_ca`; with
    client_auth=False no client certificate is asked for (the enrolment listener).

    The files are checked here, so a wrong file is a ConfigError naming it (grpc would only say it cannot bind)."""
    if not settings.tls_cert:
        return None
    cert_pem, chain = _certificates(settings.tls_cert, "TLS certificate")
    key_pem, key_public = _private_key(settings.tls_key)
    if chain[0].public_key().public_bytes(serialization.Encoding.DER, SPKI) != key_public:
        raise ConfigError(
            f"the TLS key {settings.tls_key} does not belong to the certificate {settings.tls_cert}",
            hint="tls_cert must start with the certificate of tls_key",
        )
    if not client_auth:
        return grpc.ssl_server_credentials([(key_pem, cert_pem)])
    client_ca = _certificates(settings.client_ca, "client CA")[0] if settings.client_ca else b""
    roots = (client_ca.rstrip(b"\n") + b"\n" + extra_client_ca).strip() + b"\n"
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)],
        root_certificates=roots if roots.strip() else None,
        require_client_auth=settings.require_client_auth,
    )


def serve_metrics(listen: str, registry: CollectorRegistry) -> WSGIServer:
    """Start the Prometheus endpoint on `listen` (host:port, port 0 = any) in a daemon thread."""
    host, _, port = listen.rpartition(":")
    try:
        http, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    except (ValueError, OSError) as err:
        raise ConfigError(f"cannot serve metrics on {listen}: {err}", hint="is another process using it?") from err
    return http


def run_server(
    config: CollectorConfig,
    store: Store,
    *,
    clock: Callable[[], datetime] = utc_now,
    timings: StepTimings | None = None,
    registry: CollectorRegistry | None = None,
) -> tuple[CollectorServer, int]:
    """Build and start the server `config` describes on `store`; return it and the bound port.

    The metrics go to `registry` (a new one if None), served over HTTP when `[metrics] listen` is set."""
    validate(config)  # the same checks as load_config, for a config built in code
    settings = config.server
    authority = enrolment_authority(config, clock())
    credentials = server_credentials(settings, authority.pem.encode("ascii") if authority else b"")
    timings = timings or StepTimings()
    metrics = CollectorMetrics(
        CollectorRegistry() if registry is None else registry,
        store,
        clock=clock,
        stale_intervals=config.nodes.stale_intervals,
        default_interval_seconds=config.nodes.interval_seconds,
        store_refresh_seconds=config.metrics.refresh_seconds,
    )
    transparency_log = open_log(config, store, metrics.registry)
    skew = timedelta(seconds=settings.max_future_skew_seconds)
    backdate = timedelta(seconds=settings.max_backdate_seconds)
    location = LocationCheck(store, location_config(config.location, skew))
    catalogue, rules = load_catalogue(), load_rules()
    compliance = ComplianceState(
        store, load_pack(config.policy.pack), catalogue, rules, clock=clock,
        refresh_seconds=config.policy.refresh_seconds,
    )  # fmt: skip
    compliance.refresh()  # the state is current before the first envelope is judged
    metrics.add_compliance(compliance)
    pipeline = Pipeline(
        store, clock=clock, max_future_skew=skew, max_backdate=backdate, catalogue=catalogue, rules=rules,
        timings=timings, metrics=metrics, checkpoint=transparency_log.checkpoint, location=location,
        compliance=compliance, max_devices=settings.max_devices_per_envelope,
    )  # fmt: skip
    ingest_pool = futures.ThreadPoolExecutor(settings.max_workers, thread_name_prefix="census-ingest")
    unary_pool = futures.ThreadPoolExecutor(settings.unary_workers, thread_name_prefix="census-unary")
    servicer = CensusServicer(
        store,
        pipeline,
        clock=clock,
        bind_tls_identity=bool(settings.require_client_auth),
        query_clients=settings.query_clients,
        stale_intervals=config.nodes.stale_intervals,
        default_interval_seconds=config.nodes.interval_seconds,
        stream_idle_timeout_seconds=settings.stream_idle_timeout_seconds,
        first_message_seconds=settings.first_message_seconds,
        streams=limits.StreamSlots(settings.max_streams, settings.max_streams_per_peer),
        budget=limits.KeyBudget(settings.node_envelopes_per_minute, settings.node_bytes_per_minute),
        max_ack_bytes=settings.max_message_bytes,
        ingest_executor=ingest_pool,
        unary_executor=unary_pool,
        metrics=metrics,
        log=transparency_log,
        certificate_authority=authority,
        certificate_minutes=config.enrollment.certificate_minutes,
    )
    loop = EventLoopThread()
    try:
        server, port, health_servicer, enrolment = loop.run(_start_all(config, credentials, servicer))
    except BaseException:
        loop.close()
        ingest_pool.shutdown(wait=False)
        unary_pool.shutdown(wait=False)
        raise
    collector = CollectorServer(
        server, port, servicer, health_servicer, timings, metrics, loop=loop, pools=(ingest_pool, unary_pool),
        log=transparency_log,
        compliance=compliance,
    )  # fmt: skip
    compliance.watch(collector.compliance_stop)
    start_pruning(store, config.retention.compact_days, collector.compliance_stop, clock)  # set on stop too
    if config.log.integrate:
        transparency_log.start()
    if enrolment is not None:
        collector.enrolment_server, collector.enrolment_port = enrolment
        log.info("serving enrolment (Enroll, IssueCertificate) on %s (port %d, TLS without client certificates)",
                 config.enrollment.listen, collector.enrolment_port)  # fmt: skip
    try:
        if config.metrics.listen:
            collector.metrics_http = serve_metrics(config.metrics.listen, metrics.registry)
    except ConfigError:
        collector.stop(None).wait()  # release the gRPC port: nothing was served
        raise
    mode = "mutual TLS" if settings.require_client_auth else ("TLS" if credentials else "plaintext")
    log.info("serving %s on %s (port %d, %s)", SERVICE_NAME, settings.listen, port, mode)
    if collector.metrics_http is not None:
        host = config.metrics.listen.rpartition(":")[0]
        log.info("serving Prometheus metrics on http://%s:%d/metrics", host, collector.metrics_http.server_port)
    return collector, port


def enrolment_authority(config: CollectorConfig, now: datetime) -> EnrolmentCA | None:
    """The enrolment CA when the collector issues client certificates (made on first start), else None."""
    enrollment = config.enrollment
    if not enrollment.issue_client_certificates:
        return None
    cert_path, key_path = enrollment.ca_paths(config.store.data_dir)
    return EnrolmentCA.load_or_create(cert_path, key_path, enrollment.name, now)


async def _start_all(
    config: CollectorConfig, credentials: grpc.ServerCredentials | None, servicer: CensusServicer
) -> tuple[grpc.aio.Server, int, HealthServicer, tuple[grpc.aio.Server, int] | None]:
    """The main server and, with `[enrollment] listen`, the enrolment listener; neither if either fails."""
    server, port, health_servicer = await _start(config.server, credentials, servicer)
    try:
        enrolment = await _start_enrolment(config, servicer) if config.enrollment.listen else None
    except BaseException:
        await server.stop(None)
        raise
    return server, port, health_servicer, enrolment


async def _start_enrolment(config: CollectorConfig, servicer: CensusServicer) -> tuple[grpc.aio.Server, int]:
    """The enrolment listener: server-authenticated TLS, Enroll and IssueCertificate (and health) only."""
    listen = config.enrollment.listen
    server = grpc.aio.server(options=channel_options(config.server))
    add_enrolment_to_server(servicer, server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    credentials = server_credentials(config.server, client_auth=False)
    assert credentials is not None  # validate() requires tls_cert with [enrollment] listen
    try:
        port = server.add_secure_port(listen, credentials)
    except RuntimeError as err:
        port = 0
        reason = str(err)
    else:
        reason = "is the address valid and the port free?"
    if port == 0:
        raise ConfigError(f"cannot listen on {listen} ([enrollment] listen)", hint=reason)
    await server.start()
    return server, port


async def _start(
    settings: ServerConfig, credentials: grpc.ServerCredentials | None, servicer: CensusServicer
) -> tuple[grpc.aio.Server, int, HealthServicer]:
    """Build, bind and start the aio server on the running loop."""
    server = grpc.aio.server(options=channel_options(settings))
    add_to_server(servicer, server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        if credentials is None:
            port = server.add_insecure_port(settings.listen)
        else:
            port = server.add_secure_port(settings.listen, credentials)
    except RuntimeError as err:
        raise ConfigError(f"cannot listen on {settings.listen}: {err}", hint="is another process using it?") from err
    if port == 0:
        raise ConfigError(f"cannot listen on {settings.listen}", hint="is the address valid and the port free?")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port, health_servicer
