"""The node's facts as the backends report them: plain dataclasses, standard library only.

Backends (`agent/backends/*`) produce these; accounting and the snapshot predicate consume them. Facts that a
device did not report are `None` ("not reported"), never a made-up value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STATUS_OK = "ok"
STATUS_LOST = "lost"  # the device stopped answering (GPU_IS_LOST, UNKNOWN, TIMEOUT ...)
STATUS_INCOMPLETE = "incomplete"  # answered, but a fact TPP needs is missing


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
