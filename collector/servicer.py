"""The `gpucensus.v1.Census` servicer (grpc.aio): thin. Requests go to the codec, the pipeline and the store;
the one place where errors become gRPC statuses (through `collector.statuses`). A verdict on a validly signed
attestation is data in its Ack, never a status.

Streams are coroutines, so an open stream costs no thread: the blocking work (judging and storing an envelope,
enrolment, queries) runs in two bounded thread pools, one for ingest and one for the unary RPCs, and the health
service runs on the event loop itself. Report streams are limited in total and per client address
(`collector.limits`); a stream must send its first envelope within `[server] first_message_seconds` of opening
and its next one within `stream_idle_timeout_seconds` of an ack.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import datetime
from typing import TypeVar

import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from gpucensus.collector import codec, limits, site_pages
from gpucensus.collector.enrolment_ca import EnrolmentCA
from gpucensus.collector.ingest.errors import (
    BindingError,
    MalformedError,
    NotOfferedError,
    RevokedKeyError,
    SignatureError,
    UnknownKeyError,
)
from gpucensus.collector.ingest.model import IngestResult
from gpucensus.collector.ingest.pipeline import Pipeline, utc_now
from gpucensus.collector.location.codec import landmarks_to_pb
from gpucensus.collector.location.status import location_rows, sites_by_location
from gpucensus.collector.log.service import NoCheckpointError, TransparencyLog
from gpucensus.collector.metrics import CollectorMetrics
from gpucensus.collector.registry import hash_token, validate_id
from gpucensus.collector.statuses import status_for
from gpucensus.collector.store.base import CountryTotals, RecordNotFoundError, Store
from gpucensus.common import csr_binding, verify
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc
from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)
T = TypeVar("T")

DRAIN_SECONDS = 1.0  # on SIGTERM, how long a stream waits for an envelope already on its way
SHUTTING_DOWN = "the collector is shutting down; reconnect and resend what was not acknowledged"


def tls_identity(context: grpc.aio.ServicerContext) -> str:
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
        first_message_seconds: float = 5,
        streams: limits.StreamSlots | None = None,
        budget: limits.KeyBudget | None = None,
        max_ack_bytes: int = codec.DEFAULT_MAX_ACK_BYTES,
        ingest_executor: Executor | None = None,
        unary_executor: Executor | None = None,
        metrics: CollectorMetrics | None = None,
        log: TransparencyLog | None = None,
        certificate_authority: EnrolmentCA | None = None,
        certificate_minutes: int = 1440,
    ) -> None:
        self._store = store
        self._log = log
        self._ca = certificate_authority
        self._certificate_minutes = certificate_minutes
        self._pipeline = pipeline
        self._clock = clock
        self._bind_tls_identity = bind_tls_identity
        self._query_clients = frozenset(query_clients)
        self._stale_intervals = stale_intervals
        self._default_interval = default_interval_seconds
        self.stopping = threading.Event()  # set on SIGTERM: finish the envelope in hand, then end the stream
        self._idle_timeout = stream_idle_timeout_seconds
        self._first_message = min(first_message_seconds, stream_idle_timeout_seconds)
        self.streams = streams or limits.StreamSlots(total=1000, per_peer=32)
        self._budget = budget or limits.KeyBudget(0, 0)
        self._max_ack_bytes = max_ack_bytes
        self._ingest_pool = ingest_executor or ThreadPoolExecutor(4, thread_name_prefix="census-ingest")
        self._unary_pool = unary_executor or ThreadPoolExecutor(2, thread_name_prefix="census-unary")
        self._metrics = metrics or CollectorMetrics(CollectorRegistry())  # a private one nobody scrapes

    async def Enroll(self, request: pb.EnrollRequest, context: grpc.aio.ServicerContext) -> pb.EnrollResponse:
        await _refuse_undecodable(context, request)
        # under mutual TLS the main listener always has a verified client certificate to bind; the enrolment
        # listener asks for none (the token and the key are the credentials there)
        identity = (tls_identity(context) or None) if self._bind_tls_identity else None
        return await _answer(
            context,
            self._unary_pool,
            lambda: _counted(self._metrics.enrollment, lambda: self._enroll(request, identity)),
        )

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

    async def IssueCertificate(
        self, request: pb.CertificateRequest, context: grpc.aio.ServicerContext
    ) -> pb.CertificateResponse:
        await _refuse_undecodable(context, request)
        return await _answer(context, self._unary_pool, lambda: self._issue_certificate(request))

    def _issue_certificate(self, request: pb.CertificateRequest) -> pb.CertificateResponse:
        if self._ca is None:
            raise NotOfferedError(
                "this collector does not issue client certificates ([enrollment] issue_client_certificates)"
            )
        key = self._store.get_key(request.keyid)
        if key is None:
            raise UnknownKeyError(f"no enrolled key {request.keyid[:64]!r}: enroll first")
        if key.revoked:
            raise RevokedKeyError(f"key {key.keyid} of node {key.node_id} is revoked: no certificate")
        public_key = verify.public_key_from_pem(key.public_key_pem.encode("ascii"))
        try:
            public_key.verify(request.signature, csr_binding.signed_message(request.csr_der))
        except InvalidSignature:
            raise SignatureError("the certificate request is not signed by the enrolled node key") from None
        issued = self._ca.issue(request.csr_der, key.node_id, self._clock(), self._certificate_minutes)
        log.info("issued a client certificate for node %s (key %s) until %s", key.node_id, key.keyid[:16],
                 codec.timestamp(issued.not_after))  # fmt: skip
        return pb.CertificateResponse(
            certificate_pem=issued.pem, ca_pem=self._ca.pem, not_after=codec.timestamp(issued.not_after)
        )

    async def Report(self, request_iterator: AsyncIterator[pb.Envelope], context: grpc.aio.ServicerContext) -> None:
        identity = tls_identity(context) if self._bind_tls_identity else None
        # streams are counted per client: its certificate under mutual TLS, else its address (without the port)
        peer = f"cn:{identity}" if identity is not None else limits.peer_address(context.peer())
        try:
            self.streams.open(peer)
        except limits.LimitError as err:
            self._metrics.streams_ended.labels("over_limit").inc()
            await _abort(context, err)
        self._metrics.report_streams.inc()
        try:
            wait, what, reason = self._first_message, "sent nothing", "first_message"  # counted from the opening
            while True:
                stopping = self.stopping.is_set()
                try:  # stopping: an envelope the client sent before it could know is still judged
                    request = await asyncio.wait_for(context.read(), DRAIN_SECONDS if stopping else wait)
                except TimeoutError:
                    if stopping:
                        await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
                    log.warning("closing the Report stream of %s: %s for %g s", context.peer(), what, wait)
                    self._metrics.streams_ended.labels(reason).inc()
                    await context.abort(grpc.StatusCode.CANCELLED, f"the Report stream {what} for {wait:g} s")
                if request is grpc.aio.EOF:
                    return
                await _refuse_undecodable(context, request)
                ack = await _answer(context, self._ingest_pool, lambda e=request.dsse: self._report(e, identity))
                await context.write(ack)
                if stopping:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
                wait, what, reason = self._idle_timeout, "was idle", "idle"
        finally:
            self._metrics.report_streams.dec()
            self.streams.close(peer)

    def _report(self, envelope: bytes, identity: str | None) -> pb.Ack:
        """Judge one envelope within the limits; the ack always fits the message limit."""
        seen = limits.peek(envelope)
        try:
            self._budget.check(seen.keyid, len(envelope))
        except Exception as err:
            self._metrics.envelope(status_for(err).name.lower(), ())
            raise
        result = self._ingest(envelope, identity)
        if not result.duplicate:
            self._budget.charge(result.keyid, len(envelope))
        return codec.ack_to_pb(result, self._max_ack_bytes)

    def _ingest(self, envelope: bytes, identity: str | None) -> IngestResult:
        result = _counted(self._metrics.envelope, lambda: self._pipeline.ingest(envelope, identity))
        outcome = "duplicate" if result.duplicate else result.status
        self._metrics.envelope(outcome, () if result.duplicate else result.findings)
        return result

    async def GetSiteStatus(
        self, request: pb.GetSiteStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSiteStatusResponse:
        await _refuse_undecodable(context, request)
        query = self._query(context, lambda: self._site_status(request))
        return await _answer(context, self._unary_pool, query)

    def _site_status(self, request: pb.GetSiteStatusRequest) -> pb.GetSiteStatusResponse:
        response = site_pages.site_status_page(
            self._store,
            request,
            now=self._clock(),
            stale_intervals=self._stale_intervals,
            default_interval_seconds=self._default_interval,
            max_bytes=self._max_ack_bytes,  # the server's message limit
        )
        rows = location_rows(self._store, [s.site for s in response.sites]) or []  # this page's sites only
        located = {row["site"]: row["status"] for row in rows}
        for site in response.sites:
            site.location = located.get(site.site, "")
        return response

    async def GetCountryTotals(
        self, request: pb.GetCountryTotalsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCountryTotalsResponse:
        await _refuse_undecodable(context, request)
        query = self._query(context, lambda: self._country_totals(request.country.upper()))
        return await _answer(context, self._unary_pool, query)

    def _query(self, context: grpc.aio.ServicerContext, call: Callable[[], T]) -> Callable[[], T]:
        """Under mutual TLS only the certificates named in `[server] query_clients` may read the inventory."""
        caller = tls_identity(context) if self._bind_tls_identity else None

        def checked() -> T:
            if caller is not None and caller not in self._query_clients:
                raise BindingError(
                    f"the TLS client certificate {caller!r} may not query the inventory; "
                    "name it in [server] query_clients"
                )
            return call()

        return checked

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
        response = pb.GetCountryTotalsResponse(
            countries=[codec.country_totals_to_pb(t, sites.get(t.country, 0)) for t in chosen]
        )
        by_country = sites_by_location(self._store)
        for row in response.countries:
            row.sites_by_location.update(by_country.get(row.country, {}))
        return response

    async def ListLandmarks(
        self, request: pb.ListLandmarksRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListLandmarksResponse:
        """Open to every client that may connect (nodes need it): landmarks and their keys are not inventory."""
        await _refuse_undecodable(context, request)
        return await _answer(context, self._unary_pool, lambda: landmarks_to_pb(self._store.list_landmarks()))

    # --- the transparency log: open to every client (agents monitor their own entries with them) -----------
    async def GetCheckpoint(
        self, request: pb.GetCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCheckpointResponse:
        await _refuse_undecodable(context, request)
        return await _answer(context, self._unary_pool, self._checkpoint)

    def _checkpoint(self) -> pb.GetCheckpointResponse:
        checkpoint = self._transparency_log().checkpoint()
        if not checkpoint:
            raise NoCheckpointError("the log has no checkpoint yet; ask again in a moment")
        return pb.GetCheckpointResponse(checkpoint=checkpoint, log_vkey=str(self._transparency_log().verifier))

    async def GetInclusionProof(
        self, request: pb.GetInclusionProofRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetInclusionProofResponse:
        await _refuse_undecodable(context, request)
        return await _answer(context, self._unary_pool, lambda: self._inclusion(request))

    def _inclusion(self, request: pb.GetInclusionProofRequest) -> pb.GetInclusionProofResponse:
        size, hashes = self._transparency_log().inclusion_proof(request.log_index, request.tree_size)
        return pb.GetInclusionProofResponse(log_index=request.log_index, tree_size=size, hashes=hashes)

    async def GetConsistencyProof(
        self, request: pb.GetConsistencyProofRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetConsistencyProofResponse:
        await _refuse_undecodable(context, request)
        return await _answer(context, self._unary_pool, lambda: self._consistency(request))

    def _consistency(self, request: pb.GetConsistencyProofRequest) -> pb.GetConsistencyProofResponse:
        _, hashes = self._transparency_log().consistency_proof(request.old_size, request.new_size)
        return pb.GetConsistencyProofResponse(hashes=hashes)

    def _transparency_log(self) -> TransparencyLog:
        if self._log is None:
            raise NoCheckpointError("this collector serves no transparency log")
        return self._log


def _counted(count: Callable[[str], None], call: Callable[[], T]) -> T:
    """Run `call`; an error is counted under its status's name (`permission_denied`) before it goes on."""
    try:
        return call()
    except Exception as err:
        count(status_for(err).name.lower())
        raise


async def _answer(context: grpc.aio.ServicerContext, pool: Executor, call: Callable[[], T]) -> T:
    """Run one request's blocking work in `pool`; an error aborts the RPC with the status from the one table
    (INTERNAL is logged with its traceback)."""
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, call)
    except Exception as err:  # every error becomes a status here, and only here
        await _abort(context, err)
        raise  # not reached: abort raises


async def _abort(context: grpc.aio.ServicerContext, err: Exception) -> None:
    code = status_for(err)
    trailing: tuple[tuple[str, str], ...] = ()
    if code is grpc.StatusCode.INTERNAL:
        log.error("internal error while serving %s", type(err).__name__, exc_info=err)
        details = f"internal error ({type(err).__name__}); see the collector's log"
    else:
        details = getattr(err, "message", None) or str(err) or type(err).__name__
        log.warning("%s from %s: %s", code.name, context.peer(), details)
    if isinstance(err, limits.LimitError):
        trailing = ((limits.RETRY_AFTER_KEY, str(err.retry_after)),)
    await context.abort(code, details, trailing_metadata=trailing)


async def _refuse_undecodable(context: grpc.aio.ServicerContext, request: object) -> None:
    if isinstance(request, codec.Undecodable):
        await _abort(context, MalformedError(f"the request is not a {request.message_type}: {request.error}"))


def add_to_server(servicer: CensusServicer, server: grpc.aio.Server) -> None:
    """Register the Census service like the generated `add_CensusServicer_to_server`, with lenient request
    deserializers: bytes that are no protobuf message get INVALID_ARGUMENT from the servicer."""
    lenient, unary, stream = codec.lenient, grpc.unary_unary_rpc_method_handler, grpc.stream_stream_rpc_method_handler
    handlers = {
        "Report": stream(servicer.Report, lenient(pb.Envelope), pb.Ack.SerializeToString),
        "GetSiteStatus": unary(
            servicer.GetSiteStatus, lenient(pb.GetSiteStatusRequest), pb.GetSiteStatusResponse.SerializeToString
        ),
        "GetCountryTotals": unary(
            servicer.GetCountryTotals,
            lenient(pb.GetCountryTotalsRequest),
            pb.GetCountryTotalsResponse.SerializeToString,
        ),
        "GetCheckpoint": unary(
            servicer.GetCheckpoint, lenient(pb.GetCheckpointRequest), pb.GetCheckpointResponse.SerializeToString
        ),
        "GetInclusionProof": unary(
            servicer.GetInclusionProof,
            lenient(pb.GetInclusionProofRequest),
            pb.GetInclusionProofResponse.SerializeToString,
        ),
        "GetConsistencyProof": unary(
            servicer.GetConsistencyProof,
            lenient(pb.GetConsistencyProofRequest),
            pb.GetConsistencyProofResponse.SerializeToString,
        ),
        **_enrolment_handlers(servicer),
        "ListLandmarks": unary(
            servicer.ListLandmarks, lenient(pb.ListLandmarksRequest), pb.ListLandmarksResponse.SerializeToString
        ),
    }
    _register(server, handlers)


def add_enrolment_to_server(servicer: CensusServicer, server: grpc.aio.Server) -> None:
    """Register only Enroll and IssueCertificate: the enrolment listener, where clients have no certificate yet,
    can neither report nor query."""
    _register(server, _enrolment_handlers(servicer))


def _enrolment_handlers(servicer: CensusServicer) -> dict[str, grpc.RpcMethodHandler]:
    lenient, unary = codec.lenient, grpc.unary_unary_rpc_method_handler
    return {
        "Enroll": unary(servicer.Enroll, lenient(pb.EnrollRequest), pb.EnrollResponse.SerializeToString),
        "IssueCertificate": unary(
            servicer.IssueCertificate, lenient(pb.CertificateRequest), pb.CertificateResponse.SerializeToString
        ),
    }


def _register(server: grpc.aio.Server, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
    name = pb.DESCRIPTOR.services_by_name["Census"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)
