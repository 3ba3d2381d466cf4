"""`gpucensus-agent snapshot` and `classify` as a user runs them (subprocesses, real console scripts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sysfs_tree import add_function

AGENT = [sys.executable, "-m", "gpucensus.agent.cli"]


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


def test_snapshot_with_a_sysfs_root_that_has_no_pci_bus_is_refused(tmp_path: Path) -> None:
    # a typo in --sysfs-root (or inventory.sysfs_root) must not silently switch the hidden-GPU check off
    result = run("snapshot", "--backend", "mock", "--node-id", "n1", "--sysfs-root", str(tmp_path / "sys-typo"))
    assert result.returncode == 2
    assert "sys-typo" in result.stderr and "bus/pci/devices" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


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


@pytest.mark.parametrize(
    ("group", "key"),
    [
        ("model = 'h100-sxm5'\npci_device_id = '0xZZ30'", "gpus[0].pci_device_id"),  # traceback, exit 1
        ("model = 'engineering-sample-hopper'\nsm_count = -132", "gpus[0].sm_count"),  # traceback, exit 1
        ("model = 'h100-sxm5'\nmax_sm_clock_mhz = -1", "gpus[0].max_sm_clock_mhz"),  # signed, then refused
        ("model = 'h100-sxm5'\nname = \"H100\\u001b[2J\"", "gpus[0].name"),  # a terminal escape in every report
        ("model = 'h100-sxm5'\nmig_instances = [{profile = '3g', slices = -3}]", "gpus[0].mig_instances"),
        ("model = 'h100-sxm5'\nerror = 'x'\ncount = 1\n[[hidden]]\npci_device_id = 'gpu'", "hidden[0].pci_device_id"),
    ],
)
def test_snapshot_a_profile_fact_the_collector_would_refuse_is_a_config_error_naming_file_and_key(
    tmp_path: Path, group: str, key: str
) -> None:
    profile = tmp_path / "odd.toml"
    profile.write_text(f"[[gpus]]\n{group}\n")
    result = run("snapshot", "--backend", "mock", "--profile", str(profile), "--node-id", "n1")
    assert result.returncode == 2, result.stderr
    assert str(profile) in result.stderr and key in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


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


def make_spool(tmp_path: Path) -> Path:
    from gpucensus.agent.spool import Spool

    path = tmp_path / "state" / "spool.db"
    spool = Spool(path, max_bytes=1_000_000)
    for sequence in (1, 2, 3, 4):
        spool.append("ab" * 32, sequence, b'{"sequence":%d}' % sequence)
    spool.mark_delivered("ab" * 32, 1, log_index=10)
    spool.mark_rejected("ab" * 32, 2, "UNKNOWN: collector crashed on it")
    spool.mark_rejected("ab" * 32, 4, "RESOURCE_EXHAUSTED: message too large")
    spool.close()
    (tmp_path / "agent.toml").write_text("[node]\nstate_dir = 'state'\n")
    return tmp_path / "agent.toml"


def test_spool_list_table_and_json(tmp_path: Path) -> None:
    config = make_spool(tmp_path)
    table = run("spool", "list", "--config", str(config))
    assert table.returncode == 0, table.stderr
    assert "1 pending, 1 delivered, 2 rejected, 0 quarantined" in table.stdout
    assert "UNKNOWN: collector crashed on it" in table.stdout
    listed = run("spool", "list", "--config", str(config), "--state", "rejected", "--format", "json")
    document = json.loads(listed.stdout)
    assert [(e["sequence"], e["state"]) for e in document["envelopes"]] == [(2, "rejected"), (4, "rejected")]
    assert document["counts"]["pending"] == 1


def test_spool_retry_one_then_all_rejected(tmp_path: Path) -> None:
    config = make_spool(tmp_path)
    one = run("spool", "retry", "--config", str(config), "2")
    assert one.returncode == 0, one.stderr
    pending = json.loads(run("spool", "list", "--config", str(config), "--state", "pending", "--format", "json").stdout)
    assert [e["sequence"] for e in pending["envelopes"]] == [2, 3]
    again = run("spool", "retry", "--config", str(config), "2")  # no longer rejected: a clear refusal
    assert again.returncode == 2 and "sequence 2 is pending, not rejected" in again.stderr
    assert run("spool", "retry", "--spool", str(tmp_path / "state" / "spool.db"), "--all-rejected").returncode == 0
    counts = json.loads(run("spool", "list", "--config", str(config), "--format", "json").stdout)["counts"]
    assert counts == {"pending": 3, "delivered": 1, "rejected": 0, "quarantined": 0}  # nothing deleted


def test_spool_commands_never_create_a_spool(tmp_path: Path) -> None:
    result = run("spool", "list", "--spool", str(tmp_path / "typo" / "spool.db"))
    assert result.returncode == 5 and "no spool at" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "typo").exists()


def run_config(tmp_path: Path) -> tuple[Path, str]:
    """An agent config over tmp_path/state with a fresh key; returns the config and the key id."""
    from gpucensus.agent.keys import generate_key

    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    key = generate_key(state / "node.key")
    config = tmp_path / "agent.toml"
    config.write_text(
        "[collector]\naddress = '127.0.0.1:9'\n[node]\nid = 'n1'\nstate_dir = 'state'\n[inventory]\nbackend = 'mock'\n"
    )
    return config, key.keyid


def test_run_with_a_corrupted_chain_state_stops_at_start_naming_the_file(tmp_path: Path) -> None:
    config, _ = run_config(tmp_path)
    (tmp_path / "state" / "chain.json").write_text("{truncated")
    result = run("run", "--config", str(config), "--rounds", "1")
    assert result.returncode == 5, result.stderr
    assert "chain.json is corrupted" in result.stderr and "Traceback" not in result.stderr


def test_run_refuses_a_chain_state_behind_its_spool(tmp_path: Path) -> None:
    # chain.json deleted (or restored from an old backup): signing again would reuse sequence numbers
    from gpucensus.agent.spool import Spool

    config, keyid = run_config(tmp_path)
    spool = Spool(tmp_path / "state" / "spool.db", max_bytes=1_000_000)
    for sequence in (1, 2, 3):
        spool.append(keyid, sequence, b'{"sequence":%d}' % sequence)
    spool.close()
    result = run("run", "--config", str(config), "--rounds", "1")
    assert result.returncode == 5, result.stderr
    assert "next sequence is 1" in result.stderr and "already holds or delivered sequence 3" in result.stderr
    assert not (tmp_path / "state" / "chain.json").exists()  # nothing was signed


def test_a_profile_with_the_nvml_backend_is_refused_not_ignored() -> None:
    result = run("snapshot", "--backend", "nvml", "--profile", "dgx-h100", "--node-id", "n1")
    assert result.returncode == 2 and "for the mock backend" in result.stderr and "Traceback" not in result.stderr


def test_classify_a_die_area_with_a_giant_exponent_is_refused_at_once() -> None:
    # Fraction("1e999999999") expands the exponent: before, this ran for hours
    result = subprocess.run(
        [*AGENT, "classify", "--tpp", "5000", "--die-area", "1e999999999"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and "--die-area" in result.stderr and "Traceback" not in result.stderr
