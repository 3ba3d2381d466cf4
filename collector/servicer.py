"""The `gpucensus.v1.Census` servicer: thin. Requests go to the codec, the pipeline and the store; the one
place where errors become gRPC statuses (through `collector.statuses`). A verdict on a validly signed
attestation is data in its Ack, never a status.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TypeVar

import grpc
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from prometheus_client import CollectorRegistry

from collector import codec, verify
from collector.ingest.errors import BindingError, MalformedError
from collector.ingest.model import IngestResult
from collector.ingest.pipeline import Pipeline, utc_now
from collector.metrics import CollectorMetrics
from collector.registry import hash_token, validate_id
from collector.statuses import status_for
from collector.store.base import CountryTotals, RecordNotFoundError, Store
from protos import census_pb2 as pb
from protos import census_pb2_grpc

log = logging.getLogger(__name__)
T = TypeVar("T")

SHUTTING_DOWN = "the collector is shutting down; reconnect and resend what was not acknowledged"


class IdleStreams:
    """Cancels Report streams that send nothing (and read no ack) for `timeout` seconds: each open stream holds
    one of the server's worker threads, so a client that opens streams and goes quiet would otherwise starve
    every other node. One daemon thread watches every stream; an agent sends its whole spool at once."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self._clock = clock
        self._deadlines: dict[int, tuple[float, grpc.ServicerContext]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self, context: grpc.ServicerContext) -> None:
        """(Re)start the idle clock of `context`'s stream."""
        with self._lock:
            self._deadlines[id(context)] = (self._clock() + self.timeout, context)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="census-idle-streams", daemon=True)
                self._thread.start()

    def stop(self, context: grpc.ServicerContext) -> None:
        """Stop the idle clock while the collector itself works on the stream (or when it ends)."""
        with self._lock:
            self._deadlines.pop(id(context), None)

    def _watch(self) -> None:
        while True:
            time.sleep(min(1.0, self.timeout / 4))
            now = self._clock()
            with self._lock:
                expired = [(key, ctx) for key, (deadline, ctx) in self._deadlines.items() if deadline <= now]
                for key, _ in expired:
                    del self._deadlines[key]
                done = not self._deadlines
                if done:  # no stream open: the next one starts a new watcher
                    self._thread = None
            for _, context in expired:
                log.warning("closing the Report stream of %s: idle for %g s", context.peer(), self.timeout)
                context.cancel()
            if done:
                return


def tls_identity(context: grpc.ServicerContext) -> str:
    """The common name of the verified client certificate ("" if it has none: then it matches no node)."""
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode("utf-8", "replace") if names else ""


class CensusServicer(census_pb2_grpc.CensusServicer):
    def __init__(
        self,
        store: Store,
        pipeline: Pipeline,
        *,
        clock: Callable[[], datetime] = utc_now,
        bind_tls_identity: bool = False,
        query_clients: Iterable[str] = (),
        stale_intervals: int = 3,
        default_interval_seconds: int = 60,
        stream_idle_timeout_seconds: float = 30,
        metrics: CollectorMetrics | None = None,
    ) -> None:
        self._store = store
        self._pipeline = pipeline
        self._clock = clock
        self._bind_tls_identity = bind_tls_identity
        self._query_clients = frozenset(query_clients)
        self._stale_intervals = stale_intervals
        self._default_interval = default_interval_seconds
        self.stopping = threading.Event()  # set on SIGTERM: finish the envelope in hand, then end the stream
        self._idle = IdleStreams(stream_idle_timeout_seconds)
        self._metrics = metrics or CollectorMetrics(CollectorRegistry())  # a private one nobody scrapes

    def Enroll(self, request: pb.EnrollRequest, context: grpc.ServicerContext) -> pb.EnrollResponse:
        identity = tls_identity(context) if self._bind_tls_identity else None
        return _answer(context, lambda: _counted(self._metrics.enrollment, lambda: self._enroll(request, identity)))

    def _enroll(self, request: pb.EnrollRequest, identity: str | None) -> pb.EnrollResponse:
        if not request.token:
            raise MalformedError("an enrollment token is required")
        validate_id("node", request.node_id)
        if identity is not None and identity != request.node_id:
            raise BindingError(f"the TLS client certificate is for {identity!r}, not node {request.node_id!r}")
        try:
            public_key = verify.public_key_from_pem(request.public_key_pem.encode("utf-8"))
        except ValueError as err:
            raise MalformedError(f"public_key_pem is not an Ed25519 public key: {err}") from err
        keyid = verify.public_key_id(public_key)
        pem = public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")  # no junk
        key = self._store.enroll(keyid, pem, request.node_id, "", hash_token(request.token), self._clock())
        log.info("enrolled node %s (key %s) at site %s", key.node_id, key.keyid, key.site)
        self._metrics.enrollment("enrolled")
        return codec.enroll_response(key)

    def Report(self, request_iterator: Iterator[pb.Envelope], context: grpc.ServicerContext) -> Iterator[pb.Ack]:
        identity = tls_identity(context) if self._bind_tls_identity else None
        self._idle.start(context)
        self._metrics.report_streams.inc()
        try:
            for envelope in request_iterator:
                self._idle.stop(context)  # judging may wait on the store: not the client's idleness
                ack = _answer(context, lambda e=envelope: codec.ack_to_pb(self._ingest(e.dsse, identity)))
                self._idle.start(context)  # until the client has taken the ack and sent the next envelope
                yield ack
                if self.stopping.is_set():
                    context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
        finally:
            self._metrics.report_streams.dec()
            self._idle.stop(context)

    def _ingest(self, envelope: bytes, identity: str | None) -> IngestResult:
        result = _counted(self._metrics.envelope, lambda: self._pipeline.ingest(envelope, identity))
        outcome = "duplicate" if result.duplicate else result.status
        self._metrics.envelope(outcome, () if result.duplicate else result.findings)
        return result

    def GetSiteStatus(
        self, request: pb.GetSiteStatusRequest, context: grpc.ServicerContext
    ) -> pb.GetSiteStatusResponse:
        return _answer(context, lambda: self._query(context, lambda: self._site_status(request.site)))

    def _site_status(self, site_id: str) -> pb.GetSiteStatusResponse:
        sites = [s for s in self._store.site_status() if not site_id or s.site == site_id]
        if site_id and not sites:
            raise RecordNotFoundError(f"no site {site_id!r}")
        stale_nodes = self._store.stale_nodes(
            self._clock(), intervals=self._stale_intervals, default_interval_seconds=self._default_interval
        )
        stale = {n.node_id for n in stale_nodes}
        return pb.GetSiteStatusResponse(
            sites=[codec.site_status_to_pb(s, self._store.list_nodes(s.site), stale) for s in sites]
        )

    def GetCountryTotals(
        self, request: pb.GetCountryTotalsRequest, context: grpc.ServicerContext
    ) -> pb.GetCountryTotalsResponse:
        return _answer(context, lambda: self._query(context, lambda: self._country_totals(request.country.upper())))

    def _query(self, context: grpc.ServicerContext, call: Callable[[], T]) -> T:
        """Under mutual TLS only the certificates named in `[server] query_clients` may read the inventory."""
        if self._bind_tls_identity and tls_identity(context) not in self._query_clients:
            raise BindingError(
                f"the TLS client certificate {tls_identity(context)!r} may not query the inventory; "
                "name it in [server] query_clients"
            )
        return call()

    def _country_totals(self, country: str) -> pb.GetCountryTotalsResponse:
        sites: dict[str, int] = {}
        for site in self._store.list_sites():
            sites[site.country] = sites.get(site.country, 0) + 1
        totals = {t.country: t for t in self._store.country_totals()}
        for name in sites.keys() - totals.keys():  # sites there, no GPU reported yet: zero, not absent
            totals[name] = CountryTotals(name, gpus=0, tpp=0, unaccounted=0)
        if country and country not in totals:
            raise RecordNotFoundError(f"no site in country {country!r}")
        chosen = [totals[country]] if country else [totals[name] for name in sorted(totals)]
        return pb.GetCountryTotalsResponse(
            countries=[codec.country_totals_to_pb(t, sites.get(t.country, 0)) for t in chosen]
        )


def _counted(count: Callable[[str], None], call: Callable[[], T]) -> T:
    """Run `call`; an error is counted under its status's name (`permission_denied`) before it goes on."""
    try:
        return call()
    except Exception as err:
        count(status_for(err).name.lower())
        raise


def _answer(context: grpc.ServicerContext, call: Callable[[], T]) -> T:
    """Run one request; an error aborts the RPC with the status from the one table (INTERNAL is logged)."""
    try:
        return call()
    except Exception as err:  # every error becomes a status here, and only here
        code = status_for(err)
        if code is grpc.StatusCode.INTERNAL:
            log.exception("internal error while serving %s", type(err).__name__)
            details = f"internal error ({type(err).__name__}); see the collector's log"
        else:
            details = getattr(err, "message", None) or str(err) or type(err).__name__
            log.warning("%s from %s: %s", code.name, context.peer(), details)
        context.abort(code, details)
        raise  # not reached: abort raises
