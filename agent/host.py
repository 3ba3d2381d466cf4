"""Facts about the host the agent runs on: a stable node id, hostname, boot id, and the host facts psutil reads
(CPU counts, memory total, boot time). Paths and the psutil module are passed in for tests."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import psutil
from gpucensus.agent import __version__
from gpucensus.common.errors import ConfigError

MACHINE_ID_PATHS = ("/etc/machine-id", "/var/lib/dbus/machine-id")
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # the collector's rule and a certificate CN's


@dataclass(frozen=True)
class NodeInfo:
    id: str
    hostname: str
    site: str
    boot_id: str
    agent_version: str = __version__


@dataclass(frozen=True)
class HostFacts:
    """What the node section says about the machine: integers only; None when the fact could not be read."""

    cpu_logical: int | None = None
    cpu_physical: int | None = None
    memory_total_bytes: int | None = None
    boot_time: int | None = None  # seconds since the epoch (UTC), as the kernel records it

    def node_fields(self) -> dict[str, Any]:
        """The facts for the node section: those read, and `not_reported` naming the others (sorted)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        reported: dict[str, Any] = {name: value for name, value in values.items() if value is not None}
        reported["not_reported"] = sorted(name for name, value in values.items() if value is None)
        return reported


def _integer(read: Callable[[], Any]) -> int | None:
    """An integer fact from psutil, or None when it cannot be read (psutil returns None or raises)."""
    try:
        value = read()
    except (OSError, RuntimeError, ValueError, AttributeError, NotImplementedError, psutil.Error):
        return None
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(value)  # boot_time is a float of whole seconds; memory and counts are ints
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number >= 0 else None


def read_host_facts(psutil_module: Any = None, procfs_path: str | None = None) -> HostFacts:
    """The host facts through psutil (`psutil_module` for tests). `procfs_path`: the host's /proc when it is
    mounted elsewhere (psutil reads it on Linux). A fact psutil cannot read is None, never an error."""
    if psutil_module is None:
        psutil_module = psutil
    if procfs_path is not None and hasattr(psutil_module, "PROCFS_PATH"):
        psutil_module.PROCFS_PATH = procfs_path
    return HostFacts(
        cpu_logical=_integer(lambda: psutil_module.cpu_count(logical=True)),
        cpu_physical=_integer(lambda: psutil_module.cpu_count(logical=False)),
        memory_total_bytes=_integer(lambda: psutil_module.virtual_memory().total),
        boot_time=_integer(lambda: psutil_module.boot_time()),
    )


def machine_id(paths: Sequence[str] = MACHINE_ID_PATHS) -> str | None:
    for path in paths:
        try:
            value = Path(path).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if value:
            return value
    return None


def validate_node_id(node_id: str) -> str:
    if not _NODE_ID.fullmatch(node_id):  # `$` would let a trailing newline through
        raise ConfigError(
            f"node id {node_id!r} is not valid",
            hint="use 1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return node_id


def node_info(
    node_id: str | None = None,
    site: str = "",
    machine_id_paths: Sequence[str] = MACHINE_ID_PATHS,
    boot_id_path: str = BOOT_ID_PATH,
) -> NodeInfo:
    """The node's identity: the configured id, else the machine id (not a container's hostname)."""
    chosen = node_id or machine_id(machine_id_paths)
    if not chosen:
        raise ConfigError(
            "cannot determine a stable node id: no machine id found at " + ", ".join(machine_id_paths),
            hint="set --node-id (or [node] id in the config); in a container, mount the host's /etc/machine-id",
        )
    try:
        boot_id = Path(boot_id_path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        boot_id = ""
    return NodeInfo(id=validate_node_id(chosen), hostname=socket.gethostname(), site=site, boot_id=boot_id)
