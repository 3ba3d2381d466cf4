"""The ingest pipeline: signature -> chain -> recompute -> crossnode -> store -> ack. The one ingest module
that talks to the store; each step it calls is a pure function of what it looked up. A compact statement
(inventory unchanged) goes signature -> chain -> reference (`ingest.compact`: it names the key's latest accepted
full inventory) -> store -> ack: nothing to recompute or cross-check, and the node's inventory, totals and
compliance stay the full one's.

Envelopes of one key are judged one at a time (a per-key lock); a second collector sharing the database is
caught by the store's UNIQUE (keyid, sequence): on `ConflictError` the envelope is judged again against what
the other writer stored (duplicate or equivocation). Everything acknowledged was committed first.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from gpucensus.collector import limits
from gpucensus.collector.compliance.state import ComplianceState
from gpucensus.collector.ingest import chain, compact, crossnode, facts, recompute, signature, sitebinding
from gpucensus.collector.ingest.errors import BindingError, SignatureError
from gpucensus.collector.ingest.model import ACCEPTED, REJECTED, Finding, IngestResult
from gpucensus.collector.location.ingest import LocationCheck
from gpucensus.collector.metrics import CollectorMetrics
from gpucensus.collector.store.base import (
    AttestationRecord,
    ChainHead,
    ConflictError,
    DeviceRecord,
    Evidence,
    NodeKey,
    Store,
    StoredLink,
)
from gpucensus.common import dsse, verify
from gpucensus.common.accounting import AccountingCache, Rules, load_rules
from gpucensus.common.catalogue import Catalogue, load_catalogue
from gpucensus.common.statement import COMPACT
from prometheus_client import CollectorRegistry

STEPS = ("signature", "chain", "reference", "recompute", "crossnode", "store", "compliance")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class StepTimings:
    """Seconds spent per step, summed over envelopes (for the benchmark and the metrics)."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STEPS, 0.0))
    envelopes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    ran: set[str] = field(default_factory=set, repr=False, compare=False)  # the steps entered (one envelope's)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.ran.add(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def add(self, other: StepTimings) -> None:
        """Add one envelope's timings (envelopes are judged in several threads at once)."""
        with self._lock:
            for name, spent in other.seconds.items():
                self.seconds[name] += spent
            self.envelopes += other.envelopes


class Pipeline:
    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime] = utc_now,
        max_future_skew: timedelta = chain.DEFAULT_MAX_FUTURE_SKEW,
        max_backdate: timedelta = chain.DEFAULT_MAX_BACKDATE,
        catalogue: Catalogue | None = None,
        rules: Rules | None = None,
        timings: StepTimings | None = None,
        metrics: CollectorMetrics | None = None,
        checkpoint: Callable[[], bytes] = bytes,
        location: LocationCheck | None = None,
        compliance: ComplianceState | None = None,
        max_devices: int | None = None,
    ) -> None:
        self._store = store
        self._checkpoint = checkpoint  # the latest signed checkpoint note, for the acks (b"": none yet)
        self._location = location or LocationCheck(store)
        self._compliance = compliance  # the policy state kept current at ingest; None: no policy findings
        self._max_devices = max_devices  # [server] max_devices_per_envelope; None: no limit
        self._clock = clock
        self._skew = max_future_skew
        self._backdate = max_backdate
        self._catalogue = catalogue or load_catalogue()
        self._rules = rules or load_rules()
        self._account = AccountingCache(self._catalogue, self._rules)  # identical GPUs are classified once
        self.timings = timings or StepTimings()
        self._metrics = metrics or CollectorMetrics(CollectorRegistry())  # a private one nobody scrapes
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._public_keys: dict[tuple[str, str], verify.Ed25519PublicKey] = {}
        # keyid -> (sequence, host facts) of the last attestation this collector accepted: spares reading the
        # previous envelope again (one entry per enrolled key; a restart or another collector falls back to it)
        self._last_host: dict[str, tuple[int, facts.HostFacts]] = {}

    def ingest(self, envelope_bytes: bytes, client_identity: str | None = None) -> IngestResult:
        """Judge one envelope and store it if accepted. Raises `IngestError`s (malformed, bad signature,
        unknown/revoked key, wrong node) and `StoreError` (store unusable); a verdict is never an exception.

        `client_identity`: the node id a verified TLS client certificate names, when mutual TLS is required.
        """
        spent = StepTimings()  # this envelope's: added to the totals, and to the metrics when accepted
        try:
            result = self._ingest(envelope_bytes, client_identity, spent)
        finally:
            self.timings.add(spent)
        if result.status == ACCEPTED and not result.duplicate:
            self._metrics.accepted_steps({name: spent.seconds[name] for name in STEPS if name in spent.ran})
        return result

    def _ingest(self, envelope_bytes: bytes, client_identity: str | None, spent: StepTimings) -> IngestResult:
        with spent.step("signature"):
            parsed = signature.parse(envelope_bytes)  # the envelope's only parse on the ingest path
            key = signature.enrolled_key(parsed, self._store.get_key)
            if client_identity is not None and client_identity != key.node_id:
                raise BindingError(
                    f"the TLS client certificate is for {client_identity!r}; key {key.keyid} is bound to "
                    f"node {key.node_id!r}"
                )
            verified = signature.verify_signed(parsed, key, self._public_key(key))
            if self._max_devices is not None and verified.kind != COMPACT:  # a compact statement lists none
                limits.check_devices(len(verified.predicate["devices"]), self._max_devices)  # read after the signature
        with self._key_lock(key.keyid):
            try:
                return self._judge(verified, key, spent)
            except ConflictError:
                return self._judge(verified, key, spent)  # another collector stored it first: duplicate or fork now
            finally:
                spent.envelopes += 1

    def _judge(self, verified: verify.VerifiedStatement, key: NodeKey, spent: StepTimings) -> IngestResult:
        store, seq, keyid = self._store, verified.sequence, key.keyid
        with spent.step("chain"):
            links = store.chain_links(keyid, seq)  # one read; the full record only for a replay or a fork
            stored = store.get_attestation(keyid, seq) if links.at is not None else None
            before = links.before if seq > chain.FIRST_SEQUENCE else None
            head = links.head
            predecessor = _link(before)
            context = chain.ChainContext(
                stored=_link_at_sequence(stored, verified),
                predecessor=predecessor,
                last=chain.Link(head.sequence, head.digest) if head else None,
            )
            now = self._clock()
            verdict = chain.check_chain(
                node_id=key.node_id,
                new=chain.Link(seq, verified.digest, verified.previous, verified.payload_digest if stored else ""),
                timestamp=verified.signed_at,
                context=context,
                now=now,
                max_future_skew=self._skew,
                not_before=_not_before(key.enrolled_at, self._backdate),
            )
        if head is not None and before is None and head.sequence < seq - 1 and not verdict.rejected:
            verdict = replace(verdict, findings=self._bridge(key, verified, head.sequence + 1, verdict.findings))
        if verdict.duplicate and stored is not None:
            return replace(_replay(stored), checkpoint=self._checkpoint())
        if verdict.rejected:
            evidence = None
            if stored is not None and verdict.equivocation:  # two different signed payloads: keep the proof
                evidence = Evidence(keyid, seq, verified.digest, verified.envelope_bytes, stored.digest, now)
            with spent.step("store"):
                store.add_findings(_tagged(verdict.findings, keyid, seq, now, verified.digest), evidence)
            return IngestResult(keyid, seq, REJECTED, findings=verdict.findings)
        if verified.kind == COMPACT:
            return self._judge_compact(verified, key, verdict.findings, now, spent)
        predicate = verified.predicate
        with spent.step("recompute"):
            recomputed = recompute.recompute(predicate, self._catalogue, self._rules, self._account)
        with spent.step("crossnode"):
            site = store.get_site(key.site)
            country = site.country if site else ""
            previous_devices = store.node_devices(key.node_id)  # the node's devices before this attestation
            context = self._crossnode_context(key.node_id, predicate.get("devices", []), previous_devices)
            cross = crossnode.check_crossnode(
                node_id=key.node_id,
                country=country,
                devices=predicate.get("devices", []),
                pci_functions=recomputed.pci_functions,
                context=context,
            )
            claimed_site = sitebinding.check_site(key.node_id, site, key.site, predicate, store.get_site)
            host_facts = facts.host(predicate)
            host = crossnode.check_host(key.node_id, host_facts, self._previous_host(keyid, before or head, seq))
            located = self._location.check(key.node_id, keyid, site, key.enrolled_at, predicate, now)
        findings = (*verdict.findings, *recomputed.findings, *cross, *claimed_site, *host, *located.findings)
        with spent.step("store"):
            record = store.store_attestation(_accepted(verified, key, now, findings, devices=recomputed.devices))
            self._location.record(located)
        self._last_host[keyid] = (seq, host_facts)
        policy: tuple[Finding, ...] = ()
        if self._compliance is not None:
            with spent.step("compliance"):
                found = self._compliance.accepted(
                    key.node_id, key.site, recomputed.devices, previous_devices, context.decommissioned
                )
                policy = tuple(Finding(f.rule, f.severity, f.subject, f.message) for f in found)
        return IngestResult(
            keyid, seq, ACCEPTED, log_index=_log_index(record), findings=findings, policy=policy,
            checkpoint=self._checkpoint(),
        )  # fmt: skip

    def _bridge(
        self, key: NodeKey, verified: verify.VerifiedStatement, first: int, findings: tuple[Finding, ...]
    ) -> tuple[Finding, ...]:
        """A hole before this statement made only of compact statements this collector rejected is no gap."""
        last = verified.sequence - 1
        if not any(f.rule_id in compact.BRIDGED for f in findings) or last - first >= compact.MAX_BRIDGE:
            return findings
        rejected = self._store.rejected_compact(key.keyid, first, last)
        return compact.bridge_rejected(
            findings, node_id=key.node_id, first=first, last=last, previous=verified.previous, rejected=rejected
        )

    def _judge_compact(
        self,
        verified: verify.VerifiedStatement,
        key: NodeKey,
        chain_findings: tuple[Finding, ...],
        now: datetime,
        spent: StepTimings,
    ) -> IngestResult:
        """A compact statement after its chain step: its reference, then the cheap store path."""
        store, seq, keyid = self._store, verified.sequence, key.keyid
        named = verified.inventory_reference
        assert named is not None
        with spent.step("reference"):
            latest = store.latest_full(keyid)
            other = None
            if latest is not None and named != (latest.sequence, latest.digest):
                other = store.get_attestation(keyid, named[0])  # the rare path: which inventory is it?
            rejected = compact.check_reference(
                node_id=key.node_id,
                keyid=keyid,
                named=named,
                latest=latest,
                named_is_accepted_full=other is not None and other.kind != COMPACT and other.digest == named[1],
            )
        if rejected:
            findings = (*chain_findings, *rejected)
            with spent.step("store"):
                store.add_findings(_tagged(findings, keyid, seq, now, verified.digest))
            return IngestResult(keyid, seq, REJECTED, findings=findings)
        with spent.step("store"):
            record = store.store_compact(
                _accepted(verified, key, now, chain_findings, kind=COMPACT, inventory_digest=named[1])
            )
        policy: tuple[Finding, ...] = ()
        if self._compliance is not None:  # nothing changed: the site's open findings as they stand
            found = self._compliance.current().for_site(key.site)
            policy = tuple(Finding(f.rule, f.severity, f.subject, f.message) for f in found)
        return IngestResult(
            keyid, seq, ACCEPTED, log_index=_log_index(record), findings=chain_findings, policy=policy,
            checkpoint=self._checkpoint(),
        )  # fmt: skip

    def _previous_host(
        self, keyid: str, record: StoredLink | ChainHead | None, sequence: int
    ) -> facts.HostFacts | None:
        """The host facts of the key's accepted attestation before `sequence`: remembered, else read from it
        (its envelope is read only then: after a restart, or when another collector stored it)."""
        if record is None or record.sequence >= sequence:
            return None
        remembered = self._last_host.get(keyid)
        if remembered is not None and remembered[0] == record.sequence:
            return remembered[1]
        stored = self._store.get_attestation(keyid, record.sequence)
        if stored is not None and stored.kind == COMPACT:  # it repeats the key's latest full inventory: compare that
            full = self._store.latest_full(keyid)
            if full is None or full.sequence >= sequence:
                return None
            if remembered is not None and remembered[0] == full.sequence:
                return remembered[1]
            stored = self._store.get_attestation(keyid, full.sequence)
        return _stored_host(stored) if stored is not None else None

    def _crossnode_context(
        self, node_id: str, devices: list, previous_devices: list[DeviceRecord]
    ) -> crossnode.CrossnodeContext:
        store = self._store
        uuids = crossnode.device_uuids(devices)
        previous = frozenset(d.uuid for d in previous_devices if d.uuid)
        states = store.gpu_states(set(uuids) | previous)
        elsewhere: dict[str, tuple[crossnode.Sighting, ...]] = {}
        other_devices: dict[str, set[str]] = {}
        for uuid in uuids:
            state = states.get(uuid)
            if state is None or state.node_id == node_id or state.decommissioned_at is not None:
                continue
            if state.node_id not in other_devices:
                other_devices[state.node_id] = {d.uuid for d in store.node_devices(state.node_id)}
            if uuid in other_devices[state.node_id]:
                elsewhere[uuid] = (crossnode.Sighting(state.node_id, state.country),)
        return crossnode.CrossnodeContext(
            previous_uuids=previous,
            current_elsewhere=elsewhere,
            last_country={uuid: states[uuid].country for uuid in uuids if uuid in states},
            decommissioned=frozenset(u for u, s in states.items() if s.decommissioned_at is not None),
        )

    def _public_key(self, key: NodeKey) -> verify.Ed25519PublicKey:
        cache_key = (key.keyid, key.public_key_pem)
        public = self._public_keys.get(cache_key)
        if public is None:
            try:
                public = verify.public_key_from_pem(key.public_key_pem.encode())
            except ValueError as err:
                raise SignatureError(f"enrolled key {key.keyid} cannot be used: {err}") from err
            self._public_keys[cache_key] = public
        return public

    @contextmanager
    def _key_lock(self, keyid: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault(keyid, threading.Lock())
        with lock:
            yield


def _stored_host(record: AttestationRecord) -> facts.HostFacts | None:
    """The host facts of a stored attestation, read from its envelope (already loaded for the chain step: no
    extra query). None when they cannot be read (stored by a lenient older version): then nothing is compared."""
    try:
        payload = json.loads(dsse.b64decode(json.loads(record.envelope)["payload"]))
        return facts.host(payload["predicate"])
    except (ValueError, KeyError, TypeError, RecursionError, facts.MalformedFactError):
        return None


def _accepted(
    verified: verify.VerifiedStatement, key: NodeKey, now: datetime, findings: tuple[Finding, ...], **fields: Any
) -> AttestationRecord:
    """The record of an accepted statement; `fields`: what only one kind carries (devices, or kind and reference)."""
    return AttestationRecord(
        keyid=key.keyid,
        sequence=verified.sequence,
        digest=verified.digest,
        envelope=verified.envelope_bytes,
        node_id=key.node_id,
        site=key.site,
        timestamp=verified.signed_at,
        received_at=now,
        previous=verified.previous,
        findings=_tagged(findings, key.keyid, verified.sequence, now, verified.digest),
        status=ACCEPTED,
        **fields,
    )


def _link(record: StoredLink | None) -> chain.Link | None:
    return chain.Link(record.sequence, record.digest, record.previous) if record else None


def _link_at_sequence(record: AttestationRecord | None, verified: verify.VerifiedStatement) -> chain.Link | None:
    """The record stored at the incoming sequence, with its payload digest (to tell a replay from an
    equivocation). The same bytes have the same payload; only other bytes are read (a rare path)."""
    if record is None:
        return None
    if record.digest == verified.digest:
        payload_digest = verified.payload_digest
    else:
        payload_digest = verify.stored_payload_digest(record.envelope)
    return chain.Link(record.sequence, record.digest, record.previous, payload_digest)


def _not_before(enrolled_at: datetime, backdate: timedelta) -> datetime:
    try:
        return enrolled_at - backdate
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def _log_index(record: AttestationRecord) -> int:
    assert record.log_index is not None, "the store returned an accepted attestation without a log index"
    return record.log_index


def _replay(stored: AttestationRecord) -> IngestResult:
    findings = tuple(Finding(f.rule_id, f.severity, f.subject, f.message) for f in stored.findings)
    return IngestResult(
        stored.keyid,
        stored.sequence,
        stored.status,
        log_index=_log_index(stored) if stored.status == ACCEPTED else None,
        duplicate=True,
        findings=findings,
    )


def _tagged(findings: tuple[Finding, ...], keyid: str, sequence: int, now: datetime, digest: str) -> list[Finding]:
    return [replace(f, keyid=keyid, sequence=sequence, created_at=now, digest=digest) for f in findings]
