"""`gpucensus-agent run` (mock backend) against a real collector over gRPC, on SQLite and PostgreSQL: the first
round after start is a full inventory, the steady state compact statements naming it; when the collector
rejects one (here: an operator decommissioned a GPU the node still holds) the next round is full again."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gpucensus.collector.registry import new_token
from gpucensus.common import dsse

from tests.ingest_nodes import register
from tests.integration.server_fixtures import Collector, collector_fixture, make_store, store_kind  # noqa: F401
from tests.integration.test_agent_check import AGENT, ROOT, agent_config


def _kinds(collector: Collector) -> list[str]:
    out = []
    for _, envelope in collector.store.log_entries(0, collector.store.log_sequenced()):
        statement = json.loads(dsse.b64decode(json.loads(envelope)["payload"]))
        out.append("compact" if statement["predicateType"].endswith("inventory-unchanged/v1") else "full")
    return out


def _follow_real_time(collector: Collector, until: float) -> None:
    while time.monotonic() < until:
        collector.clock.now = datetime.now(UTC)
        time.sleep(0.01)


def test_the_agent_sends_compact_statements_and_a_full_one_after_a_rejection(
    collector: Collector, tmp_path: Path
) -> None:
    collector.clock.now = datetime.now(UTC)
    register(collector.store, "fra1", "DE")
    token, record = new_token("fra1", collector.clock.now, timedelta(hours=1))
    collector.store.add_token(record)
    config = agent_config(tmp_path, collector.address, None, token=token)  # type: ignore[arg-type]
    config.write_text(config.read_text().replace("interval_seconds = 0.05", "interval_seconds = 0.1"))
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    agent = subprocess.Popen(
        [*AGENT, "run", "--config", str(config), "--rounds", "30"], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while _kinds(collector)[:4] != ["full", "compact", "compact", "compact"]:
            assert time.monotonic() < deadline and agent.poll() is None, _kinds(collector)
            _follow_real_time(collector, time.monotonic() + 0.05)
        [node] = collector.store.list_nodes()
        gpu = next(d.uuid for d in collector.store.node_devices(node.node_id))
        assert collector.store.decommission_gpu(gpu, "scrapped", datetime.now(UTC))
        while agent.poll() is None:
            assert time.monotonic() < deadline, "the agent did not finish its rounds"
            _follow_real_time(collector, time.monotonic() + 0.05)
        _, stderr = agent.communicate(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate()
    kinds = _kinds(collector)
    assert agent.returncode == 1 and "compact.decommissioned" in stderr, stderr  # --rounds reports a rejection
    assert "Traceback" not in stderr
    findings = collector.store.list_findings()
    rejected = sorted(f.sequence for f in findings if f.rule_id == "compact.decommissioned")
    assert rejected, stderr
    # each rejection is answered by a full inventory; the hole the rejected one leaves is no chain violation
    for sequence in rejected:
        answer = collector.store.get_attestation(node.keyid, sequence + 1)
        assert answer is not None and answer.kind == "full", (sequence, kinds)
    assert {f.rule_id for f in findings if f.rule_id.startswith("chain.")} == {"chain.after-rejected"}
    # until the full one after the decommission clears it (its GPU is reported again), then compact again
    assert kinds[0] == "full" and kinds[-1] == "compact" and len(kinds) == 30 - len(rejected), kinds
    assert kinds.count("full") == 1 + len(rejected)
