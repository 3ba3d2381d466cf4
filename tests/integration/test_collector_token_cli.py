"""`gpucensus-collector token create --uses N|list|revoke|uses` and `node enroll` (issue 15): site tokens for
fleets and pre-registration without a token, on real stores (SQLite file, PostgreSQL schema)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from gpucensus.collector.registry import hash_token
from gpucensus.collector.store.base import TokenRejectedError

from tests.ingest_nodes import TestNode
from tests.integration.test_collector_registry_cli import cli, setup_registry  # noqa: F401 (the fixture)

pytest_plugins = ["tests.integration.store_fixtures"]  # make_store, store_kind


def test_a_site_token_is_listed_with_its_uses_and_revoked_by_its_id(cli, make_store) -> None:  # noqa: F811
    setup_registry(cli)
    code, out, err = cli("token", "create", "--site", "fra1", "--uses", "3", "--ttl", "2h")
    assert code == 0 and "3-use enrollment token" in err
    token_hash = hash_token(out.strip())
    public_id = token_hash[:12]
    assert public_id in err
    store, now = make_store(), datetime.now(UTC)
    for i in range(2):
        store.enroll(f"k{i}", "PEM", f"gpu-{i}", "", token_hash, now)
    code, out, _ = cli("token", "list", "--format", "json")
    [row] = json.loads(out)
    assert code == 0 and (row["id"], row["site"], row["node"], row["uses_left"], row["uses"], row["state"]) == (
        public_id, "fra1", "", 1, 3, "usable",
    )  # fmt: skip
    code, out, _ = cli("token", "uses", public_id, "--format", "json")
    assert code == 0 and [(u["node"], u["key"], u["token"]) for u in json.loads(out)] == [
        ("gpu-0", "k0", public_id), ("gpu-1", "k1", public_id),
    ]  # fmt: skip
    code, out, _ = cli("token", "revoke", public_id)
    assert code == 0 and out == f"token {public_id} (site fra1) revoked; 1 of 3 uses unused\n"
    assert "already revoked" in cli("token", "revoke", public_id)[1]
    with pytest.raises(TokenRejectedError):
        store.enroll("k9", "PEM", "gpu-9", "", token_hash, now)
    code, out, _ = cli("token", "list")
    assert code == 0 and out.splitlines()[1].split()[-1] == "revoked"


def test_node_enroll_pre_registers_a_node_without_a_token(cli, make_store, tmp_path: Path) -> None:  # noqa: F811
    setup_registry(cli)
    node = TestNode("gpu-pre")
    pub = tmp_path / "node.key.pub"
    pub.write_text(node.public_key_pem)
    code, out, _ = cli("node", "enroll", "--node-id", "gpu-pre", "--site", "fra1", "--public-key", str(pub))
    assert code == 0 and out == f"node gpu-pre enrolled at site fra1 with key {node.keyid}\n"
    [event] = make_store().node_events("gpu-pre")
    assert event.event == "enrolled" and event.actor.startswith("operator:")
    assert make_store().get_key(node.keyid).site == "fra1"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("token", "create", "--site", "fra1", "--uses", "0"), "invalid number of token uses 0"),
        (("token", "create", "--site", "fra1", "--uses", "2", "--node-id", "n1"), "is single use"),
        (("token", "revoke", "xyz"), "is not a token id"),
        (("token", "revoke", "0123456789ab"), "no token with id 0123456789ab"),
        (("token", "uses", "0123456789ab"), "no token with id 0123456789ab"),
        (("node", "enroll", "--node-id", "node-1", "--site", "fra1", "--public-key", "{pub}"), "already enrolled"),
        (("node", "enroll", "--node-id", "gpu-2", "--site", "fra1", "--public-key", "{enrolled}"), "already enrolled"),
        (("node", "enroll", "--node-id", "gpu-2", "--site", "nowhere", "--public-key", "{pub}"), "does not exist"),
        (("node", "enroll", "--node-id", "bad id", "--site", "fra1", "--public-key", "{pub}"), "invalid node id"),
        (("node", "enroll", "--node-id", "gpu-2", "--site", "fra1", "--public-key", "/nonexistent"), "cannot read"),
    ],
)
def test_operator_mistakes_exit_2_with_a_message_and_no_traceback(
    cli,  # noqa: F811
    make_store,
    tmp_path: Path,
    argv: tuple[str, ...],
    message: str,
) -> None:
    setup_registry(cli)
    old = TestNode("node-1")
    token = cli("token", "create", "--site", "fra1")[1].strip()
    make_store().enroll(old.keyid, old.public_key_pem, "node-1", "", hash_token(token), datetime.now(UTC))
    files = {"pub": tmp_path / "new.pub", "enrolled": tmp_path / "old.pub"}
    files["pub"].write_text(TestNode("gpu-2").public_key_pem)
    files["enrolled"].write_text(old.public_key_pem)
    code, out, err = cli(*[a.format(**files) for a in argv])
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err
    assert [k.node_id for k in make_store().list_keys()] == ["node-1"]
