"""Full or compact: what the agent signs this round (docs/formats.md, "Compact statement").

A full statement carries the whole inventory; a compact one (`COMPACT_PREDICATE_TYPE`) says "unchanged since
the full envelope <sequence, digest>". The agent signs a full statement

- on its first round after start (nothing is known about what the collector accepted),
- when the inventory changed: the predicate, without the chain fields, differs from the last full one (a
  reboot changes the boot facts),
- when it carries location evidence (only a full statement carries it; the next round may be compact again),
- when `full_every_seconds` passed since the last full statement it signed (0: every round is full),
- when the collector rejected an envelope since (a compact statement naming a full one it did not accept, or
  after a decommission, a move or a re-key: it wants a fresh inventory),

and a compact statement naming its last full envelope otherwise. Pure: the caller passes its clock's reading.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from gpucensus.common import jcs


@dataclass(frozen=True)
class LastFull:
    """The last full statement this agent signed."""

    sequence: int
    digest: str  # hex SHA-256 of its envelope bytes
    fingerprint: str  # hex SHA-256 of the JCS bytes of its predicate without chain fields
    signed_at: float  # the caller's clock (monotonic seconds)


EVIDENCE = "location_evidence"


def fingerprint(predicate: dict[str, Any]) -> str:
    """What "the inventory changed" compares: the SHA-256 of the predicate's JCS bytes (no chain fields yet),
    without its location evidence (fresh measurements are no change of inventory)."""
    inventory = {name: value for name, value in predicate.items() if name != EVIDENCE}
    return hashlib.sha256(jcs.canonical_bytes(inventory)).hexdigest()


class FullPolicy:
    """Decides, round by round, whether the next statement is full or compact (see the module docstring)."""

    def __init__(self, full_every_seconds: float) -> None:
        self.full_every_seconds = full_every_seconds
        self.last_full: LastFull | None = None  # None: the first round after start is full
        self._rejected = False

    def compact_for(self, predicate: dict[str, Any], now: float) -> LastFull | None:
        """The full statement a compact one may name this round, or None when the round must be full."""
        last = self.last_full
        if last is None or self._rejected or self.full_every_seconds <= 0 or predicate.get(EVIDENCE):
            return None
        if now - last.signed_at >= self.full_every_seconds or now < last.signed_at:
            return None
        return last if fingerprint(predicate) == last.fingerprint else None

    def signed_full(self, predicate: dict[str, Any], sequence: int, digest: str, now: float) -> None:
        """Record the full statement just signed (and spooled): the next compact ones name it."""
        self.last_full = LastFull(sequence, digest, fingerprint(predicate), now)
        self._rejected = False

    def rejected(self) -> None:
        """The collector rejected an envelope: the next round is full."""
        self._rejected = True
