"""`serve`'s retention thread: prune compact statements past `[retention] compact_days` once a day (the same
`Store.prune_compact` as `gpucensus-collector prune`). A failure is logged and retried the next day; it never
stops the collector."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from gpucensus.collector.store.base import Store

log = logging.getLogger("gpucensus.collector.retention")

EVERY_SECONDS = 86400.0
FIRST_AFTER_SECONDS = 600.0  # not in the start-up rush


def start_pruning(
    store: Store, days: int, stop: threading.Event, clock: Callable[[], datetime], *, every: float = EVERY_SECONDS
) -> threading.Thread | None:
    """A daemon thread pruning every `every` seconds until `stop` is set; None when `days` is 0 (keep)."""
    if days <= 0:
        return None

    def run() -> None:
        wait = min(FIRST_AFTER_SECONDS, every)
        while not stop.wait(wait):
            wait = every
            try:
                now = clock()
                removed = store.prune_compact(now - timedelta(days=days), now, batch=1000)
                if removed:
                    log.info("pruned %d compact statement(s) older than %d days", removed, days)
            except Exception as err:  # the store down for a moment: tomorrow
                log.warning("pruning compact statements failed (retried in %.0f s): %s", every, err)

    thread = threading.Thread(target=run, name="census-retention", daemon=True)
    thread.start()
    return thread
