"""HTML of the dashboard pages, from the view dicts (`views`): server-side rendered, no script, readable without
CSS. Every value from the store, the statements or a pack goes through `_e` (html.escape, quotes included); links
carry their parameters through `urlencode`, so a hostile node id, hostname or site name stays text.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from gpucensus.collector.dashboard import svg

STYLESHEET = "/static/dashboard.css"


def _e(value: Any) -> str:
    return "" if value is None else escape(str(value), quote=True)


def href(path: str, **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return _e(f"{path}?{query}" if query else path)


def layout(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>gpucensus · {_e(title)}</title>'
        f'<link rel="stylesheet" href="{STYLESHEET}"></head><body>'
        '<header><strong>gpucensus</strong> <nav><a href="/">Overview</a> · <a href="/history">History</a></nav>'
        f"</header><main><h1>{_e(title)}</h1>{body}</main></body></html>\n"
    )


def _cell(column: str, value: Any, links: dict[str, Any]) -> str:
    text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) and "tpp" in column else _e(value)
    if column in links and value is not None:
        return f'<a href="{links[column](value)}">{text}</a>'
    if column == "status" or column == "severity" or column == "state":
        return f'<span class="tag status-{_e(str(value).replace(" ", "-"))}">{text}</span>'
    return text


def render_table(view: str, name: str, data: dict[str, Any], params: dict[str, Any], links: dict[str, Any]) -> str:
    """A table with a CSV download of exactly it; `links` maps a column to a function(value) -> href."""
    columns, rows = data["columns"], data["rows"]
    csv = href(f"/csv/{view}", **params, table=name)
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c, r.get(c), links)}</td>" for c in columns) + "</tr>" for r in rows)
    empty = "" if rows else '<p class="empty">none</p>'
    return (
        f'<table id="table-{_e(name)}" data-rows="{len(rows)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
        f'</table>{empty}<p class="download"><a href="{csv}">CSV</a></p>'
    )


def _country_link(code: Any, pack: str | None) -> str:
    return href("/country", cc=code, pack=pack)


def overview(doc: dict[str, Any], pack: str | None) -> str:
    p = doc["policy"]
    verdict = "compliant" if p["compliant"] else "violation"
    sources = "".join(
        f'<li>{_e(s.get("id", ""))}: {_e(s.get("title", ""))} <span class="muted">{_e(s.get("url", ""))}</span></li>'
        for s in p["sources"]
    )
    options = "".join(
        f'<option value="{_e(n)}"{" selected" if n == p["name"] else ""}>{_e(n)}</option>' for n in doc["packs"]
    )
    parts = [
        f'<section id="policy"><h2>Policy in force: {_e(p["name"])} <span class="tag status-{_e(p["status"])}">'
        f"{_e(p['status'])}</span></h2><p>{_e(p['title'])} (version {_e(p['version'])}), evaluated as of "
        f'{_e(p["as_of"])}: <span id="verdict" class="tag status-{verdict}">{p["violations"]} violation(s), '
        f"{p['warnings']} warning(s)</span></p><details><summary>Sources</summary><ul>{sources}</ul></details>"
        '<form method="get" action="/"><label>Evaluate under <select name="pack">'
        f"{options}</select></label> <button>Switch</button></form></section>",
    ]
    f = doc["freshness"]
    parts.append(
        '<section id="freshness"><h2>Fleet freshness</h2><p>'
        + " · ".join(f'<span class="fresh" data-state="{_e(k)}">{_e(k)}: <b>{v}</b></span>' for k, v in f.items())
        + "</p>"
        + render_table(
            "overview",
            "nodes",
            doc["tables"]["nodes"],
            {"pack": pack},
            {"node": lambda v: href("/node", id=v), "site": lambda v: href("/site", id=v)},
        )
        + "</section>"
    )
    countries = doc["tables"]["countries"]
    by_tier: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in countries["rows"]:
        by_tier[row["tier"]].append(row)
    charts = "".join(
        f"<h3>Tier {tier}</h3>{svg.bars(rows, 'country', f'Tier {tier} countries against their limits')}"
        for tier, rows in sorted(by_tier.items())
    )
    parts.append(
        f'<section id="countries"><h2>Countries against their limits</h2>{charts}'
        + render_table(
            "overview", "countries", countries, {"pack": pack}, {"country": lambda v: _country_link(v, pack)}
        )
        + "</section>"
    )
    parts.append(
        '<section id="entities"><h2>Entities: UVEU / NVEU shares against the limits</h2>'
        + render_table("overview", "entities", doc["tables"]["entities"], {"pack": pack}, {})
        + "</section>"
    )
    parts.append(
        '<section id="findings"><h2>Open findings</h2>'
        + render_table("overview", "findings", doc["tables"]["findings"], {"pack": pack}, {})
        + "</section>"
    )
    parts.append(
        '<section id="finding-history"><h2>Findings opened and cleared</h2><p>As the collector recorded them under '
        "this pack while attestations arrived (newest change first).</p>"
        + render_table("overview", "finding_history", doc["tables"]["finding_history"], {"pack": pack}, {})
        + "</section>"
    )
    parts.append(
        '<section id="locations"><h2>Location evidence</h2><p>Each site against the round-trip bounds its nodes\' '
        "landmarks measured (in-country, unproven, implausible, stale, unmeasured, unlocated)"
        + ("." if doc["landmarks"] else ": no landmark is registered, so no site has location evidence.")
        + "</p>"
        + render_table(
            "overview", "locations", doc["tables"]["locations"], {"pack": pack}, {"site": lambda v: href("/site", id=v)}
        )
        + "</section>"
    )
    parts.append(
        '<section id="ingest"><h2>Recent ingest findings</h2>'
        + render_table("overview", "ingest_findings", doc["tables"]["ingest_findings"], {"pack": pack}, {})
        + "</section>"
    )
    return layout("Overview", "".join(parts))


def country(doc: dict[str, Any], pack: str | None) -> str:
    used, limit = doc["allocation_used_tpp"], doc["allocation_tpp"]
    cap = f"allocation used {used:,} of {limit:,} TPP" if limit else "no allocation"
    body = (
        f'<p>Status <span class="tag status-{_e(doc["status"])}">{_e(doc["status"])}</span>; counted '
        f"{doc['counted_tpp']:,} TPP; {_e(cap)}.</p>"
        + render_table(
            "country",
            "sites",
            doc["tables"]["sites"],
            {"cc": doc["country"], "pack": pack},
            {"site": lambda v: href("/site", id=v)},
        )
    )
    return layout(doc["title"], body)


def site(doc: dict[str, Any]) -> str:
    body = (
        f'<p>Country <a href="{href("/country", cc=doc["country"])}">{_e(doc["country"])}</a>, entity '
        f"{_e(doc['entity'])}.</p>"
        + render_table(
            "site", "nodes", doc["tables"]["nodes"], {"id": doc["site"]}, {"node": lambda v: href("/node", id=v)}
        )
    )
    return layout(doc["title"], body)


def node(doc: dict[str, Any]) -> str:
    keyid = doc["keyid"]
    attestations = doc["tables"]["attestations"]
    body = (
        f'<p>Site <a href="{href("/site", id=doc["site"])}">{_e(doc["site"])}</a> '
        f"({_e(doc['country'])}); key <code>{_e(keyid)}</code>{' (revoked)' if doc['revoked'] else ''}.</p>"
        "<h2>GPUs</h2>"
        + render_table("node", "gpus", doc["tables"]["gpus"], {"id": doc["node"]}, {})
        + "<h2>Attestation history</h2><p>Each envelope downloads as the exact signed bytes the node sent. While "
        "its inventory is unchanged a node sends compact statements that name its last full inventory: a run of "
        "them is one line (its newest statement), with the GPUs of the inventory it vouches for.</p>"
        + render_table(
            "node",
            "attestations",
            attestations,
            {"id": doc["node"]},
            {"sequence": lambda v: _envelope_link(attestations, v)},
        )
    )
    return layout(doc["title"], body)


def _envelope_link(attestations: dict[str, Any], sequence: Any) -> str:
    row = next(r for r in attestations["rows"] if r["sequence"] == sequence)
    return href("/envelope", keyid=row["keyid"], sequence=sequence)


def history(doc: dict[str, Any], pack: str | None) -> str:
    rows = doc["tables"]["countries"]["rows"]
    instants = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in doc["instants"]]
    index = {t: i for i, t in enumerate(doc["instants"])}
    series: dict[str, list[int]] = {}
    caps: dict[str, int | None] = {}
    for r in rows:
        series.setdefault(r["country"], [0] * len(instants))[index[r["at"]]] = r["counted_tpp"]
        caps[r["country"]] = r["allocation_tpp"]
    form = (
        '<form method="get" action="/history">'
        f'<label>From <input name="from" value="{_e(doc["from"][:10])}"></label> '
        f'<label>to <input name="to" value="{_e(doc["to"][:10])}"></label> '
        '<label>every <select name="every">'
        + "".join(f"<option{' selected' if s == doc['every'] else ''}>{s}</option>" for s in ("1d", "1w", "1mo"))
        + f'</select></label> <input type="hidden" name="pack" value="{_e(doc["policy"]["name"])}"> '
        "<button>Show</button></form>"
    )
    params = {"from": doc["from"], "to": doc["to"], "every": doc["every"], "pack": pack}
    body = (
        f"<p>Counted TPP per country under {_e(doc['policy']['name'])}, {len(instants)} instants every "
        f"{_e(doc['every'])}, against each country's allocation (dashed).</p>{form}"
        + "".join(
            f'<h2 class="chart">{_e(name)}</h2>{svg.step_chart(instants, name, values, caps.get(name), k)}'
            for k, (name, values) in enumerate(sorted(series.items()))
        )
        + render_table(
            "history", "countries", doc["tables"]["countries"], params, {"country": lambda v: _country_link(v, pack)}
        )
    )
    return layout("History", body)


def error(status: int, message: str) -> str:
    return layout(f"{status}", f'<p class="error">{_e(message)}</p><p><a href="/">Overview</a></p>')
