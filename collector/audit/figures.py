"""The auditor's recomputation: every figure of a statement rebuilt from its signed facts with this tool's
catalogue, by the same pure functions the agent and the collector use (`common.inventory`), and compared with
what the agent claimed. Kept apart from the collector's ingest step so the auditor's install needs no store
driver; the facts are read by the same checked readers (`collector.ingest.facts`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpucensus.collector.ingest import facts as read_facts
from gpucensus.common import inventory
from gpucensus.common.accounting import Rules
from gpucensus.common.catalogue import Catalogue
from gpucensus.common.inventory import ACCOUNTING_FIELDS, TOTALS_FIELDS


@dataclass(frozen=True)
class Figures:
    differences: tuple[str, ...]  # "<subject>: <field> agent <claimed> auditor <ours>", one per field
    totals: dict[str, Any]  # the recomputed totals (gpus, tpp, unaccounted, ...)


def _differ(subject: str, claimed: Any, ours: Mapping[str, Any], names: tuple[str, ...]) -> list[str]:
    claimed = claimed if isinstance(claimed, Mapping) else {}
    return [f"{subject}: {n} agent {claimed.get(n)!r} auditor {ours.get(n)!r}" for n in names
            if claimed.get(n) != ours.get(n)]  # fmt: skip


def recompute_figures(predicate: Mapping[str, Any], catalogue: Catalogue, rules: Rules) -> Figures:
    """`MalformedFactError` names a fact that cannot be used."""
    raw_devices, facts = read_facts.devices(predicate)
    ours = [inventory.device_entry(f, catalogue, rules) for f in facts]
    pci = inventory.pci_entries(read_facts.pci_functions(predicate), facts, catalogue, rules)
    differences: list[str] = []
    for raw, fact, entry in zip(raw_devices, facts, ours, strict=True):
        subject = f"gpu {fact.uuid}" if fact.uuid else f"device {fact.index}"
        differences += _differ(subject, raw, entry, ACCOUNTING_FIELDS)
    totals = inventory.totals(ours, pci)
    differences += _differ("totals", predicate.get("totals"), totals, TOTALS_FIELDS)
    return Figures(tuple(differences), totals)
