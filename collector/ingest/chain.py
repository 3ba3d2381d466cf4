"""Chain step: where an envelope stands in its key's sequence (docs/auditors.md). The chain rules themselves are
`common.verify.check_chain` (shared with the auditor); this step turns its verdicts into the ingest's
decisions and findings, and adds the rules that need the collector's clock or its whole history. Pure: the
store lookups arrive as a `ChainContext`.

- same (keyid, sequence), same signed payload: a replay; answered with the stored ack and `duplicate=True`;
- same sequence, different signed payload: equivocation, a violation; rejected, the stored envelope stays
  (both envelopes were verified with the key, so the pair is the evidence);
- timestamp further in the future than `max_future_skew`: rejected;
- timestamp before the key's enrolment minus `max_backdate` (`not_before`): rejected. An agent signs and spools
  before its enrolment reaches the collector (the first round, or while the collector is unreachable), so a
  statement may predate its key's enrolment by that much; one dated earlier (0001-01-01, years back) is no
  account of the node's state that anything can check, and would rewrite reports of past dates. Rejected
  rather than flagged, like a future timestamp: a verdict the node sees, and never counted;
- sequences skipped (also before a key's first stored envelope): missing attestations, accepted;
- `previous` not the digest of the envelope before it, or a sequence older than the newest: accepted, flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gpucensus.collector.ingest.model import VIOLATION, WARNING, Finding
from gpucensus.common import verify

DEFAULT_MAX_FUTURE_SKEW = timedelta(minutes=5)
DEFAULT_MAX_BACKDATE = timedelta(days=7)
FIRST_SEQUENCE = 1  # common/statement.py: sequence 1 starts a chain and names no previous envelope

EQUIVOCATION = "chain.equivocation"

# verify.check_chain reason -> (finding rule id, severity)
RULES = {
    verify.FORK: (EQUIVOCATION, VIOLATION),
    verify.GAP: ("chain.missing-attestations", WARNING),
    verify.PREVIOUS_MISMATCH: ("chain.previous-mismatch", VIOLATION),
    verify.OUT_OF_ORDER: ("chain.out-of-order", WARNING),
}


@dataclass(frozen=True)
class Link:
    """An envelope in a key's chain: a stored one, or the incoming one."""

    sequence: int
    digest: str
    previous: str = ""
    payload_digest: str = ""  # hex SHA-256 of the signed payload; "" when not looked up


@dataclass(frozen=True)
class ChainContext:
    """What the store holds for this key around the incoming sequence."""

    stored: Link | None = None  # at (keyid, sequence)
    predecessor: Link | None = None  # at (keyid, sequence - 1)
    last: Link | None = None  # the highest sequence stored for the key


@dataclass(frozen=True)
class ChainVerdict:
    duplicate: bool = False  # a replay: answer with the stored envelope's ack
    rejected: bool = False
    findings: tuple[Finding, ...] = ()

    @property
    def equivocation(self) -> bool:
        return any(f.rule_id == EQUIVOCATION for f in self.findings)


def check_chain(
    *,
    node_id: str,
    new: Link,
    timestamp: datetime,
    context: ChainContext,
    now: datetime,
    max_future_skew: timedelta = DEFAULT_MAX_FUTURE_SKEW,
    not_before: datetime | None = None,
) -> ChainVerdict:
    subject = f"node:{node_id}"
    known = [link for link in (context.stored, context.predecessor, context.last) if link is not None]
    failures = verify.check_chain(known, new)
    reasons = {failure.reason for failure in failures}
    if verify.DUPLICATE in reasons:
        return ChainVerdict(duplicate=True)
    findings = [_finding(subject, failure) for failure in failures]
    if verify.FORK in reasons:
        return ChainVerdict(rejected=True, findings=tuple(findings))
    if timestamp > now + max_future_skew:
        ahead = int((timestamp - now).total_seconds())
        limit = int(max_future_skew.total_seconds())
        message = f"sequence {new.sequence} is dated {ahead} s after the collector's clock (limit {limit} s)"
        finding = Finding("chain.future-timestamp", VIOLATION, subject, message)
        return ChainVerdict(rejected=True, findings=(finding,))
    if not_before is not None and timestamp < not_before:
        message = (
            f"sequence {new.sequence} is dated {timestamp:%Y-%m-%dT%H:%M:%SZ}, before the key's enrolment less the "
            f"allowed backdating ({not_before:%Y-%m-%dT%H:%M:%SZ})"
        )
        finding = Finding("chain.past-timestamp", VIOLATION, subject, message)
        return ChainVerdict(rejected=True, findings=(finding,))
    if context.last is None and new.sequence > FIRST_SEQUENCE:
        last = new.sequence - 1
        missing = f"{FIRST_SEQUENCE}..{last}" if last > FIRST_SEQUENCE else str(FIRST_SEQUENCE)
        message = f"the key's first stored envelope is sequence {new.sequence}: sequence(s) {missing} missing"
        findings.append(Finding("chain.missing-attestations", WARNING, subject, message))
    return ChainVerdict(findings=tuple(findings))


def _finding(subject: str, failure: verify.Failure) -> Finding:
    rule_id, severity = RULES.get(failure.reason, (f"chain.{failure.reason}", WARNING))
    return Finding(rule_id, severity, subject, f"sequence {failure.sequence}: {failure.message}")
