"""`gpucensus-collector node rekey|move|events` and `token create --node-id`: re-keying and moving a node are
explicit operator actions, each recorded (who, what, when), on real stores (SQLite file, PostgreSQL schema)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from gpucensus.collector.registry import hash_token

from tests.ingest_nodes import TestNode
from tests.integration.test_collector_registry_cli import cli, setup_registry  # noqa: F401 (the fixture)

pytest_plugins = ["tests.integration.store_fixtures"]  # make_store, store_kind


def enrolled_node(cli, make_store, node: TestNode) -> None:  # noqa: F811 - the fixture's value
    setup_registry(cli)
    assert cli("site", "add", "waw1", "--country", "PL", "--entity", "acme")[0] == 0
    token = cli("token", "create", "--site", "fra1")[1].strip()
    make_store().enroll(node.keyid, node.public_key_pem, node.node_id, "", hash_token(token), datetime.now(UTC))


def test_an_operator_re_keys_and_moves_a_node_and_every_change_is_listed(cli, make_store, tmp_path: Path) -> None:  # noqa: F811
    old, new = TestNode("node-1"), TestNode("node-1")
    enrolled_node(cli, make_store, old)
    pub = tmp_path / "node.key.pub"
    pub.write_text(new.public_key_pem)

    code, out, err = cli("node", "rekey", "node-1", "--public-key", str(pub), "--reason", "disk replaced")
    assert (code, err) == (0, "")
    assert out == f"node node-1 at site fra1: key {new.keyid} bound\nkey {old.keyid} revoked\n"
    store = make_store()
    assert store.get_key(old.keyid).revoked and not store.get_key(new.keyid).revoked
    assert cli("node", "move", "node-1", "--site", "waw1")[:2] == (0, "node node-1 moved to site waw1\n")
    assert cli("node", "move", "node-1", "--site", "waw1")[1] == "node node-1 is at site waw1 already\n"
    assert cli("node", "revoke", "node-1")[0] == 0

    code, out, _ = cli("node", "events", "node-1", "--format", "json")
    events = json.loads(out)
    assert code == 0 and [e["event"] for e in events] == ["enrolled", "rekeyed", "moved", "revoked"]
    assert events[0]["actor"].startswith("token:") and events[0]["key"] == old.keyid
    rekeyed = events[1]
    assert (rekeyed["key"], rekeyed["old_key"], rekeyed["reason"]) == (new.keyid, old.keyid, "disk replaced")
    assert all(e["actor"].startswith("operator:") for e in events[1:])
    assert (events[2]["old_site"], events[2]["site"]) == ("fra1", "waw1")
    code, out, _ = cli("node", "events")
    assert code == 0 and out.splitlines()[0].split() == [
        "time", "node", "event", "key", "old_key", "site", "old_site", "actor", "reason",
    ]  # fmt: skip


def test_a_token_for_one_node_id_re_keys_only_that_node_at_its_site(cli, make_store) -> None:  # noqa: F811
    old, new = TestNode("node-1"), TestNode("node-1")
    enrolled_node(cli, make_store, old)
    code, out, err = cli("token", "create", "--site", "waw1", "--node-id", "node-1")
    assert code == 2 and out == "" and "node 'node-1' is at site 'fra1'" in err and "node move" in err
    code, out, err = cli("token", "create", "--site", "fra1", "--node-id", "node-1")
    assert code == 0 and "node node-1 only" in err
    store = make_store()
    store.enroll(new.keyid, new.public_key_pem, "node-1", "", hash_token(out.strip()), datetime.now(UTC))
    assert store.get_key(old.keyid).revoked and not store.get_key(new.keyid).revoked


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("node", "rekey", "node-1", "--public-key", "/nonexistent/node.key.pub"), "cannot read the public key"),
        (("node", "rekey", "node-1", "--public-key", "{not_a_key}"), "is not an Ed25519 public key"),
        (("node", "rekey", "nobody", "--public-key", "{pub}"), "no node 'nobody'"),
        (("node", "rekey", "node-1", "--public-key", "{enrolled}"), "is already enrolled"),
        (("node", "rekey", "node-1", "--public-key", "{pub}", "--reason", "\x1b[2J"), "control characters"),
        (("node", "move", "node-1", "--site", "nowhere"), "site 'nowhere' does not exist"),
        (("node", "move", "nobody", "--site", "waw1"), "no node 'nobody'"),
        (("token", "create", "--site", "fra1", "--node-id", "bad id"), "invalid node id"),
    ],
)
def test_operator_mistakes_exit_2_with_a_message_and_no_traceback(
    cli,  # noqa: F811
    make_store,
    tmp_path: Path,
    argv: tuple[str, ...],
    message: str,
) -> None:
    old = TestNode("node-1")
    enrolled_node(cli, make_store, old)
    files = {"pub": tmp_path / "new.pub", "not_a_key": tmp_path / "junk.pub", "enrolled": tmp_path / "old.pub"}
    files["pub"].write_text(TestNode("node-1").public_key_pem)
    files["not_a_key"].write_text("hello\n")
    files["enrolled"].write_text(old.public_key_pem)
    code, out, err = cli(*[a.format(**files) for a in argv])
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err
    assert [e.event for e in make_store().node_events("node-1")] == ["enrolled"]
