"""Soak: a real collector process SIGKILLed again and again while several real agents deliver to it.

Each agent runs `gpucensus-agent run` (mock backend, a new envelope every 0.2 s) against a `gpucensus-collector
serve` process that is killed with SIGKILL and restarted, half of the time the moment new envelopes start to arrive
(mid-stream: envelopes committed, acks lost), half of the time after a random pause (backlog builds up in the
spools). Then the agents are stopped (SIGTERM: a final delivery) and the figures are checked and printed:
created (signed and spooled by the agents), acknowledged (delivered in their spools), stored, duplicates stored
(must be 0), lost (must be 0), and how many resent envelopes the collector recognised as already stored.

`make test` runs a short version (SOAK_KILLS_SHORT kills per store); `make soak` (GPUCENSUS_SOAK=long) runs
SOAK_KILLS_LONG kills per store, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gpucensus.collector.registry import make_entity, make_site, new_token

from tests.integration.test_delivery import (
    BIN,
    WAIT_SECONDS,
    Agent,
    Proc,
    StoredEnvelopes,
    duplicates,
    free_port,
    serving,
    wait_for,
)

pytestmark = [pytest.mark.soak, pytest.mark.slow]

LONG = os.environ.get("GPUCENSUS_SOAK") == "long"
SOAK_KILLS_SHORT = 3
SOAK_KILLS_LONG = 24
KILLS = SOAK_KILLS_LONG if LONG else SOAK_KILLS_SHORT
AGENTS = 4 if LONG else 3
PROFILES = ("dgx-h100", "hgx-a100", "mixed", "dgx-h100")
DRAIN_CAP_SECONDS = 600.0
SEED = int(os.environ.get("GPUCENSUS_SOAK_SEED", "8"))


def _registry(make_store, names: list[str]) -> dict[str, str]:
    """One entity and one site per agent; returns each agent's enrollment token."""
    store = make_store()
    now = datetime.now(UTC)
    tokens = {}
    try:
        store.add_entity(make_entity("acme", "US", "uveu"))
        for name in names:
            store.add_site(make_site(f"site-{name}", "US", "acme"))
            token, record = new_token(f"site-{name}", now, timedelta(hours=2))
            store.add_token(record)
            tokens[name] = token
    finally:
        store.close()
    return tokens


def pending(agents: list[Agent]) -> int:
    return sum(len(a.spool_rows("pending")) for a in agents)


def wait_drained(agents: list[Agent], procs: list[Proc]) -> tuple[int, float]:
    """Wait until each agent has at most 2 envelopes pending (the ones of its current rounds). The backlog after
    many kills can take long to drain on a loaded machine: fail only when it stops shrinking for WAIT_SECONDS
    (or after DRAIN_CAP_SECONDS). Returns the backlog at the start and the seconds it took."""
    started = time.monotonic()
    backlog = best = pending(agents)
    stalled_since = started
    while not all(len(a.spool_rows("pending")) <= 2 for a in agents):
        now = time.monotonic()
        current = pending(agents)
        if current < best:
            best, stalled_since = current, now
        for proc in procs:
            if proc.popen.poll() is not None:
                pytest.fail(f"{proc.name} exited with {proc.popen.returncode} while draining\n{proc.log()}")
        if now - stalled_since > WAIT_SECONDS or now - started > DRAIN_CAP_SECONDS:
            logs = "\n".join(p.log() for p in procs)
            pytest.fail(f"the backlog stopped draining at {current} of {backlog} pending\n{logs}")
        time.sleep(0.2)
    return backlog, time.monotonic() - started


def test_collector_sigkill_soak_loses_and_duplicates_nothing(make_store, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    names = [f"soak-{i}" for i in range(AGENTS)]
    tokens = _registry(make_store, names)
    address = f"127.0.0.1:{free_port()}"
    config = tmp_path / "collector.toml"
    config.write_text(
        make_store.toml() + f'[server]\nlisten = "{address}"\nshutdown_grace_seconds = 2\n'
        "[nodes]\ninterval_seconds = 1\n",
        encoding="utf-8",
    )
    collector = Proc("collector", [str(BIN / "gpucensus-collector"), "serve", "--config", str(config)], tmp_path)
    agents = [
        Agent(name, tmp_path, address, f"site-{name}", tokens[name], PROFILES[i % len(PROFILES)])
        for i, name in enumerate(names)
    ]
    stored = StoredEnvelopes(make_store)
    started = time.monotonic()
    procs = [collector.start()]
    kills = mid_stream = 0
    exits: dict[str, int] = {}
    try:
        wait_for("the collector to serve", lambda: serving(address), procs)
        for agent in agents:
            procs.append(agent.proc.start())
        wait_for("every agent to have an envelope stored", lambda: all(stored.count(a.keyid) for a in agents), procs)
        before = len(stored.rows())
        for round_ in range(KILLS):
            if round_ % 2 == 0:  # mid-stream: the moment the (re)started collector stores anything new
                wait_for("new envelopes to arrive", lambda n=before: len(stored.rows()) > n, procs, poll=0.005)
                mid_stream += 1
            else:
                wait_for("the collector to serve again", lambda: serving(address), procs)
                time.sleep(rng.uniform(0.1, 1.0))
            collector.kill()
            kills += 1
            procs.remove(collector)
            time.sleep(rng.uniform(0.0, 0.6))  # the agents spool a backlog meanwhile
            before = len(stored.rows())
            procs.append(collector.start())
        wait_for("the collector to serve again", lambda: serving(address), procs)
        backlog, drain_seconds = wait_drained(agents, procs)
    finally:
        # agents first (each makes a final delivery to the running collector), then the collector
        running = sorted((p for p in procs if p.popen.poll() is None), key=lambda p: p is collector)
        exits = {p.name: p.terminate() for p in running}
    elapsed = time.monotonic() - started
    assert all(exits.get(a.name) == 0 for a in agents), (exits, *(a.proc.log() for a in agents))

    rows = stored.rows()
    keyids = {a.keyid for a in agents}
    mine = [r for r in rows if r[0] in keyids]
    created = acknowledged = lost = 0
    for agent in agents:
        spooled = agent.spool_rows()
        created += len(spooled)
        acknowledged += sum(1 for r in spooled if r[3] == "delivered")
        assert [r for r in spooled if r[3] != "delivered"] == [], agent.proc.log()
        # every sequence the chain reserved was signed and spooled (no agent was killed)
        assert {s for _, s, _, _ in spooled} == set(range(1, agent.reserved() + 1)), agent.name
        stored_digests = {(k, s, d) for k, s, d, _ in mine if k == agent.keyid}
        lost += sum(1 for k, s, d, _ in spooled if (k, s, d) not in stored_digests)
    duplicates_stored = len(mine) - len({(k, s) for k, s, _, _ in mine})
    extra = len({(k, s, d) for k, s, d, _ in mine}) - (created - lost)  # stored but never spooled by an agent
    resent = sum(duplicates(a) for a in agents)
    print(
        f"\n[{make_store.kind}] soak: {kills} collector SIGKILLs ({mid_stream} mid-stream) under {len(agents)} agents "
        f"in {elapsed:.1f} s (seed {SEED}): created {created}, acknowledged {acknowledged}, stored {len(mine)}, "
        f"duplicates stored {duplicates_stored}, lost {lost}; {resent} resent envelope(s) acked as already stored; "
        f"backlog after the last restart {backlog}, drained in {drain_seconds:.1f} s"
    )
    assert kills == KILLS
    assert duplicates_stored == 0 and lost == 0 and extra == 0
    assert created == acknowledged == len(mine)
    assert all(status == "accepted" for *_, status in mine)
