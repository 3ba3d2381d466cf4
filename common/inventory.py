"""The node inventory (docs/formats.md): each device with its accounting, the PCI cross-check, the totals. The agent
builds its predicate with it (`agent.snapshot`); the collector recomputes a signed predicate with the same code.

Pure: takes a backend's devices, the PCI functions, the catalogue and the rules; returns a dict
of integers and strings only. A fact a device did not report is absent (and named in `not_reported`), never null.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from fractions import Fraction
from typing import Any

from gpucensus.common.accounting import BASIS_UNKNOWN, Accounting, Rules, account_device, classify
from gpucensus.common.catalogue import Catalogue
from gpucensus.common.devices import STATUS_INCOMPLETE, STATUS_OK, GpuDevice, PciFunction

PCI_MATCHED = "matched"
PCI_NOT_IN_NVML = "not-in-nvml"
# The figures a verifier recomputes and compares with the agent's claims (the collector's ingest, the auditor).
ACCOUNTING_FIELDS = ("model", "basis", "tpp", "die_area_mm2", "pd_milli", "eccn", "h100e_milli")
TOTALS_FIELDS = ("gpus", "tpp", "h100e_milli", "unaccounted", "by_eccn")
_FACTS = (
    "uuid",
    "serial",
    "name",
    "memory_total_bytes",
    "architecture",
    "cuda_compute_capability",
    "sm_count",
    "cuda_core_count",
    "max_sm_clock_mhz",
    "memory_bus_width_bits",
    "max_memory_clock_mhz",
    "mig_mode",
    "board_part_number",
    "vbios_version",
)


def decimal_text(value: Fraction | None) -> str:
    """An exact decimal string for a die area ('814', '608.5'); '' when unknown."""
    if value is None:
        return ""
    if value.denominator == 1:
        return str(value.numerator)
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return text


def _accounting_fields(acc: Accounting) -> dict[str, Any]:
    out: dict[str, Any] = {"model": acc.model, "basis": acc.basis, "review": acc.review, "eccn": acc.eccn}
    if acc.tpp is not None:
        out["tpp"] = acc.tpp
        out["h100e_milli"] = acc.h100e_milli
    if acc.die_area_mm2 is not None:
        out["die_area_mm2"] = decimal_text(acc.die_area_mm2)
        out["pd_milli"] = acc.pd_milli
    if acc.dram_bandwidth_gbs is not None:  # absent in statements of agents before issue 11
        out["dram_bandwidth_gbs"] = acc.dram_bandwidth_gbs
        out["bandwidth_basis"] = acc.bandwidth_basis
    return out


Account = Callable[[GpuDevice], Accounting]  # a device's figures: `account_device`, or an `AccountingCache`


def device_entry(
    device: GpuDevice, catalogue: Catalogue, rules: Rules, account: Account | None = None
) -> dict[str, Any]:
    """The predicate entry of one device. `account`: the same figures as `account_device` with this catalogue and
    these rules, e.g. memoised (`accounting.AccountingCache`)."""
    acc = account(device) if account is not None else account_device(device, catalogue, rules)
    entry: dict[str, Any] = {"index": device.index}
    for name in _FACTS:
        value = getattr(device, name)
        if value is not None:
            entry[name] = value
    pci = {
        k: v
        for k, v in (
            ("bus_id", device.pci_bus_id),
            ("device_id", device.pci_device_id),
            ("subsystem_id", device.pci_subsystem_id),
        )
        if v is not None
    }
    entry["pci"] = pci
    entry["mig_instances"] = [asdict(m) for m in device.mig_instances]
    status, error = device.status, device.error
    if status == STATUS_OK and acc.basis == BASIS_UNKNOWN:
        status, error = STATUS_INCOMPLETE, acc.review
    entry.update(status=status, error=error, not_reported=sorted(set(device.not_reported)))
    entry.update(_accounting_fields(acc))
    return entry


def pci_entries(
    functions: list[PciFunction],
    devices: list[GpuDevice],
    catalogue: Catalogue,
    rules: Rules,
    account: Account | None = None,
) -> list[dict[str, Any]]:
    """Each NVIDIA PCI function beside the NVML device on the same bus id; one NVML does not report is flagged."""
    entries = []
    for function in functions:
        match = next((d for d in devices if same_bus_id(d.pci_bus_id, function.bus_id)), None)
        entry: dict[str, Any] = {
            "bus_id": function.bus_id,
            "device_id": function.device_id,
            "class": function.class_code,
        }
        if function.subsystem_id:
            entry["subsystem_id"] = function.subsystem_id
        if match is not None:
            entry.update(nvml_index=match.index, status=PCI_MATCHED)
        else:
            hidden = GpuDevice(index=-1, pci_device_id=function.device_id, pci_bus_id=function.bus_id)
            entry["status"] = PCI_NOT_IN_NVML
            acc = account(hidden) if account is not None else account_device(hidden, catalogue, rules)
            entry.update(_accounting_fields(acc))
        entries.append(entry)
    return entries


def totals(devices: list[dict[str, Any]], pci: list[dict[str, Any]]) -> dict[str, Any]:
    """GPU count and TPP over NVML devices and GPUs seen only on the PCI bus; unknown TPP is `unaccounted`."""
    counted = devices + [p for p in pci if p["status"] == PCI_NOT_IN_NVML]
    by_eccn: dict[str, dict[str, int]] = {}
    tpp = unaccounted = 0
    for item in counted:
        if "tpp" not in item:
            unaccounted += 1
            continue
        tpp += item["tpp"]
        bucket = by_eccn.setdefault(item["eccn"], {"gpus": 0, "tpp": 0})
        bucket["gpus"] += 1
        bucket["tpp"] += item["tpp"]
    return {
        "gpus": len(counted),
        "tpp": tpp,
        "h100e_milli": sum(item.get("h100e_milli", 0) for item in counted),
        "unaccounted": unaccounted,
        "not_in_nvml": len(counted) - len(devices),
        "by_eccn": dict(sorted(by_eccn.items())),
    }


def hypothetical(tpp: int, die_area_mm2: Fraction | None, datacenter: bool, rules: Rules) -> dict[str, Any]:
    """`classify` output for a chip that exists only on paper."""
    c = classify(tpp, die_area_mm2, datacenter, rules)
    return {
        "tpp": c.tpp,
        "die_area_mm2": float(c.die_area_mm2) if c.die_area_mm2 is not None else None,
        "performance_density": round(c.pd_milli / 1000, 3) if c.pd_milli is not None else None,
        "eccn": c.eccn,
        "h100e": round(c.h100e_milli / 1000, 3),
        "datacenter": datacenter,
        "review": c.review,
    }


def same_bus_id(nvml_bus_id: str | None, sysfs_bus_id: str) -> bool:
    """NVML says '00000000:18:00.0' (32-bit domain), sysfs '0000:18:00.0' (16-bit domain)."""
    if not nvml_bus_id:
        return False
    try:
        n_domain, n_rest = nvml_bus_id.lower().split(":", 1)
        s_domain, s_rest = sysfs_bus_id.lower().split(":", 1)
        return int(n_domain, 16) == int(s_domain, 16) and n_rest == s_rest
    except ValueError:
        return False
