"""The rendered Kubernetes base runs: its collector.toml and agent.toml, laid out as the kubelet mounts them (under
a temporary root), start a real collector process and a real agent process that enrols with the token from the
`gpucensus-enroll` Secret and reports; the keygen init container's command makes the key once and keeps it.

Only what cannot exist outside a cluster is overridden, through the environment as a pod spec could: the
collector's address (a loopback port instead of the Service), the mock backend instead of NVML, and the node id
(instead of the host's /etc/machine-id)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration import k8s_checks as checks
from tests.integration.test_deploy_kubernetes import rendered

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rooted_config(objects: list[dict[str, Any]], name: str, root: Path, secrets: dict[str, dict[str, str]]) -> Path:
    obj = checks.workload(objects, name)
    container = checks.pod_spec(obj)["containers"][0]
    checks.materialize(obj, container, objects, root, secrets)
    path = root / container["args"][container["args"].index("--config") + 1].lstrip("/")
    path.write_text(checks.rooted(path.read_text(encoding="utf-8"), root), encoding="utf-8")
    return path


def _init_command(objects: list[dict[str, Any]], name: str, root: Path) -> list[str]:
    init = next(c for c in checks.pod_spec(checks.workload(objects, "gpucensus-agent"))["initContainers"] if
                c["name"] == name)  # fmt: skip
    return [part.replace("/var/lib/gpucensus", f"{root}/var/lib/gpucensus") for part in init["command"]]


def _collector_cli(config: Path, *args: str) -> str:
    done = subprocess.run([str(BIN / "gpucensus-collector"), *args, "--config", str(config)], capture_output=True,
                          text=True, timeout=60, env=ENV)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def _wait_serving(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the collector exited"
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                time.sleep(0.1)
    pytest.fail("the collector did not become SERVING within 30 s")


def test_keygen_init_container_makes_the_key_once(tmp_path: Path) -> None:
    objects = list(rendered("base"))
    (tmp_path / "var/lib/gpucensus").mkdir(parents=True)
    command = _init_command(objects, "keygen", tmp_path)
    first = subprocess.run(command, capture_output=True, text=True, timeout=60, env=ENV)
    assert first.returncode == 0, first.stderr
    key = tmp_path / "var/lib/gpucensus/node.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes()
    again = subprocess.run(command, capture_output=True, text=True, timeout=60, env=ENV)
    assert again.returncode == 0, again.stderr  # a restarted pod must not crash-loop on its existing key
    assert key.read_bytes() == before


def test_shipped_configs_enrol_a_node_and_report(tmp_path: Path) -> None:
    objects = list(rendered("base"))
    collector_config = _rooted_config(objects, "gpucensus-collector", tmp_path / "collector", {})
    site = checks.toml_value(checks.config_text(objects, "gpucensus-agent", "agent.toml"), "node", "site")
    _collector_cli(collector_config, "entity", "add", "acme", "--headquarters", "US", "--authorization", "uveu")
    _collector_cli(collector_config, "site", "add", site, "--country", "DE", "--entity", "acme")
    token = _collector_cli(collector_config, "token", "create", "--site", site).strip().splitlines()[-1]
    port = _free_port()
    env = {**ENV, "GPUCENSUS_METRICS_LISTEN": f"127.0.0.1:{_free_port()}"}
    log = (tmp_path / "collector.log").open("wb")
    serve = [
        str(BIN / "gpucensus-collector"),
        "serve",
        "--config",
        str(collector_config),
        "--listen",
        f"127.0.0.1:{port}",
    ]
    collector = subprocess.Popen(serve, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_serving(port, collector)
        agent_root = tmp_path / "agent"
        agent_config = _rooted_config(objects, "gpucensus-agent", agent_root, {"gpucensus-enroll": {"token": token}})
        assert subprocess.run(_init_command(objects, "keygen", agent_root), env=ENV, timeout=60).returncode == 0
        agent_env = {**ENV, "GPUCENSUS_AGENT_COLLECTOR_ADDRESS": f"127.0.0.1:{port}", "GPUCENSUS_AGENT_NODE_ID":
                     "k8s-node-1", "GPUCENSUS_AGENT_INVENTORY_BACKEND": "mock",
                     "GPUCENSUS_AGENT_INVENTORY_SYSFS_ROOT": ""}  # fmt: skip
        agent = subprocess.run([str(BIN / "gpucensus-agent"), "run", "--config", str(agent_config), "--rounds", "1"],
                               capture_output=True, text=True, timeout=120, env=agent_env)  # fmt: skip
        assert agent.returncode == 0, agent.stderr
        nodes = json.loads(_collector_cli(collector_config, "node", "list", "--format", "json"))
        assert [(n["node"], n["site"], n["state"], n["gpus"]) for n in nodes] == [("k8s-node-1", site, "ok", 8)]
    finally:
        collector.terminate()
        collector.wait(timeout=30)
        log.close()
