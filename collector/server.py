"""The collector's gRPC server: the Census service, the standard health service, server reflection, message
size and keepalive limits, TLS / mutual TLS, a graceful stop, and the Prometheus endpoint (`[metrics] listen`).

`run_server(settings, store)` is the one composition of all of it; `gpucensus-collector serve` and the tests
both call it (port 0 = any free port, returned).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from collector.config import CollectorConfig, ServerConfig, validate
from collector.errors import ConfigError
from collector.ingest.pipeline import Pipeline, StepTimings, utc_now
from collector.metrics import CollectorMetrics
from collector.servicer import CensusServicer
from collector.store.base import Store
from protos import census_pb2, census_pb2_grpc

log = logging.getLogger(__name__)

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
        ("grpc.so_reuseport", 0),  # a second collector on the same port is an error, not a silent split
    ]


@dataclass
class CollectorServer:
    """A running server: the grpc server plus what a graceful stop needs."""

    grpc_server: grpc.Server
    port: int
    servicer: CensusServicer
    health: health.HealthServicer
    timings: StepTimings
    metrics: CollectorMetrics
    metrics_http: WSGIServer | None = None  # the Prometheus endpoint, when [metrics] listen is set

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_http.server_port if self.metrics_http else None

    def stop(self, grace: float | None) -> threading.Event:
        """Refuse new calls, let each stream finish the envelope in hand (its ack included), then close.
        Returns an event set when the server has stopped. The metrics endpoint closes at once."""
        self.health.enter_graceful_shutdown()
        self.servicer.stopping.set()
        if self.metrics_http is not None:
            http, self.metrics_http = self.metrics_http, None
            http.shutdown()
            http.server_close()
        return self.grpc_server.stop(grace)

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self.grpc_server.wait_for_termination(timeout)


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
    """The key file's bytes and its public key (DER SubjectPublicKeyInfo)."""
    data = _read(path, "TLS key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:  # TypeError: the key is encrypted
        raise ConfigError(f"the TLS key {path} is not an unencrypted PEM private key: {err}", hint=PEM_HINT) from err
    return data, key.public_key().public_bytes(serialization.Encoding.DER, SPKI)


def server_credentials(settings: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials from a validated `[server]` (`collector.config.validate`); None for plaintext.

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
    client_ca = _certificates(settings.client_ca, "client CA")[0] if settings.client_ca else None
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=client_ca, require_client_auth=settings.require_client_auth
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
    credentials = server_credentials(settings)
    timings = timings or StepTimings()
    metrics = CollectorMetrics(
        CollectorRegistry() if registry is None else registry,
        store,
        clock=clock,
        stale_intervals=config.nodes.stale_intervals,
        default_interval_seconds=config.nodes.interval_seconds,
        store_refresh_seconds=config.metrics.refresh_seconds,
    )
    skew = timedelta(seconds=settings.max_future_skew_seconds)
    backdate = timedelta(seconds=settings.max_backdate_seconds)
    pipeline = Pipeline(
        store, clock=clock, max_future_skew=skew, max_backdate=backdate, timings=timings, metrics=metrics
    )
    servicer = CensusServicer(
        store,
        pipeline,
        clock=clock,
        bind_tls_identity=bool(settings.require_client_auth),
        query_clients=settings.query_clients,
        stale_intervals=config.nodes.stale_intervals,
        default_interval_seconds=config.nodes.interval_seconds,
        stream_idle_timeout_seconds=settings.stream_idle_timeout_seconds,
        metrics=metrics,
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="census"),
        options=channel_options(settings),
    )
    census_pb2_grpc.add_CensusServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
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
    try:
        metrics_http = serve_metrics(config.metrics.listen, metrics.registry) if config.metrics.listen else None
    except ConfigError:
        server.stop(None)  # release the gRPC port: nothing was served
        raise
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    mode = "mutual TLS" if settings.require_client_auth else ("TLS" if credentials else "plaintext")
    log.info("serving %s on %s (port %d, %s)", SERVICE_NAME, settings.listen, port, mode)
    if metrics_http is not None:
        host = config.metrics.listen.rpartition(":")[0]
        log.info("serving Prometheus metrics on http://%s:%d/metrics", host, metrics_http.server_port)
    return CollectorServer(server, port, servicer, health_servicer, timings, metrics, metrics_http), port
