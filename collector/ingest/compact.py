"""Reference step of a compact statement: it may only repeat its key's latest accepted full inventory, unchanged
since by anything the collector knows (docs/formats.md, "Compact statement"). Pure: the store lookups arrive as
arguments. A finding here rejects the statement: nothing is stored or counted, the agent sends a full one.

- `compact.unknown-inventory` (violation): no accepted full inventory of this key has that sequence and digest
  (another key's or node's envelope, a rejected or never received one, a compact one, a digest that does not
  match the sequence, or the key has no full inventory at all);
- `compact.superseded` (warning): an accepted full inventory of the key, but not its latest;
- `compact.binding-changed` (warning): the node was moved, re-keyed or its key revoked since that inventory, or
  it is no longer the node's current inventory: totals must not live on from a statement about another binding;
- `compact.decommissioned` (warning): a GPU it lists was decommissioned since: only a full inventory can say
  whether the node still holds it.
"""

from __future__ import annotations

from gpucensus.collector.ingest.model import VIOLATION, WARNING, Finding
from gpucensus.collector.store.base import FullInventory

UNKNOWN = "compact.unknown-inventory"
SUPERSEDED = "compact.superseded"
BINDING_CHANGED = "compact.binding-changed"
DECOMMISSIONED = "compact.decommissioned"
RULES = (UNKNOWN, SUPERSEDED, BINDING_CHANGED, DECOMMISSIONED)


def check_reference(
    *,
    node_id: str,
    keyid: str,
    named: tuple[int, str],
    latest: FullInventory | None,
    named_is_accepted_full: bool = False,
) -> tuple[Finding, ...]:
    """Findings that reject a compact statement naming `named` (sequence, digest); empty when it may be stored.

    `latest`: the key's latest accepted full inventory; `named_is_accepted_full`: whether the key has an accepted
    full inventory with exactly that sequence and digest (looked up only when it is not `latest`)."""
    sequence, digest = named
    subject = f"node:{node_id}"
    short = digest[:16]
    if latest is None:
        message = f"names inventory {sequence} ({short}…), but key {keyid[:16]} has no accepted full inventory"
        return (Finding(UNKNOWN, VIOLATION, subject, message),)
    if (sequence, digest) != (latest.sequence, latest.digest):
        if named_is_accepted_full:
            message = f"names inventory {sequence} ({short}…), superseded by the key's full inventory {latest.sequence}"
            return (Finding(SUPERSEDED, WARNING, subject, message),)
        message = (
            f"names inventory {sequence} ({short}…), which is no accepted full inventory of key {keyid[:16]} "
            f"(its latest is {latest.sequence}, {latest.digest[:16]}…)"
        )
        return (Finding(UNKNOWN, VIOLATION, subject, message),)
    if latest.node_event:
        message = f"the node was {latest.node_event} after inventory {sequence}: a full inventory is needed"
        return (Finding(BINDING_CHANGED, WARNING, subject, message),)
    if not latest.current:
        message = f"inventory {sequence} is not the node's current inventory: a full inventory is needed"
        return (Finding(BINDING_CHANGED, WARNING, subject, message),)
    if latest.decommissioned:
        message = (
            f"GPU {latest.decommissioned} of inventory {sequence} was decommissioned since: a full inventory is needed"
        )
        return (Finding(DECOMMISSIONED, WARNING, subject, message),)
    return ()
