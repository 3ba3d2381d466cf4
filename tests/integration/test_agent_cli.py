"""`gpucensus-agent snapshot` and `classify` as a user runs them (subprocesses, real console scripts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.sysfs_tree import add_function

AGENT = [sys.executable, "-m", "agent.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENT, *args], capture_output=True, text=True, timeout=60, env=env)


def test_snapshot_dgx_h100_table() -> None:
    result = run("snapshot", "--backend", "mock", "--profile", "dgx-h100", "--node-id", "n1")
    assert result.returncode == 0, result.stderr
    assert "total: 8 GPUs, 126,656 TPP, 8.0 H100e" in result.stdout
    assert result.stdout.count("3A090.a") == 9  # 8 devices + the by-class line


def test_snapshot_json_is_the_predicate() -> None:
    result = run(
        "snapshot", "--backend", "mock", "--profile", "mixed", "--node-id", "n1", "--site", "s1", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    predicate = json.loads(result.stdout)
    assert set(predicate) == {"node", "driver", "devices", "pci_functions", "totals"}
    assert predicate["node"]["id"] == "n1" and predicate["node"]["site"] == "s1"
    assert [d["model"] for d in predicate["devices"]] == ["h100-sxm5"] * 2 + ["l40s"] * 2 + ["l4"] * 2


def test_snapshot_mock_with_a_fixture_sysfs_flags_hidden_gpu(tmp_path: Path) -> None:
    # the mock reports 8 GPUs at the DGX bus ids; the fixture bus has those plus one more H100
    for bus in ("18", "2a", "3a", "5d", "9a", "ab", "ba", "db", "e0"):
        add_function(tmp_path, f"0000:{bus}:00.0")
    result = run("snapshot", "--backend", "mock", "--node-id", "n1", "--sysfs-root", str(tmp_path), "--format", "json")
    predicate = json.loads(result.stdout)
    flagged = [p["bus_id"] for p in predicate["pci_functions"] if p["status"] == "not-in-nvml"]
    assert flagged == ["0000:e0:00.0"]
    assert predicate["totals"]["gpus"] == 9 and predicate["totals"]["tpp"] == 9 * 15832


def test_snapshot_nvml_without_driver_is_one_clear_message(tmp_path: Path) -> None:
    env = dict(os.environ, LD_LIBRARY_PATH=str(tmp_path))  # an empty directory: no libnvidia-ml.so.1 anywhere
    result = run("snapshot", "--backend", "nvml", "--node-id", "n1", env=env)
    assert result.returncode == 3
    assert "libnvidia-ml.so.1" in result.stderr and "hint: is the NVIDIA driver installed?" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_snapshot_bad_profile_file_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text("[[gpus]]\nmodel = 'h100-sxm5'\nbogus = 1\n")
    result = run("snapshot", "--backend", "mock", "--profile", str(bad), "--node-id", "n1")
    assert result.returncode == 2 and "unknown key(s) bogus" in result.stderr and "Traceback" not in result.stderr


def test_snapshot_bad_node_id_exit_2() -> None:
    result = run("snapshot", "--backend", "mock", "--node-id", "bad id with spaces")
    assert result.returncode == 2 and "node id" in result.stderr


def test_classify_json() -> None:
    result = run("classify", "--tpp", "2896", "--die-area", "608.5", "--format", "json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {
        "tpp": 2896,
        "die_area_mm2": 608.5,
        "performance_density": 4.759,
        "eccn": "3A090.b",
        "h100e": 0.183,
        "datacenter": True,
        "review": "",
    }


def test_classify_not_datacenter_note_2() -> None:
    result = run("classify", "--tpp", "4707", "--die-area", "608.5", "--not-datacenter")
    assert result.returncode == 0 and "not-3A090" in result.stdout


def test_classify_bad_die_area() -> None:
    result = run("classify", "--tpp", "4707", "--die-area", "big")
    assert result.returncode == 2 and "--die-area" in result.stderr and "Traceback" not in result.stderr
