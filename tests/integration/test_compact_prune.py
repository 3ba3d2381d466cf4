"""`prune` of compact statements, on SQLite and PostgreSQL: old compact statements go, every full inventory,
each key's chain head, a compact statement with a finding and one the log has not integrated stay; every leaf
hash stays, so inclusion proofs of pruned leaves still verify; the removed sequences are recorded."""

from __future__ import annotations

from datetime import timedelta

from gpucensus.collector.ingest.pipeline import Pipeline
from gpucensus.common import merkle

from tests.ingest_nodes import NOW, TestNode, enroll
from tests.integration.store_fixtures import make_store, store_kind  # noqa: F401


def test_prune_drops_old_compact_statements_and_nothing_else(make_store) -> None:  # noqa: F811
    store = make_store()
    clock = {"now": NOW}
    pipeline = Pipeline(store, clock=lambda: clock["now"])
    node, other = TestNode("n1"), TestNode("n2")
    enroll(store, node)
    enroll(store, other)
    envelopes = [node.full(), node.compact(), node.compact(), node.compact()]
    node.sequence += 1  # a gap: the next compact statement carries a finding (chain.missing-attestations)
    envelopes += [node.compact(), node.full(), node.compact(), node.compact(), other.full(), other.compact()]
    results = []
    for envelope in envelopes:
        results.append(pipeline.ingest(envelope))
        clock["now"] += timedelta(days=1)
    assert all(r.status == "accepted" for r in results), results
    integrated = 9
    assert store.integrate_log(integrated) == (0, integrated)  # the last leaf is not integrated yet
    root = merkle.tree_root(integrated, store.log_hashes)
    findings_before = len(store.list_findings())

    removed = store.prune_compact(NOW + timedelta(days=30), clock["now"])
    # n1: 2, 3, 4 and 8 (old, integrated); not 6 (a finding), not 9 (its chain head); n2: its compact one is its
    # head (and not integrated); 5 was never stored (the gap)
    assert removed == 4
    stored = [store.get_attestation(node.keyid, s) is not None for s in range(1, 10)]
    assert stored == [True, False, False, False, False, True, True, False, True]
    assert store.get_attestation(other.keyid, 2) is not None
    assert store.pruned_ranges([node.keyid, other.keyid]) == {node.keyid: [(2, 4), (8, 8)]}
    assert len(store.list_findings()) == findings_before
    assert merkle.tree_root(integrated, store.log_hashes) == root
    for index, envelope in enumerate(envelopes[:integrated]):  # pruned leaves still prove their inclusion
        proof = merkle.inclusion_proof(index, integrated, store.log_hashes)
        merkle.verify_inclusion(merkle.leaf_hash(envelope), index, integrated, proof, root)
    assert len(store.node_devices("n1")) == 8 and store.site_status()[0].gpus == 16

    # the not-yet-integrated leaf is integrated after pruning from what is still stored
    assert store.integrate_log(10) == (integrated, 10)
    assert store.prune_compact(NOW + timedelta(days=30), clock["now"]) == 0  # nothing left to prune


def test_serve_prunes_in_the_background_and_survives_a_store_failure(make_store) -> None:  # noqa: F811
    import threading

    from gpucensus.collector.retention import start_pruning

    store = make_store()
    clock = {"now": NOW}
    pipeline = Pipeline(store, clock=lambda: clock["now"])
    node = TestNode("n1")
    enroll(store, node)
    for envelope in [node.full(), node.compact(), node.compact()]:
        assert pipeline.ingest(envelope).status == "accepted"
    store.integrate_log(3)
    clock["now"] = NOW + timedelta(days=100)

    class Failing:  # the store down on the first pass: logged, the next pass prunes
        calls = 0

        def prune_compact(self, before, now, batch):
            Failing.calls += 1
            if Failing.calls == 1:
                raise RuntimeError("store down")
            return store.prune_compact(before, now, batch)

    stop = threading.Event()
    thread = start_pruning(Failing(), 90, stop, lambda: clock["now"], every=0.05)  # type: ignore[arg-type]
    assert thread is not None
    try:
        for _ in range(200):
            if store.pruned_ranges([node.keyid]):
                break
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(5)
    assert store.pruned_ranges([node.keyid]) == {node.keyid: [(2, 2)]} and Failing.calls >= 2
    assert start_pruning(store, 0, stop, lambda: clock["now"]) is None  # 0 days: keep everything


def test_the_prune_command_and_its_setting(tmp_path) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pytest
    from gpucensus.collector.config import load_config
    from gpucensus.common.errors import ConfigError

    root = Path(__file__).resolve().parents[2]
    config = tmp_path / "collector.toml"
    config.write_text(f"[store]\ndata_dir = '{tmp_path / 'data'}'\n[retention]\ncompact_days = 30\n")
    assert load_config(config).retention.compact_days == 30

    def prune(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gpucensus.collector.cli", "prune", "--config", str(config),
                               *argv], cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True,
                              text=True, timeout=120)  # fmt: skip

    done = prune()
    assert done.returncode == 0 and done.stdout.startswith("pruned 0 compact statement(s) received before"), done
    assert "keep compact statements" in prune("--days", "0").stdout
    refused = prune("--days", "-1")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr and "must not be negative" in refused.stderr
    config.write_text("[retention]\ncompact_days = -5\n")
    with pytest.raises(ConfigError, match="compact_days must not be negative"):
        load_config(config)
