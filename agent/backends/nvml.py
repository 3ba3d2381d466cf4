"""The real backend: NVIDIA's NVML through the `pynvml` binding (package nvidia-ml-py).

The only module that imports `pynvml`. `discover()` initialises NVML, reads the node and every GPU, and shuts
NVML down again. Failures come in the two tiers of the design:

- fatal (library missing, driver not loaded, library/driver version mismatch, no permission, GPUs cannot be
  counted): one `DriverError` with a hint, exit code 3;
- per device: a GPU that stops answering (GPU_IS_LOST, UNKNOWN, TIMEOUT, or no handle at all) stays in the list
  with status "lost" and the error; any other failed read (NOT_SUPPORTED, FUNCTION_NOT_FOUND from an older
  driver, ...) leaves that fact `None` and names it in `not_reported`; without a name or PCI device id the
  device is "incomplete".
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
from collections.abc import Callable
from typing import Any

import pynvml
from gpucensus.common.devices import STATUS_INCOMPLETE, STATUS_LOST, Discovery, DriverInfo, GpuDevice, MigInstance
from gpucensus.common.errors import DriverError

LIBRARY_NAME = "libnvidia-ml.so.1"

# The device stopped answering: it is kept, with status "lost".
LOST_ERRORS = frozenset({pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_UNKNOWN, pynvml.NVML_ERROR_TIMEOUT})

# Facts the accounting cannot do without: a device missing one of them is "incomplete".
REQUIRED_FACTS = ("name", "pci_device_id")

# nvmlDeviceArchitecture_t value -> "hopper", ..., taken from the binding's own NVML_DEVICE_ARCH_* names.
ARCHITECTURES = {
    getattr(pynvml, name): name.removeprefix("NVML_DEVICE_ARCH_").lower()
    for name in dir(pynvml)
    if name.startswith("NVML_DEVICE_ARCH_") and name != "NVML_DEVICE_ARCH_UNKNOWN"
}

_NOT_REPORTED_FACTS = tuple(
    f.name
    for f in dataclasses.fields(GpuDevice)
    if f.name not in ("index", "mig_instances", "status", "error", "not_reported")
)

_INIT_ERRORS = {
    pynvml.NVML_ERROR_LIBRARY_NOT_FOUND: (
        f"the NVIDIA management library ({LIBRARY_NAME}) was not found",
        "is the NVIDIA driver installed? is this a GPU node? use --backend mock to try without GPUs",
    ),
    pynvml.NVML_ERROR_DRIVER_NOT_LOADED: (
        "the NVIDIA kernel driver is not loaded (NVML: Driver Not Loaded)",
        "check `lsmod | grep nvidia` and `dmesg`; load it with `modprobe nvidia` or reinstall the driver; "
        "in a container, run it with the NVIDIA container runtime",
    ),
    pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH: (
        f"{LIBRARY_NAME} and the loaded NVIDIA kernel driver are different versions (NVML: LIB_RM_VERSION_MISMATCH)",
        "the driver was upgraded without reloading its kernel module: reboot the node (or unload and reload "
        "the nvidia modules); in a container, mount the host's libnvidia-ml",
    ),
    pynvml.NVML_ERROR_NO_PERMISSION: (
        "no permission to use the NVIDIA devices (NVML: Insufficient Permissions)",
        "run the agent as a user that can open /dev/nvidiactl and /dev/nvidia*, or give the container those devices",
    ),
}


class _DeviceLostError(Exception):
    def __init__(self, fact: str, error: pynvml.NVMLError) -> None:
        super().__init__(f"{fact}: {error}")


class _Reader:
    """Reads one fact at a time; a failure becomes device state instead of an exception."""

    def __init__(self) -> None:
        self.problems: dict[str, str] = {}

    def __call__(self, fact: str, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except pynvml.NVMLError as error:
            if error.value in LOST_ERRORS:
                raise _DeviceLostError(fact, error) from None
            self.problems[fact] = str(error)
        except UnicodeDecodeError as error:  # pynvml decodes C strings as UTF-8
            self.problems[fact] = f"not UTF-8 ({error.reason})"
        return None


class NvmlBackend:
    """Discovers GPUs through NVML; `library_path` loads that file instead of searching for libnvidia-ml."""

    name = "nvml"

    def __init__(self, library_path: str | None = None) -> None:
        self.library_path = library_path

    def discover(self) -> Discovery:
        self._preload()
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as error:
            raise _init_error(error) from None
        try:
            read = _Reader()
            driver = DriverInfo(
                version=read("driver_version", pynvml.nvmlSystemGetDriverVersion),
                nvml_version=read("nvml_version", pynvml.nvmlSystemGetNVMLVersion),
                library_path=loaded_library_path(),
            )
            try:
                count = pynvml.nvmlDeviceGetCount()
            except pynvml.NVMLError as error:
                raise DriverError(
                    f"NVML cannot count the GPUs: {error}", "check the driver with `nvidia-smi`"
                ) from None
            devices = [read_device(index) for index in range(count)]
        finally:
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError:
                pass
        return Discovery(driver=driver, devices=devices)

    def _preload(self) -> None:
        # The library's soname is libnvidia-ml.so.1, so pynvml's own dlopen of that name finds this copy.
        if self.library_path is None:
            return
        try:
            ctypes.CDLL(self.library_path)
        except OSError as error:
            raise DriverError(
                f"cannot load the NVML library {self.library_path}: {error}",
                "check the configured library path, or leave it unset to use the driver's own library",
            ) from None


def _init_error(error: pynvml.NVMLError) -> DriverError:
    message, hint = _INIT_ERRORS.get(
        error.value,
        (f"NVML failed to initialise: {error}", "check the driver with `nvidia-smi`"),
    )
    return DriverError(message, hint)


def read_device(index: int) -> GpuDevice:
    """Everything NVML says about the GPU at `index`; never raises an NVML error."""
    device = GpuDevice(index=index)
    read = _Reader()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    except pynvml.NVMLError as error:  # no handle: nothing can be read, whatever the reason
        device.status, device.error = STATUS_LOST, f"handle: {error}"
    else:
        try:
            _read_facts(handle, device, read)
        except _DeviceLostError as lost:
            device.status, device.error = STATUS_LOST, str(lost)
    device.not_reported = [fact for fact in _NOT_REPORTED_FACTS if getattr(device, fact) is None]
    if "mig_instances" in read.problems:
        device.not_reported.append("mig_instances")
    missing = [fact for fact in REQUIRED_FACTS if getattr(device, fact) is None]
    if device.status != STATUS_LOST and missing:
        device.status = STATUS_INCOMPLETE
        device.error = "; ".join(f"{fact}: {read.problems.get(fact, 'not reported')}" for fact in missing)
    return device


def _read_facts(handle: Any, device: GpuDevice, read: _Reader) -> None:
    device.name = read("name", pynvml.nvmlDeviceGetName, handle)
    device.uuid = read("uuid", pynvml.nvmlDeviceGetUUID, handle)
    device.serial = read("serial", pynvml.nvmlDeviceGetSerial, handle)
    pci = read("pci_device_id", _pci_ids, handle)
    if pci is not None:
        device.pci_bus_id, device.pci_device_id, device.pci_subsystem_id = pci
    device.memory_total_bytes = _memory_total(handle, read)
    arch = read("architecture", pynvml.nvmlDeviceGetArchitecture, handle)
    device.architecture = ARCHITECTURES.get(arch) if arch is not None else None
    capability = read("cuda_compute_capability", pynvml.nvmlDeviceGetCudaComputeCapability, handle)
    if capability is not None:
        device.cuda_compute_capability = f"{capability[0]}.{capability[1]}"
    attributes = read("sm_count", pynvml.nvmlDeviceGetAttributes_v2, handle)
    if attributes is not None and attributes.multiprocessorCount:
        device.sm_count = attributes.multiprocessorCount
    device.cuda_core_count = read("cuda_core_count", pynvml.nvmlDeviceGetNumGpuCores, handle)
    device.max_sm_clock_mhz = read("max_sm_clock_mhz", pynvml.nvmlDeviceGetMaxClockInfo, handle, pynvml.NVML_CLOCK_SM)
    # DRAM bandwidth = bus width x maximum memory clock x transfers per clock (common/data/architectures.toml)
    device.memory_bus_width_bits = read("memory_bus_width_bits", pynvml.nvmlDeviceGetMemoryBusWidth, handle) or None
    device.max_memory_clock_mhz = (
        read("max_memory_clock_mhz", pynvml.nvmlDeviceGetMaxClockInfo, handle, pynvml.NVML_CLOCK_MEM) or None
    )
    mode = read("mig_mode", pynvml.nvmlDeviceGetMigMode, handle)
    if mode is not None:
        device.mig_mode = "enabled" if mode[0] == pynvml.NVML_DEVICE_MIG_ENABLE else "disabled"
        if device.mig_mode == "enabled":
            device.mig_instances = read("mig_instances", mig_instances, handle) or []
    device.board_part_number = read("board_part_number", pynvml.nvmlDeviceGetBoardPartNumber, handle)
    device.vbios_version = read("vbios_version", pynvml.nvmlDeviceGetVbiosVersion, handle)


def _pci_ids(handle: Any) -> tuple[str, str, str]:
    pci = pynvml.nvmlDeviceGetPciInfo_v3(handle)
    # pciDeviceId is (device id << 16 | vendor id); pciSubSystemId is (subsystem id << 16 | subsystem vendor)
    return pci.busId.lower(), f"0x{pci.pciDeviceId >> 16:04x}", f"0x{pci.pciSubSystemId:08x}"


def _memory_total(handle: Any, read: _Reader) -> int | None:
    # Memory-info v2 (driver 510+) first; older drivers lack the entry point or the struct version.
    try:
        return pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2).total
    except pynvml.NVMLError as error:
        if error.value in LOST_ERRORS:
            raise _DeviceLostError("memory_total_bytes", error) from None
    memory = read("memory_total_bytes", pynvml.nvmlDeviceGetMemoryInfo, handle)
    return None if memory is None else memory.total


def mig_instances(handle: Any) -> list[MigInstance]:
    """The GPU instances of a MIG-enabled GPU, in GPU-instance-profile order (as `nvidia-smi mig -lgi`)."""
    instances: list[MigInstance] = []
    for profile in range(pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT):
        try:
            info = pynvml.nvmlDeviceGetGpuInstanceProfileInfo(handle, profile)  # v2 struct, with the name
        except pynvml.NVMLError as error:
            if error.value in (pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_INVALID_ARGUMENT):
                continue  # this GPU has no such profile
            raise
        if info.instanceCount == 0:
            continue
        handles = (pynvml.c_nvmlGpuInstance_t * info.instanceCount)()
        count = ctypes.c_uint(0)
        pynvml.nvmlDeviceGetGpuInstances(handle, info.id, handles, ctypes.byref(count))
        profile_name = info.name.removeprefix("MIG ")  # pynvml decodes the struct's char arrays
        instances += [MigInstance(profile=profile_name, slices=info.sliceCount)] * count.value
    return instances


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def loaded_library_path() -> str | None:
    """The file the loaded NVML entry points live in (dladdr on nvmlInitWithFlags), symlinks resolved."""
    try:
        dladdr = ctypes.CDLL(None).dladdr
        symbol = ctypes.cast(pynvml.nvmlLib.nvmlInitWithFlags, ctypes.c_void_p)
    except (AttributeError, OSError):
        return None
    info = _DlInfo()
    if not dladdr(symbol, ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.path.realpath(os.fsdecode(info.dli_fname))
