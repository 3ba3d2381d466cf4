"""Build fixture sysfs trees (`<root>/bus/pci/devices/<bdf>/{vendor,device,class,...}`) for PCI tests."""

from __future__ import annotations

from pathlib import Path


def add_function(
    root: Path,
    bdf: str,
    vendor: str = "0x10de",
    device: str = "0x2330",
    class_code: str = "0x030200",
    subsystem: tuple[str, str] | None = ("0x10de", "0x16c1"),
) -> None:
    directory = root / "bus" / "pci" / "devices" / bdf
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vendor").write_text(vendor + "\n")
    (directory / "device").write_text(device + "\n")
    (directory / "class").write_text(class_code + "\n")
    if subsystem:
        (directory / "subsystem_vendor").write_text(subsystem[0] + "\n")
        (directory / "subsystem_device").write_text(subsystem[1] + "\n")
