"""Recompute step: every figure of an attestation from its reported facts, with the collector's catalogue.

The agent's figures are claims; the collector rebuilds each device entry, the PCI cross-check (which PCI GPU
NVML did not report) and the totals with the same pure functions the agent uses (`common.inventory`), from the
facts alone. A disagreement is a finding; the collector's figures are the ones stored. Devices whose figures
need a person (derived from NVML facts, or unknown) and devices lost or incomplete are findings too.
Every fact is read through `collector.ingest.facts`, which refuses a malformed one with `MalformedFactError`
(INVALID_ARGUMENT, the field named) before any figure is computed. Pure: catalogue and rules are passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpucensus.collector.ingest import facts as read_facts
from gpucensus.collector.ingest.model import INFO, WARNING, Finding
from gpucensus.collector.store.base import DeviceRecord
from gpucensus.common import inventory
from gpucensus.common.accounting import ECCN_A, ECCN_B, Rules
from gpucensus.common.catalogue import Catalogue
from gpucensus.common.devices import STATUS_INCOMPLETE, STATUS_OK
from gpucensus.common.inventory import ACCOUNTING_FIELDS, TOTALS_FIELDS

# Compared only when the agent states them: agents before issue 11 do not, and their statements stay valid.
OPTIONAL_FIELDS = ("dram_bandwidth_gbs", "bandwidth_basis")
HIDDEN_ERROR = "on the PCI bus but not reported by NVML"
FIGURES = ("tpp", "pd_milli", "h100e_milli")
INT64_MAX = 2**63 - 1  # the stores' integer columns: a figure beyond it is absurd facts, never a crash
SHOWN_CLAIM = 80  # characters of an agent's claimed value quoted in a finding


def _out_of_range(entry: Mapping[str, Any]) -> bool:
    return any(isinstance(entry.get(n), int) and abs(entry[n]) > INT64_MAX for n in FIGURES)


@dataclass(frozen=True)
class Recomputed:
    devices: tuple[DeviceRecord, ...]  # NVML devices, then GPUs seen only on the PCI bus
    pci_functions: tuple[dict[str, Any], ...]  # with the collector's own matched / not-in-nvml status
    findings: tuple[Finding, ...]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_CLAIM else text[: SHOWN_CLAIM - 3] + "..."


def _differences(claimed: Mapping[str, Any], ours: Mapping[str, Any], names: tuple[str, ...]) -> list[str]:
    return [
        f"{n} agent {_shown(claimed.get(n))} collector {_shown(ours.get(n))}"
        for n in names
        if claimed.get(n) != ours.get(n)
    ]


def _record(entry: Mapping[str, Any], uuid: str, status: str, error: str, catalogue: Catalogue) -> DeviceRecord:
    known = catalogue.by_id(entry["model"]) if entry.get("model") else None
    return DeviceRecord(
        uuid=uuid,
        index=entry.get("index", -1),
        name=entry.get("name", ""),
        bus_id=entry.get("pci", {}).get("bus_id", "") if "pci" in entry else entry.get("bus_id", ""),
        status=status,
        error=error,
        model=entry.get("model", ""),
        basis=entry.get("basis", "unknown"),
        tpp=entry.get("tpp"),
        die_area_mm2=entry.get("die_area_mm2"),
        pd_milli=entry.get("pd_milli"),
        eccn=entry["eccn"] if entry.get("eccn") in (ECCN_A, ECCN_B) else "",
        h100e_milli=entry.get("h100e_milli"),
        datacenter=known.datacenter if known else True,  # an unknown part is assumed a data-centre part
    )


def recompute(
    predicate: Mapping[str, Any], catalogue: Catalogue, rules: Rules, account: inventory.Account | None = None
) -> Recomputed:
    """The collector's figures and findings for a predicate; `MalformedFactError` names a fact it cannot use.
    `account`: `account_device` with this catalogue and these rules, memoised (`accounting.AccountingCache`)."""
    raw_devices, facts = read_facts.devices(predicate)
    functions = read_facts.pci_functions(predicate)
    ours = [inventory.device_entry(f, catalogue, rules, account) for f in facts]
    pci = inventory.pci_entries(functions, facts, catalogue, rules, account)
    findings: list[Finding] = []
    records: list[DeviceRecord] = []
    for raw, fact, entry in zip(raw_devices, facts, ours, strict=True):
        subject = f"gpu:{fact.uuid}" if fact.uuid else f"gpu:index-{fact.index}"
        stated = tuple(n for n in OPTIONAL_FIELDS if n in raw)
        differences = _differences(raw, entry, ACCOUNTING_FIELDS + stated)
        if differences:
            message = "the agent's figures differ from the collector's (the collector's are stored): "
            findings.append(Finding("accounting.mismatch", WARNING, subject, message + "; ".join(differences)))
        if entry.get("review"):
            findings.append(Finding("accounting.review", INFO, subject, entry["review"]))
        if _out_of_range(entry):
            message = (f"device {fact.index}: figures derived from its reported facts are out of range "
                       f"(tpp {entry.get('tpp')}); not counted, flagged for review")  # fmt: skip
            findings.append(Finding("accounting.out-of-range", WARNING, subject, message))
            entry = {**entry, **dict.fromkeys(FIGURES)}
        if entry["status"] != STATUS_OK:
            detail = entry.get("error") or "no detail"
            findings.append(
                Finding(
                    f"device.{entry['status']}", WARNING, subject, f"device {fact.index} is {entry['status']}: {detail}"
                )
            )
        records.append(_record(entry, fact.uuid or "", entry["status"], entry.get("error", ""), catalogue))
    for entry in pci:
        if entry["status"] == inventory.PCI_NOT_IN_NVML:
            records.append(_record(entry, "", STATUS_INCOMPLETE, HIDDEN_ERROR, catalogue))
    claimed_totals = predicate.get("totals") if isinstance(predicate.get("totals"), Mapping) else {}
    differences = _differences(claimed_totals, inventory.totals(ours, pci), TOTALS_FIELDS)
    if differences:
        node = predicate.get("node", {}).get("id", "") if isinstance(predicate.get("node"), Mapping) else ""
        message = "the agent's totals differ from the collector's (the collector's are stored): "
        findings.append(
            Finding("accounting.totals-mismatch", WARNING, f"node:{node}", message + "; ".join(differences))
        )
    return Recomputed(tuple(records), tuple(pci), tuple(findings))
