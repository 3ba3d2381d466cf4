"""The node's facts as the backends report them: plain dataclasses, standard library only.

Backends (`agent/backends/*`) produce these; accounting and the snapshot predicate consume them. Facts that a
device did not report are `None` ("not reported"), never a made-up value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

STATUS_OK = "ok"
STATUS_LOST = "lost"  # the device stopped answering (GPU_IS_LOST, UNKNOWN, TIMEOUT ...)
STATUS_INCOMPLETE = "incomplete"  # answered, but a fact TPP needs is missing
STATUSES = (STATUS_OK, STATUS_LOST, STATUS_INCOMPLETE)

# What a valid fact is, for every producer (backends, mock profiles) and for the collector reading a signed one.
PCI_DEVICE_ID = re.compile(r"(0[xX])?[0-9a-fA-F]{1,4}")  # a 16-bit PCI device id: '0x2330', '2330', '0X2330'
PCI_SUBSYSTEM_ID = re.compile(r"(0[xX])?[0-9a-fA-F]{1,8}")  # up to 32 bits: '0x16c110de'
MAX_INDEX = 65_535  # an NVML device index
MAX_COUNT = 2**53 - 1  # the largest integer a signed (JCS) statement carries exactly
MAX_TEXT = 256  # a name, UUID, serial, bus id, version ...
MAX_ERROR_TEXT = 1024  # why a device is lost or incomplete
COUNT_FACTS = ("memory_total_bytes", "sm_count", "cuda_core_count", "max_sm_clock_mhz", "memory_bus_width_bits",
               "max_memory_clock_mhz")  # fmt: skip
HEX_FACTS = {"pci_device_id": PCI_DEVICE_ID, "pci_subsystem_id": PCI_SUBSYSTEM_ID}


_CONTROL_OR_SURROGATE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # Unicode categories Cc and Cs


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def integer_problem(value: Any, maximum: int = MAX_COUNT) -> str:
    """Why `value` is not an integer fact 0..maximum (a bool is not an integer); "" when it is one."""
    if not isinstance(value, int) or isinstance(value, bool):
        return f"must be an integer, got {_shown(value)}"
    if not 0 <= value <= maximum:
        return f"must be between 0 and {maximum}, got {value}"
    return ""


def text_problem(value: Any, limit: int = MAX_TEXT) -> str:
    """Why `value` is not a text fact: at most `limit` characters, no control characters or lone surrogates."""
    if not isinstance(value, str):
        return f"must be a string, got {_shown(value)}"
    if len(value) > limit:
        return f"longer than {limit} characters"
    if _CONTROL_OR_SURROGATE.search(value):
        return f"contains control characters: {_shown(value)}"
    return ""


def hex_problem(value: Any, pattern: re.Pattern[str] = PCI_DEVICE_ID) -> str:
    """Why `value` is not a hex PCI id of the given pattern; "" when it is one."""
    problem = text_problem(value)
    if problem or pattern.fullmatch(value):
        return problem
    return f"not a hex PCI id ({_shown(value)})"


def fact_problem(name: str, value: Any) -> str:
    """Why `value` cannot be the `GpuDevice` fact `name` (an integer count, a hex PCI id or a short text)."""
    if name in COUNT_FACTS:
        return integer_problem(value)
    if name in HEX_FACTS:
        return hex_problem(value, HEX_FACTS[name])
    return text_problem(value)


@dataclass(frozen=True)
class MigInstance:
    """One MIG GPU instance on a physical GPU."""

    profile: str  # e.g. "3g.40gb"
    slices: int  # compute slices of the 7 (or 4) a GPU has


@dataclass
class GpuDevice:
    """One physical GPU as NVML (or the mock) reports it."""

    index: int
    uuid: str | None = None
    serial: str | None = None
    name: str | None = None
    pci_bus_id: str | None = None  # "00000000:18:00.0", lower-case hex
    pci_device_id: str | None = None  # "0x2330", lower-case, 16-bit device id only
    pci_subsystem_id: str | None = None  # "0x16c110de"
    memory_total_bytes: int | None = None
    architecture: str | None = None  # "hopper", "ampere", ... lower-case
    cuda_compute_capability: str | None = None  # "9.0"
    sm_count: int | None = None
    cuda_core_count: int | None = None
    max_sm_clock_mhz: int | None = None
    memory_bus_width_bits: int | None = None  # nvmlDeviceGetMemoryBusWidth
    max_memory_clock_mhz: int | None = None  # nvmlDeviceGetMaxClockInfo(NVML_CLOCK_MEM)
    mig_mode: str | None = None  # "enabled" | "disabled" | None (not supported)
    mig_instances: list[MigInstance] = field(default_factory=list)
    board_part_number: str | None = None
    vbios_version: str | None = None
    status: str = STATUS_OK
    error: str = ""
    not_reported: list[str] = field(default_factory=list)  # optional fields the driver did not report


@dataclass(frozen=True)
class DriverInfo:
    version: str | None = None
    nvml_version: str | None = None
    library_path: str | None = None


@dataclass(frozen=True)
class Discovery:
    """What one backend call found on the node."""

    driver: DriverInfo
    devices: list[GpuDevice]


@dataclass(frozen=True)
class PciFunction:
    """One NVIDIA display/3D function found on the PCI bus (sysfs)."""

    bus_id: str  # "0000:18:00.0" as sysfs names it, lower-case
    device_id: str  # "0x2330"
    class_code: str  # "0x0302" (3D controller) or "0x0300" (VGA)
    subsystem_id: str | None = None  # "0x16c110de" (subsystem device << 16 | subsystem vendor)
