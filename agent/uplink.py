"""The agent's gRPC client: `Enroll` once, then drain the spool over one bidirectional `Report` stream.

Envelopes go out in sequence order; each ack names its (keyid, sequence). An envelope is marked delivered
only on an ACCEPTED ack carrying a log index. A REJECTED ack, or a stream ended by a status that judges the
envelope (INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED, ...), flags it as rejected
in the spool (kept, never deleted). UNAVAILABLE / DEADLINE_EXCEEDED, and RESOURCE_EXHAUSTED carrying the
collector's retry-after trailer (too many streams, the key over its budget: a limit, not a verdict), mean
"try again later": the caller backs off (`Backoff`) and the next drain resends everything still pending, in
order. Any other status (CANCELLED by the collector's idle-stream watchdog, INTERNAL from a proxy,
UNIMPLEMENTED ...) says nothing about the envelope: it is logged, everything stays pending, and the next
attempt comes after the backoff. Every call has a deadline; messages are capped at 1 MiB; keepalive is on.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from gpucensus.agent.config import AgentConfig
from gpucensus.agent.hints import rejection_hint
from gpucensus.agent.spool import Spool, SpoolEntry
from gpucensus.agent.tls import read_tls_files
from gpucensus.common.durable import atomic_write
from gpucensus.common.errors import ConfigError
from gpucensus.common.wire import RETRY_AFTER_KEY
from gpucensus.protos import census_pb2, census_pb2_grpc

MAX_MESSAGE_BYTES = 1024 * 1024
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# statuses that are the collector's answer about the envelope in hand (docs/formats.md's status table, message limits)
VERDICTS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
MAX_BATCH = 500  # envelopes per stream; the rest go on the next drain
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.enable_retries", 0),  # retries are ours: in order, from the spool, with backoff
]

log = logging.getLogger("gpucensus.agent.uplink")


class RetryableError(Exception):
    """The collector could not be reached or answered UNAVAILABLE / DEADLINE_EXCEEDED: back off, retry.

    `code` and `details` are grpc's (None / "" when no call failed); `hint` says what to do (`agent.hints`)."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None, details: str = "", hint: str = "") -> None:
        super().__init__(message)
        self.code, self.details, self.hint = code, details, hint


@dataclass
class DrainResult:
    sent: int = 0
    delivered: int = 0
    rejected: int = 0
    duplicates: int = 0  # delivered envelopes the collector already had (an ack lost earlier)
    error: str = ""  # set when the stream ended early; retry decides whether to back off
    last_rejection: str = ""  # the collector's reason for the last envelope it refused


class Backoff:
    """Exponential backoff with jitter: the n-th delay is uniform in [d/2, d], d = min(max, initial * 2^n)."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial, self.maximum = initial, maximum
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * 2 ** min(self.failures, 32))
        self.failures += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.failures = 0


def open_channel(config: AgentConfig, *, enrolment: bool = False) -> grpc.Channel:
    """An insecure channel, or TLS (CA only) / mutual TLS (CA + client cert and key) when configured.
    `enrolment`: to `collector.enroll_address` when set, never presenting a client certificate.

    The TLS files are checked here (`agent.tls`): a wrong file is a ConfigError naming it."""
    # gRPC's own reconnect backoff grows to 120 s; cap it at the agent's retry maximum so a collector that is back
    # is reached within one retry period
    options = [*CHANNEL_OPTIONS, ("grpc.max_reconnect_backoff_ms", int(config.collector_retry_max_seconds * 1000))]
    address = (config.collector_enroll_address or config.collector_address) if enrolment else config.collector_address
    if not config.tls_enabled:
        return grpc.insecure_channel(address, options=options)
    cert_file, key_file = ("", "") if enrolment else config.client_certificate_files
    files = read_tls_files(config.collector_tls_ca_file, cert_file, key_file)
    if config.collector_tls_server_name:
        options.append(("grpc.ssl_target_name_override", config.collector_tls_server_name))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=files.root_certificates,
        private_key=files.private_key,
        certificate_chain=files.certificate_chain,
    )
    return grpc.secure_channel(address, credentials, options=options)


class Uplink:
    """Talks to one collector over `channel`; `timeout_seconds` bounds every call."""

    def __init__(self, channel: grpc.Channel, timeout_seconds: float) -> None:
        self._stub = census_pb2_grpc.CensusStub(channel)
        self.timeout_seconds = timeout_seconds

    @property
    def stub(self) -> census_pb2_grpc.CensusStub:
        """The channel's Census stub (the log monitor asks its proofs over the same connection)."""
        return self._stub

    def enroll(self, token: str, node_id: str, public_key_pem: str) -> census_pb2.EnrollResponse:
        request = census_pb2.EnrollRequest(token=token, node_id=node_id, public_key_pem=public_key_pem)
        return self._stub.Enroll(request, timeout=self.timeout_seconds)

    def list_landmarks(self) -> list[census_pb2.Landmark]:
        """The landmarks to measure with (`agent.location`); a grpc.RpcError when the collector cannot say."""
        return list(self._stub.ListLandmarks(census_pb2.ListLandmarksRequest(), timeout=self.timeout_seconds).landmarks)

    def drain(self, spool: Spool, on_ack: Callable[[census_pb2.Ack], None] | None = None) -> DrainResult:
        """Send the spool's pending envelopes (up to MAX_BATCH) on one stream and apply the acks.

        Raises RetryableError when the collector is unreachable or busy; the envelopes stay pending.
        """
        batch = spool.pending(MAX_BATCH)  # a full spool is read a batch at a time, not all into memory
        result = DrainResult()
        if not batch:
            return result
        waiting = {(e.keyid, e.sequence): e for e in batch}
        deadline = self.timeout_seconds * (1 + len(batch) // 100)
        try:
            stream = self._stub.Report(_requests(batch, result), timeout=deadline)
            for ack in stream:
                entry = waiting.pop((ack.keyid, ack.sequence), None)
                if entry is None:
                    log.error("ack for an envelope not sent on this stream: key %s seq %d", ack.keyid, ack.sequence)
                    continue
                _apply_ack(spool, entry, ack, result)
                if on_ack is not None:
                    on_ack(ack)
        except grpc.RpcError as err:
            code, details = err.code(), err.details() or ""
            if not waiting:  # every envelope was answered before the stream failed
                return result
            if code in RETRYABLE or retry_later(err):
                raise RetryableError(f"{code.name}: {details}", code, details) from None
            reason = f"{code.name}: {details}"
            if code not in VERDICTS:  # the stream failed, not the envelope: keep everything pending
                log.error("Report stream ended with %s; %d envelope(s) stay pending",
                          reason, len(waiting))  # fmt: skip
                result.error = reason
                return result
            first = min(waiting.values(), key=lambda e: e.sequence)
            log.error(
                "collector refused envelope key %s sequence %d: %s; kept in the spool as rejected%s",
                first.keyid[:16], first.sequence, reason, _hint_suffix(reason),
            )  # fmt: skip
            spool.mark_rejected(first.keyid, first.sequence, reason)
            result.rejected += 1
            result.last_rejection = reason
            result.error = reason
            return result
        if waiting:
            raise RetryableError(f"stream closed with {len(waiting)} envelope(s) unanswered")
        return result


def retry_later(err: grpc.RpcError) -> bool:
    """RESOURCE_EXHAUSTED with the collector's retry-after trailer: a limit it is at, not a verdict on the
    envelope (an oversized message gets RESOURCE_EXHAUSTED without the trailer, and stays a verdict)."""
    if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return False
    try:
        trailers = err.trailing_metadata() or ()
    except (AttributeError, ValueError):
        return False
    return any(key == RETRY_AFTER_KEY for key, _value in trailers)


def _requests(batch: list[SpoolEntry], result: DrainResult) -> Iterator[census_pb2.Envelope]:
    for entry in batch:
        result.sent += 1
        yield census_pb2.Envelope(dsse=entry.envelope)


def _apply_ack(spool: Spool, entry: SpoolEntry, ack: census_pb2.Ack, result: DrainResult) -> None:
    for finding in ack.findings:
        level = logging.WARNING if finding.severity >= census_pb2.SEVERITY_WARNING else logging.INFO
        log.log(level, "finding %s on %s: %s", finding.rule_id, finding.subject, finding.message)
    if ack.status == census_pb2.ACK_STATUS_ACCEPTED and ack.HasField("log_index"):
        spool.mark_delivered(entry.keyid, entry.sequence, ack.log_index)
        result.delivered += 1
        result.duplicates += ack.duplicate
    elif ack.status == census_pb2.ACK_STATUS_REJECTED:
        reasons = "; ".join(f"{f.rule_id}: {f.message}" for f in ack.findings) or "no reason given"
        log.error(
            "collector rejected sequence %d: %s; kept in the spool as rejected%s",
            entry.sequence, reasons, _hint_suffix(reasons),
        )  # fmt: skip
        spool.mark_rejected(entry.keyid, entry.sequence, f"REJECTED: {reasons}")
        result.rejected += 1
        result.last_rejection = f"REJECTED: {reasons}"
    else:  # not a delivery: keep it pending and let the caller back off before resending
        result.error = (
            f"ack for sequence {entry.sequence} has status {census_pb2.AckStatus.Name(ack.status)} and "
            f"{'a' if ack.HasField('log_index') else 'no'} log index"
        )
        log.error("%s; kept pending", result.error)


def _hint_suffix(reason: str) -> str:
    hint = rejection_hint(reason)
    return f" (hint: {hint})" if hint else ""


def ensure_enrolled(
    config: AgentConfig, uplink: Uplink, node_id: str, public_key_pem: str, keyid: str
) -> dict[str, Any] | None:
    """Enroll once with the configured token; the result is kept next to the key so it is not repeated.

    Returns the stored enrollment, or None when no token is configured (the key was enrolled another way).
    A record written for another key (the key was replaced) does not count. Raises RetryableError if the
    collector is unreachable, ConfigError if it refuses the token.
    """
    path = config.enrollment_file
    if path.exists():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as err:
            raise ConfigError(
                f"enrollment record {path} is unreadable: {err}",
                hint="delete it and set a fresh enrollment token to enroll again",
            ) from err
        if record.get("keyid") == keyid:
            return record
        log.warning("enrollment record %s is for key %s, not this key: enrolling again", path, record.get("keyid"))
    token = config.read_token()
    if not token:
        return None
    try:
        response = uplink.enroll(token, node_id, public_key_pem)
        record = {"keyid": response.keyid, "node_id": response.node_id, "site": response.site}
    except grpc.RpcError as err:
        if err.code() in RETRYABLE:
            details = err.details() or ""
            raise RetryableError(f"enroll: {err.code().name}: {details}", err.code(), details) from None
        if err.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise ConfigError(
                f"the collector refused enrollment: {err.code().name}: {err.details()}",
                hint="create a new token with `gpucensus-collector token create --site SITE`; a node id that is "
                "already enrolled is re-keyed only by the operator (`gpucensus-collector node rekey`, or a token "
                "created with --node-id)",
            ) from None
        log.warning("this key is already enrolled (%s); recording that", err.details())
        record = {"keyid": keyid, "node_id": node_id, "site": "", "note": "already enrolled"}
    record |= {"collector": config.collector_address, "enrolled_at": datetime.now(UTC).isoformat()}
    try:
        atomic_write(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode(), mode=0o600)
    except OSError as err:  # the token is used up now: carry on enrolled rather than ask for it again
        log.error(
            "enrolled, but the record %s could not be written (%s): this run goes on; free the space or fix "
            "the permissions, or the next start will need a new token",
            path, err,
        )  # fmt: skip
    log.info("enrolled node %s at site %s (key %s)", record["node_id"], record["site"], record["keyid"][:16])
    return record
