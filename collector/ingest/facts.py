"""Reading the facts of a signed predicate: every value is hostile until its type and range are checked.

A statement that passed `check_statement` has the right top-level shape; what its devices and PCI functions
carry is whatever the signer put there. Each fact recompute reads is checked here (integers that are not bools,
non-negative and bounded; hex PCI ids; strings of bounded length without control characters; lists of bounded
length; nested objects of the right shape) and a bad one raises `MalformedFactError` naming the field, e.g.
`devices[3].pci.device_id: not a hex PCI id ('zz')`. Facts the agent did not report are absent (None), never
an error; keys recompute does not read are ignored.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from agent.catalogue import PCI_DEVICE_ID, PCI_SUBSYSTEM_ID
from agent.devices import STATUS_INCOMPLETE, STATUS_LOST, STATUS_OK, GpuDevice, PciFunction
from collector.ingest.errors import MalformedFactError

MAX_ITEMS = 65_536  # devices or PCI functions in one predicate: far beyond any node, far below a memory problem
MAX_INDEX = 65_535  # an NVML device index
MAX_FACT = 2**53 - 1  # the JCS integer range; figures derived beyond what a store holds are a finding, not an error
MAX_TEXT = 256  # a name, UUID, serial, bus id, version ...
MAX_ERROR_TEXT = 1024  # the agent's description of a device error
STATUSES = (STATUS_OK, STATUS_LOST, STATUS_INCOMPLETE)
_TEXT_FACTS = ("uuid", "serial", "name", "architecture", "cuda_compute_capability", "mig_mode")
_COUNT_FACTS = ("memory_total_bytes", "sm_count", "cuda_core_count", "max_sm_clock_mhz")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _objects(value: Any, where: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        raise MalformedFactError(where, f"must be a list, got {type(value).__name__}")
    if len(value) > MAX_ITEMS:
        raise MalformedFactError(where, f"{len(value)} entries, at most {MAX_ITEMS}")
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise MalformedFactError(f"{where}[{i}]", f"must be an object, got {type(item).__name__}")
    return value


def integer(raw: Mapping[str, Any], key: str, where: str, maximum: int = MAX_FACT) -> int | None:
    """An optional non-negative integer fact (not a bool), at most `maximum`."""
    value = raw.get(key)
    if value is None and key not in raw:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedFactError(f"{where}.{key}", f"must be an integer, got {_show(value)}")
    if not 0 <= value <= maximum:
        raise MalformedFactError(f"{where}.{key}", f"must be between 0 and {maximum}, got {value}")
    return value


def text(raw: Mapping[str, Any], key: str, where: str, limit: int = MAX_TEXT) -> str | None:
    """An optional string fact: at most `limit` characters, no control characters or lone surrogates."""
    value = raw.get(key)
    if value is None and key not in raw:
        return None
    if not isinstance(value, str):
        raise MalformedFactError(f"{where}.{key}", f"must be a string, got {_show(value)}")
    if len(value) > limit:
        raise MalformedFactError(f"{where}.{key}", f"longer than {limit} characters")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise MalformedFactError(f"{where}.{key}", f"contains control characters: {_show(value)}")
    return value


def hex_id(raw: Mapping[str, Any], key: str, where: str, pattern: Any = PCI_DEVICE_ID) -> str | None:
    value = text(raw, key, where)
    if value is not None and not pattern.fullmatch(value):
        raise MalformedFactError(f"{where}.{key}", f"not a hex PCI id ({_show(value)})")
    return value


def _object(raw: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise MalformedFactError(f"{where}.{key}", f"must be an object, got {type(value).__name__}")
    return value


def device(raw: Mapping[str, Any], where: str) -> GpuDevice:
    """The facts of one predicate device (what NVML reported), ignoring every figure the agent computed."""
    index = integer(raw, "index", where, MAX_INDEX)
    if index is None:
        raise MalformedFactError(f"{where}.index", "missing")
    pci = _object(raw, "pci", where)
    status = text(raw, "status", where) or STATUS_OK
    if status not in STATUSES:
        raise MalformedFactError(f"{where}.status", f"must be one of {', '.join(STATUSES)}, got {_show(status)}")
    facts: dict[str, Any] = {name: text(raw, name, where) for name in _TEXT_FACTS}
    facts.update({name: integer(raw, name, where) for name in _COUNT_FACTS})
    return GpuDevice(
        index=index,
        pci_bus_id=text(pci, "bus_id", f"{where}.pci"),
        pci_device_id=hex_id(pci, "device_id", f"{where}.pci"),
        pci_subsystem_id=hex_id(pci, "subsystem_id", f"{where}.pci", PCI_SUBSYSTEM_ID),
        status=status,
        error=text(raw, "error", where, MAX_ERROR_TEXT) or "",
        **facts,
    )


def pci_function(raw: Mapping[str, Any], where: str) -> PciFunction:
    """One NVIDIA function the agent found on the PCI bus: bus id and device id are required."""
    bus_id, device_id = text(raw, "bus_id", where), hex_id(raw, "device_id", where)
    if not bus_id:
        raise MalformedFactError(f"{where}.bus_id", "missing or empty")
    if not device_id:
        raise MalformedFactError(f"{where}.device_id", "missing")
    class_code = hex_id(raw, "class", where, PCI_SUBSYSTEM_ID) or ""
    return PciFunction(bus_id, device_id, class_code, hex_id(raw, "subsystem_id", where, PCI_SUBSYSTEM_ID))


def devices(predicate: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], list[GpuDevice]]:
    """The predicate's device objects and their facts, in order."""
    raw = _objects(predicate.get("devices", []), "devices")
    return raw, [device(d, f"devices[{i}]") for i, d in enumerate(raw)]


def pci_functions(predicate: Mapping[str, Any]) -> list[PciFunction]:
    raw = _objects(predicate.get("pci_functions", []), "pci_functions")
    return [pci_function(r, f"pci_functions[{i}]") for i, r in enumerate(raw)]
