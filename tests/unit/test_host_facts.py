"""Host facts (issue 15): the agent reads CPU counts, memory total and boot time through psutil (integers only,
absent and named in `not_reported` when unreadable), the mock backend simulates them, and the collector reads
them as hostile facts and compares them with the node's previous attestation."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from gpucensus.agent.backends.mock import MockBackend, mock_host_facts
from gpucensus.agent.host import HostFacts, NodeInfo, read_host_facts
from gpucensus.agent.snapshot import build_predicate
from gpucensus.collector.ingest import facts
from gpucensus.collector.ingest.crossnode import check_host
from gpucensus.collector.ingest.errors import MalformedFactError
from gpucensus.common.accounting import load_rules
from gpucensus.common.catalogue import load_catalogue
from gpucensus.common.jcs import canonical_bytes


class FakePsutil:
    """psutil's four calls, each returning a given value or raising it."""

    def __init__(self, logical: Any = 64, physical: Any = 32, memory: Any = 2**40, boot: Any = 1_763_000_000.0):
        self.values = {"logical": logical, "physical": physical, "memory": memory, "boot": boot}

    def _get(self, name: str) -> Any:
        value = self.values[name]
        if isinstance(value, BaseException):
            raise value
        return value

    def cpu_count(self, logical: bool = True) -> Any:
        return self._get("logical" if logical else "physical")

    def virtual_memory(self) -> Any:
        return SimpleNamespace(total=self._get("memory"))

    def boot_time(self) -> Any:
        return self._get("boot")


def test_psutil_facts_are_integers() -> None:
    assert read_host_facts(FakePsutil()) == HostFacts(64, 32, 2**40, 1_763_000_000)


def test_an_unreadable_fact_is_absent_and_named() -> None:
    fake = FakePsutil(physical=None, memory=PermissionError("/proc/meminfo"), boot=psutil.AccessDenied())
    host = read_host_facts(fake)
    assert host == HostFacts(cpu_logical=64)
    assert host.node_fields() == {
        "cpu_logical": 64,
        "not_reported": ["boot_time", "cpu_physical", "memory_total_bytes"],
    }


def test_nonsense_from_psutil_is_not_reported_rather_than_signed() -> None:
    host = read_host_facts(FakePsutil(logical=True, physical=-1, memory="lots", boot=float("nan")))
    assert host.node_fields() == {"not_reported": ["boot_time", "cpu_logical", "cpu_physical", "memory_total_bytes"]}


def test_the_real_psutil_reads_this_machine() -> None:
    host = read_host_facts()
    assert isinstance(host.cpu_logical, int) and host.cpu_logical >= 1
    assert isinstance(host.memory_total_bytes, int) and host.memory_total_bytes > 2**20
    assert isinstance(host.boot_time, int) and 946_684_800 < host.boot_time < 4_102_444_800
    assert host.cpu_physical is None or 1 <= host.cpu_physical <= host.cpu_logical


def test_the_procfs_path_is_handed_to_psutil() -> None:
    fake = FakePsutil()
    fake.PROCFS_PATH = "/proc"
    read_host_facts(fake, procfs_path="/host/proc")
    assert fake.PROCFS_PATH == "/host/proc"


def test_the_node_section_carries_the_facts_and_stays_canonical_json() -> None:
    backend = MockBackend("dgx-h100", "n1")
    node = NodeInfo(id="n1", hostname="h", site="s", boot_id="b")
    predicate = build_predicate(
        node, "mock", backend.discover(), backend.pci_functions(), load_catalogue(), load_rules(), backend.host_facts()
    )
    expected = mock_host_facts("n1", "dgx-h100")
    assert predicate["node"]["cpu_logical"] == expected.cpu_logical
    assert predicate["node"]["boot_time"] == expected.boot_time and predicate["node"]["not_reported"] == []
    canonical_bytes(predicate)  # integers and strings only: a float would raise
    bare = build_predicate(node, "mock", backend.discover(), [], load_catalogue(), load_rules())
    assert bare["node"]["not_reported"] == ["boot_time", "cpu_logical", "cpu_physical", "memory_total_bytes"]


def test_mock_host_facts_are_stable_and_differ_between_nodes() -> None:
    assert mock_host_facts("n1", "dgx-h100") == mock_host_facts("n1", "dgx-h100")
    fleet = {mock_host_facts(f"n{i}", "dgx-h100") for i in range(20)}
    assert len({h.boot_time for h in fleet}) == 20
    for host in fleet:
        assert host.cpu_logical == 2 * host.cpu_physical and host.memory_total_bytes % 2**30 == 0


def _collector_host(**node: Any) -> facts.HostFacts:
    return facts.host({"node": {"id": "n1", **node}})


@pytest.mark.parametrize(
    ("node", "where"),
    [
        ({"cpu_logical": True}, "node.cpu_logical"),
        ({"cpu_physical": 2**21}, "node.cpu_physical"),
        ({"memory_total_bytes": -1}, "node.memory_total_bytes"),
        ({"memory_total_bytes": 2**61}, "node.memory_total_bytes"),
        ({"boot_time": "1763000000"}, "node.boot_time"),
        ({"boot_time": 10**12}, "node.boot_time"),
        ({"boot_id": "b" * 65}, "node.boot_id"),
        ({"boot_id": "\x1b[2J"}, "node.boot_id"),
    ],
)
def test_the_collector_refuses_a_malformed_host_fact_by_name(node: dict[str, Any], where: str) -> None:
    with pytest.raises(MalformedFactError) as refused:
        _collector_host(**node)
    assert where in str(refused.value)


def test_absent_host_facts_are_none_not_an_error() -> None:
    assert _collector_host() == facts.HostFacts()
    with pytest.raises(MalformedFactError):
        facts.host({"node": "n1"})


BEFORE = facts.HostFacts(cpu_logical=64, cpu_physical=32, memory_total_bytes=2**40, boot_time=1_763_000_000)


def _rules(host: facts.HostFacts, previous: facts.HostFacts | None = BEFORE) -> list[tuple[str, str]]:
    return [(f.rule_id, f.severity) for f in check_host("n1", host, previous)]


def test_nothing_without_a_previous_attestation_or_a_change() -> None:
    assert _rules(BEFORE, None) == []
    assert _rules(BEFORE) == []
    assert _rules(facts.HostFacts(boot_time=BEFORE.boot_time + 60)) == []  # a clock correction, not a reboot


def test_a_new_boot_time_or_boot_id_is_a_reboot() -> None:
    assert _rules(facts.HostFacts(boot_time=BEFORE.boot_time + 3600)) == [("host.rebooted", "info")]
    with_id = facts.HostFacts(boot_time=1, boot_id="a")
    assert _rules(facts.HostFacts(boot_id="b"), with_id) == [("host.rebooted", "info")]
    assert _rules(facts.HostFacts(boot_id=""), with_id) == []  # not reported is not compared


def test_changed_cpus_or_memory_is_a_warning_naming_each_change() -> None:
    host = facts.HostFacts(cpu_logical=128, cpu_physical=32, memory_total_bytes=2**39, boot_time=1_763_090_000)
    findings = check_host("n1", host, BEFORE)
    assert [(f.rule_id, f.severity, f.subject) for f in findings] == [
        ("host.rebooted", "info", "node:n1"),
        ("host.changed", "warning", "node:n1"),
    ]
    assert (
        "cpu_logical 64 -> 128" in findings[1].message
        and f"memory_total_bytes {2**40} -> {2**39}" in findings[1].message
    )
    assert "cpu_physical" not in findings[1].message
    assert _rules(facts.HostFacts(cpu_logical=64)) == []  # facts now unreported are not a change
