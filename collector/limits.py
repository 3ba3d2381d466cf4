"""What one client may cost the collector: open Report streams (in total and per peer address), devices per
envelope, and a per-key budget of envelopes and bytes per minute. Each refusal is a typed error the one status
table maps (`collector/statuses.py`): RESOURCE_EXHAUSTED "retry later" (with a retry-after hint in the trailing
metadata, so the agent keeps the envelope pending) or INVALID_ARGUMENT for an envelope that can never fit.

Checked before the pipeline runs (the device limit: by the pipeline, right after the signature holds and before
anything else is read), so a refused envelope leaves nothing in the store.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gpucensus.collector.ingest.errors import MalformedError
from gpucensus.common.wire import RETRY_AFTER_KEY  # the trailer the agent reads as "retry later, not a verdict"

__all__ = ["RETRY_AFTER_KEY", "KeyBudget", "LimitError", "Peek", "StreamSlots", "TooManyDevicesError"]


class LimitError(Exception):
    """The collector is at a limit for this client: retry after `retry_after` seconds; nothing was stored."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = max(1, math.ceil(retry_after))


class TooManyDevicesError(MalformedError):
    """An envelope listing more devices than `[server] max_devices_per_envelope`: refused, never stored."""


def peer_address(peer: str) -> str:
    """The client's address without its port: "ipv4:10.0.0.7:51234" -> "ipv4:10.0.0.7" (unix sockets as is)."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6") and ":" in rest:
        return f"{kind}:{rest.rpartition(':')[0]}"
    return peer


class StreamSlots:
    """Counts open Report streams; `open` refuses one beyond `total` or beyond `per_peer` from one address."""

    def __init__(self, total: int, per_peer: int) -> None:
        self.total = total
        self.per_peer = per_peer
        self._open: dict[str, int] = {}
        self._count = 0
        self._lock = threading.Lock()

    def open(self, peer: str) -> None:
        with self._lock:
            if self._count >= self.total:
                raise LimitError(f"the collector has {self._count} Report streams open, its limit; retry later", 5)
            if self._open.get(peer, 0) >= self.per_peer:
                raise LimitError(
                    f"{peer} has {self.per_peer} Report streams open, the limit per client; close one or retry later",
                    5,
                )
            self._open[peer] = self._open.get(peer, 0) + 1
            self._count += 1

    def close(self, peer: str) -> None:
        with self._lock:
            left = self._open.get(peer, 0) - 1
            if left > 0:
                self._open[peer] = left
            else:
                self._open.pop(peer, None)
            self._count = max(0, self._count - 1)

    @property
    def count(self) -> int:
        return self._count


@dataclass(frozen=True)
class Peek:
    """What the collector reads from an envelope before judging it (nothing here is trusted)."""

    keyid: str


def peek(envelope: bytes) -> Peek:
    """The first signature's keyid, for the key's budget; anything unreadable counts as no key (the pipeline then
    refuses the envelope with the precise reason). Only the outer JSON is read: the payload is parsed once, by
    the pipeline, after its signature holds."""
    try:
        outer = json.loads(envelope)
        return Peek(keyid=str(outer["signatures"][0]["keyid"]))
    except (ValueError, KeyError, IndexError, TypeError, RecursionError):
        return Peek(keyid="")


def check_devices(devices: int, limit: int) -> None:
    """TooManyDevicesError when a (verified) predicate lists more than `limit` devices."""
    if devices > limit:
        raise TooManyDevicesError(
            f"envelope-too-many-devices: the envelope lists {devices} devices, the collector accepts at most "
            f"{limit} per envelope ([server] max_devices_per_envelope)"
        )


class KeyBudget:
    """Envelopes and bytes per minute per key, as token buckets (a full minute's worth may come at once).

    `check` refuses before the pipeline runs; `charge` is called only for an envelope the pipeline stored, so
    envelopes that fail their signature (anyone can name another node's keyid) cannot spend a node's budget.
    0 disables a budget."""

    def __init__(
        self, envelopes_per_minute: int, bytes_per_minute: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limits = (float(envelopes_per_minute), float(bytes_per_minute))
        self._clock = clock
        self._buckets: dict[str, tuple[float, float, float]] = {}  # keyid -> (envelopes, bytes, as of)
        self._lock = threading.Lock()

    def _level(self, keyid: str, now: float) -> tuple[float, float]:
        envelopes_cap, bytes_cap = self._limits
        envelopes, size, since = self._buckets.get(keyid, (envelopes_cap, bytes_cap, now))
        refill = (now - since) / 60
        return min(envelopes_cap, envelopes + envelopes_cap * refill), min(bytes_cap, size + bytes_cap * refill)

    def check(self, keyid: str, size: int) -> None:
        envelopes_cap, bytes_cap = self._limits
        with self._lock:
            envelopes, available = self._level(keyid, self._clock())
        if envelopes_cap and envelopes < 1:
            wait = 60 * (1 - envelopes) / envelopes_cap
            raise LimitError(
                f"key {keyid[:16]} is over its budget of {envelopes_cap:g} envelopes per minute "
                f"([server] node_envelopes_per_minute); retry in {math.ceil(wait)} s",
                wait,
            )
        if bytes_cap and available < min(size, bytes_cap):
            wait = 60 * (min(size, bytes_cap) - available) / bytes_cap
            raise LimitError(
                f"key {keyid[:16]} is over its budget of {bytes_cap:g} bytes per minute "
                f"([server] node_bytes_per_minute); retry in {math.ceil(wait)} s",
                wait,
            )

    def charge(self, keyid: str, size: int) -> None:
        with self._lock:
            now = self._clock()
            envelopes, available = self._level(keyid, now)
            self._buckets[keyid] = (max(0.0, envelopes - 1), max(0.0, available - size), now)
            if len(self._buckets) > 100_000:  # keys seen long ago are full again: forget them
                cutoff = now - 60
                self._buckets = {k: v for k, v in self._buckets.items() if v[2] >= cutoff}
