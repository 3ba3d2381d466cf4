"""Where the dashboard reads compliance from: the ONE module that knows the source.

For the collector's configured pack (`[policy] pack`): the compliance state the collector keeps current at ingest
(`collector/compliance/state.py`): its last evaluation and its open findings, with the time each opened. For any
other pack (`?pack=`), or without a state (a dashboard over a store with no collector running): an evaluation of
the store's current inventory when asked (as `report` does), whose findings carry no opening time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gpucensus.collector.compliance.state import ComplianceState
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.policy import Evaluation, Pack, evaluate, load_pack, parse_scenario
from gpucensus.collector.policy.pack import builtin_names
from gpucensus.collector.policy.result import sort_findings
from gpucensus.collector.store.base import PolicyFinding, Store
from gpucensus.common.accounting import load_rules
from gpucensus.common.catalogue import load_catalogue


@dataclass(frozen=True)
class OpenFinding:
    severity: str
    rule: str
    subject: str
    message: str
    opened_at: datetime | None


@dataclass(frozen=True)
class Compliance:
    pack: Pack
    evaluation: Evaluation
    findings: tuple[OpenFinding, ...]  # violations and warnings: by severity, newest first within one


class ComplianceSource:
    def __init__(
        self, store: Store, default_pack: str, clock: Callable[[], datetime], state: ComplianceState | None = None
    ) -> None:
        self._store = store
        self.default_pack = default_pack
        self._clock = clock
        self._state = state
        self._catalogue, self._rules = load_catalogue(), load_rules()

    def pack_names(self) -> list[str]:
        """The packs one can switch to: the shipped ones, and the configured one if it is a file."""
        names = builtin_names()
        return names if self.default_pack in names else [self.default_pack, *names]

    def pack(self, name: str | None) -> Pack:
        """A pack by name (ConfigError if unknown); only shipped packs and the configured one are offered."""
        chosen = name or self.default_pack
        if chosen not in self.pack_names():
            raise ConfigError(f"unknown pack {chosen!r}")
        return load_pack(chosen)

    def overview(self, pack_name: str | None = None) -> Compliance:
        pack = self.pack(pack_name)
        state = self._state
        if state is not None and state.pack.name == pack.name and state.evaluation is not None:
            findings = tuple(
                OpenFinding(f.severity, f.rule, f.subject, f.message, f.opened_at)
                for f in state.current().findings
                if f.severity != "info"
            )
            return Compliance(state.pack, state.evaluation, findings)
        now = self._clock()
        scenario = parse_scenario(self._store.inventory(now), "live inventory", now.date())
        ev = evaluate(scenario, pack, self._catalogue, self._rules)
        findings = tuple(
            OpenFinding(f.severity, f.rule, f.subject, f.message, None)
            for f in sort_findings(ev.findings)
            if f.severity != "info"
        )
        return Compliance(pack, ev, findings)

    def finding_history(self, pack: Pack, limit: int = 50) -> list[PolicyFinding]:
        """The newest `limit` findings recorded under `pack` by the collector's continuous evaluation, opened and
        cleared (empty for a pack no collector keeps state under)."""
        recorded = self._store.policy_findings(pack.name)
        return sorted(recorded, key=lambda f: max(t for t in (f.opened_at, f.cleared_at) if t), reverse=True)[:limit]

    def evaluation_context(self) -> tuple[Any, Any]:
        """The catalogue and 3A090 rules (for history evaluations)."""
        return self._catalogue, self._rules
