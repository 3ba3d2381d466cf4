"""The rendered Kubernetes base runs: its collector.toml and agent.toml, laid out as the kubelet mounts them (under
a temporary root), start a real collector process and a real agent process that enrols with the token from the
`gpucensus-enroll` Secret and reports; the keygen init container's command makes the key once and keeps it.

Only what cannot exist outside a cluster is overridden, through the environment as a pod spec could: the
collector's address (a loopback port instead of the Service), the mock backend instead of NVML, and the node id
(instead of the host's /etc/machine-id)."""

from __future__ import annotations

import json
import os
import re
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
from tests.integration.test_deploy_kubernetes import component_on_base, rendered

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


def _init_command(
    objects: list[dict[str, Any]],
    workload: str,
    name: str,
    root: Path,
    provided: dict[str, dict[str, str]] | None = None,
) -> list[str]:
    """The init container's command with its mount paths under `root` (its mounts laid out there)."""
    obj = checks.workload(objects, workload)
    init = next(c for c in checks.pod_spec(obj)["initContainers"] if c["name"] == name)
    checks.materialize(obj, init, objects, root, provided or {})
    paths = sorted((m["mountPath"] for m in init["volumeMounts"]), key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(p) for p in paths))
    return [pattern.sub(lambda m: f"{root}{m.group(0)}", part) for part in init["command"]]


def _collector_cli(config: Path, *args: str) -> str:
    done = subprocess.run([str(BIN / "gpucensus-collector"), *args, "--config", str(config)], capture_output=True,
                          text=True, timeout=60, env=ENV)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def _wait_serving(port: int, proc: subprocess.Popen, ca_pem: str | None) -> None:
    deadline = time.monotonic() + 30
    target = f"127.0.0.1:{port}"
    channel = (
        grpc.insecure_channel(target)
        if ca_pem is None
        else grpc.secure_channel(
            target,
            grpc.ssl_channel_credentials(ca_pem.encode()),
            options=[("grpc.ssl_target_name_override", "gpucensus-collector")],
        )
    )
    with channel:
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
    command = _init_command(objects, "gpucensus-agent", "keygen", tmp_path)
    first = subprocess.run(command, capture_output=True, text=True, timeout=60, env=ENV)
    assert first.returncode == 0, first.stderr
    key = tmp_path / "var/lib/gpucensus/node.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes()
    again = subprocess.run(command, capture_output=True, text=True, timeout=60, env=ENV)
    assert again.returncode == 0, again.stderr  # a restarted pod must not crash-loop on its existing key
    assert key.read_bytes() == before


def _tls_files(tmp_path: Path) -> dict[str, dict[str, str]]:
    """The collector's Secret and the agents' CA ConfigMap, made with deploy/certs/bootstrap.sh as documented."""
    pki = tmp_path / "pki"
    script = Path(__file__).resolve().parents[2] / "deploy" / "certs" / "bootstrap.sh"
    done = subprocess.run(["bash", str(script), "--out", str(pki), "--san", "gpucensus-collector"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    if done.returncode != 0 and "openssl" in done.stderr.lower():
        pytest.skip(f"bootstrap.sh cannot run here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    read = {name: (pki / name).read_text(encoding="utf-8") for name in ("ca.pem", "server.pem", "server.key")}
    return {"gpucensus-collector-tls": {"tls.crt": read["server.pem"], "tls.key": read["server.key"]},
            "gpucensus-ca": {"ca.crt": read["ca.pem"]}}  # fmt: skip


@pytest.mark.parametrize("tls", [False, True], ids=["base", "base+tls"])
def test_shipped_configs_enrol_a_node_and_report(tls: bool, tmp_path: Path) -> None:
    objects = list(component_on_base("tls", tmp_path / "kustomization") if tls else rendered("base"))
    provided = _tls_files(tmp_path) if tls else {}
    collector_config = _rooted_config(objects, "gpucensus-collector", tmp_path / "collector", provided)
    collector_obj = checks.workload(objects, "gpucensus-collector")
    for init in checks.pod_spec(collector_obj).get("initContainers", []):  # with TLS: tls-key
        command = _init_command(objects, "gpucensus-collector", init["name"], tmp_path / "collector", provided)
        assert subprocess.run(command, env=ENV, timeout=60).returncode == 0
    collector_env = checks.literal_env(checks.pod_spec(collector_obj)["containers"][0], {})
    collector_env = {k: checks.rooted(f'"{v}', tmp_path / "collector")[1:] for k, v in collector_env.items()}
    site = checks.toml_value(checks.config_text(objects, "gpucensus-agent", "agent.toml"), "node", "site")
    _collector_cli(collector_config, "entity", "add", "acme", "--headquarters", "US", "--authorization", "uveu")
    _collector_cli(collector_config, "site", "add", site, "--country", "DE", "--entity", "acme")
    token = _collector_cli(collector_config, "token", "create", "--site", site).strip().splitlines()[-1]
    port = _free_port()
    env = {**ENV, **collector_env, "GPUCENSUS_METRICS_LISTEN": f"127.0.0.1:{_free_port()}"}
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
        _wait_serving(port, collector, provided["gpucensus-ca"]["ca.crt"] if tls else None)
        agent_root = tmp_path / "agent"
        agent_config = _rooted_config(
            objects, "gpucensus-agent", agent_root, {**provided, "gpucensus-enroll": {"token": token}}
        )
        agent_container = checks.pod_spec(checks.workload(objects, "gpucensus-agent"))["containers"][0]
        pod_env = {
            k: checks.rooted(f'"{v}', agent_root)[1:] for k, v in checks.literal_env(agent_container, {}).items()
        }
        assert (
            subprocess.run(
                _init_command(objects, "gpucensus-agent", "keygen", agent_root), env=ENV, timeout=60
            ).returncode
            == 0
        )
        agent_env = {**ENV, **pod_env, "GPUCENSUS_AGENT_COLLECTOR_TLS_SERVER_NAME": "gpucensus-collector",
                     "GPUCENSUS_AGENT_COLLECTOR_ADDRESS": f"127.0.0.1:{port}", "GPUCENSUS_AGENT_NODE_ID":
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
