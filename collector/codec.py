"""Protobuf <-> domain translation for the collector: with the servicer, the only module that sees generated
types. Times go on the wire as RFC 3339 UTC strings, like the signed statement's timestamp."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from google.protobuf.message import DecodeError, Message
from gpucensus.collector.ingest.model import ACCEPTED, INFO, REJECTED, VIOLATION, WARNING, Finding, IngestResult
from gpucensus.collector.store.base import CountryTotals, NodeKey, NodeStatus, SiteStatus
from gpucensus.common.statement import format_timestamp
from gpucensus.protos import census_pb2 as pb

SEVERITY_TO_PB = {INFO: pb.SEVERITY_INFO, WARNING: pb.SEVERITY_WARNING, VIOLATION: pb.SEVERITY_VIOLATION}
SEVERITY_FROM_PB = {value: key for key, value in SEVERITY_TO_PB.items()}
STATUS_TO_PB = {ACCEPTED: pb.ACK_STATUS_ACCEPTED, REJECTED: pb.ACK_STATUS_REJECTED}
STATUS_FROM_PB = {value: key for key, value in STATUS_TO_PB.items()}


@dataclass(frozen=True)
class Undecodable:
    """A request whose bytes are no `message_type`: the servicer answers INVALID_ARGUMENT (grpc itself would
    answer UNKNOWN and log a traceback)."""

    message_type: str
    error: str


def lenient(message_type: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    """A request deserializer that returns `Undecodable` instead of raising."""

    def parse(data: bytes) -> Message | Undecodable:
        try:
            return message_type.FromString(data)
        except (DecodeError, RecursionError) as err:
            return Undecodable(message_type.DESCRIPTOR.full_name, str(err) or type(err).__name__)

    return parse


def timestamp(moment: datetime | None) -> str:
    return format_timestamp(moment) if moment is not None else ""


def finding_to_pb(finding: Finding) -> pb.Finding:
    return pb.Finding(
        rule_id=finding.rule_id,
        severity=SEVERITY_TO_PB.get(finding.severity, pb.SEVERITY_UNSPECIFIED),
        subject=finding.subject,
        message=finding.message,
    )


def finding_from_pb(message: pb.Finding) -> Finding:
    return Finding(message.rule_id, SEVERITY_FROM_PB.get(message.severity, ""), message.subject, message.message)


ACK_FINDINGS = 50  # more findings than this and the ack carries them per rule: a count and a few examples
EXAMPLES_PER_RULE = 3
MAX_TEXT = 512  # characters of a finding's subject or message in an ack (the store keeps them whole)
DEFAULT_MAX_ACK_BYTES = 1024 * 1024


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "\u2026"


def bounded_findings(findings: tuple[Finding, ...]) -> list[Finding]:
    """The findings an ack carries: all of them when few; else, per (rule, severity), a summary with the count
    and the first EXAMPLES_PER_RULE examples. Texts are clipped to MAX_TEXT characters."""
    findings = tuple(Finding(f.rule_id[:MAX_TEXT], f.severity, _clip(f.subject), _clip(f.message)) for f in findings)
    if len(findings) <= ACK_FINDINGS:
        return list(findings)
    groups: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings:
        groups.setdefault((finding.rule_id, finding.severity), []).append(finding)
    out: list[Finding] = []
    for (rule, severity), members in groups.items():
        if len(members) > EXAMPLES_PER_RULE:
            shown = f"{EXAMPLES_PER_RULE} examples follow" if EXAMPLES_PER_RULE else "none shown"
            summary = f"{len(members)} findings of rule {rule} ({shown}); the collector stores every one"
            out.append(Finding(rule, severity, f"count:{len(members)}", summary))
        out.extend(members[:EXAMPLES_PER_RULE])
    return out


def ack_to_pb(result: IngestResult, max_bytes: int = DEFAULT_MAX_ACK_BYTES) -> pb.Ack:
    """The ack for `result`, at most `max_bytes` serialized (the message limit): findings are aggregated per
    rule when there are many, and trimmed (with a `findings.truncated` note) when even that does not fit."""
    ack = pb.Ack(
        keyid=result.keyid,
        sequence=result.sequence,
        status=STATUS_TO_PB[result.status],
        duplicate=result.duplicate,
        checkpoint=result.checkpoint,
    )
    if result.log_index is not None:
        ack.log_index = result.log_index
    findings = [finding_to_pb(f) for f in bounded_findings(result.findings + result.policy)]
    room = max_bytes - ack.ByteSize() - 1024  # the truncation note and field overhead
    kept = 0
    for finding in findings:
        room -= finding.ByteSize() + 4
        if room < 0:
            break
        kept += 1
    ack.findings.extend(findings[:kept])
    if kept < len(findings):
        note = f"{len(findings) - kept} more finding(s) do not fit in the ack; the collector stores every one"
        ack.findings.append(pb.Finding(rule_id="findings.truncated", severity=pb.SEVERITY_INFO, message=note))
    return ack


def ack_from_pb(ack: pb.Ack) -> IngestResult:
    return IngestResult(
        keyid=ack.keyid,
        sequence=ack.sequence,
        status=STATUS_FROM_PB.get(ack.status, ""),
        log_index=ack.log_index if ack.HasField("log_index") else None,
        duplicate=ack.duplicate,
        findings=tuple(finding_from_pb(f) for f in ack.findings),
        checkpoint=ack.checkpoint,
    )


def enroll_response(key: NodeKey) -> pb.EnrollResponse:
    return pb.EnrollResponse(keyid=key.keyid, node_id=key.node_id, site=key.site)


def node_status_to_pb(node: NodeStatus, stale: bool) -> pb.NodeStatus:
    message = pb.NodeStatus(
        node_id=node.node_id,
        keyid=node.keyid,
        last_attested=timestamp(node.last_attested_at),
        stale=stale,
        revoked=node.revoked,
        gpus=node.gpus,
    )
    if node.last_sequence is not None:
        message.last_sequence = node.last_sequence
    return message


def site_status_to_pb(site: SiteStatus, nodes: Iterable[NodeStatus], stale: set[str]) -> pb.SiteStatus:
    return pb.SiteStatus(
        site=site.site,
        country=site.country,
        entity=site.entity,
        nodes=[node_status_to_pb(n, n.node_id in stale) for n in nodes],
        totals=pb.Totals(gpus=site.gpus, tpp=site.tpp, unaccounted=site.unaccounted),
        last_attested=timestamp(site.last_attested_at),
    )


def country_totals_to_pb(totals: CountryTotals, sites: int) -> pb.CountryTotals:
    return pb.CountryTotals(
        country=totals.country,
        sites=sites,
        totals=pb.Totals(gpus=totals.gpus, tpp=totals.tpp, unaccounted=totals.unaccounted),
        by_eccn={eccn: pb.EccnTotals(gpus=t.gpus, tpp=t.tpp) for eccn, t in totals.by_eccn.items()},
    )
