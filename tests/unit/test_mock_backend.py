"""The mock backend: built-in whole-node profiles and user profile files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gpucensus.agent.backends import create_backend
from gpucensus.agent.backends.mock import MockBackend, profile_names
from gpucensus.common.errors import ConfigError

REQUIRED = {
    "dgx-h100",
    "hgx-a100",
    "mixed",
    "one-lost-of-8",
    "mig-enabled",
    "rtx-4090-workstation",
    "h20-8x",
    "hgx-h100-16x",
}


def test_required_profiles_ship() -> None:
    assert set(profile_names()) >= REQUIRED


@pytest.mark.parametrize(
    ("profile", "names"),
    [
        ("dgx-h100", ["NVIDIA H100 80GB HBM3"] * 8),
        ("hgx-a100", ["NVIDIA A100-SXM4-80GB"] * 8),
        ("mixed", ["NVIDIA H100 80GB HBM3"] * 2 + ["NVIDIA L40S"] * 2 + ["NVIDIA L4"] * 2),
        ("rtx-4090-workstation", ["NVIDIA GeForce RTX 4090"] * 2),
        ("h20-8x", ["NVIDIA H20"] * 8),
        ("hgx-h100-16x", ["NVIDIA H100 80GB HBM3"] * 16),  # two 8-GPU boards: the agent benchmark's node
    ],
)
def test_profile_devices(profile: str, names: list[str]) -> None:
    devices = MockBackend(profile).discover().devices
    assert [d.name for d in devices] == names
    assert [d.index for d in devices] == list(range(len(names)))
    assert len({d.uuid for d in devices}) == len(names)
    assert len({d.pci_bus_id for d in devices}) == len(names)


def test_mock_nodes_with_the_same_profile_report_different_gpus() -> None:
    # a staging fleet of dgx-h100 mock nodes must not look like one set of GPUs reported by every node
    first = MockBackend("dgx-h100", node_id="node-a").discover().devices
    again = MockBackend("dgx-h100", node_id="node-a").discover().devices
    other = MockBackend("dgx-h100", node_id="node-b").discover().devices
    assert [d.uuid for d in first] == [d.uuid for d in again]  # stable across restarts of one node
    assert not {d.uuid for d in first} & {d.uuid for d in other}
    assert not {d.serial for d in first} & {d.serial for d in other}
    assert all(len(d.serial) == 13 for d in other)


def test_one_lost_of_8_keeps_the_lost_gpu() -> None:
    devices = MockBackend("one-lost-of-8").discover().devices
    assert len(devices) == 8
    lost = [d for d in devices if d.status == "lost"]
    assert [d.index for d in lost] == [5]
    assert lost[0].error == "GPU is lost" and lost[0].sm_count is None and "sm_count" in lost[0].not_reported


def test_mig_enabled_profile() -> None:
    devices = MockBackend("mig-enabled").discover().devices
    assert [d.mig_mode for d in devices] == ["enabled"] * 4 + ["disabled"] * 4
    assert [m.profile for m in devices[0].mig_instances] == ["3g.40gb", "3g.40gb"]


def test_hidden_gpu_is_on_the_simulated_bus_only() -> None:
    backend = MockBackend("hidden-gpu")
    assert len(backend.discover().devices) == 7
    assert len(backend.pci_functions()) == 8


def test_discover_returns_fresh_copies() -> None:
    backend = MockBackend("dgx-h100")
    backend.discover().devices[0].not_reported.append("x")
    assert backend.discover().devices[0].not_reported == []


def test_user_profile_toml(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('driver_version = "535.1"\n[[gpus]]\nmodel = "l4"\ncount = 3\n[[gpus]]\nmodel = "h20"\n')
    discovery = MockBackend(str(path)).discover()
    assert discovery.driver.version == "535.1"
    assert [d.name for d in discovery.devices] == ["NVIDIA L4"] * 3 + ["NVIDIA H20"]


def test_user_profile_json_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "node.json"
    path.write_text(json.dumps({"gpus": [{"model": "h100-sxm5", "name": "Renamed", "sm_count": 114}]}))
    (device,) = MockBackend(str(path)).discover().devices
    assert (device.name, device.sm_count, device.pci_device_id) == ("Renamed", 114, "0x2330")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[gpus]]\nmodel = "h100-sxm5"\ncolour = "red"\n', "unknown key(s) colour"),
        ('[[gpus]]\nmodel = "no-such-gpu"\n', "unknown mock model 'no-such-gpu'"),
        ('[[gpus]]\nmodel = "l4"\ncount = -1\n', "count must be an integer"),
        ('[[gpus]]\nmodel = "l4"\nstatus = "melted"\n', "status must be ok, lost or incomplete"),
        ("gpus = 3\n", "gpus must be an array of tables"),
        ("this is not toml = = \n", "cannot read it"),
        ('flavour = "x"\n', "unknown key(s) flavour"),
        ('[[gpus]]\nmodel = "l4"\nsm_count = "many"\n', "gpus[0].sm_count must be an integer, got 'many'"),
        ('[[gpus]]\nmodel = "l4"\nmax_sm_clock_mhz = true\n', "max_sm_clock_mhz must be an integer"),
        ('[[gpus]]\nmodel = "l4"\npci_device_id = 5\n', "gpus[0].pci_device_id must be a string, got 5"),
        ('[[gpus]]\nmodel = "l4"\nlost_fields = "sm_count"\n', "lost_fields must be an array of fact names"),
    ],
)
def test_broken_user_profiles_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        MockBackend(str(path))
    assert message in err.value.message


def test_missing_profile_lists_built_ins() -> None:
    with pytest.raises(ConfigError) as err:
        MockBackend("no-such-profile")
    assert "dgx-h100" in err.value.hint


def test_unknown_backend_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown backend"):
        create_backend("cuda")
