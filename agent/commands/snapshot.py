"""`gpucensus-agent snapshot`: this node's inventory as the attestation predicate (table or JSON)."""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

from gpucensus.agent.backends import BACKENDS, create_backend
from gpucensus.agent.host import node_info, read_host_facts
from gpucensus.agent.pci import scan_sysfs
from gpucensus.agent.render import snapshot_table
from gpucensus.agent.snapshot import build_predicate
from gpucensus.common.accounting import Rules, load_rules
from gpucensus.common.catalogue import Catalogue, load_catalogue
from gpucensus.common.errors import ConfigError

DEFAULT_PROFILE = "dgx-h100"


def add_discovery_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every command that looks at the node's GPUs shares (snapshot, attest)."""
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="nvml", help="GPU discovery backend")
    parser.add_argument(
        "--profile", default=None, help=f"mock backend: a built-in profile name or a file (default {DEFAULT_PROFILE})"
    )
    parser.add_argument(
        "--sysfs-root",
        default=None,
        help="root of the sysfs tree for the PCI cross-check (default /sys; the mock backend simulates "
        "its own PCI bus unless this is given)",
    )
    parser.add_argument("--node-id", default=None, help="stable node id (default: the machine id)")
    parser.add_argument("--site", default="", help="site this node belongs to")


def predicate_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Discover the node's GPUs with the chosen backend and build the snapshot predicate."""
    node = node_info(args.node_id, args.site)
    if args.profile and args.backend != "mock":
        raise ConfigError(
            f"a profile ({args.profile}) is for the mock backend, not {args.backend}",
            hint="drop --profile / inventory.profile, or choose --backend mock",
        )
    options = {"profile": args.profile or DEFAULT_PROFILE, "node_id": node.id} if args.backend == "mock" else {}
    backend = create_backend(args.backend, **options)
    discovery = backend.discover()
    simulated_bus = getattr(backend, "pci_functions", None)
    if args.sysfs_root is None and simulated_bus is not None:
        pci = simulated_bus()
    else:
        pci = scan_sysfs(_sysfs_root(args.sysfs_root))
    simulated_host = getattr(backend, "host_facts", None)
    host = simulated_host() if simulated_host is not None else read_host_facts()
    catalogue, rules = reference_data()
    return build_predicate(node, backend.name, discovery, pci, catalogue, rules, host)


@functools.cache
def reference_data() -> tuple[Catalogue, Rules]:
    """The catalogue and the 3A090 rules shipped with the package: read once per process (they cannot change
    while it runs; every round re-read and re-parsed them, the largest part of a round's CPU)."""
    return load_catalogue(), load_rules()


def _sysfs_root(given: str | None) -> str:
    """The sysfs root to scan. A root the user named must have a PCI bus: a typo would turn the hidden-GPU check
    off without a word. Without one, /sys may lack it (a container without sysfs): then there is nothing to list."""
    if given and not (Path(given) / "bus" / "pci" / "devices").is_dir():
        raise ConfigError(
            f"sysfs root {given}: no {Path(given) / 'bus' / 'pci' / 'devices'} directory",
            hint="give the directory sysfs is mounted on (normally /sys), or leave it unset",
        )
    return given or "/sys"


def run(args: argparse.Namespace) -> int:
    predicate = predicate_from_args(args)
    if args.format == "json":
        print(json.dumps(predicate, indent=2, sort_keys=True))
    else:
        print(snapshot_table(predicate))
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "snapshot",
        help="print this node's GPU inventory with TPP, ECCN class and H100e",
        description="Enumerate the node's NVIDIA GPUs, cross-check them against the PCI bus, classify each "
        "(TPP, performance density, ECCN 3A090, H100-equivalents) and print the inventory. The JSON form is "
        "the attestation predicate (README: 'Snapshot JSON').",
    )
    add_discovery_arguments(parser)
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(func=run)
