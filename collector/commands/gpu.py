"""`gpucensus-collector gpu decommission UUID [--reason TEXT]`: a GPU leaves the inventory on purpose.

A decommissioned GPU no longer counts in totals, and its disappearance from its node is not a finding. If it is
reported again by a later attestation, the decommission is cleared and it counts again.
"""

from __future__ import annotations

import argparse

from gpucensus.collector.commands.common import command_group, iso, now, store_action, store_from_args
from gpucensus.collector.store.base import RecordNotFoundError
from gpucensus.common.safe_text import printable


def register(subparsers: argparse._SubParsersAction) -> None:
    group = command_group(subparsers, "gpu", "per-GPU actions")
    help = "record that a GPU was removed on purpose (RMA, scrapped, sold)"
    dec = store_action(group, "decommission", help, run_decommission)
    dec.add_argument("uuid", help="the GPU UUID, e.g. GPU-5f3c…")
    dec.add_argument("--reason", default="", help="free text kept with the record, e.g. 'RMA 1234'")


def run_decommission(args: argparse.Namespace) -> int:
    when = now()
    with store_from_args(args) as store:
        if not store.decommission_gpu(args.uuid, args.reason, when):
            raise RecordNotFoundError(
                f"GPU {args.uuid!r} has never been reported to this collector",
                hint="use the UUID exactly as attested (gpucensus-agent snapshot shows it)",
            )
    reason = f" ({printable(args.reason)})" if args.reason else ""
    print(f"GPU {printable(args.uuid)} decommissioned at {iso(when)}{reason}")
    return 0
