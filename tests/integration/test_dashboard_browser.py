"""The dashboard in real headless Chromium (Debian's `chromium` + `chromium-driver`, driven by Selenium), against a
collector loaded over real gRPC with demo-like data: four mock nodes in the US, India, the UAE and China (Tier 3:
a violation), attesting weekly for four weeks (India joins in week 2).

Screenshots of each page go to tests/artifacts/dashboard/ (gitignored). Missing Chromium, the tests skip with the
reason; under CI=true they fail (scripts/ensure-tools.sh installs it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from gpucensus.agent.backends.mock import MockBackend
from gpucensus.agent.host import NodeInfo
from gpucensus.agent.snapshot import build_predicate
from gpucensus.collector.config import CollectorConfig, DashboardConfig, NodesConfig, PolicyConfig, ServerConfig
from gpucensus.collector.dashboard.server import DashboardService, start_dashboard
from gpucensus.collector.registry import new_token
from gpucensus.collector.server import run_server
from gpucensus.collector.store import open_store
from gpucensus.collector.store.base import Entity, Site
from gpucensus.common.accounting import ECCN_A, ECCN_B, load_rules
from gpucensus.common.catalogue import load_catalogue
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc

from tests.ingest_nodes import NOW, TestNode
from tests.integration.server_fixtures import Clock

# a pack with a Tier 3 prohibition and Tier 2 allocations: the bars, limits and violation these tests read
PACK = "ai-diffusion-2025"

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
START = NOW - timedelta(weeks=4)
WEEKS = 5  # rounds at START + 0..4 weeks
COMPACT = 3  # the US node's compact statements after its last full inventory
# entity, HQ, authorization, site, country, mock profile, first week
FLEET = [
    ("acme", "US", "uveu", "us-east-1", "US", "dgx-h100", 0),
    ("globex", "IN", "none", "in-mumbai-1", "IN", "hgx-a100", 2),
    ("initech", "AE", "nveu", "ae-dubai-1", "AE", "mixed", 0),
    ("initrode", "CN", "none", "cn-shanghai-1", "CN", "dgx-h100", 0),
]


def _browser_or_skip() -> None:
    if CHROMIUM and CHROMEDRIVER:
        return
    reason = "chromium and chromium-driver are not installed (scripts/ensure-tools.sh installs them)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true: the browser tests must run")
    pytest.skip(reason)


@dataclass
class Loaded:
    dashboard: DashboardService
    nodes: dict[str, TestNode]  # by country
    sent: dict[tuple[str, int], bytes]  # (keyid, sequence) -> envelope bytes


def counted_tpp(node: TestNode) -> int:
    """What the country should show: the agent's own per-device TPP of counted classes (the collector recomputes
    it independently from the facts)."""
    return sum(d["tpp"] for d in node.predicate["devices"] if d.get("eccn") in (ECCN_A, ECCN_B) and d.get("tpp"))


def own_gpus(node_id: str, profile: str) -> dict:
    """The profile's predicate with GPU UUIDs and serials of this node's own (as the agent's mock backend makes them
    for a node id), so two nodes of one profile do not report the same GPUs."""
    backend = MockBackend(profile, node_id)
    info = NodeInfo(id=node_id, hostname=f"host-{node_id}", site="", boot_id="boot-1")
    return build_predicate(info, "mock", backend.discover(), backend.pci_functions(), load_catalogue(), load_rules())


@pytest.fixture(scope="module")
def loaded() -> Iterator[Loaded]:
    _browser_or_skip()
    tmp = Path(tempfile.mkdtemp(prefix="gpucensus-browser-"))
    store = open_store("sqlite", data_dir=str(tmp / "collector"))
    clock = Clock()
    clock.now = START
    server, port = run_server(
        CollectorConfig(server=ServerConfig(listen="127.0.0.1:0"), policy=PolicyConfig(pack=PACK)), store, clock=clock
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = census_pb2_grpc.CensusStub(channel)
    nodes: dict[str, TestNode] = {}
    sent: dict[tuple[str, int], bytes] = {}
    dashboard = None
    try:
        for entity, hq, auth, site, country, profile, _ in FLEET:
            store.add_entity(Entity(entity, hq, auth))
            store.add_site(Site(site, country, entity))
            nodes[country] = node = TestNode(f"node-{site}", profile, clock=clock)
            node.predicate = own_gpus(node.node_id, profile)
        for week in range(WEEKS):
            clock.now = START + timedelta(weeks=week)
            for _, _, _, site, country, _, first in FLEET:
                node = nodes[country]
                if week < first:
                    continue
                if week == first:
                    token, record = new_token(site, clock.now, timedelta(hours=1))
                    store.add_token(record)
                    stub.Enroll(pb.EnrollRequest(token=token, node_id=node.node_id,
                                                 public_key_pem=node.public_key_pem), timeout=10)  # fmt: skip
                sequence = node.sequence
                envelope = node.full()
                acks = list(stub.Report(iter([pb.Envelope(dsse=envelope)]), timeout=10))
                assert acks[0].status == pb.ACK_STATUS_ACCEPTED, acks[0]
                sent[(node.keyid, sequence)] = envelope
        us = nodes["US"]  # then steady: compact statements naming its last full inventory, a minute apart
        for _ in range(COMPACT):
            clock.now += timedelta(minutes=1)
            acks = list(stub.Report(iter([pb.Envelope(dsse=us.compact())]), timeout=10))
            assert acks[0].status == pb.ACK_STATUS_ACCEPTED, acks[0]
        dashboard = start_dashboard(DashboardConfig(listen="127.0.0.1:0"), store, PACK, NodesConfig(),
                                    clock, server.compliance)  # fmt: skip
        yield Loaded(dashboard, nodes, sent)
    finally:
        if dashboard is not None:
            dashboard.stop()
        channel.close()
        server.stop(None).wait()
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1600",
                "--disable-extensions", "--no-first-run"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER or ""), options=options)
    driver.set_page_load_timeout(60)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver, name: str) -> None:
    """A full-page screenshot: the window fitted to the page's height first."""
    driver.set_window_size(1280, 800)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(int(height) + 40, 800), 6000))
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")


def test_overview_shows_the_totals_and_the_violation(loaded: Loaded, browser) -> None:
    from selenium.webdriver.common.by import By

    browser.get(loaded.dashboard.url)
    assert PACK in browser.find_element(By.ID, "policy").text
    bars = {b.get_attribute("data-id"): b for b in browser.find_elements(By.CSS_SELECTOR, "svg.bars g.bar")}
    assert set(bars) == {"US", "IN", "AE", "CN"}
    rows = browser.find_elements(By.CSS_SELECTOR, "#table-countries tbody tr")
    table = {r.find_elements(By.TAG_NAME, "td")[0].text: r for r in rows}
    for country, node in loaded.nodes.items():
        expected = counted_tpp(node)
        assert expected > 0
        cells = table[country].find_elements(By.TAG_NAME, "td")
        assert cells[2].text == f"{expected:,}", country  # counted TPP as a reader sees it
    assert bars["CN"].get_attribute("data-used") == str(counted_tpp(loaded.nodes["CN"]))
    assert bars["CN"].get_attribute("data-limit") == "0"  # Tier 3: prohibited
    assert "status-violation" in bars["CN"].find_element(By.CSS_SELECTOR, "rect.value").get_attribute("class")
    findings = browser.find_element(By.ID, "table-findings").text
    assert "tier3.prohibited" in findings and "site:cn-shanghai-1" in findings
    first = browser.find_elements(By.CSS_SELECTOR, "#table-findings tbody tr")[0].find_elements(By.TAG_NAME, "td")
    assert first[0].text == "violation"  # violations first
    assert first[4].text == START.strftime("%Y-%m-%dT%H:%M:%SZ")  # opened when the Chinese node first attested
    assert "violation" in browser.find_element(By.ID, "verdict").text
    recorded = browser.find_element(By.ID, "table-finding_history").text
    assert "tier3.prohibited" in recorded and START.strftime("%Y-%m-%dT%H:%M:%SZ") in recorded
    fresh = {e.get_attribute("data-state"): e.text for e in browser.find_elements(By.CSS_SELECTOR, ".fresh")}
    assert fresh["reporting"].endswith(": 4")
    shot(browser, "overview")


def test_drill_down_from_country_to_a_gpu_and_its_signed_envelope(loaded: Loaded, browser) -> None:
    from selenium.webdriver.common.by import By

    node = loaded.nodes["US"]
    browser.get(loaded.dashboard.url)
    browser.find_element(By.CSS_SELECTOR, "#table-countries").find_element(By.LINK_TEXT, "US").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "Country US"
    shot(browser, "country")
    browser.find_element(By.LINK_TEXT, "us-east-1").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "Site us-east-1"
    shot(browser, "site")
    browser.find_element(By.LINK_TEXT, node.node_id).click()
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Node {node.node_id}"
    gpus = browser.find_element(By.ID, "table-gpus").text
    device = node.predicate["devices"][0]
    assert device["uuid"] in gpus and f"{device['tpp']:,}" in gpus and device["eccn"] in gpus
    history = browser.find_elements(By.CSS_SELECTOR, "#table-attestations tbody tr")
    assert len(history) == WEEKS + 1  # the compact statements are one line, above the full inventories
    steady = [td.text for td in history[0].find_elements(By.TAG_NAME, "td")]
    assert steady[1].startswith(f"unchanged since #{WEEKS} ({COMPACT} statements, #{WEEKS + 1} to #{WEEKS + COMPACT}")
    assert steady[7] == str(len(node.predicate["devices"]))  # the GPUs it vouches for, not 0
    shot(browser, "node")
    link = browser.find_element(By.CSS_SELECTOR, "#table-attestations").find_element(By.LINK_TEXT, "1")
    with urllib.request.urlopen(link.get_attribute("href"), timeout=10) as answer:  # what the download gets
        assert answer.read() == loaded.sent[(node.keyid, 1)]  # the exact signed bytes


def test_history_chart_has_a_point_per_instant(loaded: Loaded, browser) -> None:
    from selenium.webdriver.common.by import By

    start, end = START.date().isoformat(), (START + timedelta(weeks=WEEKS - 1)).date().isoformat()
    browser.get(f"{loaded.dashboard.url}history?from={start}&to={end}&every=1w")
    series = {g.get_attribute("data-country"): g for g in browser.find_elements(By.CSS_SELECTOR, "svg.history g")}
    assert set(series) == {"US", "IN", "AE", "CN"}
    for country, group in series.items():
        points = group.find_elements(By.CSS_SELECTOR, "circle.point")
        assert len(points) == WEEKS, country
    india = [int(p.get_attribute("data-tpp")) for p in series["IN"].find_elements(By.CSS_SELECTOR, "circle.point")]
    assert india == [0, 0] + [counted_tpp(loaded.nodes["IN"])] * 3  # India joined in week 2
    cap = series["IN"].find_element(By.CSS_SELECTOR, "line.cap").get_attribute("data-cap")
    assert int(cap) > 0  # Tier 2: its allocation drawn as the cap
    shot(browser, "history")
