"""PCI cross-check: sysfs parsing on strings, scanning on fixture trees."""

from __future__ import annotations

from pathlib import Path

from gpucensus.agent.pci import parse_function, scan_sysfs
from gpucensus.common.devices import PciFunction
from gpucensus.common.inventory import same_bus_id

from tests.sysfs_tree import add_function


def test_parse_3d_controller() -> None:
    files = {
        "vendor": "0x10de\n",
        "device": "0x2330\n",
        "class": "0x030200\n",
        "subsystem_vendor": "0x10de\n",
        "subsystem_device": "0x16c1\n",
    }
    assert parse_function("0000:18:00.0", files) == PciFunction("0000:18:00.0", "0x2330", "0x0302", "0x16c110de")


def test_parse_vga_controller_without_subsystem() -> None:
    files = {"vendor": "0x10de", "device": "0x2684", "class": "0x030000"}
    assert parse_function("0000:01:00.0", files) == PciFunction("0000:01:00.0", "0x2684", "0x0300", None)


def test_other_vendors_and_nvidia_audio_are_not_gpus() -> None:
    assert parse_function("x", {"vendor": "0x8086", "device": "0x1234", "class": "0x030000"}) is None
    assert parse_function("x", {"vendor": "0x10de", "device": "0x22ba", "class": "0x040300"}) is None  # HD audio
    assert parse_function("x", {"vendor": "0x10de", "device": "0x22a3", "class": "0x068000"}) is None  # NVSwitch
    assert parse_function("x", {"vendor": "garbage", "device": "0x2330", "class": "0x030200"}) is None
    assert parse_function("x", {"device": "0x2330"}) is None


def test_scan_fixture_tree(tmp_path: Path) -> None:
    add_function(tmp_path, "0000:2a:00.0")
    add_function(tmp_path, "0000:18:00.0")
    add_function(tmp_path, "0000:00:02.0", vendor="0x8086", device="0x9a49", class_code="0x030000")
    add_function(tmp_path, "0000:18:00.1", device="0x22ba", class_code="0x040300")
    found = scan_sysfs(tmp_path)
    assert [f.bus_id for f in found] == ["0000:18:00.0", "0000:2a:00.0"]


def test_scan_without_pci_sysfs_finds_nothing(tmp_path: Path) -> None:
    assert scan_sysfs(tmp_path / "absent") == []


def test_unreadable_attribute_skips_only_that_function(tmp_path: Path) -> None:
    add_function(tmp_path, "0000:18:00.0")
    add_function(tmp_path, "0000:2a:00.0")
    (tmp_path / "bus/pci/devices/0000:18:00.0/vendor").unlink()
    assert [f.bus_id for f in scan_sysfs(tmp_path)] == ["0000:2a:00.0"]


def test_bus_id_domains_compare_across_widths() -> None:
    assert same_bus_id("00000000:18:00.0", "0000:18:00.0")
    assert same_bus_id("00000000:1A:00.0", "0000:1a:00.0")
    assert not same_bus_id("00000001:18:00.0", "0000:18:00.0")
    assert not same_bus_id(None, "0000:18:00.0")
    assert not same_bus_id("garbage", "0000:18:00.0")
