"""The dashboard over real HTTP (urllib, real sockets, a real SQLite store), attacks first: hostile ids from the
store must stay text, nothing may be fetched from elsewhere, nothing but GET/HEAD is served, and access rules hold
(TLS client certificates by common name, basic auth over TLS). Then every view's JSON and CSV, and the config rules.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import signal
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from gpucensus.collector.config import DashboardConfig, NodesConfig, load_config
from gpucensus.collector.dashboard.access import hash_password
from gpucensus.collector.dashboard.server import DashboardService, start_dashboard
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.policy.packs import DEFAULT_PACK
from gpucensus.collector.store import open_store
from gpucensus.collector.store.base import AttestationRecord, DeviceRecord, EnrollmentToken, Entity, Site, Store

from tests.integration.server_fixtures import spawn_serve
from tests.integration.test_server_tls import Pem, issue

# a pack with a Tier 3 prohibition and Tier 2 allocations: the bars, limits and violation these tests read
PACK = "ai-diffusion-2025"

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
HOSTILE_SITE = '"><script>alert(1)</script>'
HOSTILE_NODE = "n<img src=x onerror=alert(2)>&amp;"
HOSTILE_ENTITY = "e</td><iframe src=//evil.example>"
ENVELOPE = b'{"payload":"eyJ4IjoxfQ==","payloadType":"application/vnd.in-toto+json","signatures":[]}'
KEYID = "ab" * 32


def populate(store: Store) -> None:
    store.add_entity(Entity(HOSTILE_ENTITY, "AE", "none"))
    store.add_site(Site(HOSTILE_SITE, "AE", HOSTILE_ENTITY))
    store.add_entity(Entity("harbour", "CN", "none"))
    store.add_site(Site("sha", "CN", "harbour"))
    for n, (site, node) in enumerate(((HOSTILE_SITE, HOSTILE_NODE), ("sha", "node-sha"))):
        token = f"{n:064x}"
        store.add_token(EnrollmentToken(token, site, NOW - timedelta(days=2), NOW + timedelta(days=1)))
        keyid = KEYID if n == 0 else "cd" * 32
        store.enroll(keyid, "PEM", node, site, token, NOW - timedelta(days=2))
        devices = [DeviceRecord(uuid=f"GPU-<u>{n}-{i}</u>", index=i, name="<svg onload=alert(3)>",
                                model="h100-sxm5", basis="catalogue", tpp=15_832, die_area_mm2="814", eccn="3A090.a")
                   for i in range(2)]  # fmt: skip
        store.store_attestation(AttestationRecord(
            keyid=keyid, sequence=1, digest=f"{n + 1:064x}", envelope=ENVELOPE, node_id=node, site=site,
            timestamp=NOW - timedelta(days=1), received_at=NOW - timedelta(days=1), devices=devices))  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = open_store("sqlite", data_dir=str(tmp_path / "collector"))
    populate(store)
    yield store
    store.close()


@pytest.fixture
def dashboard(store: Store) -> Iterator[DashboardService]:
    service = start_dashboard(DashboardConfig(listen="127.0.0.1:0"), store, PACK, NodesConfig(),
                              lambda: NOW)  # fmt: skip
    yield service
    service.stop()


def get(url: str, method: str = "GET", context: ssl.SSLContext | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def q(value: str) -> str:
    return urllib.request.quote(value, safe="")


def pages(base: str) -> list[str]:
    return [base, f"{base}country?cc=AE", f"{base}site?id={q(HOSTILE_SITE)}", f"{base}node?id={q(HOSTILE_NODE)}",
            f"{base}history?from=2026-06-01&to=2026-06-30&every=1w", f"{base}?pack=baseline-2023"]  # fmt: skip


def test_hostile_names_from_the_store_stay_text_on_every_page(dashboard: DashboardService) -> None:
    for url in pages(dashboard.url):
        status, _, body = get(url)
        html = body.decode()
        assert status == 200, (url, html)
        for raw in ("<script", "<img", "<iframe", "<svg onload", "<u>"):
            assert raw not in html, (url, raw)
    status, _, body = get(f"{dashboard.url}node?id={q(HOSTILE_NODE)}")
    assert "n&lt;img src=x onerror=alert(2)&gt;&amp;amp;" in body.decode()  # shown as the text it is


class References(HTMLParser):
    """Every URL a page's markup refers to (attributes of real tags: escaped text is not markup)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "action", "xlink:href", "srcset", "poster", "data") and value is not None:
                self.urls.append(value)
            assert not name.startswith("on"), (tag, name)  # no event handler attribute anywhere
            assert name != "style", tag  # the CSP allows the stylesheet only


def test_no_page_fetches_anything_from_elsewhere(dashboard: DashboardService) -> None:
    for url in pages(dashboard.url):
        parser = References()
        parser.feed(get(url)[2].decode())
        assert parser.urls and not parser.tags & {"script", "iframe", "img", "object", "embed"}
        for ref in parser.urls:
            assert ref.startswith(("/", "?")) and not ref.startswith("//"), (url, ref)
    css = get(f"{dashboard.url}static/dashboard.css")[2].decode()
    assert "url(" not in css and "@import" not in css


def test_strict_security_headers_on_every_answer(dashboard: DashboardService) -> None:
    for url in [*pages(dashboard.url), f"{dashboard.url}api/overview", f"{dashboard.url}nowhere"]:
        _, headers, _ = get(url)
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"])
def test_only_get_and_head(dashboard: DashboardService, method: str) -> None:
    status, headers, _ = get(dashboard.url, method=method)
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, headers, body = get(dashboard.url, method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0


@pytest.mark.parametrize(
    ("path", "status"),
    [("node?id=nope", 404), ("site", 400), ("?pack=no-such-pack", 400), ("?pack=/etc/passwd", 400),
     ("history?from=yesterday", 400), ("history?from=1990-01-01&every=1d", 400), ("csv/overview?table=x", 400),
     ("envelope?keyid=zz&sequence=1", 404), ("envelope?keyid=" + "ab" * 32 + "&sequence=9", 404),
     ("api/nothing", 404), ("a/b/c", 404), ("?" + "&".join(f"k{i}=v" for i in range(100)), 400)],
)  # fmt: skip
def test_bad_requests_are_clean_answers_and_the_server_lives_on(
    dashboard: DashboardService, path: str, status: int
) -> None:
    got, _, body = get(dashboard.url + path)
    assert got == status, body
    assert b"Traceback" not in body
    assert get(dashboard.url)[0] == 200


def test_every_view_has_json_and_csv_and_the_envelope_is_the_exact_bytes(dashboard: DashboardService) -> None:
    base = dashboard.url
    overview = json.loads(get(f"{base}api/overview")[2])
    assert overview["policy"]["name"] == PACK
    countries = {r["country"]: r for r in overview["tables"]["countries"]["rows"]}
    assert countries["CN"]["counted_tpp"] == 2 * 15_832 and countries["CN"]["status"] == "violation"
    assert overview["tables"]["findings"]["rows"][0]["severity"] == "violation"
    for view, params in [("overview", ""), ("country", "cc=CN"), ("site", "id=sha"), ("node", "id=node-sha"),
                         ("history", "from=2026-06-01&to=2026-06-30&every=1w")]:  # fmt: skip
        doc = json.loads(get(f"{base}api/{view}?{params}")[2])
        for name, data in doc["tables"].items():
            status, headers, body = get(f"{base}csv/{view}?{params}&table={name}")
            assert status == 200 and headers["Content-Type"].startswith("text/csv")
            rows = list(csv.reader(io.StringIO(body.decode())))
            assert rows[0] == data["columns"] and len(rows) == 1 + len(data["rows"]), (view, name)
    history = json.loads(get(f"{base}api/history?from=2026-06-01&to=2026-06-30&every=1w")[2])
    assert len(history["instants"]) == 5
    node = json.loads(get(f"{base}api/node?id={q(HOSTILE_NODE)}")[2])
    assert [g["uuid"] for g in node["tables"]["gpus"]["rows"]] == ["GPU-<u>0-0</u>", "GPU-<u>0-1</u>"]
    status, headers, body = get(f"{base}envelope?keyid={KEYID}&sequence=1")
    assert status == 200 and body == ENVELOPE and "attachment" in headers["Content-Disposition"]


def test_a_csv_cell_cannot_be_a_formula(store: Store, dashboard: DashboardService) -> None:
    store.add_entity(Entity("=HYPERLINK(1)", "US", "none"))
    body = get(f"{dashboard.url}csv/overview?table=entities")[2].decode()
    assert "'=HYPERLINK(1)" in body


# --- access -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("dashboard-pki")
    server_ca, clients_ca, other_ca = issue("server CA", ca=True), issue("clients CA", ca=True), issue("x", ca=True)
    items: dict[str, Pem] = {"server": issue("dashboard", server_ca, server=True),
                             "compliance": issue("compliance-team", clients_ca), "node": issue("node-1", clients_ca),
                             "stranger": issue("compliance-team", other_ca)}  # fmt: skip
    paths = {"server_ca": folder / "server-ca.pem", "clients_ca": folder / "clients-ca.pem"}
    paths["server_ca"].write_bytes(server_ca.cert)
    paths["clients_ca"].write_bytes(clients_ca.cert)
    for name, pem in items.items():
        (folder / f"{name}.pem").write_bytes(pem.cert)
        (folder / f"{name}.key").write_bytes(pem.key)
        (folder / f"{name}.key").chmod(0o600)
        paths[name] = folder / name
    return paths


def client_context(certs: dict[str, Path], who: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs["server_ca"]))
    if who:
        context.load_cert_chain(f"{certs[who]}.pem", f"{certs[who]}.key")
    return context


def test_tls_client_certificates_by_common_name(store: Store, certs: dict[str, Path]) -> None:
    settings = DashboardConfig(listen="127.0.0.1:0", tls_cert=f"{certs['server']}.pem",
                               tls_key=f"{certs['server']}.key", client_ca=str(certs["clients_ca"]),
                               clients=("compliance-team",))  # fmt: skip
    service = start_dashboard(settings, store, PACK, NodesConfig(), lambda: NOW)
    try:
        url = service.url.replace("127.0.0.1", "localhost")
        status, headers, _ = get(url, context=client_context(certs, "compliance"))
        assert status == 200 and "Strict-Transport-Security" in headers
        assert get(url, context=client_context(certs, "node"))[0] == 403  # a valid certificate, not on the list
        for who in ("stranger", None):  # another CA's certificate, or none: refused at the handshake
            with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
                urllib.request.urlopen(url, timeout=10, context=client_context(certs, who)).read()
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(url.replace("https", "http"), timeout=10).read()  # plaintext
        assert get(url, context=client_context(certs, "compliance"))[0] == 200  # still serving
    finally:
        service.stop()


def test_basic_auth_over_tls(store: Store, certs: dict[str, Path]) -> None:
    settings = DashboardConfig(listen="127.0.0.1:0", tls_cert=f"{certs['server']}.pem",
                               tls_key=f"{certs['server']}.key", basic_auth_user="auditor",
                               basic_auth_password_hash=hash_password("correct horse battery", 100_000))  # fmt: skip
    service = start_dashboard(settings, store, PACK, NodesConfig(), lambda: NOW)
    context = client_context(certs, None)
    url = service.url.replace("127.0.0.1", "localhost")

    def basic(user: str, password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    try:
        status, headers, _ = get(url, context=context)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert get(url, context=context, headers=basic("auditor", "wrong"))[0] == 401
        assert get(url, context=context, headers=basic("root", "correct horse battery"))[0] == 401
        assert get(url, context=context, headers={"Authorization": "Basic %%%"})[0] == 401
        assert get(url, context=context, headers=basic("auditor", "correct horse battery"))[0] == 200
        assert get(url, method="POST", context=context, headers=basic("auditor", "correct horse battery"))[0] == 405
    finally:
        service.stop()


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"listen": "0.0.0.0:8443"}, "not a loopback address"),
        ({"listen": "0.0.0.0:8443", "tls_cert": "c.pem", "tls_key": "k.pem"}, "not a loopback address"),
        ({"listen": "127.0.0.1:8443", "basic_auth_user": "a", "basic_auth_password_hash": "x"}, "is not a pbkdf2"),
        ({"listen": "127.0.0.1:8443", "client_ca": "ca.pem"}, "client_ca and clients go together"),
        ({"listen": "127.0.0.1:8443", "clients": ["a"], "client_ca": "ca.pem"}, "need tls_cert"),
        ({"listen": "127.0.0.1:8443", "tls_cert": "c.pem"}, "must be set together"),
        ({"listen": "nowhere"}, "must be HOST:PORT"),
        ({"listen": "127.0.0.1:8443", "colour": "red"}, "unknown key 'colour'"),
    ],
)
def test_dashboard_config_rules(tmp_path: Path, settings: dict, expected: str) -> None:
    lines = ["[dashboard]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    path = tmp_path / "collector.toml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(path, env={})


def test_the_dashboard_is_off_by_default_and_loopback_needs_no_tls() -> None:
    assert load_config(None, env={}).dashboard.listen == ""
    assert load_config(None, env={"GPUCENSUS_DASHBOARD_LISTEN": "[::1]:0"}).dashboard.listen == "[::1]:0"


def test_serve_starts_the_dashboard_and_stops_it_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(f'[store]\ndata_dir = "{tmp_path / "data"}"\n[server]\nlisten = "127.0.0.1:0"\n'
                      '[dashboard]\nlisten = "127.0.0.1:0"\n')  # fmt: skip
    process = spawn_serve(config)
    try:
        url = next((line.split()[-1] for line in process.stderr if "dashboard on" in line), None)
        assert url is not None, f"the collector did not start (exit {process.wait()})"
        status, _, body = get(url + "api/overview")
        assert status == 200 and json.loads(body)["policy"]["name"] == DEFAULT_PACK  # the config names none
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    with pytest.raises(urllib.error.URLError):  # gone with the collector
        urllib.request.urlopen(url, timeout=5)


def test_serve_refuses_a_dashboard_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config = tmp_path / "collector.toml"
        config.write_text(f'[store]\ndata_dir = "{tmp_path / "data"}"\n[server]\nlisten = "127.0.0.1:0"\n'
                          f'[dashboard]\nlisten = "127.0.0.1:{busy.getsockname()[1]}"\n')  # fmt: skip
        process = spawn_serve(config)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and "cannot serve the dashboard" in err and "Traceback" not in err
