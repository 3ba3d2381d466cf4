"""The NVML backend through the real pynvml binding against the fake libnvidia-ml.so.1 (tests/fakenvml).

Each case runs `NvmlBackend().discover()` in a child process whose LD_LIBRARY_PATH holds only the fake library;
nothing in pynvml is patched. Missing entry points are really missing from the built library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gpucensus.common.devices import STATUS_INCOMPLETE, STATUS_LOST, STATUS_OK, MigInstance
from gpucensus.common.errors import DriverError

pytest.register_assert_rewrite("tests.integration.fakenvml_fixtures")
from tests.integration.fakenvml_fixtures import DISCOVER_SCRIPT, REPO_ROOT, build, fake_env  # noqa: E402

pytest_plugins = ["tests.integration.fakenvml_fixtures"]
pytestmark = pytest.mark.slow

H100_FACTS = {
    "name": "NVIDIA H100 80GB HBM3",
    "pci_device_id": "0x2330",
    "pci_subsystem_id": "0x16c110de",
    "memory_total_bytes": 85520809984,
    "architecture": "hopper",
    "cuda_compute_capability": "9.0",
    "sm_count": 132,
    "cuda_core_count": 16896,
    "max_sm_clock_mhz": 1980,
    "memory_bus_width_bits": 5120,
    "max_memory_clock_mhz": 2619,
    "mig_mode": "disabled",
    "mig_instances": [],
    "board_part_number": "692-2G520-0200-000",
    "vbios_version": "96.00.74.00.0F",
    "status": STATUS_OK,
    "error": "",
    "not_reported": [],
}
EIGHT_H100 = "count=8\n"


def library_file(lib_dir: Path) -> str:
    return os.path.realpath(lib_dir / build.LIBRARY_NAME)


def test_sixteen_gpus_every_fact(nvml_discovery, fakenvml_build):
    found = nvml_discovery("h100-16x")
    assert found.driver.version == "550.54.15"
    assert found.driver.nvml_version == "12.550.54.15"
    assert found.driver.library_path == library_file(fakenvml_build())
    assert [d.index for d in found.devices] == list(range(16))
    for device in found.devices:
        assert {k: getattr(device, k) for k in H100_FACTS} == H100_FACTS
        assert device.serial == f"165232{device.index:07d}"
        assert device.pci_bus_id == f"00000000:{0x18 + 8 * device.index:02x}:00.0"
    assert len({d.uuid for d in found.devices}) == 16


def test_backend_fixture_speaks_the_protocol(fake_nvml_backend):
    backend = fake_nvml_backend("h100-16x", "count=3\n")
    assert backend.name == "nvml"
    assert [d.name for d in backend.discover().devices] == [H100_FACTS["name"]] * 3


def test_mig_enabled_lists_gpu_instances(nvml_discovery):
    mig, plain = nvml_discovery("a100-mig").devices
    assert mig.mig_mode == "enabled"
    assert mig.mig_instances == [
        MigInstance("1g.5gb", 1),
        MigInstance("1g.5gb", 1),
        MigInstance("2g.10gb", 2),
        MigInstance("3g.20gb", 3),
    ]
    assert (mig.status, mig.not_reported, mig.pci_device_id) == (STATUS_OK, [], "0x20b0")
    assert (plain.mig_mode, plain.mig_instances) == ("disabled", [])


@pytest.mark.parametrize("code, text", [("GPU_IS_LOST", "GPU is lost"), ("UNKNOWN", "Unknown Error")])
def test_lost_gpu_stays_in_the_inventory(nvml_discovery, code, text):
    found = nvml_discovery("h100-16x", EIGHT_H100 + f"gpu.5.fail.*={code}\n")
    assert len(found.devices) == 8
    lost = found.devices[5]
    assert (lost.index, lost.status, lost.error) == (5, STATUS_LOST, f"handle: {text}")
    assert "name" in lost.not_reported and "pci_device_id" in lost.not_reported
    assert [d.status for d in found.devices if d.index != 5] == [STATUS_OK] * 7


@pytest.mark.parametrize(
    "entry_point, code, error",
    [
        ("nvmlDeviceGetMaxClockInfo", "TIMEOUT", "max_sm_clock_mhz: Timeout"),
        ("nvmlDeviceGetMemoryInfo_v2", "GPU_IS_LOST", "memory_total_bytes: GPU is lost"),
        ("nvmlDeviceGetVbiosVersion", "NVML_ERROR_UNKNOWN", "vbios_version: Unknown Error"),
    ],
)
def test_gpu_that_stops_answering_mid_read_is_lost(nvml_discovery, entry_point, code, error):
    found = nvml_discovery("h100-16x", EIGHT_H100 + f"gpu.2.fail.{entry_point}={code}\n")
    device = found.devices[2]
    assert (device.status, device.error) == (STATUS_LOST, error)
    assert device.name == H100_FACTS["name"]  # what was read before stays
    assert found.devices[3].status == STATUS_OK


def test_not_supported_fields_are_not_reported(nvml_discovery):
    (device,) = nvml_discovery("rtx-4090-not-supported").devices
    assert device.status == STATUS_OK
    assert device.not_reported == ["serial", "sm_count", "mig_mode", "board_part_number"]
    assert (device.serial, device.sm_count, device.mig_mode, device.board_part_number) == (None,) * 4
    assert (device.architecture, device.cuda_core_count, device.max_sm_clock_mhz) == ("ada", 16384, 3120)


def test_missing_entry_points_fall_back_or_are_not_reported(nvml_discovery, fakenvml_build):
    omit = ("nvmlDeviceGetAttributes_v2", "nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetGpuInstanceProfileInfoV")
    library = ctypes.CDLL(library_file(fakenvml_build(omit)))
    assert not any(hasattr(library, name) for name in omit)  # really absent: pynvml gets FUNCTION_NOT_FOUND
    mig, plain = nvml_discovery("a100-mig", omit=omit).devices
    assert mig.memory_total_bytes == 42949672960  # memory-info v1 fallback
    assert (mig.status, mig.mig_mode, mig.mig_instances) == (STATUS_OK, "enabled", [])
    assert mig.not_reported == ["sm_count", "mig_instances"]
    assert plain.not_reported == ["sm_count"]


@pytest.mark.parametrize("code", ["NOT_SUPPORTED", "ARGUMENT_VERSION_MISMATCH"])
def test_memory_info_v2_refused_falls_back_to_v1(nvml_discovery, code):
    extra = f"count=1\ngpu.0.fail.nvmlDeviceGetMemoryInfo_v2={code}\n"
    (device,) = nvml_discovery("h100-16x", extra).devices
    assert (device.memory_total_bytes, device.not_reported) == (85520809984, [])


@pytest.mark.parametrize(
    "extra, omit, error",
    [
        ("gpu.0.fail.nvmlDeviceGetName=NOT_SUPPORTED\n", (), "name: Not Supported"),
        ("gpu.0.fail.nvmlDeviceGetPciInfo_v3=NO_PERMISSION\n", (), "pci_device_id: Insufficient Permissions"),
        ("", ("nvmlDeviceGetPciInfo_v3",), "pci_device_id: Function Not Found"),
    ],
)
def test_missing_name_or_pci_device_id_makes_device_incomplete(nvml_discovery, extra, omit, error):
    device = nvml_discovery("h100-16x", "count=2\n" + extra, omit=omit).devices[0]
    assert (device.status, device.error) == (STATUS_INCOMPLETE, error)
    assert device.uuid is not None and device.sm_count == 132  # the rest is still read


def test_undecodable_string_is_not_reported(nvml_discovery):
    (device,) = nvml_discovery("h100-16x", "count=1\ngpu.0.vbios_version=96.\\xff\\xfe\n").devices
    assert (device.status, device.vbios_version, device.not_reported) == (STATUS_OK, None, ["vbios_version"])


def test_unknown_architecture_value_is_not_reported(nvml_discovery):
    (device,) = nvml_discovery("h100-16x", "count=1\ngpu.0.architecture=0xffffffff\n").devices
    assert (device.status, device.architecture, device.not_reported) == (STATUS_OK, None, ["architecture"])


def test_node_facts_and_shutdown_failures_do_not_stop_discovery(nvml_discovery):
    extra = "count=1\nfail.nvmlSystemGetDriverVersion=NOT_SUPPORTED\nfail.nvmlShutdown=UNKNOWN\n"
    found = nvml_discovery("h100-16x", extra)
    assert (found.driver.version, found.driver.nvml_version) == (None, "12.550.54.15")
    assert found.devices[0].status == STATUS_OK


@pytest.mark.parametrize(
    "code, words",
    [
        ("DRIVER_NOT_LOADED", "kernel driver is not loaded"),
        ("LIB_RM_VERSION_MISMATCH", "different versions"),
        ("NO_PERMISSION", "no permission"),
        ("UNKNOWN", "failed to initialise: Unknown Error"),
    ],
)
def test_init_failures_are_driver_errors_with_their_own_message(nvml_run, code, words):
    result = nvml_run("h100-16x", f"fail.nvmlInitWithFlags={code}\n")
    error = result.report["error"]
    assert (result.returncode, error["type"], error["exit_code"]) == (3, "DriverError", DriverError.exit_code)
    assert words in error["message"]
    assert error["hint"]
    assert "Traceback" not in result.stderr


def test_gpus_that_cannot_be_counted_are_a_driver_error(nvml_run):
    result = nvml_run("h100-16x", "fail.nvmlDeviceGetCount_v2=UNKNOWN\n")
    assert (result.returncode, result.report["error"]["message"]) == (3, "NVML cannot count the GPUs: Unknown Error")


def test_configured_library_path_is_loaded(nvml_run, fakenvml_build):
    path = library_file(fakenvml_build())
    result = nvml_run("h100-16x", "count=1\n", library_path=path)
    assert result.report["discovery"]["driver"]["library_path"] == path
    missing = nvml_run("h100-16x", library_path=str(Path(path).with_name("absent.so")))
    assert (missing.returncode, missing.report["error"]["type"]) == (3, "DriverError")
    assert "cannot load the NVML library" in missing.report["error"]["message"]


needs_no_real_driver = pytest.mark.skipif(
    ctypes.util.find_library("nvidia-ml") is not None, reason="a real libnvidia-ml is installed on this machine"
)


@needs_no_real_driver
def test_no_library_at_all(tmp_path):
    done = subprocess.run(
        [sys.executable, str(DISCOVER_SCRIPT)],
        env=fake_env(tmp_path, None),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    error = json.loads(done.stdout)["error"]
    assert (done.returncode, error["type"]) == (3, "DriverError")
    assert "libnvidia-ml.so.1" in error["message"] and "not found" in error["message"]
    assert "is the NVIDIA driver installed?" in error["hint"]


def agent_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "import sys; from agent.cli import main; sys.exit(main())", *args]
    return subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)


@needs_no_real_driver
def test_snapshot_without_driver_prints_one_clear_error(tmp_path):
    done = agent_cli("snapshot", "--backend", "nvml", "--format", "json", env=fake_env(tmp_path, None))
    assert done.returncode == 3
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith("gpucensus-agent: error: the NVIDIA management library")
    assert lines[1].startswith("hint: is the NVIDIA driver installed? is this a GPU node?")


def test_snapshot_json_from_the_fake_library(fakenvml_build, tmp_path):
    lib_dir = fakenvml_build()
    sysfs = tmp_path / "sys"
    (sysfs / "bus" / "pci" / "devices").mkdir(parents=True)
    profile = tmp_path / "h100.profile"
    profile.write_text((Path(build.PROFILES) / "h100-16x.profile").read_text())
    args = ("snapshot", "--backend", "nvml", "--format", "json", "--sysfs-root", str(sysfs), "--node-id", "n1")
    done = agent_cli(*args, env=fake_env(lib_dir, profile))
    assert done.returncode == 0, done.stderr
    predicate = json.loads(done.stdout)
    assert predicate["driver"]["library_path"] == library_file(lib_dir)
    assert predicate["driver"]["backend"] == "nvml"
    assert [d["pci"]["device_id"] for d in predicate["devices"]] == ["0x2330"] * 16
    assert predicate["totals"]["gpus"] == 16
    assert predicate["totals"]["unaccounted"] == 0


def test_memory_bus_width_and_clock_give_the_dram_bandwidth(nvml_discovery):
    # an unknown Hopper part (device id the catalogue lacks): bandwidth from NVML, 5120 bits x 2619 MHz x 2 / 8000 =
    # 3352.32 -> 3353 GB/s, rounded up; the H100 itself takes the datasheet's 3350 from the catalogue
    from gpucensus.common.accounting import account_device, load_rules
    from gpucensus.common.catalogue import load_catalogue

    known, unknown = nvml_discovery(
        "h100-16x", "count=2\ngpu.1.pci_device_id=0x23ff10de\ngpu.1.name=NVIDIA X\n"
    ).devices
    catalogue, rules = load_catalogue(), load_rules()
    acc = account_device(known, catalogue, rules)
    assert (acc.dram_bandwidth_gbs, acc.bandwidth_basis) == (3350, "catalogue")
    acc = account_device(unknown, catalogue, rules)
    assert (acc.model, acc.dram_bandwidth_gbs, acc.bandwidth_basis) == ("", 3353, "derived")


def test_bus_width_not_supported_is_not_reported(nvml_discovery):
    (device,) = nvml_discovery("h100-16x", "count=1\ngpu.0.bus_width=0\n").devices
    assert device.memory_bus_width_bits is None and device.not_reported == ["memory_bus_width_bits"]
    assert device.max_memory_clock_mhz == 2619
