"""Issue 15, done when: a fleet enrolls from ONE multi-use site token, over real processes on loopback.

A `gpucensus-collector serve` process (SQLite file) and 20 `gpucensus-agent run --rounds 1` processes (mock
backend, started together) that share one `token create --uses 20` token: all 20 enroll and deliver; a 21st agent
with the same token is refused (exits non-zero with the collector's message); `token list` shows 0
uses left and `token uses` one row per node. Then the operator re-keys one node (`node rekey`): its old key is
refused by the collector. One agent names another site than the token's in its configuration: it is enrolled and
counted at the token's site, and its statements carry `binding.site-mismatch`.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from gpucensus.agent.attest import sign_predicate
from gpucensus.agent.keys import generate_key, load_key, public_path
from gpucensus.collector.registry import make_entity, make_site
from gpucensus.collector.store import open_store
from gpucensus.common.statement import format_timestamp
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc

from tests.ingest_nodes import mock_predicate
from tests.integration.test_delivery import BIN, WAIT_SECONDS, Agent, Proc, free_port, serving, wait_for

pytestmark = pytest.mark.slow

FLEET = 20
MISPLACED = "gpu-07"  # configured with site sin1 (Singapore); its token is for fra1 (Germany)


def collector_cli(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "gpucensus-collector"), *argv, "--config", str(config)],
        capture_output=True, text=True, timeout=WAIT_SECONDS, check=False,
    )  # fmt: skip


def one_round(agent: Agent) -> Agent:
    agent.proc.argv = [*agent.proc.argv, "--rounds", "1"]
    agent.proc.start()
    return agent


def test_a_fleet_enrolls_from_one_site_token_and_the_21st_node_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = open_store("sqlite", data_dir=str(data))
    store.add_entity(make_entity("acme", "US", "uveu"))
    store.add_site(make_site("fra1", "DE", "acme"))
    store.add_site(make_site("sin1", "SG", "acme"))
    store.close()
    address = f"127.0.0.1:{free_port()}"
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[store]\nkind = "sqlite"\ndata_dir = "{data}"\n[server]\nlisten = "{address}"\nshutdown_grace_seconds = 2\n',
        encoding="utf-8",
    )
    created = collector_cli(config, "token", "create", "--site", "fra1", "--uses", str(FLEET), "--ttl", "1h")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    collector = Proc("collector", [str(BIN / "gpucensus-collector"), "serve", "--config", str(config)], tmp_path)
    procs = [collector.start()]
    try:
        wait_for("the collector to serve", lambda: serving(address), procs)
        names = [f"gpu-{i:02d}" for i in range(FLEET + 1)]
        fleet = [
            Agent(name, tmp_path, address, "sin1" if name == MISPLACED else "fra1", token, "dgx-h100")
            for name in names[:FLEET]
        ]
        for agent in fleet:
            procs.append(one_round(agent).proc)
        exits = {a.name: a.proc.popen.wait(timeout=3 * WAIT_SECONDS) for a in fleet}
        assert exits == dict.fromkeys(names[:FLEET], 0), "\n".join(a.proc.log() for a in fleet if exits[a.name])

        late = one_round(Agent(names[FLEET], tmp_path, address, "fra1", token, "dgx-h100"))
        assert late.proc.popen.wait(timeout=WAIT_SECONDS) != 0
        assert "the collector refused enrollment" in late.proc.log() and "used up" in late.proc.log()

        listed = collector_cli(config, "token", "list", "--format", "json")
        [row] = json.loads(listed.stdout)
        assert (row["uses"], row["uses_left"], row["state"]) == (FLEET, 0, "used up")
        uses = json.loads(collector_cli(config, "token", "uses", row["id"], "--format", "json").stdout)
        assert sorted(u["node"] for u in uses) == names[:FLEET]

        store = open_store("sqlite", data_dir=str(data))
        try:
            nodes = {n.node_id: n for n in store.list_nodes()}
            assert sorted(nodes) == names[:FLEET] and {n.site for n in nodes.values()} == {"fra1"}
            assert all(n.last_sequence == 1 for n in nodes.values())
            [mismatch] = {(f.subject, f.severity) for f in store.list_findings(rule_id="binding.site-mismatch")}
            assert mismatch == (f"node:{MISPLACED}", "violation")
        finally:
            store.close()

        rekeyed = fleet[0]
        old = load_key(rekeyed.state / "node.key")
        new_pub = public_path(generate_key(tmp_path / "new-node.key").path)
        done = collector_cli(config, "node", "rekey", rekeyed.name, "--public-key", str(new_pub))
        assert done.returncode == 0 and f"key {old.keyid} revoked" in done.stdout, done.stderr
        envelope = sign_predicate(
            mock_predicate(rekeyed.name, site="fra1"), old.private_key, sequence=2, previous="",
            timestamp=format_timestamp(datetime.now(UTC)),
        )  # fmt: skip
        with grpc.insecure_channel(address) as channel:
            stub = census_pb2_grpc.CensusStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                list(stub.Report(iter([pb.Envelope(dsse=envelope)]), timeout=WAIT_SECONDS))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, refused.value
        assert "revoked" in refused.value.details()
    finally:
        for proc in procs:
            if proc.popen.poll() is None:
                proc.kill()
