"""End-to-end delivery over real sockets: two agent processes and one collector process.

The collector is killed with SIGKILL and restarted mid-stream, and one agent is killed with SIGKILL while it
has undelivered envelopes and then restarted. Afterwards every envelope the agents spooled is stored exactly
once (same digest) and none is lost; the same on SQLite and on PostgreSQL. Waits poll (the store, the spools)
with a bound; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import psycopg
import pytest
from gpucensus.agent.chain import STATE_FILE
from gpucensus.agent.keys import generate_key
from gpucensus.collector.registry import make_entity, make_site, new_token
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration.store_fixtures import PG_DSN, make_store, store_kind  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
WAIT_SECONDS = 30.0  # upper bound of any single wait; a healthy run needs a fraction of it
BACKLOG = 8  # envelopes each agent spools while the collector is down (8 x 0.2 s)


def wait_for(what: str, check: Callable[[], bool], procs: list[Proc] = (), poll: float = 0.05) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if check():
            return
        for proc in procs:
            if proc.popen.poll() is not None:
                pytest.fail(f"{proc.name} exited with {proc.popen.returncode} while waiting for {what}\n{proc.log()}")
        time.sleep(poll)
    logs = "\n".join(p.log() for p in procs)
    pytest.fail(f"timed out after {WAIT_SECONDS:.0f}s waiting for {what}\n{logs}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A CLI process with its output in a file (read back when a test fails)."""

    def __init__(self, name: str, argv: list[str], logdir: Path) -> None:
        self.name, self.argv = name, argv
        self.logfile = logdir / f"{name}.log"
        self.popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        out = self.logfile.open("ab")
        self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        return self

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def terminate(self) -> int:
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=WAIT_SECONDS)

    def log(self, tail: int = 4000) -> str:
        text = self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
        return f"--- {self.name} ---\n{text[-tail:] if tail else text}"


class Agent:
    def __init__(self, name: str, root: Path, collector: str, site: str, token: str, profile: str) -> None:
        self.name, self.state = name, root / name
        self.state.mkdir(parents=True)
        self.keyid = generate_key(self.state / "node.key").keyid
        self.config = self.state / "agent.toml"
        self.config.write_text(
            f'[collector]\naddress = "{collector}"\ntimeout_seconds = 5.0\n'
            "retry_initial_seconds = 0.05\nretry_max_seconds = 0.4\n"
            f'[node]\nid = "{name}"\nsite = "{site}"\nstate_dir = "."\n'
            f'[enrollment]\ntoken = "{token}"\n'
            "[spool]\nkeep_delivered = 1000000\n"
            "[schedule]\ninterval_seconds = 0.2\njitter_fraction = 0.1\n"
            f'[inventory]\nbackend = "mock"\nprofile = "{profile}"\n',
            encoding="utf-8",
        )
        argv = [str(BIN / "gpucensus-agent"), "run", "--config", str(self.config), "--log-level", "info"]
        self.proc = Proc(name, argv, root)

    def spool_rows(self, state: str | None = None) -> list[tuple[str, int, str, str]]:
        """(keyid, sequence, sha256, state) of every spooled envelope, read while the agent runs (WAL)."""
        path = self.state / "spool.db"
        if not path.exists():
            return []
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            rows = db.execute("SELECT keyid, sequence, sha256, state FROM envelopes ORDER BY sequence").fetchall()
        except sqlite3.OperationalError:  # the agent has not created the table yet
            return []
        finally:
            db.close()
        return [r for r in rows if state is None or r[3] == state]

    def forget_acks(self, n: int) -> None:
        """Set the last `n` delivered envelopes back to pending (the agent must be stopped)."""
        db = sqlite3.connect(self.state / "spool.db")
        with db:
            db.execute(
                "UPDATE envelopes SET state = 'pending', log_index = NULL WHERE id IN "
                "(SELECT id FROM envelopes WHERE state = 'delivered' ORDER BY sequence DESC LIMIT ?)",
                (n,),
            )
        db.close()

    def reserved(self) -> int:
        """Sequence numbers the chain state says were used (signed, or reserved just before signing)."""
        return json.loads((self.state / STATE_FILE).read_text())["next_sequence"] - 1


class StoredEnvelopes:
    """Reads what the collector stored, straight from its database (SQLite file or PostgreSQL schema)."""

    def __init__(self, factory) -> None:
        self.factory = factory

    def rows(self) -> list[tuple[str, int, str, str]]:
        query = "SELECT keyid, sequence, digest, status FROM attestations ORDER BY keyid, sequence"
        if self.factory.kind == "sqlite":
            path = Path(self.factory.options["data_dir"]) / "collector.db"
            if not path.exists():
                return []
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            try:
                return db.execute(query).fetchall()
            finally:
                db.close()
        with psycopg.connect(PG_DSN, options=f"-c search_path={self.factory.options['schema']}") as conn:
            return [tuple(r) for r in conn.execute(query).fetchall()]

    def count(self, keyid: str) -> int:
        return sum(1 for r in self.rows() if r[0] == keyid)


def test_two_agents_survive_collector_and_agent_crashes(make_store, tmp_path):  # noqa: F811
    store = make_store()
    now = datetime.now(UTC)
    tokens = {}
    for entity, country, auth, site in (("acme", "US", "uveu", "us-east"), ("globex", "IN", "none", "in-west")):
        store.add_entity(make_entity(entity, country, auth))
        store.add_site(make_site(site, country, entity))
        token, record = new_token(site, now, timedelta(hours=1))
        store.add_token(record)
        tokens[site] = token
    store.close()

    port = free_port()
    address = f"127.0.0.1:{port}"
    collector_toml = tmp_path / "collector.toml"
    collector_toml.write_text(
        make_store.toml() + f'[server]\nlisten = "{address}"\nshutdown_grace_seconds = 2\n'
        "[nodes]\ninterval_seconds = 1\n",
        encoding="utf-8",
    )
    collector = Proc(
        "collector", [str(BIN / "gpucensus-collector"), "serve", "--config", str(collector_toml)], tmp_path
    )
    a = Agent("node-a", tmp_path, address, "us-east", tokens["us-east"], "dgx-h100")
    b = Agent("node-b", tmp_path, address, "in-west", tokens["in-west"], "hgx-a100")
    stored = StoredEnvelopes(make_store)
    started = time.monotonic()
    procs = [collector.start()]
    try:
        wait_for("the collector to serve", lambda: serving(address), procs)
        procs += [a.proc.start(), b.proc.start()]
        wait_for("3 stored envelopes per agent", lambda: min(stored.count(a.keyid), stored.count(b.keyid)) >= 3, procs)

        # 1. SIGKILL the collector: the agents keep attesting into their spools and back off.
        collector.kill()
        procs.remove(collector)
        wait_for(
            "a backlog on both agents", lambda: all(len(x.spool_rows("pending")) >= BACKLOG for x in (a, b)), procs
        )

        # 2. SIGKILL agent a while it holds undelivered envelopes: its spool must be intact.
        a.proc.kill()
        procs.remove(a.proc)
        pending_at_kill = a.spool_rows("pending")
        assert len(pending_at_kill) >= BACKLOG and not a.spool_rows("quarantined") and not a.spool_rows("rejected")

        # 3. Restart the collector and SIGKILL it again as soon as agent b's backlog starts to arrive, i.e.
        #    in the middle of b's Report stream (acks lost, envelopes maybe committed: resent as duplicates).
        before = stored.count(b.keyid)
        collector.start()
        procs.append(collector)
        wait_for("agent b's backlog to start arriving", lambda: stored.count(b.keyid) > before, procs, poll=0.005)
        collector.kill()
        b_pending_at_second_kill = len(b.spool_rows("pending"))

        # 4. Restart the collector and agent a: everything drains, in order, once.
        collector.start()
        wait_for("the collector to serve again", lambda: serving(address), procs)
        wait_for("agent b to drain after the collector restart", lambda: not b.spool_rows("pending"), procs)
        a.proc.start()
        procs.append(a.proc)
        drained = {(k, s) for k, s, _, _ in pending_at_kill}
        wait_for(
            "agent a's spool from before the kill to be stored",
            lambda: drained <= {(k, s) for k, s, _, _ in stored.rows()},
            procs,
        )
        wait_for("2 more rounds from agent a", lambda: len(a.spool_rows()) >= len(pending_at_kill) + 2, procs)

        # 5. Lost acks: b's last 3 delivered envelopes are set back to pending (as if their acks never came).
        #    The resend is acknowledged as duplicates and nothing is stored twice.
        assert b.proc.terminate() == 0, b.proc.log()
        procs.remove(b.proc)
        b.forget_acks(3)
        b.proc.start()
        procs.append(b.proc)
        wait_for("b's resent envelopes to be acked as duplicates", lambda: duplicates(b) >= 3, procs)
    finally:
        # agents first (each flushes to the running collector), then the collector
        running = sorted((p for p in procs if p.popen.poll() is None), key=lambda p: p is collector)
        exits = {p.name: p.terminate() for p in running}
    elapsed = time.monotonic() - started
    assert exits.get("node-a") == 0 and exits.get("node-b") == 0, exits

    rows = stored.rows()
    assert len(rows) == len(set((k, s) for k, s, _, _ in rows))
    for agent in (a, b):
        spooled = agent.spool_rows()
        assert [r for r in spooled if r[3] != "delivered"] == [], agent.proc.log()
        mine = [(k, s, d) for k, s, d, _ in rows if k == agent.keyid]
        # exactly once, byte for byte: the stored digests are the spooled envelopes' digests
        assert sorted(mine) == sorted((k, s, d) for k, s, d, _ in spooled), agent.name
        assert all(status == "accepted" for k, _, _, status in rows if k == agent.keyid)
        # none lost: every reserved sequence number was spooled, except at most one per SIGKILL
        sequences = {s for _, s, _, _ in spooled}
        missing = set(range(1, agent.reserved() + 1)) - sequences
        assert len(missing) <= (1 if agent is a else 0), (agent.name, sorted(missing))
    print(
        f"\n[{make_store.kind}] delivery run: {len(rows)} envelopes created and stored exactly once "
        f"(a: {len(a.spool_rows())}, b: {len(b.spool_rows())}) in {elapsed:.1f}s, "
        f"collector SIGKILLed twice (the second time with agent b {b_pending_at_second_kill} envelopes short of "
        f"drained), agent a SIGKILLed with {len(pending_at_kill)} pending; "
        f"{duplicates(a) + duplicates(b)} resent envelope(s) acked as duplicates"
    )


def duplicates(agent: Agent) -> int:
    """Envelopes the agent resent that the collector already had, from the agent's log."""
    return sum(int(n) for n in re.findall(r"\((\d+) already stored\)", agent.proc.log(0)))


def serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
        except grpc.RpcError:
            return False
    return response.status == health_pb2.HealthCheckResponse.SERVING


def test_agent_sigterm_flushes_and_exits_cleanly_while_collector_is_down(tmp_path):
    """No collector at all: SIGTERM ends the agent with exit 0 and everything it signed stays spooled."""
    a = Agent("node-x", tmp_path, f"127.0.0.1:{free_port()}", "site-x", "token-x", "mixed")
    a.proc.start()
    try:
        wait_for("two spooled envelopes", lambda: len(a.spool_rows("pending")) >= 2, [a.proc])
    finally:
        code = a.proc.terminate()
    assert code == 0, a.proc.log()
    rows = a.spool_rows()
    assert [r[3] for r in rows] == ["pending"] * len(rows) and len(rows) == a.reserved()
    assert "final delivery attempt failed" in a.proc.log()
