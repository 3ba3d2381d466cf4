"""Checks on rendered Kubernetes objects that catch manifests which validate but cannot work: each returns a list
of problems (empty = fine), so a test can both assert on the shipped manifests and prove, on a broken copy, that
the check notices. Used by tests/integration/test_deploy_kubernetes.py."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

from gpucensus.agent import config as agent_config
from gpucensus.collector import config as collector_config
from gpucensus.common.errors import ConfigError

Obj = dict[str, Any]
WORKLOADS = ("DaemonSet", "StatefulSet", "Deployment")
# Created by the operator (docs/operators.md), not rendered.
PROVIDED_SECRETS = {"gpucensus-enroll", "gpucensus-collector-db", "gpucensus-collector-tls"}
PROVIDED_CONFIGMAPS = {"gpucensus-ca"}


def by_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o.get("kind") == kind]


def workload(objects: list[Obj], name: str) -> Obj:
    found = [o for o in objects if o.get("kind") in WORKLOADS and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one workload {name}, found {len(found)}"
    return found[0]


def pod_spec(obj: Obj) -> Obj:
    return obj["spec"]["template"]["spec"]


def containers(obj: Obj) -> list[Obj]:
    spec = pod_spec(obj)
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def effective_uid(obj: Obj, container: Obj) -> int | None:
    uid = (container.get("securityContext") or {}).get("runAsUser")
    return uid if uid is not None else (pod_spec(obj).get("securityContext") or {}).get("runAsUser")


def volume_problems(objects: list[Obj]) -> list[str]:
    """Every volumeMount names a volume; every ConfigMap a volume names is rendered; Secrets are the documented
    prerequisites only."""
    problems = []
    configmaps = {o["metadata"]["name"] for o in by_kind(objects, "ConfigMap")}
    for obj in (o for o in objects if o.get("kind") in WORKLOADS):
        name = obj["metadata"]["name"]
        volumes = {v["name"]: v for v in pod_spec(obj).get("volumes", [])}
        claims = {c["metadata"]["name"] for c in obj["spec"].get("volumeClaimTemplates", [])}
        for container in containers(obj):
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in volumes and mount["name"] not in claims:
                    problems.append(f"{name}/{container['name']}: volumeMount {mount['name']} has no volume")
        for volume in volumes.values():
            if "configMap" in volume and volume["configMap"]["name"] not in configmaps | PROVIDED_CONFIGMAPS:
                problems.append(f"{name}: volume {volume['name']} names a ConfigMap that is not rendered")
            if "secret" in volume and volume["secret"]["secretName"] not in PROVIDED_SECRETS:
                problems.append(f"{name}: volume {volume['name']} names an undocumented Secret")
    return problems


def agent_identity_problems(objects: list[Obj]) -> list[str]:
    """The agent runs as the uid that owns its state dir, the key exists before `run` starts, GPU nodes only,
    and no GPU is taken from workloads."""
    daemonset = workload(objects, "gpucensus-agent")
    spec = pod_spec(daemonset)
    problems = []
    agent_container = next(c for c in spec["containers"] if c["name"] == "agent")
    uid = effective_uid(daemonset, agent_container)
    inits = spec.get("initContainers", [])
    chowns = [m for c in inits for m in re.findall(r"chown -R (\d+):(\d+) (\S+)", " ".join(c.get("command", [])))]
    state_mount = next((m for m in agent_container["volumeMounts"] if m["name"] == "state"), None)
    if state_mount is None:
        return ["agent: no state volume mounted"]
    if not any(int(u) == uid and path == state_mount["mountPath"] for u, _g, path in chowns):
        problems.append(f"agent runs as uid {uid} but no init container gives it {state_mount['mountPath']}")
    keygen = [c for c in inits if "keygen" in " ".join(c.get("command", []))]
    if not keygen:
        problems.append("agent: no init container creates the node key (run exits 4 without one)")
    elif effective_uid(daemonset, keygen[0]) != uid:
        problems.append("agent: the key is created by another uid than the agent's (it could not read it)")
    elif inits.index(keygen[0]) < min((i for i, c in enumerate(inits) if "chown" in " ".join(c.get("command", []))),
                                      default=len(inits)):  # fmt: skip
        problems.append("agent: keygen runs before the state dir is handed to the agent's uid")
    if spec.get("nodeSelector", {}).get("nvidia.com/gpu.present") != "true":
        problems.append("agent: not restricted to GPU nodes (nodeSelector nvidia.com/gpu.present)")
    for container in containers(daemonset):
        for section in ("requests", "limits"):
            if "nvidia.com/gpu" in (container.get("resources") or {}).get(section, {}):
                problems.append(f"agent/{container['name']}: requests nvidia.com/gpu, taking a GPU from workloads")
    return problems


def resource_problems(objects: list[Obj]) -> list[str]:
    problems = []
    for obj in (o for o in objects if o.get("kind") in WORKLOADS):
        for container in containers(obj):
            resources = container.get("resources") or {}
            if not resources.get("requests") or "memory" not in resources.get("limits", {}):
                problems.append(f"{obj['metadata']['name']}/{container['name']}: no requests or memory limit")
    return problems


def config_text(objects: list[Obj], configmap_prefix: str, key: str) -> str:
    found = [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].startswith(configmap_prefix)]
    assert len(found) == 1, f"expected one ConfigMap {configmap_prefix}*"
    return found[0]["data"][key]


def materialize(obj: Obj, container: Obj, objects: list[Obj], root: Path, secrets: dict[str, dict[str, str]]) -> None:
    """Lay out `container`'s mounts under `root` as the kubelet would: ConfigMap and Secret keys as files, other
    volumes as empty directories (a hostPath of type File as an empty file)."""
    volumes = {v["name"]: v for v in pod_spec(obj).get("volumes", [])}
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in by_kind(objects, "ConfigMap")}
    configmaps.update({name: files for name, files in secrets.items() if name in PROVIDED_CONFIGMAPS})
    for mount in container.get("volumeMounts", []):
        target = root / mount["mountPath"].lstrip("/")
        volume = volumes.get(mount["name"], {})
        files, mode = None, 0o644  # the kubelet's default mode for ConfigMap and Secret files
        if "configMap" in volume:
            files = configmaps.get(volume["configMap"]["name"], {})
        elif "secret" in volume:
            files = secrets.get(volume["secret"]["secretName"], {})
            mode = volume["secret"].get("defaultMode", mode)
            if "items" in volume["secret"]:  # only the listed keys, under the listed names
                files = {item["path"]: files[item["key"]] for item in volume["secret"]["items"] if item["key"] in files}
        if files is not None:
            target.mkdir(parents=True, exist_ok=True)
            for name, content in files.items():
                (target / name).write_text(content, encoding="utf-8")
                (target / name).chmod(mode)
        elif volume.get("hostPath", {}).get("type") == "File":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("0123456789abcdef0123456789abcdef\n", encoding="utf-8")
        else:
            target.mkdir(parents=True, exist_ok=True)


def rooted(text: str, root: Path) -> str:
    """The TOML text with every absolute path string moved under `root` (the materialized container)."""
    return re.sub(r'"/', f'"{root.as_posix()}/', text)


def literal_env(container: Obj, placeholders: dict[str, str]) -> dict[str, str]:
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item.get("valueFrom", {}):
            env[item["name"]] = placeholders[item["valueFrom"]["secretKeyRef"]["name"]]
    return env


def mount_of(container: Obj, path: str) -> Obj | None:
    """The volumeMount holding `path` (the deepest one), or None."""
    best = None
    for mount in container.get("volumeMounts", []):
        if PurePosixPath(path).is_relative_to(mount["mountPath"]):
            if best is None or len(mount["mountPath"]) > len(best["mountPath"]):
                best = mount
    return best


def agent_config_problems(objects: list[Obj], root: Path) -> list[str]:
    """agent.toml loads with the agent's own loader inside the materialized container; its token file is the
    mounted Secret's key; the state dir is the writable hostPath; every path setting is mounted."""
    daemonset = workload(objects, "gpucensus-agent")
    container = next(c for c in pod_spec(daemonset)["containers"] if c["name"] == "agent")
    config_path = container["args"][container["args"].index("--config") + 1]
    materialize(daemonset, container, objects, root, {"gpucensus-enroll": {"token": "site-token-123\n"}})
    config_file = root / config_path.lstrip("/")
    if not config_file.is_file():
        return [f"agent: --config {config_path} is not a mounted file"]
    raw = agent_config.load(config_file, env=literal_env(container, {}))
    problems = []
    for dotted in sorted(agent_config.PATH_KEYS):
        value = getattr(raw, dotted.replace(".", "_"))
        if value and mount_of(container, value) is None:
            problems.append(f"agent: {dotted} = {value} is not on any volume")
    if not raw.node_id and not any("GPUCENSUS_AGENT_NODE_ID" == e["name"] for e in container.get("env", [])):
        volumes = {v["name"]: v for v in pod_spec(daemonset).get("volumes", [])}
        mount = next((m for m in container["volumeMounts"] if m["mountPath"] == "/etc/machine-id"), None)
        if mount is None or volumes[mount["name"]].get("hostPath", {}).get("path") != "/etc/machine-id":
            problems.append("agent: node id from the machine id, but the host's /etc/machine-id is not mounted")
    state = mount_of(container, raw.node_state_dir)
    if state is None or state.get("readOnly") or state["name"] != "state":
        problems.append(f"agent: state_dir {raw.node_state_dir} is not the writable state volume")
    config_file.write_text(rooted(config_file.read_text(encoding="utf-8"), root), encoding="utf-8")
    rooted_config = agent_config.load(config_file, env=literal_env(container, {}))
    try:
        if rooted_config.read_token() != "site-token-123":
            problems.append("agent: the enrolment token file is not the Secret's key `token`")
    except ConfigError as err:
        problems.append(f"agent: the enrolment token cannot be read where agent.toml looks: {err}")
    return problems


def collector_config_problems(objects: list[Obj], root: Path) -> list[str]:
    """collector.toml loads with the collector's loader (and the container's environment); its ports are the
    container's and the probes'; an SQLite store lives on a persistent volume."""
    collector_obj = workload(objects, "gpucensus-collector")
    container = pod_spec(collector_obj)["containers"][0]
    config_path = container["args"][container["args"].index("--config") + 1]
    materialize(collector_obj, container, objects, root, {})
    config_file = root / config_path.lstrip("/")
    if not config_file.is_file():
        return [f"collector: --config {config_path} is not a mounted file"]
    env = literal_env(container, {"gpucensus-collector-db": "host=db dbname=gpucensus"})
    config = collector_config.load_config(config_file, env=env)
    problems = []
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    if int(config.server.listen.rpartition(":")[2]) != ports.get("grpc"):
        problems.append("collector: [server] listen is not the grpc containerPort")
    if config.metrics.listen and int(config.metrics.listen.rpartition(":")[2]) != ports.get("metrics"):
        problems.append("collector: [metrics] listen is not the metrics containerPort")
    # Kubernetes' grpc: probes speak plaintext only: with TLS they would fail and restart a healthy collector.
    handler = "tcpSocket" if config.server.tls_cert else "grpc"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if (container.get(probe) or {}).get(handler, {}).get("port") != ports.get("grpc"):
            problems.append(f"collector: {probe} is not a {handler} probe on the grpc port")
    for setting in (config.server.tls_cert, config.server.tls_key):
        if setting and mount_of(container, setting) is None:
            problems.append(f"collector: {setting} is not on any volume")
    if config.store.kind == "sqlite":
        claims = {c["metadata"]["name"] for c in collector_obj["spec"].get("volumeClaimTemplates", [])}
        mount = mount_of(container, config.store.path or config.store.data_dir)
        if mount is None or mount["name"] not in claims:
            problems.append("collector: the SQLite store is not on a PersistentVolumeClaim")
    elif collector_obj["kind"] == "StatefulSet" and collector_obj["spec"].get("volumeClaimTemplates"):
        problems.append("collector: PostgreSQL store but still a StatefulSet with a PVC")
    return problems


def network_problems(objects: list[Obj]) -> list[str]:
    """Some NetworkPolicy lets the agent pods reach the collector's gRPC port; the Service points at it."""
    agent_labels = pod_spec_labels(workload(objects, "gpucensus-agent"))
    collector_obj = workload(objects, "gpucensus-collector")
    collector_labels = pod_spec_labels(collector_obj)
    ports = pod_spec(collector_obj)["containers"][0]["ports"]
    grpc_port = next(p["containerPort"] for p in ports if p["name"] == "grpc")
    allowed = False
    for policy in by_kind(objects, "NetworkPolicy"):
        if not _selects(policy["spec"]["podSelector"], collector_labels):
            continue
        for rule in policy["spec"].get("ingress", []):
            from_agent = any(_selects(peer.get("podSelector", {}), agent_labels) for peer in rule.get("from", []))
            if from_agent and any(p.get("port") == grpc_port for p in rule.get("ports", [])):
                allowed = True
    problems = [] if allowed else ["no NetworkPolicy lets the agents reach the collector's gRPC port"]
    services = [s for s in by_kind(objects, "Service") if _selects({"matchLabels": s["spec"]["selector"]},
                                                                     collector_labels)]  # fmt: skip
    names = {p["name"] for p in pod_spec(collector_obj)["containers"][0]["ports"]}
    if not services or any(p["targetPort"] not in names for s in services for p in s["spec"]["ports"]):
        problems.append("the collector Service does not select the collector or names a port it lacks")
    return problems


def service_monitor_problems(objects: list[Obj]) -> list[str]:
    """ServiceMonitor is a CRD (not in kubernetes-validate's schemas): check its structure by hand."""
    problems = []
    for monitor in by_kind(objects, "ServiceMonitor"):
        if monitor.get("apiVersion") != "monitoring.coreos.com/v1" or not monitor["metadata"].get("namespace"):
            problems.append("ServiceMonitor: wrong apiVersion or no namespace")
        selector = monitor["spec"]["selector"]
        services = [s for s in by_kind(objects, "Service") if _selects(selector, s["metadata"].get("labels", {}))]
        ports = {p["name"] for s in services for p in s["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            if endpoint.get("port") not in ports:
                problems.append(f"ServiceMonitor: endpoint port {endpoint.get('port')} is on no selected Service")
    return problems


def pod_spec_labels(obj: Obj) -> dict[str, str]:
    return obj["spec"]["template"]["metadata"]["labels"]


def _selects(selector: Obj, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def toml_value(text: str, section: str, key: str) -> Any:
    return tomllib.loads(text)[section][key]


def tls_problems(objects: list[Obj], root: Path) -> list[str]:
    """The agents use TLS exactly when the collector serves it (else: UNAVAILABLE forever)."""
    agent_obj, collector_obj = workload(objects, "gpucensus-agent"), workload(objects, "gpucensus-collector")
    agent_container = next(c for c in pod_spec(agent_obj)["containers"] if c["name"] == "agent")
    collector_container = pod_spec(collector_obj)["containers"][0]
    agent_cfg = agent_config.load(
        root / "agent" / agent_container["args"][-1].lstrip("/"), env=literal_env(agent_container, {})
    )
    collector_cfg = collector_config.load_config(
        root / "collector" / collector_container["args"][-1].lstrip("/"),
        env=literal_env(collector_container, {"gpucensus-collector-db": "host=db"}),
    )
    if agent_cfg.tls_enabled != bool(collector_cfg.server.tls_cert):
        return [f"agent TLS {agent_cfg.tls_enabled} but collector TLS {bool(collector_cfg.server.tls_cert)}"]
    return []
