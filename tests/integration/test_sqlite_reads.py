"""SQLite reads run on a connection of their own per thread: a query answers while a write transaction holds the
store's lock (before, a long scan held that lock and the acks waited behind it), sees only committed data, and
`close` waits for a read in progress."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from gpucensus.collector.errors import StoreError
from gpucensus.collector.store import open_store
from gpucensus.collector.store.base import Entity, Site


def test_a_read_answers_while_a_write_holds_the_lock(tmp_path: Path) -> None:
    store = open_store("sqlite", data_dir=str(tmp_path))
    store.migrate()
    store.add_entity(Entity("acme", "US"))
    store.add_site(Site("fra1", "DE", "acme"))
    writing, release = threading.Event(), threading.Event()

    def writer() -> None:
        with store._tx(True) as cur:  # the lock every write and, before, every read took
            cur.execute("INSERT INTO sites (id, country, entity) VALUES ('waw1', 'PL', 'acme')")
            writing.set()
            release.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert writing.wait(30)
        answers: list[object] = []
        reader = threading.Thread(target=lambda: answers.append([s.site for s in store.site_status()]))
        reader.start()
        reader.join(20)  # a liveness bound, not a timing: a blocked read never returns while the write is open
        assert answers == [["fra1"]]  # the committed state only: the open write's site is not seen
    finally:
        release.set()
        thread.join()
    assert [s.site for s in store.site_status()] == ["fra1", "waw1"]
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.country_totals()
