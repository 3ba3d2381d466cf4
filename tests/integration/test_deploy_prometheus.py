"""deploy/prometheus/rules.yml and deploy/grafana/gpucensus.json: the rules pass `promtool check rules` and
their unit tests (`promtool test rules`, Debian's prometheus package, installed by scripts/ensure-tools.sh), every
alert has a unit test, and every metric the rules and the dashboard name is one a running collector (scraped over
HTTP) or the agent (its registry as `gpucensus-agent run` builds it) actually exports. Without promtool the
promtool tests skip; under CI=true they fail."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from gpucensus.agent.metrics import AgentMetrics
from gpucensus.agent.monitor import LogMonitor
from gpucensus.agent.spool import Spool
from gpucensus.collector.config import CollectorConfig, MetricsConfig, ServerConfig
from prometheus_client import CollectorRegistry, generate_latest

from tests.ingest_nodes import TestNode
from tests.integration.server_fixtures import DEADLINE, Collector, serving

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "rules_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "gpucensus.json"
NAME = re.compile(r"\bgpucensus_[a-z0-9_]+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "info": ("_info",)}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not found (scripts/ensure-tools.sh installs Debian's prometheus package)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI=true: the alerting rules must be checked in CI")
        pytest.skip(message)
    return path


def test_the_rules_pass_promtool_check() -> None:
    done = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_pass_their_unit_tests() -> None:
    done = subprocess.run([promtool(), "test", "rules", RULES_TEST.name], cwd=RULES_TEST.parent,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_every_alert_has_a_unit_test() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"] if case.get("exp_alerts")}
    assert alerts - tested == set()


def exported_names(text: str) -> set[str]:
    """Every series name an exposition offers: sample names, and each family's names by type (a gauge family
    with no sample yet, such as a country's allocation before any Tier 2 site, still names its series)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {name} | {name + suffix for suffix in SUFFIXES.get(kind, ())}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


@pytest.fixture(name="collector")
def collector_fixture(tmp_path: Path) -> Iterator[Collector]:
    from gpucensus.collector.store import open_store

    store = open_store("sqlite", data_dir=str(tmp_path / "collector-data"))
    config = CollectorConfig(server=ServerConfig(listen="127.0.0.1:0"), metrics=MetricsConfig(listen="127.0.0.1:0"))
    try:
        yield from serving(store, config)
    finally:
        store.close()


def collector_names(collector: Collector) -> set[str]:
    node = TestNode("node-1")
    collector.enroll(node, site="ae1", country="AE")
    collector.report([node.next()])
    url = f"http://127.0.0.1:{collector.server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=DEADLINE) as response:
        return exported_names(response.read().decode())


def agent_names(tmp_path: Path) -> set[str]:
    registry = CollectorRegistry()  # as `gpucensus-agent run` builds it: the spool's metrics and the agent's
    spool = Spool(tmp_path / "spool.db", 1 << 20, registry)
    try:
        AgentMetrics(registry)
        LogMonitor(tmp_path, 1.0, spool, registry=registry)
        return exported_names(generate_latest(registry).decode())
    finally:
        spool.close()


def dashboard_queries(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "query", "definition") and isinstance(value, str):
                yield value
            else:
                yield from dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_queries(item)


def test_rules_and_dashboard_name_only_exported_metrics(collector: Collector, tmp_path: Path) -> None:
    exported = collector_names(collector) | agent_names(tmp_path)
    assert "gpucensus_build_info" in exported and not any(n.endswith("_created") for n in exported)
    rules = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    dashboard = list(dashboard_queries(json.loads(DASHBOARD.read_text())))
    assert len(dashboard) >= 15
    for where, queries in (("rules.yml", rules), ("gpucensus.json", dashboard)):
        named = {n for q in queries for n in NAME.findall(q)}
        assert named, where
        assert named - exported == set(), f"{where} names metrics nobody exports"


def test_the_dashboard_is_grafana_json_on_a_datasource_variable() -> None:
    doc = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for p in doc["panels"]:
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert all(t["expr"] for t in p["targets"]), p["title"]
