"""A store that is damaged or goes away: a clear error that names it, the file left as it was, and a running
collector that recovers by itself when PostgreSQL drops its connections."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from gpucensus.collector.cli import main
from gpucensus.collector.errors import StoreError
from gpucensus.collector.store import open_store
from gpucensus.collector.store.postgres import PostgresStore
from gpucensus.collector.store.sqlite import DB_FILENAME

from tests.ingest_nodes import TestNode, enroll
from tests.integration.store_fixtures import PG_DSN, StoreFactory, skip_without_postgres


def damaged_copies(tmp_path: Path) -> dict[str, bytes]:
    store = open_store("sqlite", data_dir=str(tmp_path / "good"))
    enroll(store, TestNode("node-1"))
    store.close()
    good = (tmp_path / "good" / DB_FILENAME).read_bytes()
    return {
        "not-a-database": b"garbage" * 1000,
        "overwritten-pages": good[:100] + b"\xff" * (len(good) - 100),
        "truncated": good[: len(good) // 2],
    }


def test_a_damaged_sqlite_file_is_refused_with_a_hint_and_left_as_it_was(tmp_path: Path, capsys) -> None:
    for name, content in damaged_copies(tmp_path).items():
        data_dir = tmp_path / name
        data_dir.mkdir()
        (data_dir / DB_FILENAME).write_bytes(content)
        with pytest.raises(StoreError) as err:
            open_store("sqlite", data_dir=str(data_dir))
        assert str(data_dir / DB_FILENAME) in err.value.message and "integrity_check" in err.value.hint, name
        assert main(["site", "list", "--data-dir", str(data_dir)]) == 6
        assert "integrity_check" in capsys.readouterr().err
        assert (data_dir / DB_FILENAME).read_bytes() == content, name  # nothing altered


def test_an_unreachable_postgres_stops_the_cli_with_a_message_not_a_traceback(tmp_path: Path, capsys) -> None:
    config = tmp_path / "collector.toml"
    config.write_text('[store]\nkind = "postgres"\ndsn = "host=127.0.0.1 port=1 dbname=test connect_timeout=2"\n')
    assert main(["site", "list", "--config", str(config)]) == 6
    err = capsys.readouterr().err
    assert "cannot connect to PostgreSQL" in err and "port=1" in err and "Traceback" not in err


def terminate_own_backends(store: PostgresStore) -> None:
    """pg_terminate_backend on this store's idle connections only (the server is shared), and wait until gone."""
    pids = [conn.info.backend_pid for conn in list(store._idle.queue)]
    assert pids
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone():
            pass  # the backend writes its goodbye to our socket before it exits


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[PostgresStore]:
    skip_without_postgres()
    factory = StoreFactory("postgres", tmp_path)
    yield factory()  # type: ignore[misc]
    factory.cleanup()


def test_connections_postgres_drops_while_idle_fail_no_request(postgres: PostgresStore) -> None:
    store = postgres
    node = TestNode("node-1")
    enroll(store, node)
    terminate_own_backends(store)
    assert [k.node_id for k in store.list_keys()] == ["node-1"]  # on a fresh connection, no StoreError
    terminate_own_backends(store)
    store.revoke_key(node.keyid, store.list_keys()[0].enrolled_at)
    assert store.get_key(node.keyid).revoked
