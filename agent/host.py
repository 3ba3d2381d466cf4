"""Facts about the host the agent runs on: a stable node id, hostname, boot id. Paths are passed in for tests."""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent import __version__
from common.errors import ConfigError

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
