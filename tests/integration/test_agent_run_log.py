"""`gpucensus-agent run` against a real collector: the agent verifies the log's checkpoints as it goes (key
trusted on first use and pinned) and its later statements carry the verified checkpoint's {size, root} in
`last_checkpoint`, which is a tree head of the collector's own log."""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gpucensus.collector.config import CollectorConfig, ServerConfig
from gpucensus.collector.registry import new_token
from gpucensus.collector.server import run_server
from gpucensus.collector.store import open_store
from gpucensus.common import dsse, merkle, note

from tests.ingest_nodes import register
from tests.integration.log_fixtures import log_config
from tests.integration.test_agent_check import agent_config, cli


def test_statements_carry_the_checkpoint_the_agent_verified(tmp_path: Path) -> None:
    store = open_store("sqlite", data_dir=str(tmp_path / "collector"))
    register(store, "fra1", "DE")
    token, record = new_token("fra1", datetime.now(UTC), timedelta(hours=1))
    store.add_token(record)
    config = CollectorConfig(server=ServerConfig(listen="127.0.0.1:0"), log=log_config(tmp_path / "log"))
    server, port = run_server(config, store)
    try:
        agent = agent_config(tmp_path, f"127.0.0.1:{port}", None, token=token)  # type: ignore[arg-type]
        result = cli("run", "--config", str(agent), "--rounds", "12")
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr and "ERROR" not in result.stderr
        assert "trusting the collector's log key on first use" in result.stderr
        state = tmp_path / "agent" / "log-monitor.json"
        assert stat.S_IMODE(state.stat().st_mode) == 0o600
        log_key = note.SignerKey.parse((tmp_path / "log" / "log.key").read_text())
        assert json.loads(state.read_text())["vkey"] == str(log_key.verifier())  # pinned on first use
        checkpoints = []
        for index, envelope in store.log_entries(0, store.log_sequenced()):
            payload = json.loads(dsse.b64decode(json.loads(envelope)["payload"]))
            checkpoints.append((index, payload["predicate"]["last_checkpoint"]))
        assert checkpoints[0][1] == {}  # nothing verified before the first delivery
        carried = [(i, c) for i, c in checkpoints if c]
        assert carried, f"no statement carried a verified checkpoint: {checkpoints}"
        for index, checkpoint in carried:
            assert checkpoint["size"] <= index  # a checkpoint the agent saw before it signed this statement
            root = merkle.tree_root(checkpoint["size"], store.log_hashes)
            assert base64.b64encode(root).decode() == checkpoint["root"]
    finally:
        server.stop(None).wait()
        store.close()
