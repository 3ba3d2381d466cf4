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

A rejected compact statement is not stored, so the node's next statement (the full one it sends in answer)
follows a hole in the stored chain. `bridge_rejected` turns the gap and previous-mismatch findings that hole
would raise into one `chain.after-rejected` note (info) when every missing sequence is a compact statement this
collector rejected and the new statement links to the last of them: an honest node answering a rejection is no
chain violation. An auditor sees the hole (the rejected envelopes are no log leaves) and the findings naming it.
"""

from __future__ import annotations

from gpucensus.collector.ingest.model import INFO, VIOLATION, WARNING, Finding
from gpucensus.collector.store.base import FullInventory

UNKNOWN = "compact.unknown-inventory"
SUPERSEDED = "compact.superseded"
BINDING_CHANGED = "compact.binding-changed"
DECOMMISSIONED = "compact.decommissioned"
RULES = (UNKNOWN, SUPERSEDED, BINDING_CHANGED, DECOMMISSIONED)
AFTER_REJECTED = "chain.after-rejected"
BRIDGED = frozenset({"chain.missing-attestations", "chain.previous-mismatch"})
MAX_BRIDGE = 10_000  # rejected compact statements in a row a hole may span (a spool's worth)


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


def bridge_rejected(
    findings: tuple[Finding, ...], *, node_id: str, first: int, last: int, previous: str, rejected: dict[int, str]
) -> tuple[Finding, ...]:
    """`findings` of a chain step whose sequences first..last are missing; when each of them is a compact
    statement this collector rejected (`rejected`: sequence -> digest) and `previous` is the digest of the last,
    the gap and previous-mismatch findings become one `chain.after-rejected` note."""
    if not any(f.rule_id in BRIDGED for f in findings) or first > last or last - first >= MAX_BRIDGE:
        return findings
    if set(rejected) != set(range(first, last + 1)) or rejected.get(last) != previous:
        return findings
    span = str(first) if first == last else f"{first}..{last}"
    note = Finding(
        AFTER_REJECTED, INFO, f"node:{node_id}",
        f"follows sequence(s) {span}: compact statements this collector rejected (not stored)",
    )  # fmt: skip
    return (*(f for f in findings if f.rule_id not in BRIDGED), note)
