"""NVIDIA display/3D functions on the PCI bus, read from sysfs (the hidden-GPU cross-check).

Parsing is split from I/O so a test is a dict of file contents; the sysfs root is passed in (default `/sys`), so
tests run on fixture trees.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from gpucensus.common.devices import PciFunction

NVIDIA_VENDOR_ID = 0x10DE
GPU_CLASSES = {0x0300: "0x0300", 0x0302: "0x0302"}  # VGA-compatible controller, 3D controller
_FILES = ("vendor", "device", "class", "subsystem_vendor", "subsystem_device")


def parse_function(bus_id: str, files: Mapping[str, str]) -> PciFunction | None:
    """The function described by its sysfs attribute files, or None if it is not an NVIDIA GPU function."""
    try:
        vendor = int(files["vendor"].strip(), 16)
        device = int(files["device"].strip(), 16)
        class_code = int(files["class"].strip(), 16) >> 8  # drop the programming interface byte
    except (KeyError, ValueError):
        return None
    if vendor != NVIDIA_VENDOR_ID or class_code not in GPU_CLASSES:
        return None
    subsystem = None
    try:
        sub_vendor = int(files["subsystem_vendor"].strip(), 16)
        sub_device = int(files["subsystem_device"].strip(), 16)
        subsystem = f"0x{(sub_device << 16) | sub_vendor:08x}"
    except (KeyError, ValueError):
        pass
    return PciFunction(bus_id.lower(), f"0x{device:04x}", GPU_CLASSES[class_code], subsystem)


def scan_sysfs(root: str | Path = "/sys") -> list[PciFunction]:
    """NVIDIA GPU functions under `<root>/bus/pci/devices`, sorted by bus id; [] when there is no PCI sysfs."""
    devices_dir = Path(root) / "bus" / "pci" / "devices"
    found: list[PciFunction] = []
    try:
        entries = sorted(devices_dir.iterdir())
    except OSError:
        return found
    for entry in entries:
        files: dict[str, str] = {}
        for name in _FILES:
            try:
                files[name] = (entry / name).read_text(encoding="ascii", errors="replace")
            except OSError:
                continue
        function = parse_function(entry.name, files)
        if function is not None:
            found.append(function)
    return found
