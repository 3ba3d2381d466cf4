"""The collector's compliance state under its pack, kept current at ingest: what the Ack, the metrics and the
dashboard read (API in docs/architecture.md).

- `refresh()` evaluates the store's whole inventory exactly as `gpucensus-collector report` does (same store read,
  same scenario, same date). It runs at start-up, when the registry version moves (a CLI write or another
  collector's), when the UTC date changes (the rules are dated), and every `[policy] refresh_seconds` (a safety
  net: a note lost when a collector stopped between storing an attestation and noting it).
- `accepted(node, site, devices, previous, decommissioned)` is the ingest hook: when the attestation changed the
  inventory (the node's devices differ from its previous ones, or a decommissioned GPU is reported again), only
  that site is read again from the store, and only the sites of its country and entity are evaluated (from the
  inventory kept since the last full read) and merged (`collector.compliance.scope`, equal to a full evaluation).
  An unchanged inventory costs one comparison, after a restart too.
- An attestation that changed a site's inventory is noted in the store (`inventory_changes`); every collector
  sharing the database reads the notes every second and re-evaluates the sites others changed, incrementally.
  Notes are read back `NOTES_OVERLAP` (collectors' clocks must agree within it), each taken in once.
- Every evaluation is reconciled with the store's `policy_findings`: findings open and clear with times there.

One lock serializes evaluations; `current()` returns an immutable snapshot and never waits for one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from gpucensus.collector.compliance.scope import Scope, merge, partial_scenario, scope_of
from gpucensus.collector.location.status import UNKNOWN_SUFFIX, count_in_unknown, implausible_nodes
from gpucensus.collector.policy import Evaluation, Pack, Scenario, evaluate, parse_scenario
from gpucensus.collector.store.base import DeviceRecord, PolicyFinding, Store
from gpucensus.common.accounting import Rules
from gpucensus.common.catalogue import Catalogue

log = logging.getLogger(__name__)

_RANK = {"violation": 3, "warning": 2, "info": 1}
CHECK_SECONDS = 1.0  # how often the watcher compares the registry version and the date, and reads change notes
# change notes are read this far back (other collectors' clocks, transactions committing late), each once
NOTES_OVERLAP = timedelta(seconds=60)
TOO_MANY_NOTES = 50  # more changed sites than this at once: one full re-evaluation instead


@dataclass(frozen=True)
class OpenFinding:
    rule: str
    severity: str
    subject: str
    message: str
    opened_at: datetime


@dataclass(frozen=True)
class SubjectStatus:
    kind: str  # country | entity | site
    id: str
    status: str  # compliant | warning | violation
    tpp: int  # every device of established TPP (counted class or not)
    counted_tpp: int  # devices of the classes the pack counts
    h100e_milli: int  # tpp in thousandths of the pack's H100 reference
    tier: int | None = None  # countries and sites
    allocation_tpp: int | None = None  # countries with an allocation (Tier 2)
    allocation_used_tpp: int | None = None
    gpus: int | None = None  # sites
    unknown: int | None = None  # sites: devices of unknown TPP (never counted as zero)
    country: str = ""  # sites
    entity: str = ""  # sites


@dataclass(frozen=True)
class Snapshot:
    pack: dict[str, Any]
    as_of: date | None
    evaluated_at: datetime | None
    countries: tuple[SubjectStatus, ...] = ()
    entities: tuple[SubjectStatus, ...] = ()
    sites: tuple[SubjectStatus, ...] = ()
    findings: tuple[OpenFinding, ...] = ()
    _by_site: dict[str, tuple[OpenFinding, ...]] = field(default_factory=dict, repr=False, compare=False)

    def for_site(self, site: str) -> tuple[OpenFinding, ...]:
        """The open findings that apply to `site`: about it, its country and its entity (looked up, not searched:
        every accepted envelope asks)."""
        found = self._by_site.get(site)
        if found is None:  # a site the last evaluation did not know (registered since)
            return tuple(f for f in self.findings if f.subject == f"site:{site}")
        return found


class ComplianceState:
    def __init__(
        self,
        store: Store,
        pack: Pack,
        catalogue: Catalogue,
        rules: Rules,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        refresh_seconds: float = 3600,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.pack = pack
        self._catalogue = catalogue
        self._rules = rules
        self._clock = clock
        self._refresh_seconds = refresh_seconds
        self._monotonic = monotonic
        self._lock = threading.RLock()  # refresh() may run inside site_changed()
        self._snapshot = Snapshot(pack.summary(), None, None)
        self.evaluation: Evaluation | None = None
        self._scenario = Scenario(date.min, (), ())  # the inventory evaluated last, kept to re-read one site only
        self._registry: list[tuple[str, str, str]] = []  # (site, country, entity) as last read
        self._version = -1
        self._refreshed_at = float("-inf")
        self._notes_seen: dict[int, datetime] = {}  # inventory change notes taken in (own ones too) -> when
        # the pack's [location] implausible_as_unknown: the nodes whose GPUs the last full evaluation placed in
        # "unknown" (their verdicts are compared at every check; while any, every change is a full evaluation)
        self._located = pack.location_implausible_as_unknown
        self._implausible: frozenset[str] = frozenset()

    # --- reading --------------------------------------------------------------------------------------------
    def current(self) -> Snapshot:
        return self._snapshot

    def history(self, subject: str | None = None) -> list[PolicyFinding]:
        return self._store.policy_findings(self.pack.name, subject=subject)

    # --- keeping it current ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Evaluate the whole inventory (as `report` does) and record what opened and cleared."""
        with self._lock:
            version = self._store.registry_version()
            now = self._clock()
            self._new_notes(now)  # taken in by this read (a note made after it is read again at the next check)
            scenario = parse_scenario(self._store.inventory(now), "live inventory")
            self._settle(self._evaluate_located(scenario, now), None, now)
            self._scenario = scenario
            self._registry = [(s.id, s.country, s.entity) for s in scenario.sites]
            self._version = version
            self._refreshed_at = self._monotonic()

    def accepted(
        self,
        node_id: str,
        site: str,
        devices: Sequence[DeviceRecord],
        previous: Sequence[DeviceRecord] = (),
        decommissioned: Iterable[str] = (),
    ) -> tuple[OpenFinding, ...]:
        """The ingest hook, after the attestation is stored: re-evaluate what it touches if it changed the
        inventory, i.e. its devices differ from the node's `previous` ones (its latest stored attestation before
        this one) or it reports a GPU that was `decommissioned` (counted again once reported after it); the
        site's open findings for its Ack. After a restart, nodes whose devices did not change cost nothing.

        Never raises: the attestation is stored already, so a failed evaluation (the store unreachable for a
        moment) is logged and the watcher re-evaluates everything within a second; the Ack then carries the
        findings open before."""
        reported = {d.uuid for d in devices if d.uuid}
        changed = _fingerprint(devices) != _fingerprint(previous) or not reported.isdisjoint(decommissioned)
        if changed or self.evaluation is None:
            try:
                with self._lock:
                    self.site_changed(site)
                    now = self._clock()
                    self._notes_seen[self._store.note_inventory_change(site, now)] = now  # for other collectors
            except Exception as err:
                log.warning("compliance: cannot re-evaluate site %s (everything is re-evaluated next): %s", site, err)
                self._version = -1  # check() refreshes
        return self._snapshot.for_site(site)

    def site_changed(self, site: str) -> None:
        """Re-evaluate the sites of `site`'s country and entity and merge them into the state."""
        with self._lock:
            if self.evaluation is None or site not in {s for s, _, _ in self._registry} or self._implausible:
                self.refresh()  # not evaluated yet, a site registered since (the registry moved), or sites split
                return
            now = self._clock()
            fresh = parse_scenario(self._store.inventory(now, [site]), "live inventory")  # this site only
            kept = self._scenario
            if len(fresh.sites) != 1 or (fresh.as_of, fresh.entities) != (kept.as_of, kept.entities):
                self.refresh()  # a new day (every dated rule may move), or the registry moved
                return
            (changed,) = fresh.sites
            scenario = replace(kept, sites=tuple(changed if s.id == site else s for s in kept.sites))
            scope = scope_of(self._registry, [site])
            partial = evaluate(partial_scenario(scenario, scope), self.pack, self._catalogue, self._rules)
            self._settle(merge(self.evaluation, partial, scope), scope, now)
            self._scenario = scenario

    def check(self) -> bool:
        """Refresh when the registry version moved, the date changed or the refresh period passed; else
        re-evaluate the sites other collectors noted as changed. True if anything was re-evaluated."""
        due = self._monotonic() - self._refreshed_at >= self._refresh_seconds > 0
        moved = self._store.registry_version() != self._version
        now = self._clock()
        new_day = self.evaluation is not None and now.astimezone(UTC).date() != self.evaluation.as_of
        relocated = self._located and implausible_nodes(self._store.node_locations()) != self._implausible
        if due or moved or new_day or relocated or self.evaluation is None:
            self.refresh()
            return True
        with self._lock:
            sites = self._new_notes(now)
            try:
                if len(sites) > TOO_MANY_NOTES:
                    self.refresh()
                else:
                    for site in sorted(sites):
                        self.site_changed(site)
            except Exception:
                self._version = -1  # the notes are taken in: re-evaluate everything at the next check instead
                raise
        return bool(sites)

    def watch(self, stop: threading.Event, every: float = CHECK_SECONDS) -> threading.Thread:
        """A daemon thread calling `check()` every `every` seconds until `stop` is set (errors are logged)."""

        def loop() -> None:
            failing = False
            while not stop.wait(every):
                try:
                    self.check()
                except Exception as err:  # a store outage must not end the watcher: it tries again
                    if not failing:
                        log.warning("compliance: cannot re-evaluate (will retry): %s", err)
                    failing = True
                else:
                    failing = False

        thread = threading.Thread(target=loop, name="compliance-watch", daemon=True)
        thread.start()
        return thread

    # --- internals ------------------------------------------------------------------------------------------
    def _evaluate_located(self, scenario: Scenario, now: datetime) -> Evaluation:
        """`scenario` evaluated as `report` does, with the pack's [location] implausible_as_unknown: the GPUs of
        implausibly located nodes counted in "unknown". Lock held."""
        self._implausible = implausible_nodes(self._store.node_locations()) if self._located else frozenset()
        if not self._implausible:
            return evaluate(scenario, self.pack, self._catalogue, self._rules)
        split = parse_scenario(self._store.location_inventory(now, self._implausible, UNKNOWN_SUFFIX), "live inventory")
        return count_in_unknown(split, lambda s: evaluate(s, self.pack, self._catalogue, self._rules))

    def _new_notes(self, now: datetime) -> set[str]:
        """The sites of the inventory change notes not taken in yet (each note is read for NOTES_OVERLAP). Lock
        held."""
        sites = set()
        for note, site in self._store.inventory_changes(now - NOTES_OVERLAP):
            if note not in self._notes_seen:
                self._notes_seen[note] = now
                sites.add(site)
        for note, seen in list(self._notes_seen.items()):
            if now - seen > 2 * NOTES_OVERLAP:
                del self._notes_seen[note]
        return sites

    def _settle(self, result: Evaluation, scope: Scope | None, now: datetime) -> None:
        """Record `result`'s findings (those in `scope`, or all) and publish the new snapshot. Lock held."""
        wanted = [PolicyFinding(f.rule, f.severity, f.subject, f.message) for f in result.findings]
        subjects = None if scope is None else _settled_subjects(result, scope)
        opened, cleared = self._store.reconcile_policy_findings(self.pack.name, subjects, wanted, now)
        for f in opened:
            log.info("compliance: %s %s opened on %s: %s", f.severity, f.rule_id, f.subject, f.message)
        for f in cleared:
            log.info("compliance: %s %s cleared on %s", f.severity, f.rule_id, f.subject)
        self.evaluation = result
        self._snapshot = _snapshot(result, self._store.policy_findings(self.pack.name, open_only=True), now)


def _settled_subjects(result: Evaluation, scope: Scope) -> set[str]:
    policy = {f.subject for f in result.findings if f.subject.startswith("policy:")}
    return set(scope.subjects) | policy | {f"policy:{result.policy['name']}"}


def _fingerprint(devices: Sequence[DeviceRecord]) -> list[tuple[Any, ...]]:
    """What of a node's devices the evaluation reads (per device: the collector's figures and status)."""
    return sorted((d.uuid, d.model, d.basis, d.tpp, d.die_area_mm2, d.eccn, d.datacenter, d.status) for d in devices)


def _snapshot(result: Evaluation, open_rows: Iterable[PolicyFinding], now: datetime) -> Snapshot:
    opened_at: dict[tuple[str, ...], list[datetime]] = defaultdict(list)
    for row in open_rows:
        opened_at[row.identity].append(row.opened_at or now)
    findings = []
    for f in result.findings:
        times = opened_at.get(PolicyFinding(f.rule, f.severity, f.subject, f.message).identity)
        findings.append(OpenFinding(f.rule, f.severity, f.subject, f.message, times.pop(0) if times else now))
    findings.sort(key=lambda f: (-_RANK[f.severity], -f.opened_at.timestamp(), f.rule, f.subject, f.message))
    ref = result.h100_reference_tpp
    all_tpp: dict[tuple[str, str], int] = defaultdict(int)
    site_of_entity: dict[str, list[str]] = defaultdict(list)
    sites = []
    for s in result.sites:
        tpp = sum(d.total_tpp for d in s.devices)
        for key in (("country", s.country), ("entity", s.entity)):
            all_tpp[key] += tpp
        site_of_entity[s.entity].append(s.id)
        sites.append(SubjectStatus("site", s.id, s.status, tpp, s.tpp, tpp * 1000 // ref, s.tier, gpus=s.gpus,
                                   unknown=s.unknown, country=s.country, entity=s.entity))  # fmt: skip
    countries = tuple(
        SubjectStatus("country", c.country, c.status, all_tpp[("country", c.country)], c.tpp,
                      all_tpp[("country", c.country)] * 1000 // ref, c.tier, c.allocation_tpp, c.allocation_used_tpp)
        for c in result.countries
    )  # fmt: skip
    entities = tuple(
        SubjectStatus("entity", e.id, e.status, all_tpp[("entity", e.id)], e.tpp,
                      all_tpp[("entity", e.id)] * 1000 // ref)
        for e in result.entities
    )  # fmt: skip
    by_subject: dict[str, list[int]] = defaultdict(list)  # subject -> positions in `findings`
    for position, f in enumerate(findings):
        by_subject[f.subject].append(position)
    by_site = {}
    for s in result.sites:
        subjects = (f"site:{s.id}", f"country:{s.country}", f"entity:{s.entity}")
        by_site[s.id] = tuple(findings[i] for i in sorted(i for key in subjects for i in by_subject.get(key, ())))
    return Snapshot(result.policy, result.as_of, now, countries, entities, tuple(sites), tuple(findings), by_site)


__all__ = ["ComplianceState", "OpenFinding", "Snapshot", "SubjectStatus"]
