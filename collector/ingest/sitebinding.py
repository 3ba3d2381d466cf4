"""`binding.site-mismatch`: the site a statement names (`node.site`, from the agent's configuration) against the
site its key is enrolled at (set by the operator, through the token or `node move`).

The enrolled site is authoritative: the attestation is stored and counted there, never moved by what a node says.
The disagreement is a finding. A violation when the node names a registered site in ANOTHER country: either the
node was moved across a border without `node move` (the enrolled country's counts are then wrong, which is what
export-control reporting is about) or its configuration claims so; someone must look. A warning when the named site
is in the same country or is not registered (a stale or mistyped agent configuration: the counts per country stay
right). A statement naming no site (the agent's default) is no finding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gpucensus.collector.ingest.model import VIOLATION, WARNING, Finding
from gpucensus.collector.store.base import Site

RULE = "binding.site-mismatch"
_SHOWN = 64  # characters of the claimed site kept in the message (it is signed, but the agent's text)


def check_site(
    node_id: str,
    enrolled: Site | None,
    enrolled_site: str,
    predicate: Mapping[str, Any],
    site: Callable[[str], Site | None],
) -> tuple[Finding, ...]:
    """The finding (or none) for the site a statement names; `site` looks a registered site up."""
    node = predicate.get("node")
    claimed = node.get("site", "") if isinstance(node, Mapping) else ""
    if claimed in ("", None, enrolled_site):
        return ()
    shown = repr(claimed[:_SHOWN]) if isinstance(claimed, str) else repr(claimed)[:_SHOWN]
    other = site(claimed) if isinstance(claimed, str) and claimed else None
    here = enrolled.country if enrolled else "?"
    if other is not None and enrolled is not None and other.country != enrolled.country:
        severity, where = VIOLATION, f"site {shown} is in {other.country}, not {here}"
    else:
        severity, where = WARNING, (f"site {shown} is also in {here}" if other else f"site {shown} is not registered")
    message = (
        f"node {node_id} says it is at site {shown} but is enrolled at site {enrolled_site} ({here}); {where}. "
        f"It is counted at {enrolled_site}: if it moved, run gpucensus-collector node move {node_id} --site SITE, "
        "otherwise correct [node] site in the agent's configuration"
    )
    return (Finding(RULE, severity, f"node:{node_id}", message),)
