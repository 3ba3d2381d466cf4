"""The data behind every dashboard page: a JSON-ready dict per view, the same for the HTML, `/api/...` and CSV.

Each view returns `{"title", ..., "tables": {name: {"columns": [...], "rows": [{column: value}]}}}`; the pages
draw the tables (and charts from them), `/api/<view>` returns the dict, `/csv/<view>?table=NAME` one table.
Values are plain JSON (TPP as integers, shares as floats rounded for reading, times as RFC 3339 strings).
NotFound names what was asked for and is not there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from gpucensus.collector import history
from gpucensus.collector.config import NodesConfig
from gpucensus.collector.dashboard.source import ComplianceSource
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.location.status import current_statuses, location_rows
from gpucensus.collector.store.base import AttestationSummary, NodeStatus, Store

HISTORY_MAX_POINTS = 200  # a dashboard history is one page: coarser steps for longer ranges
HISTORY_DEFAULT_WEEKS = 12


class NotFound(Exception):
    """The page asked for a country, site, node or attestation that does not exist."""


@dataclass(frozen=True)
class Context:
    store: Store
    source: ComplianceSource
    nodes: NodesConfig
    clock: Callable[[], datetime]


def when(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def table(columns: list[str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"columns": columns, "rows": rows}


def _share(value: Fraction | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _node_state(node: NodeStatus, stale: set[str]) -> str:
    if node.revoked:
        return "revoked"
    if node.last_attested_at is None:
        return "never seen"
    return "stale" if node.node_id in stale else "reporting"


def _stale(ctx: Context, now: datetime) -> set[str]:
    stale = ctx.store.stale_nodes(now, ctx.nodes.stale_intervals, ctx.nodes.interval_seconds)
    return {n.node_id for n in stale}


# --- overview ---------------------------------------------------------------------------------------------------


def overview(ctx: Context, pack_name: str | None) -> dict[str, Any]:
    state = ctx.source.overview(pack_name)
    pack, ev = state.pack, state.evaluation
    ref = ev.h100_reference_tpp
    countries = []
    for c in ev.countries:
        if c.allocation_tpp is not None:
            kind, used, limit = "allocation", c.allocation_used_tpp or 0, c.allocation_tpp
        elif c.tier == 3 and pack.tier3_prohibited:
            kind, used, limit = "prohibited", c.tpp, 0
        else:
            kind, used, limit = "none", c.tpp, None
        countries.append({"country": c.country, "tier": c.tier, "counted_tpp": c.tpp, "h100e": round(c.tpp / ref, 2),
                          "limit_kind": kind, "used_tpp": used, "limit_tpp": limit, "status": c.status})  # fmt: skip
    uveu, nveu_limit = pack.uveu, pack.nveu_limit(ev.as_of)
    entities = []
    for e in ev.entities:
        tier2 = {k: v for k, v in (e.shares.get("by_country") or {}).items() if pack.tier(k) == 2}
        top = max(tier2.items(), key=lambda kv: kv[1]) if tier2 else (None, None)
        entities.append({
            "entity": e.id, "authorization": e.authorization, "headquarters": e.headquarters, "counted_tpp": e.tpp,
            "h100e": round(e.tpp / ref, 2), "tier1_share": _share(e.shares.get("tier1")),
            "tier1_min_share": _share(uveu.tier1_min_share) if uveu and e.authorization == "uveu" else None,
            "largest_tier2_country": top[0], "largest_tier2_share": _share(top[1]),
            "country_max_share": _share(uveu.country_max_share) if uveu and e.authorization == "uveu" else None,
            "nveu_limit_tpp": nveu_limit if e.authorization == "nveu" else None, "status": e.status,
        })  # fmt: skip
    findings = [{"severity": f.severity, "rule": f.rule, "subject": f.subject, "message": f.message,
                 "opened_at": when(f.opened_at)} for f in state.findings]  # fmt: skip
    now = ctx.clock()
    nodes = ctx.store.list_nodes()
    stale = _stale(ctx, now)
    states = [_node_state(n, stale) for n in nodes]
    freshness = {s: states.count(s) for s in ("reporting", "stale", "never seen", "revoked")}
    attention = [{"node": n.node_id, "site": n.site, "state": s, "last_attested_at": when(n.last_attested_at)}
                 for n, s in zip(nodes, states, strict=True) if s in ("stale", "never seen")]  # fmt: skip
    ingest = [{"severity": f.severity, "rule": f.rule_id, "subject": f.subject, "message": f.message,
               "created_at": when(f.created_at)} for f in ctx.store.list_findings(limit=20)]  # fmt: skip
    recorded = [{"severity": f.severity, "rule": f.rule_id, "subject": f.subject, "opened_at": when(f.opened_at),
                 "cleared_at": when(f.cleared_at), "message": f.message}
                for f in ctx.source.finding_history(pack)]  # fmt: skip
    located = location_rows(ctx.store, [s.id for s in ctx.store.list_sites()])
    locations = [{"site": r["site"], "location": r["status"], "latitude": r["latitude"], "longitude": r["longitude"],
                  "nodes": ", ".join(f"{n['node_id']}: {n['status']}" for n in r["nodes"])}
                 for r in located or []]  # fmt: skip
    summary = pack.summary()
    return {
        "title": "Overview",
        "generated_at": when(now),
        "policy": {**summary, "sources": [dict(s) for s in pack.sources], "as_of": ev.as_of.isoformat(),
                   "violations": ev.count("violation"), "warnings": ev.count("warning"), "compliant": ev.compliant},
        "packs": ctx.source.pack_names(),
        "freshness": freshness,
        "landmarks": located is not None,  # False: no landmark registered, so no site has location evidence
        "tables": {
            "countries": table(["country", "tier", "counted_tpp", "h100e", "limit_kind", "used_tpp", "limit_tpp",
                                "status"], countries),
            "entities": table(["entity", "authorization", "headquarters", "counted_tpp", "h100e", "tier1_share",
                               "tier1_min_share", "largest_tier2_country", "largest_tier2_share",
                               "country_max_share", "nveu_limit_tpp", "status"], entities),
            "findings": table(["severity", "rule", "subject", "message", "opened_at"], findings),
            "finding_history": table(["severity", "rule", "subject", "opened_at", "cleared_at", "message"], recorded),
            "nodes": table(["node", "site", "state", "last_attested_at"], attention),
            "ingest_findings": table(["severity", "rule", "subject", "message", "created_at"], ingest),
            "locations": table(["site", "location", "latitude", "longitude", "nodes"], locations),
        },
    }  # fmt: skip


# --- drill-down -------------------------------------------------------------------------------------------------


def country(ctx: Context, code: str, pack_name: str | None) -> dict[str, Any]:
    ev = ctx.source.overview(pack_name).evaluation
    status = {s.site: s for s in ctx.store.site_status()}
    located = current_statuses(ctx.store)
    rows = []
    for s in ev.sites:
        if s.country != code:
            continue
        st = status.get(s.id)
        rows.append({"site": s.id, "entity": s.entity, "tier": s.tier, "nodes": st.nodes if st else 0,
                     "gpus": s.gpus, "counted_tpp": s.tpp, "unknown": s.unknown, "status": s.status,
                     "location": located.get(s.id, ""),
                     "last_attested_at": when(st.last_attested_at) if st else None})  # fmt: skip
    result = next((c for c in ev.countries if c.country == code), None)
    if result is None and not rows:
        raise NotFound(f"no site in country {code!r}")
    return {
        "title": f"Country {code}",
        "country": code,
        "status": result.status if result else "compliant",
        "counted_tpp": result.tpp if result else 0,
        "allocation_tpp": result.allocation_tpp if result else None,
        "allocation_used_tpp": result.allocation_used_tpp if result else None,
        "tables": {"sites": table(["site", "entity", "tier", "nodes", "gpus", "counted_tpp", "unknown", "status",
                                   "location", "last_attested_at"], rows)},
    }  # fmt: skip


def site(ctx: Context, site_id: str) -> dict[str, Any]:
    record = ctx.store.get_site(site_id)
    if record is None:
        raise NotFound(f"no site {site_id!r}")
    stale = _stale(ctx, ctx.clock())
    rows = [{"node": n.node_id, "gpus": n.gpus, "state": _node_state(n, stale), "last_sequence": n.last_sequence,
             "last_attested_at": when(n.last_attested_at), "enrolled_at": when(n.enrolled_at)}
            for n in ctx.store.list_nodes(site_id)]  # fmt: skip
    return {
        "title": f"Site {site_id}",
        "site": site_id,
        "country": record.country,
        "entity": record.entity,
        "tables": {"nodes": table(["node", "gpus", "state", "last_sequence", "last_attested_at", "enrolled_at"],
                                  rows)},
    }  # fmt: skip


def node(ctx: Context, node_id: str) -> dict[str, Any]:
    attestations = ctx.store.node_attestations(node_id)
    # the site of its newest attestation is where to look first (one site's nodes, not the fleet's)
    nearby = ctx.store.list_nodes(attestations[0].site) if attestations else []
    found = [n for n in nearby if n.node_id == node_id] or [n for n in ctx.store.list_nodes() if n.node_id == node_id]
    if not found:
        raise NotFound(f"no node {node_id!r}")
    status = found[0]
    record = ctx.store.get_site(status.site)
    latest = next((a for a in attestations if (a.keyid, a.sequence) == (status.keyid, status.last_sequence)), None)
    if latest is not None and latest.kind == "compact":  # the GPUs come from the full inventory it vouches for
        named = (latest.keyid, latest.unchanged_since)
        latest = next((a for a in attestations if (a.keyid, a.sequence) == named and a.kind == "full"), None)
    devices = ctx.store.node_devices(node_id)
    states = ctx.store.gpu_states(d.uuid for d in devices if d.uuid)
    gpus = []
    for d in devices:
        state = states.get(d.uuid)
        gpus.append({"index": d.index, "model": d.model or d.name, "uuid": d.uuid, "status": d.status, "tpp": d.tpp,
                     "eccn": d.eccn, "first_seen": when(state.acquired) if state else None,
                     "decommissioned_at": when(state.decommissioned_at) if state else None,
                     "last_attested_at": when(status.last_attested_at),
                     "log_index": latest.log_index if latest else None})  # fmt: skip
    history_rows = [_history_row(a) for a in attestations]
    return {
        "title": f"Node {node_id}",
        "node": node_id,
        "site": status.site,
        "country": record.country if record else "",
        "keyid": status.keyid,
        "revoked": status.revoked,
        "tables": {
            "gpus": table(["index", "model", "uuid", "status", "tpp", "eccn", "first_seen", "decommissioned_at",
                           "last_attested_at", "log_index"], gpus),
            "attestations": table(["sequence", "statement", "keyid", "site", "stated_at", "received_at", "log_index",
                                   "gpus", "digest"], history_rows),
        },
    }  # fmt: skip


def _history_row(a: AttestationSummary) -> dict[str, Any]:
    """One line of a node's history. A run of compact statements is one line: its newest statement (sequence,
    times, log index, digest: the envelope it links to), how many statements it holds since which, and the full
    inventory they all vouch for, whose GPUs it counts (a compact statement lists none: it says "unchanged")."""
    row = {"sequence": a.sequence, "statement": "full inventory", "keyid": a.keyid, "site": a.site,
           "stated_at": when(a.timestamp), "received_at": when(a.received_at), "log_index": a.log_index,
           "gpus": a.gpus, "digest": a.digest, "kind": a.kind, "statements": a.statements,
           "first_sequence": a.sequence, "first_stated_at": when(a.timestamp), "unchanged_since": None}  # fmt: skip
    if a.kind == "compact":
        row |= {"first_sequence": a.first_sequence, "first_stated_at": when(a.first_timestamp),
                "unchanged_since": a.unchanged_since}  # fmt: skip
        run = f"{a.statements} statements, #{a.first_sequence} to #{a.sequence}, from {row['first_stated_at']}"
        row["statement"] = f"unchanged since #{a.unchanged_since} ({'1 statement' if a.statements == 1 else run})"
    return row


def envelope(ctx: Context, keyid: str, sequence: str) -> tuple[str, bytes]:
    """(file name, the envelope's exact signed bytes as stored)."""
    if len(keyid) != 64 or any(c not in "0123456789abcdef" for c in keyid) or not sequence.isdigit():
        raise NotFound("an envelope is named by keyid (64 hex digits) and sequence (a number)")
    record = ctx.store.get_attestation(keyid, int(sequence))
    if record is None:
        raise NotFound(f"no attestation ({keyid}, {sequence})")
    return f"{keyid[:16]}-{int(sequence)}.dsse.json", record.envelope


# --- history ----------------------------------------------------------------------------------------------------


def history_view(
    ctx: Context, pack_name: str | None, start: str | None, end: str | None, every: str | None
) -> dict[str, Any]:
    """Per-country TPP at each instant of the range (default: the last 12 weeks, weekly) against the cap."""
    now = ctx.clock()
    stop = history.parse_instant(end, "to") if end else now
    first = history.parse_instant(start, "from") if start else stop - timedelta(weeks=HISTORY_DEFAULT_WEEKS)
    step = every or "1w"
    points = history.instants(first, stop, step)
    if len(points) > HISTORY_MAX_POINTS:
        raise ConfigError(f"the range has {len(points)} points (at most {HISTORY_MAX_POINTS})", hint="a coarser step")
    pack = ctx.source.pack(pack_name)
    catalogue, rules = ctx.source.evaluation_context()
    series = history.history(ctx.store, points, pack, catalogue, rules)
    rows = [{"at": history.iso(p.at), "country": c["country"], "tier": c["tier"], "tpp": c["tpp"],
             "counted_tpp": c["counted_tpp"], "h100e": c["h100e"], "allocation_tpp": c["allocation_tpp"],
             "allocation_used_tpp": c["allocation_used_tpp"], "status": c["status"]}
            for p in series for c in p.countries]  # fmt: skip
    return {
        "title": "History",
        "policy": pack.summary(),
        "from": history.iso(first),
        "to": history.iso(stop),
        "every": step,
        "instants": [history.iso(p) for p in points],
        "tables": {"countries": table(["at", "country", "tier", "tpp", "counted_tpp", "h100e", "allocation_tpp",
                                       "allocation_used_tpp", "status"], rows)},
    }  # fmt: skip
