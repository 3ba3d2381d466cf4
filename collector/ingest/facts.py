"""Reading the facts of a signed predicate: every value is hostile until its type and range are checked.

A statement that passed `check_statement` has the right top-level shape; what its devices and PCI functions
carry is whatever the signer put there. Each fact recompute reads is checked here with the agent's own
definition of a valid fact (`common.devices`: integers that are not bools, non-negative and bounded; hex PCI ids;
strings of bounded length without control characters), lists are bounded and nested objects must be objects.
A bad one raises `MalformedFactError` naming the field, e.g. `devices[3].pci.device_id: not a hex PCI id ('zz')`.
Facts the agent did not report are absent, never an error; keys recompute does not read are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpucensus.collector.ingest.errors import MalformedFactError
from gpucensus.common.devices import (
    COUNT_FACTS,
    MAX_ERROR_TEXT,
    MAX_INDEX,
    PCI_DEVICE_ID,
    PCI_SUBSYSTEM_ID,
    STATUS_OK,
    STATUSES,
    GpuDevice,
    PciFunction,
    hex_problem,
    integer_problem,
    text_problem,
)

MAX_CPUS = 1 << 20  # logical CPUs of one host: far beyond any machine
MAX_MEMORY_BYTES = 1 << 60  # an exbibyte
MAX_BOOT_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z in seconds since the epoch
MAX_BOOT_ID = 64  # a kernel boot id is a 36-character UUID
MAX_ITEMS = 65_536  # devices or PCI functions in one predicate: far beyond any node, far below a memory problem
_TEXT_FACTS = ("uuid", "serial", "name", "architecture", "cuda_compute_capability", "mig_mode")


def _objects(value: Any, where: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        raise MalformedFactError(where, f"must be a list, got {type(value).__name__}")
    if len(value) > MAX_ITEMS:
        raise MalformedFactError(where, f"{len(value)} entries, at most {MAX_ITEMS}")
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise MalformedFactError(f"{where}[{i}]", f"must be an object, got {type(item).__name__}")
    return value


def _checked(raw: Mapping[str, Any], key: str, where: str, check: Any, *limits: Any) -> Any:
    """raw[key] if `check` finds no problem with it; None when absent (not reported)."""
    if key not in raw:
        return None
    problem = check(raw[key], *limits)
    if problem:
        raise MalformedFactError(f"{where}.{key}", problem)
    return raw[key]


def _object(raw: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise MalformedFactError(f"{where}.{key}", f"must be an object, got {type(value).__name__}")
    return value


def device(raw: Mapping[str, Any], where: str) -> GpuDevice:
    """The facts of one predicate device (what NVML reported), ignoring every figure the agent computed."""
    index = _checked(raw, "index", where, integer_problem, MAX_INDEX)
    if index is None:
        raise MalformedFactError(f"{where}.index", "missing")
    pci = _object(raw, "pci", where)
    status = _checked(raw, "status", where, text_problem) or STATUS_OK
    if status not in STATUSES:
        raise MalformedFactError(f"{where}.status", f"must be one of {', '.join(STATUSES)}, got {status!r}")
    facts: dict[str, Any] = {name: _checked(raw, name, where, text_problem) for name in _TEXT_FACTS}
    facts.update({name: _checked(raw, name, where, integer_problem) for name in COUNT_FACTS})
    return GpuDevice(
        index=index,
        pci_bus_id=_checked(pci, "bus_id", f"{where}.pci", text_problem),
        pci_device_id=_checked(pci, "device_id", f"{where}.pci", hex_problem, PCI_DEVICE_ID),
        pci_subsystem_id=_checked(pci, "subsystem_id", f"{where}.pci", hex_problem, PCI_SUBSYSTEM_ID),
        status=status,
        error=_checked(raw, "error", where, text_problem, MAX_ERROR_TEXT) or "",
        **facts,
    )


def pci_function(raw: Mapping[str, Any], where: str) -> PciFunction:
    """One NVIDIA function the agent found on the PCI bus: bus id and device id are required."""
    bus_id = _checked(raw, "bus_id", where, text_problem)
    device_id = _checked(raw, "device_id", where, hex_problem, PCI_DEVICE_ID)
    if not bus_id:
        raise MalformedFactError(f"{where}.bus_id", "missing or empty")
    if not device_id:
        raise MalformedFactError(f"{where}.device_id", "missing")
    class_code = _checked(raw, "class", where, hex_problem, PCI_SUBSYSTEM_ID) or ""
    subsystem = _checked(raw, "subsystem_id", where, hex_problem, PCI_SUBSYSTEM_ID)
    return PciFunction(bus_id, device_id, class_code, subsystem)


def devices(predicate: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], list[GpuDevice]]:
    """The predicate's device objects and their facts, in order."""
    raw = _objects(predicate.get("devices", []), "devices")
    return raw, [device(d, f"devices[{i}]") for i, d in enumerate(raw)]


def pci_functions(predicate: Mapping[str, Any]) -> list[PciFunction]:
    raw = _objects(predicate.get("pci_functions", []), "pci_functions")
    return [pci_function(r, f"pci_functions[{i}]") for i, r in enumerate(raw)]


@dataclass(frozen=True)
class HostFacts:
    """The host facts of a predicate's node section; None when the agent did not report one."""

    cpu_logical: int | None = None
    cpu_physical: int | None = None
    memory_total_bytes: int | None = None
    boot_time: int | None = None  # seconds since the epoch
    boot_id: str = ""

    @property
    def fingerprint(self) -> dict[str, int]:
        """The facts that change only when the machine's hardware does (the ones reported)."""
        values = {"cpu_logical": self.cpu_logical, "cpu_physical": self.cpu_physical}
        values["memory_total_bytes"] = self.memory_total_bytes
        return {name: value for name, value in values.items() if value is not None}


def host(predicate: Mapping[str, Any]) -> HostFacts:
    """The node section's host facts (integers 0..bound, not bools; a bounded boot id string)."""
    node = _object(predicate, "node", "predicate")
    return HostFacts(
        cpu_logical=_checked(node, "cpu_logical", "node", integer_problem, MAX_CPUS),
        cpu_physical=_checked(node, "cpu_physical", "node", integer_problem, MAX_CPUS),
        memory_total_bytes=_checked(node, "memory_total_bytes", "node", integer_problem, MAX_MEMORY_BYTES),
        boot_time=_checked(node, "boot_time", "node", integer_problem, MAX_BOOT_TIME),
        boot_id=_checked(node, "boot_id", "node", text_problem, MAX_BOOT_ID) or "",
    )


MAX_EVIDENCE = 32  # location measurements in one predicate: one per landmark, far more than a deployment has
MAX_EVIDENCE_TEXT = 8192  # one measurement envelope (a landmark's of 16 samples is about 2.5 KiB)


def location_evidence(predicate: Mapping[str, Any]) -> list[str]:
    """The signed location measurements (`location_evidence`: absent in older statements), bounded in count and
    size; what each says is checked by `collector.location.evidence`."""
    raw = predicate.get("location_evidence", [])
    if not isinstance(raw, list):
        raise MalformedFactError("location_evidence", f"must be a list, got {type(raw).__name__}")
    if len(raw) > MAX_EVIDENCE:
        raise MalformedFactError("location_evidence", f"{len(raw)} entries, at most {MAX_EVIDENCE}")
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not 0 < len(item) <= MAX_EVIDENCE_TEXT:
            raise MalformedFactError(
                f"location_evidence[{i}]", f"must be a measurement envelope of 1..{MAX_EVIDENCE_TEXT} characters"
            )
    return raw
