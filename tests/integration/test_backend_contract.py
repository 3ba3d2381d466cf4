"""One contract for every discovery backend: the mock, and the real NVML backend (real pynvml) against the fake
`libnvidia-ml.so.1` built from C. A new backend is done when it passes this file."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import pytest
from gpucensus.agent.backends.mock import MockBackend
from gpucensus.agent.host import NodeInfo
from gpucensus.agent.snapshot import build_predicate
from gpucensus.common.accounting import load_rules
from gpucensus.common.catalogue import load_catalogue
from gpucensus.common.devices import STATUS_LOST, STATUS_OK, Discovery, GpuDevice

BUS_ID = re.compile(r"^[0-9a-f]{8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
DEVICE_ID = re.compile(r"^0x[0-9a-f]{4}$")
FACT_NAMES = {f.name for f in fields(GpuDevice)}

CASES = [
    ("mock", "dgx-h100"),
    ("mock", "one-lost-of-8"),
    ("mock", "mig-enabled"),
    ("nvml", "h100-16x"),
    ("nvml", "a100-mig"),
    ("nvml", "rtx-4090-not-supported"),
]


@pytest.fixture
def discover(nvml_discovery: Callable[..., Discovery]) -> Callable[[str, str], Discovery]:
    def run(kind: str, profile: str) -> Discovery:
        return MockBackend(profile).discover() if kind == "mock" else nvml_discovery(profile)

    return run


def _only_ints_and_strings(value: Any, path: str = "$") -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _only_ints_and_strings(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _only_ints_and_strings(v, f"{path}[{i}]")]
    if isinstance(value, bool) or not isinstance(value, int | str):
        return [f"{path}: {value!r}"]
    return []


@pytest.mark.parametrize(("kind", "profile"), CASES)
def test_backend_contract(discover: Callable[[str, str], Discovery], kind: str, profile: str) -> None:
    discovery = discover(kind, profile)
    assert discovery.driver.version and discovery.driver.nvml_version and discovery.driver.library_path
    assert [d.index for d in discovery.devices] == list(range(len(discovery.devices)))
    assert discovery.devices, "a backend on a GPU node reports its GPUs"
    for device in discovery.devices:
        assert device.status in (STATUS_OK, STATUS_LOST, "incomplete")
        for name in device.not_reported:
            assert name in FACT_NAMES and getattr(device, name) in (None, []), name
        if device.status == STATUS_LOST:
            assert device.error
            continue
        assert device.uuid and device.uuid.startswith("GPU-")
        assert device.name
        assert device.pci_bus_id and BUS_ID.match(device.pci_bus_id), device.pci_bus_id
        assert device.pci_device_id and DEVICE_ID.match(device.pci_device_id), device.pci_device_id
        assert device.mig_mode in ("enabled", "disabled", None)
        if device.mig_mode != "enabled":
            assert device.mig_instances == []
        for fact in ("memory_total_bytes", "sm_count", "max_sm_clock_mhz"):
            value = getattr(device, fact)
            assert (value is None and fact in device.not_reported) or (isinstance(value, int) and value > 0)

    node = NodeInfo(id="node-1", hostname="h", site="s", boot_id="b")
    predicate = build_predicate(node, kind, discovery, [], load_catalogue(), load_rules())
    assert _only_ints_and_strings(predicate) == []
    assert predicate["totals"]["gpus"] == len(discovery.devices)
    assert predicate["totals"]["unaccounted"] == sum(1 for d in predicate["devices"] if "tpp" not in d)
    assert predicate["totals"]["tpp"] == sum(d.get("tpp", 0) for d in predicate["devices"])
