"""The mock backend: whole-node profiles assembled from per-model NVML facts (`mock_models.toml`).

A product feature for demos, staging and tests, and a peer of the NVML backend: it returns the same `Discovery`
the real driver would. Profiles are TOML files shipped in `agent/backends/profiles/` (by name) or a user's TOML
or JSON file (by path). Format (README "Mock profiles"):

    description = "..."            # optional
    driver_version = "550.54.15"   # optional
    nvml_version = "12.550.54.15"  # optional
    [[gpus]]                       # one group of identical GPUs, in index order
    model = "h100-sxm5"            # a record of mock_models.toml
    count = 8                      # default 1
    # optional per-group overrides: any fact (name, pci_device_id, sm_count, ...), status = "lost"|"incomplete",
    # error = "...", lost_fields = [...] (facts the lost GPU no longer reports),
    # mig_instances = [{profile = "3g.40gb", slices = 3}, ...]
    [[hidden]]                     # GPUs on the PCI bus that NVML does not report
    model = "h100-sxm5"
    count = 1
"""

from __future__ import annotations

import copy
import json
import tomllib
import uuid
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from gpucensus.agent.host import HostFacts
from gpucensus.common.devices import (
    MAX_ERROR_TEXT,
    STATUS_INCOMPLETE,
    STATUS_LOST,
    STATUS_OK,
    Discovery,
    DriverInfo,
    GpuDevice,
    MigInstance,
    PciFunction,
    fact_problem,
    integer_problem,
    text_problem,
)
from gpucensus.common.errors import ConfigError

PROFILE_DIR = "gpucensus.agent.backends.profiles"
# Bus numbers of a DGX H100's eight GPUs; further GPUs continue from 0xe0 upwards.
_BUS_NUMBERS = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)
_FACT_FIELDS = {
    f.name for f in fields(GpuDevice) if f.name not in ("index", "status", "error", "not_reported", "mig_instances")
}
_GROUP_KEYS = {"model", "count", "status", "error", "lost_fields", "mig_instances"} | _FACT_FIELDS
_PROFILE_KEYS = {"description", "driver_version", "nvml_version", "gpus", "hidden"}


@dataclass(frozen=True)
class MockProfile:
    name: str
    description: str
    driver: DriverInfo
    devices: list[GpuDevice]
    hidden: list[PciFunction]


def profile_names() -> list[str]:
    """The profiles shipped with the package."""
    return sorted(
        p.name.removesuffix(".toml") for p in resources.files(PROFILE_DIR).iterdir() if p.name.endswith(".toml")
    )


def _models() -> dict[str, dict[str, Any]]:
    with resources.files("gpucensus.agent.backends").joinpath("mock_models.toml").open("rb") as handle:
        data = tomllib.load(handle)
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def _read_profile(name_or_path: str) -> tuple[str, dict[str, Any]]:
    if name_or_path in profile_names():
        text = resources.files(PROFILE_DIR).joinpath(f"{name_or_path}.toml").read_text(encoding="utf-8")
        return name_or_path, tomllib.loads(text)
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(
            f"mock profile {name_or_path!r}: no such profile or file",
            hint=f"built-in profiles: {', '.join(profile_names())}; or give a path to a .toml or .json file",
        )
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"mock profile {path}: cannot read it: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"mock profile {path}: the top level must be a table/object")
    return path.stem, data


def _bus_id(position: int) -> tuple[str, str]:
    """(NVML-style, sysfs-style) PCI bus id of the GPU at this position on the node."""
    bus = _BUS_NUMBERS[position] if position < len(_BUS_NUMBERS) else 0xE0 + position - len(_BUS_NUMBERS)
    return f"00000000:{bus:02x}:00.0", f"0000:{bus:02x}:00.0"


def _groups(data: dict[str, Any], key: str, source: str) -> list[dict[str, Any]]:
    groups = data.get(key, [])
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise ConfigError(f"mock profile {source}: {key} must be an array of tables")
    for i, group in enumerate(groups):
        unknown = set(group) - _GROUP_KEYS
        if unknown:
            raise ConfigError(f"mock profile {source}: {key}[{i}]: unknown key(s) {', '.join(sorted(unknown))}")
        count = group.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 1024:
            raise ConfigError(f"mock profile {source}: {key}[{i}].count must be an integer 0..1024")
    return groups


def _record(models: dict[str, dict[str, Any]], group: dict[str, Any], where: str) -> dict[str, Any]:
    model = group.get("model")
    if model is None:
        return {}
    if model not in models:
        raise ConfigError(f"{where}.model: unknown mock model {model!r}", hint=f"known: {', '.join(sorted(models))}")
    return dict(models[model])


def _facts(facts: dict[str, Any], where: str) -> dict[str, Any]:
    """The facts of a group, each what NVML could report (`common.devices.fact_problem`: a non-negative integer,
    a hex PCI id, a short text): anything else would be signed and then refused by the collector."""
    for key, value in facts.items():
        problem = fact_problem(key, value)
        if problem:
            raise ConfigError(f"{where}.{key} {problem}")
    return facts


def _mig(group: dict[str, Any], where: str) -> list[MigInstance]:
    instances = group.get("mig_instances", [])
    shape = "mig_instances must be an array of {profile = string, slices = integer}"
    if not isinstance(instances, list) or not all(
        isinstance(m, dict) and set(m) == {"profile", "slices"} for m in instances
    ):
        raise ConfigError(f"{where}.{shape}")
    for m in instances:
        problem = text_problem(m["profile"]) or integer_problem(m["slices"], 8)
        if problem:
            raise ConfigError(f"{where}.mig_instances: {problem}")
    return [MigInstance(m["profile"], m["slices"]) for m in instances]


def load_profile(name_or_path: str, node_id: str = "") -> MockProfile:
    """Parse a built-in profile by name or a user's profile file; errors name the file and key.

    GPU UUIDs and serials are derived from the profile name and, when given, the node id: several mock nodes
    with the same profile (a staging fleet) then report different GPUs, as real nodes do.
    """
    name, data = _read_profile(name_or_path)
    unknown = set(data) - _PROFILE_KEYS
    if unknown:
        raise ConfigError(f"mock profile {name_or_path}: unknown key(s) {', '.join(sorted(unknown))}")
    models = _models()
    devices: list[GpuDevice] = []
    for i, group in enumerate(_groups(data, "gpus", name_or_path)):
        where = f"mock profile {name_or_path}: gpus[{i}]"
        facts = _facts(_record(models, group, where) | {k: v for k, v in group.items() if k in _FACT_FIELDS}, where)
        status = group.get("status", STATUS_OK)
        if status not in (STATUS_OK, STATUS_LOST, STATUS_INCOMPLETE):
            raise ConfigError(f"{where}.status must be ok, lost or incomplete")
        error_problem = text_problem(group.get("error", ""), MAX_ERROR_TEXT)
        if error_problem:
            raise ConfigError(f"{where}.error {error_problem}")
        lost_fields = group.get("lost_fields", [])
        if not isinstance(lost_fields, list) or not all(isinstance(f, str) for f in lost_fields):
            raise ConfigError(f"{where}.lost_fields must be an array of fact names")
        for _ in range(group.get("count", 1)):
            index = len(devices)
            nvml_bus, _sysfs_bus = _bus_id(index)
            device = GpuDevice(
                index=index,
                uuid=f"GPU-{_mock_uuid(node_id, name, index)}",
                serial=_mock_serial(node_id, name, index),
                pci_bus_id=nvml_bus,
                status=status,
                error=group.get("error", ""),
                mig_instances=_mig(group, where),
            )
            for key, value in facts.items():
                setattr(device, key, value)
            device.mig_mode = "enabled" if device.mig_instances else "disabled"
            for lost in lost_fields:
                if lost not in _FACT_FIELDS:
                    raise ConfigError(f"{where}.lost_fields: unknown fact {lost!r}")
                setattr(device, lost, None)
                device.not_reported.append(lost)
            devices.append(device)
    hidden: list[PciFunction] = []
    for i, group in enumerate(_groups(data, "hidden", name_or_path)):
        record = _record(models, group, f"mock profile {name_or_path}: hidden[{i}]")
        where = f"mock profile {name_or_path}: hidden[{i}]"
        device_id = _facts({"pci_device_id": group.get("pci_device_id", record.get("pci_device_id", "0x0000"))}, where)
        for _ in range(group.get("count", 1)):
            _nvml_bus, sysfs_bus = _bus_id(len(devices) + len(hidden))
            hidden.append(PciFunction(sysfs_bus, device_id["pci_device_id"], "0x0302", record.get("pci_subsystem_id")))
    driver = DriverInfo(
        version=str(data.get("driver_version", "550.54.15")),
        nvml_version=str(data.get("nvml_version", "12.550.54.15")),
        library_path="mock",
    )
    return MockProfile(name, str(data.get("description", "")), driver, devices, hidden)


def _mock_uuid(node_id: str, name: str, index: int) -> uuid.UUID:
    seed = f"gpucensus-mock/{node_id}/{name}/{index}" if node_id else f"gpucensus-mock/{name}/{index}"
    return uuid.uuid5(uuid.NAMESPACE_URL, seed)


def _mock_serial(node_id: str, name: str, index: int) -> str:
    if node_id:
        return f"{_mock_uuid(node_id, name, index).int % 10**13:013d}"
    return f"{1650000000000 + index + 1000 * len(name):013d}"


_MOCK_SOCKETS = (1, 2, 2, 2, 4)  # CPU sockets of a simulated host, picked by its seed
_MOCK_CORES = (16, 24, 32, 48, 56, 64)  # physical cores per socket
_MOCK_BOOT_EPOCH = 1_735_689_600  # 2025-01-01T00:00:00Z: every simulated boot is within a year after it


def mock_host_facts(node_id: str, profile_name: str) -> HostFacts:
    """Simulated host facts, derived from the node id and profile like mock GPU UUIDs: stable across restarts,
    different between the nodes of a staging fleet. 2 threads per core, 8 GiB of memory per physical core."""
    seed = uuid.uuid5(uuid.NAMESPACE_URL, f"gpucensus-mock-host/{node_id}/{profile_name}").int
    physical = _MOCK_SOCKETS[seed % len(_MOCK_SOCKETS)] * _MOCK_CORES[(seed >> 8) % len(_MOCK_CORES)]
    return HostFacts(
        cpu_logical=2 * physical,
        cpu_physical=physical,
        memory_total_bytes=physical * 8 * 2**30,
        boot_time=_MOCK_BOOT_EPOCH + (seed >> 16) % (365 * 86_400),
    )


class MockBackend:
    """Reports the GPUs of a named or file profile as if NVML had found them."""

    name = "mock"

    def __init__(self, profile: str = "dgx-h100", node_id: str = "") -> None:
        self._profile = load_profile(profile, node_id)
        self._node_id = node_id

    def host_facts(self) -> HostFacts:
        """The simulated host this profile's GPUs sit in (`mock_host_facts`)."""
        return mock_host_facts(self._node_id, self._profile.name)

    def discover(self) -> Discovery:
        return Discovery(driver=self._profile.driver, devices=copy.deepcopy(self._profile.devices))

    def pci_functions(self) -> list[PciFunction]:
        """The simulated PCI bus: every GPU of the profile (lost ones included) plus the hidden ones."""
        bus = [
            PciFunction(_bus_id(d.index)[1], d.pci_device_id or "0x0000", "0x0302", d.pci_subsystem_id)
            for d in self._profile.devices
        ]
        return bus + list(self._profile.hidden)
