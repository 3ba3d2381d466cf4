"""The dashboard's HTTP server: `http.server.ThreadingHTTPServer` in a daemon thread, GET and HEAD only.

Routes (every page has its JSON and its CSV; ids travel as query parameters, so any id is safe in a URL):

    /                      /api/overview      /csv/overview?table=countries|entities|findings|nodes|ingest_findings
    /country?cc=CC         /api/country?cc=   /csv/country?cc=&table=sites
    /site?id=SITE          /api/site?id=      /csv/site?id=&table=nodes
    /node?id=NODE          /api/node?id=      /csv/node?id=&table=gpus|attestations
    /history?from=&to=&every=1d|1w|1mo        /api/history?...   /csv/history?...&table=countries
    /envelope?keyid=&sequence=                the stored envelope, byte for byte
    /api                   this list, as JSON

`?pack=NAME` evaluates a page under another shipped pack. Any other method gets 405 (nothing here changes
state). Every answer carries a strict Content-Security-Policy (nothing but this server, no script at all). A bad
request is a 4xx page; an error inside a request is logged and answered 500, never the end of the server.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gpucensus.collector.compliance.state import ComplianceState
from gpucensus.collector.config import DashboardConfig, NodesConfig
from gpucensus.collector.dashboard import pages, views
from gpucensus.collector.dashboard.access import BasicAuth, common_name
from gpucensus.collector.dashboard.source import ComplianceSource
from gpucensus.collector.errors import ConfigError, StoreError
from gpucensus.collector.store.base import Store
from gpucensus.common.safe_text import csv_cell

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
API_INDEX = {
    "/api/overview": "the pack in force, per-country totals against limits, entities' shares, open findings, "
    "fleet freshness (?pack=NAME)",
    "/api/country?cc=CC": "the sites of a country",
    "/api/site?id=SITE": "the nodes of a site",
    "/api/node?id=NODE": "the GPUs of a node and its attestation history",
    "/api/history?from=&to=&every=": "counted TPP per country at each instant, against the allocation",
    "/envelope?keyid=&sequence=": "an attestation's envelope, the exact signed bytes",
    "/csv/VIEW?table=NAME&...": "any table of any view as CSV",
}
MAX_QUERY_FIELDS = 16


class BadRequest(Exception):
    pass


class DashboardHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: Dashboard, tls: ssl.SSLContext | None) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.app = app
        self.tls = tls

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.tls is not None:  # the handshake runs in the request's own thread (Handler.setup), not here
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:  # the base class prints a traceback
        log.debug("dashboard: connection from %s failed", client_address, exc_info=True)


class Handler(BaseHTTPRequestHandler):
    server: DashboardHTTPServer
    server_version = "gpucensus-dashboard"
    sys_version = ""
    timeout = 30  # seconds a client may take to send its request (and the TLS handshake)

    def handle(self) -> None:
        try:
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.do_handshake()
            super().handle()
        except (ssl.SSLError, OSError) as err:  # a client that hung up or failed the handshake
            log.debug("dashboard connection from %s: %s", self.client_address[0], err)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("dashboard %s: %s", self.client_address[0], format % args)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # any method but GET and HEAD: 405 (BaseHTTPRequestHandler would say 501)
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, "text/html; charset=utf-8",
                   pages.error(405, "the dashboard is read-only: GET and HEAD only").encode(),
                   {"Allow": "GET, HEAD"})  # fmt: skip

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, head: bool) -> None:
        app = self.server.app
        if not self._authorized(app):
            return
        try:
            status, ctype, body, extra = app.answer(self.path)
        except BadRequest as err:
            status, ctype, body, extra = HTTPStatus.BAD_REQUEST, *_error(400, str(err), self.path), {}
        except ConfigError as err:  # a bad parameter value: an unknown pack, a date that is not one
            status, ctype, body, extra = HTTPStatus.BAD_REQUEST, *_error(400, str(err), self.path), {}
        except views.NotFound as err:
            status, ctype, body, extra = HTTPStatus.NOT_FOUND, *_error(404, str(err), self.path), {}
        except StoreError as err:
            log.warning("dashboard: store unavailable: %s", err)
            status, ctype, body, extra = HTTPStatus.SERVICE_UNAVAILABLE, *_error(503, "store unavailable", ""), {}
        except Exception:  # a bug must cost one answer, not the server
            log.exception("dashboard: error answering %r", self.path)
            status, ctype, body, extra = HTTPStatus.INTERNAL_SERVER_ERROR, *_error(500, "internal error", ""), {}
        self._send(status, ctype, b"" if head else body, extra, length=len(body))

    def _authorized(self, app: Dashboard) -> bool:
        if app.clients and isinstance(self.connection, ssl.SSLSocket):
            name = common_name(self.connection.getpeercert())
            if name not in app.clients:
                self._send(HTTPStatus.FORBIDDEN, "text/html; charset=utf-8",
                           pages.error(403, "this client certificate is not allowed in").encode(), {})  # fmt: skip
                return False
        if app.basic_auth is not None and not app.basic_auth.allows(self.headers.get("Authorization")):
            self._send(HTTPStatus.UNAUTHORIZED, "text/html; charset=utf-8",
                       pages.error(401, "authentication required").encode(),
                       {"WWW-Authenticate": 'Basic realm="gpucensus", charset="UTF-8"'})  # fmt: skip
            return False
        return True

    def _send(self, status: int, ctype: str, body: bytes, extra: dict[str, str], length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        if self.server.tls is not None:
            self.send_header("Strict-Transport-Security", "max-age=31536000")
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _error(status: int, message: str, path: str) -> tuple[str, bytes]:
    if path.startswith("/api") or path.startswith("/csv"):
        return "application/json", json.dumps({"error": message}).encode()
    return "text/html; charset=utf-8", pages.error(status, message).encode()


def _csv(data: dict[str, Any]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(data["columns"])
    for row in data["rows"]:
        w.writerow([csv_cell(row.get(c)) for c in data["columns"]])
    return out.getvalue().encode("utf-8")


class Dashboard:
    """The routes over one store; `answer(path)` -> (status, content type, body, extra headers)."""

    def __init__(
        self,
        store: Store,
        pack: str,
        nodes: NodesConfig,
        clock: Callable[[], datetime],
        settings: DashboardConfig,
        compliance: ComplianceState | None = None,
    ) -> None:
        self.ctx = views.Context(store, ComplianceSource(store, pack, clock, compliance), nodes, clock)
        self.clients = frozenset(settings.clients)
        self.basic_auth = (
            BasicAuth(settings.basic_auth_user, settings.basic_auth_password_hash) if settings.basic_auth_user else None
        )
        self.stylesheet = resources.files("gpucensus.collector.dashboard").joinpath("static/dashboard.css").read_bytes()

    def answer(self, target: str) -> tuple[int, str, bytes, dict[str, str]]:
        url = urlsplit(target)
        try:
            query = parse_qs(url.query, max_num_fields=MAX_QUERY_FIELDS, strict_parsing=False)
        except ValueError as err:
            raise BadRequest(f"bad query: {err}") from None
        params = {k: v[0] for k, v in query.items()}
        path = url.path
        if path == "/static/dashboard.css":
            return 200, "text/css; charset=utf-8", self.stylesheet, {}
        if path == "/envelope":
            name, data = views.envelope(self.ctx, params.get("keyid", ""), params.get("sequence", ""))
            return 200, "application/json", data, {"Content-Disposition": f'attachment; filename="{name}"'}
        if path == "/api":
            return 200, "application/json", json.dumps(API_INDEX, indent=2).encode(), {}
        kind, _, view = path.lstrip("/").rpartition("/")
        if kind not in ("", "api", "csv"):
            raise views.NotFound(f"no page {path!r}")
        doc, html = self._view(view or "overview", params)
        if kind == "api":
            return 200, "application/json", json.dumps(doc, indent=2, ensure_ascii=False).encode(), {}
        if kind == "csv":
            name = params.get("table", "")
            if name not in doc["tables"]:
                raise BadRequest(f"table must be one of: {', '.join(doc['tables'])}")
            filename = f"{view}-{name}.csv"
            return 200, "text/csv; charset=utf-8", _csv(doc["tables"][name]), {
                "Content-Disposition": f'attachment; filename="{filename}"'}  # fmt: skip
        return 200, "text/html; charset=utf-8", html().encode(), {}

    def _view(self, view: str, p: dict[str, str]) -> tuple[dict[str, Any], Callable[[], str]]:
        pack = p.get("pack")
        if view == "overview":
            doc = views.overview(self.ctx, pack)
            return doc, lambda: pages.overview(doc, pack)
        if view == "country":
            doc = views.country(self.ctx, _required(p, "cc"), pack)
            return doc, lambda: pages.country(doc, pack)
        if view == "site":
            doc = views.site(self.ctx, _required(p, "id"))
            return doc, lambda: pages.site(doc)
        if view == "node":
            doc = views.node(self.ctx, _required(p, "id"))
            return doc, lambda: pages.node(doc)
        if view == "history":
            doc = views.history_view(self.ctx, pack, p.get("from") or None, p.get("to") or None, p.get("every"))
            return doc, lambda: pages.history(doc, pack)
        raise views.NotFound(f"no page {view!r}")


def _required(params: dict[str, str], name: str) -> str:
    if not params.get(name):
        raise BadRequest(f"missing ?{name}=")
    return params[name]


def tls_context(settings: DashboardConfig) -> ssl.SSLContext | None:
    if not settings.tls_cert:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
        if settings.client_ca:
            context.load_verify_locations(settings.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"[dashboard] TLS files: {err}", hint="check tls_cert, tls_key and client_ca") from err
    return context


class DashboardService:
    """A running dashboard: `port`, `url`, `stop()`."""

    def __init__(self, http: DashboardHTTPServer) -> None:
        self.http = http
        self._thread = threading.Thread(target=http.serve_forever, name="dashboard", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.http.server_address[1])

    @property
    def url(self) -> str:
        host = str(self.http.server_address[0])
        scheme = "https" if self.http.tls is not None else "http"
        return f"{scheme}://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self._thread.join(timeout=5)


def start_dashboard(
    settings: DashboardConfig,
    store: Store,
    pack: str,
    nodes: NodesConfig,
    clock: Callable[[], datetime],
    compliance: ComplianceState | None = None,
) -> DashboardService:
    """Serve the dashboard on `settings.listen` (validated by `collector.config`); port 0 = any free port.
    `compliance`: the running collector's state (its pack's figures and open findings come from it)."""
    host, _, port = settings.listen.rpartition(":")
    app = Dashboard(store, pack, nodes, clock, settings, compliance)
    try:
        http = DashboardHTTPServer((host.strip("[]"), int(port)), app, tls_context(settings))
    except OSError as err:
        raise ConfigError(f"cannot serve the dashboard on {settings.listen}: {err.strerror or err}",
                          hint="is another process using it?") from err  # fmt: skip
    return DashboardService(http)
