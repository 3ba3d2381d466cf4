"""A node's history with compact statements, on SQLite and PostgreSQL, and as the dashboard shows it.

A compact statement carries no devices: it says "the inventory is unchanged since full inventory N". Listed as an
attestation with its own (zero) device rows it read as a node that lost every GPU; the history shows each run of
compact statements as one line naming the full inventory it vouches for, with that inventory's GPUs, and stays
bounded however many statements a run holds.
"""

from __future__ import annotations

import csv
import io
import json
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from gpucensus.collector.config import DashboardConfig, NodesConfig
from gpucensus.collector.dashboard.server import DashboardService, start_dashboard
from gpucensus.collector.ingest.pipeline import Pipeline
from gpucensus.collector.store import open_store
from gpucensus.collector.store.base import Store

from tests.ingest_nodes import NOW, TestNode, enroll, mock_predicate

pytest_plugins = ["tests.integration.store_fixtures"]  # make_store, store_kind


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def tick(self) -> None:
        self.now += timedelta(minutes=1)


def report(store: Store, clock: Clock, envelopes: Iterator[bytes] | list[bytes]) -> None:
    pipeline = Pipeline(store, clock=clock)
    for envelope in envelopes:
        assert pipeline.ingest(envelope).log_index is not None
        clock.tick()


def steady_node(store: Store, clock: Clock) -> TestNode:
    """Full inventory #1 (8 GPUs), compact #2..#4, full #5 (the machine rebuilt with 16), compact #6..#7."""
    node = TestNode("node-steady", clock=clock)
    enroll(store, node)
    report(store, clock, [node.full()])
    report(store, clock, (node.compact() for _ in range(3)))
    node.predicate = mock_predicate(node.node_id, "hgx-h100-16x")
    report(store, clock, [node.full()])
    report(store, clock, (node.compact() for _ in range(2)))
    return node


def at(minutes: int) -> datetime:
    return NOW + timedelta(minutes=minutes)


def test_a_run_of_compact_statements_is_one_line_with_its_inventory_gpus(make_store) -> None:
    store = make_store()
    steady_node(store, Clock())
    lines = store.node_attestations("node-steady")
    got = [(a.kind, a.sequence, a.gpus, a.statements, a.first_sequence, a.unchanged_since) for a in lines]
    assert got == [
        ("compact", 7, 16, 2, 6, 5),
        ("full", 5, 16, 1, None, None),
        ("compact", 4, 8, 3, 2, 1),
        ("full", 1, 8, 1, None, None),
    ]
    assert [(a.first_timestamp, a.timestamp) for a in lines if a.kind == "compact"] == [
        (at(5), at(6)),
        (at(1), at(3)),
    ]
    [status] = [n for n in store.list_nodes() if n.node_id == "node-steady"]  # `node list`, the site page
    assert (status.gpus, status.last_sequence) == (16, 7)
    newest = store.get_attestation(lines[0].keyid, 7)
    assert newest is not None and (lines[0].digest, lines[0].log_index) == (newest.digest, newest.log_index)
    # bounded by lines, not statements: the newest two lines, then one
    assert [(a.kind, a.sequence) for a in store.node_attestations("node-steady", limit=2)] == [
        ("compact", 7),
        ("full", 5),
    ]
    assert [(a.kind, a.sequence) for a in store.node_attestations("node-steady", limit=1)] == [("compact", 7)]


def test_a_new_key_starts_its_own_runs(make_store) -> None:
    store = make_store()
    clock = Clock()
    node = steady_node(store, clock)
    # re-keyed (an operator's `node rekey`): the new key's first full inventory, then its compact statements
    fresh = TestNode("node-steady", clock=clock)
    store.rekey_node("node-steady", fresh.keyid, fresh.public_key_pem, clock(), "operator:test")
    report(store, clock, [fresh.full(), fresh.compact()])
    lines = store.node_attestations("node-steady")
    assert [(a.keyid == fresh.keyid, a.kind, a.sequence, a.statements) for a in lines[:3]] == [
        (True, "compact", 2, 1),
        (True, "full", 1, 1),
        (False, "compact", 7, 2),
    ]
    assert node.keyid != fresh.keyid


@pytest.fixture
def dashboard(tmp_path) -> Iterator[DashboardService]:
    store = open_store("sqlite", data_dir=str(tmp_path / "collector"))
    steady_node(store, Clock())
    service = start_dashboard(DashboardConfig(listen="127.0.0.1:0"), store, "us-2026", NodesConfig(),
                              lambda: at(10))  # fmt: skip
    yield service
    service.stop()
    store.close()


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return answer.read().decode()


def test_the_dashboard_shows_compact_runs_as_unchanged_not_as_zero_gpus(dashboard: DashboardService) -> None:
    doc = json.loads(fetch(f"{dashboard.url}api/node?id=node-steady"))
    rows = doc["tables"]["attestations"]["rows"]
    assert [(r["sequence"], r["kind"], r["gpus"]) for r in rows] == [
        (7, "compact", 16),
        (5, "full", 16),
        (4, "compact", 8),
        (1, "full", 8),
    ]
    assert rows[2]["statement"] == "unchanged since #1 (3 statements, #2 to #4, from 2026-11-23T12:01:00Z)"
    assert (rows[2]["statements"], rows[2]["first_sequence"], rows[2]["unchanged_since"]) == (3, 2, 1)
    assert rows[2]["first_stated_at"] == "2026-11-23T12:01:00Z" and rows[2]["stated_at"] == "2026-11-23T12:03:00Z"
    assert rows[1]["statement"] == "full inventory" and rows[1]["unchanged_since"] is None
    assert 0 not in [r["gpus"] for r in rows]
    # the GPUs' log index is that of the full inventory they are listed in, not of the compact statement after it
    assert {g["log_index"] for g in doc["tables"]["gpus"]["rows"]} == {rows[1]["log_index"]}
    assert len(doc["tables"]["gpus"]["rows"]) == 16

    page = fetch(f"{dashboard.url}node?id=node-steady")
    assert "unchanged since #5 (2 statements, #6 to #7, from 2026-11-23T12:05:00Z)" in page
    assert 'data-rows="4"' in page  # one line per run, not one per statement

    table = list(csv.DictReader(io.StringIO(fetch(f"{dashboard.url}csv/node?id=node-steady&table=attestations"))))
    assert [(r["sequence"], r["statement"].split(" (")[0], r["gpus"]) for r in table] == [
        ("7", "unchanged since #5", "16"),
        ("5", "full inventory", "16"),
        ("4", "unchanged since #1", "8"),
        ("1", "full inventory", "8"),
    ]
