"""The durable spool: order, durability across reopen, delivered/rejected/quarantined states, the size limit."""

from __future__ import annotations

import hashlib
import logging
import sqlite3

import pytest
from gpucensus.agent.spool import DELIVERED, PENDING, QUARANTINED, REJECTED, Spool
from gpucensus.common.errors import StateError
from prometheus_client import CollectorRegistry

KEY = "ab" * 32


def envelope(sequence: int, size: int = 100) -> bytes:
    body = f'{{"sequence":{sequence}}}'.encode()
    return body + b" " * max(0, size - len(body))


@pytest.fixture
def registry():
    return CollectorRegistry()


@pytest.fixture
def spool(tmp_path, registry):
    s = Spool(tmp_path / "spool.db", max_bytes=10_000, registry=registry)
    yield s
    s.close()


def metric(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    assert value is not None, name
    return value


def test_pending_in_sequence_order_and_survives_reopen(tmp_path, registry):
    spool = Spool(tmp_path / "spool.db", max_bytes=10_000, registry=registry)
    for seq in (3, 1, 2):
        spool.append(KEY, seq, envelope(seq))
    spool.close()
    again = Spool(tmp_path / "spool.db", max_bytes=10_000)
    assert [(e.keyid, e.sequence, e.envelope) for e in again.pending()] == [
        (KEY, 1, envelope(1)),
        (KEY, 2, envelope(2)),
        (KEY, 3, envelope(3)),
    ]
    assert again._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert again._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    again.close()


def test_same_bytes_again_is_a_no_op_different_bytes_are_refused(spool):
    spool.append(KEY, 1, envelope(1))
    spool.append(KEY, 1, envelope(1))
    assert len(spool.pending()) == 1
    with pytest.raises(StateError, match=r"different envelope for key .* sequence 1"):
        spool.append(KEY, 1, envelope(1, size=200))
    assert spool.pending()[0].envelope == envelope(1)


def test_delivered_only_by_mark_delivered_and_metrics_follow(spool, registry):
    for seq in (1, 2, 3):
        spool.append(KEY, seq, envelope(seq))
    assert metric(registry, "gpucensus_agent_spool_pending_envelopes") == 3
    spool.mark_delivered(KEY, 2, log_index=41)
    assert [e.sequence for e in spool.pending()] == [1, 3]
    assert [(r.keyid, r.sequence, r.log_index, r.error) for r in spool.entries(DELIVERED)] == [(KEY, 2, 41, "")]
    assert metric(registry, "gpucensus_agent_spool_pending_envelopes") == 2
    assert metric(registry, "gpucensus_agent_envelopes_delivered_total") == 1
    assert metric(registry, "gpucensus_agent_spool_undelivered_bytes") == 200
    spool.mark_delivered(KEY, 2, log_index=41)  # a second ack for it changes nothing
    assert metric(registry, "gpucensus_agent_envelopes_delivered_total") == 1


def test_rejected_is_kept_with_its_reason_and_not_resent(spool, registry):
    spool.append(KEY, 1, envelope(1))
    spool.append(KEY, 2, envelope(2))
    spool.mark_rejected(KEY, 1, "PERMISSION_DENIED: key revoked")
    assert [e.sequence for e in spool.pending()] == [2]
    assert [(r.sequence, r.log_index, r.error) for r in spool.entries(REJECTED)] == [
        (1, None, "PERMISSION_DENIED: key revoked")
    ]
    assert metric(registry, "gpucensus_agent_spool_rejected_envelopes") == 1
    assert spool.counts() == {PENDING: 1, DELIVERED: 0, REJECTED: 1, QUARANTINED: 0}


def test_corrupted_row_is_quarantined_loudly_and_the_rest_drains(tmp_path, registry, caplog):
    spool = Spool(tmp_path / "spool.db", max_bytes=10_000, registry=registry)
    for seq in (1, 2, 3):
        spool.append(KEY, seq, envelope(seq))
    raw = sqlite3.connect(tmp_path / "spool.db")
    raw.execute("UPDATE envelopes SET envelope = ? WHERE sequence = 2", (b'{"sequence":2,"tampered":1}',))
    raw.commit()
    raw.close()
    with caplog.at_level(logging.ERROR, logger="gpucensus.agent.spool"):
        assert [e.sequence for e in spool.pending()] == [1, 3]
    assert "sequence 2" in caplog.text and "quarantined" in caplog.text and "digest" in caplog.text
    [row] = spool.entries(QUARANTINED)
    assert (row.keyid, row.sequence) == (KEY, 2) and "do not match their digest" in row.error
    assert metric(registry, "gpucensus_agent_spool_quarantined_envelopes") == 1
    # never dropped: the row and its (damaged) bytes are still there
    assert spool.counts()[QUARANTINED] == 1
    spool.close()


def test_row_with_wrong_column_type_is_quarantined(spool):
    spool.append(KEY, 1, envelope(1))
    spool._db.execute("UPDATE envelopes SET envelope = 'text, not bytes' WHERE sequence = 1")
    assert spool.pending() == []
    assert "not bytes" in spool.entries(QUARANTINED)[0].error


def test_full_spool_refuses_new_envelopes_loudly_and_keeps_old_ones(tmp_path, registry, caplog):
    spool = Spool(tmp_path / "spool.db", max_bytes=250, registry=registry)
    assert spool.check_room()
    spool.append(KEY, 1, envelope(1))
    spool.append(KEY, 2, envelope(2))
    assert spool.check_room()  # 200 < 250
    spool.append(KEY, 3, envelope(3))
    with caplog.at_level(logging.ERROR, logger="gpucensus.agent.spool"):
        assert not spool.check_room()
        assert not spool.check_room()
    assert caplog.text.count("is full") == 2
    assert metric(registry, "gpucensus_agent_spool_full_total") == 2
    assert metric(registry, "gpucensus_agent_spool_max_bytes") == 250
    assert [e.sequence for e in spool.pending()] == [1, 2, 3]  # nothing dropped
    spool.mark_delivered(KEY, 1, log_index=0)
    assert spool.check_room()  # delivery makes room
    spool.close()


def test_rejected_envelopes_count_against_the_limit(tmp_path):
    spool = Spool(tmp_path / "spool.db", max_bytes=150)
    spool.append(KEY, 1, envelope(1))
    spool.append(KEY, 2, envelope(2))
    spool.mark_rejected(KEY, 1, "INVALID_ARGUMENT")
    spool.mark_rejected(KEY, 2, "INVALID_ARGUMENT")
    assert not spool.check_room()
    spool.close()


def test_delivered_rows_are_pruned_to_keep_delivered(tmp_path):
    spool = Spool(tmp_path / "spool.db", max_bytes=100_000, keep_delivered=2)
    for seq in range(1, 6):
        spool.append(KEY, seq, envelope(seq))
        spool.mark_delivered(KEY, seq, log_index=seq - 1)
    assert [row.sequence for row in spool.entries(DELIVERED)] == [4, 5]
    spool.close()


def test_spool_from_a_newer_agent_is_refused(tmp_path):
    path = tmp_path / "spool.db"
    Spool(path, max_bytes=1000).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version=99")
    raw.commit()
    raw.close()
    with pytest.raises(StateError, match="newer agent"):
        Spool(path, max_bytes=1000)


def test_damaged_file_is_a_state_error_with_a_hint(tmp_path):
    path = tmp_path / "spool.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError) as err:
        Spool(path, max_bytes=1000)
    assert str(path) in err.value.message and "move it aside" in err.value.hint


def test_retry_puts_rejected_rows_back_to_pending_and_deletes_nothing(spool, registry):
    for seq in (1, 2, 3, 4):
        spool.append(KEY, seq, envelope(seq))
    spool.mark_rejected(KEY, 1, "UNKNOWN: collector bug")
    spool.mark_rejected(KEY, 3, "RESOURCE_EXHAUSTED: too big")
    spool.mark_delivered(KEY, 4, log_index=7)
    assert [r.sequence for r in spool.retry_rejected(3)] == [3]
    assert [e.sequence for e in spool.pending()] == [2, 3]  # resent in sequence order
    assert [r.sequence for r in spool.retry_rejected(4)] == []  # delivered stays delivered
    assert [r.sequence for r in spool.retry_rejected(keyid_prefix="ff")] == []  # another key: nothing
    assert [(r.sequence, r.error) for r in spool.retry_rejected()] == [(1, "UNKNOWN: collector bug")]
    assert [e.sequence for e in spool.pending()] == [1, 2, 3]
    assert spool.counts() == {PENDING: 3, DELIVERED: 1, REJECTED: 0, QUARANTINED: 0}
    assert metric(registry, "gpucensus_agent_spool_rejected_envelopes") == 0


def test_entries_without_a_state_lists_every_row_in_sequence_order(spool):
    for seq in (2, 1, 3):
        spool.append(KEY, seq, envelope(seq))
    spool.mark_rejected(KEY, 2, "PERMISSION_DENIED: revoked")
    assert [(r.sequence, r.state, r.size_bytes) for r in spool.entries()] == [
        (1, PENDING, 100),
        (2, REJECTED, 100),
        (3, PENDING, 100),
    ]


def test_must_exist_refuses_to_create_a_spool(tmp_path):
    with pytest.raises(StateError, match="no spool at"):
        Spool(tmp_path / "missing" / "spool.db", max_bytes=1000, must_exist=True)
    assert not (tmp_path / "missing").exists()


def test_pending_reads_at_most_limit_rows_in_order(spool):
    for seq in (5, 3, 1, 4, 2):
        spool.append(KEY, seq, envelope(seq))
    assert [e.sequence for e in spool.pending(2)] == [1, 2]
    assert [e.sequence for e in spool.pending()] == [1, 2, 3, 4, 5]


def test_another_sqlite_database_is_refused_and_left_untouched(tmp_path):
    other = tmp_path / "collector.db"
    raw = sqlite3.connect(other)
    raw.execute("CREATE TABLE attestations (id INTEGER)")
    raw.commit()
    raw.close()
    with pytest.raises(StateError, match="not a gpucensus spool") as err:
        Spool(other, max_bytes=1000)
    assert "attestations" in err.value.message
    raw = sqlite3.connect(other)
    assert [r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["attestations"]
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 0
    raw.close()


def test_an_unwritable_spool_directory_gets_a_permissions_hint_not_a_damage_hint(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the spool directory should be")
    with pytest.raises(StateError) as err:
        Spool(blocker / "spool.db", max_bytes=1000)
    assert "must be writable" in err.value.hint and "damaged" not in err.value.hint


def test_a_garbage_spool_file_gets_the_move_it_aside_hint(tmp_path):
    path = tmp_path / "spool.db"
    path.write_bytes(b"\x00garbage" * 500)
    with pytest.raises(StateError, match="not a database") as err:
        Spool(path, max_bytes=1000)
    assert "move it aside" in err.value.hint
    assert path.read_bytes() == b"\x00garbage" * 500  # nothing rewritten


def test_the_last_delivered_sequence_and_digest_survive_keep_delivered_0(tmp_path):
    spool = Spool(tmp_path / "spool.db", max_bytes=10_000, keep_delivered=0)
    for seq in (1, 2, 3):
        spool.append(KEY, seq, envelope(seq))
    for seq in (1, 3, 2):  # acks may come in any order: the highest counts
        spool.mark_delivered(KEY, seq, log_index=seq)
    assert spool.entries() == []  # every delivered row pruned
    assert spool.last_sequence(KEY) == 3
    assert spool.last_delivered(KEY) == (3, hashlib.sha256(envelope(3)).hexdigest())
    assert spool.last_delivered("ef" * 32) is None and spool.last_sequence("ef" * 32) == 0
    spool.close()


def test_a_schema_1_spool_is_upgraded_with_an_id_and_its_last_delivered_rows(tmp_path):
    path = tmp_path / "spool.db"
    raw = sqlite3.connect(path)
    raw.executescript(
        "CREATE TABLE envelopes (id INTEGER PRIMARY KEY AUTOINCREMENT, keyid TEXT NOT NULL, sequence INTEGER NOT NULL,"
        " envelope BLOB NOT NULL, sha256 TEXT NOT NULL, size_bytes INTEGER NOT NULL, state TEXT NOT NULL DEFAULT"
        " 'pending', log_index INTEGER, error TEXT NOT NULL DEFAULT '', UNIQUE (keyid, sequence));"
        "PRAGMA user_version = 1;"
    )
    raw.executemany(
        "INSERT INTO envelopes (keyid, sequence, envelope, sha256, size_bytes, state) VALUES (?, ?, ?, ?, ?, ?)",
        [(KEY, s, envelope(s), hashlib.sha256(envelope(s)).hexdigest(), 100, st) for s, st in
         ((1, DELIVERED), (2, DELIVERED), (3, PENDING))],
    )  # fmt: skip
    raw.commit()
    raw.close()
    listed = Spool(path, max_bytes=10_000, read_only=True)  # read-only: no upgrade, no id
    assert listed.spool_id == "" and listed.counts()[PENDING] == 1
    listed.close()
    spool = Spool(path, max_bytes=10_000)
    assert len(spool.spool_id) == 32 and spool.last_delivered(KEY) == (2, hashlib.sha256(envelope(2)).hexdigest())
    spool.close()
    again = Spool(path, max_bytes=10_000)
    assert again.spool_id == spool.spool_id  # the id is made once
    assert again._db.execute("PRAGMA user_version").fetchone()[0] == 2
    again.close()
