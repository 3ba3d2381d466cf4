"""`gpucensus-agent attest`: sign one attestation of the current inventory (a DSSE envelope, JSON).

The envelope is written as its exact bytes (stdout or `--out FILE`): the SHA-256 of that file is what the
next attestation's `previous` names.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from gpucensus.agent.attest import attest
from gpucensus.agent.chain import ChainStore
from gpucensus.agent.commands.snapshot import add_discovery_arguments, predicate_from_args
from gpucensus.agent.keys import load_key
from gpucensus.common.durable import atomic_write
from gpucensus.common.errors import ConfigError, StateError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "attest",
        help="sign one attestation (DSSE envelope) of this node's inventory",
        description="Take a snapshot, wrap it in an in-toto statement with the next sequence number and the "
        "digest of the previous envelope, sign it with the node key and write the DSSE envelope.",
    )
    add_discovery_arguments(parser)
    parser.add_argument("--key", required=True, type=Path, metavar="FILE", help="node private key (keygen)")
    parser.add_argument(
        "--state", required=True, type=Path, metavar="DIR", help="chain state directory (keep it next to the key)"
    )
    parser.add_argument("--out", type=Path, metavar="FILE", help="write the envelope here (never overwritten)")
    parser.set_defaults(func=handle)


def _now() -> datetime:
    return datetime.now(UTC)


def handle(args: argparse.Namespace) -> int:
    if args.out is not None and (args.out.exists() or args.out.is_symlink()):
        raise ConfigError(f"--out {args.out} already exists", hint="attestations are never overwritten")
    if args.out is not None and not args.out.parent.is_dir():
        raise ConfigError(f"--out {args.out}: directory {args.out.parent} does not exist")
    key = load_key(args.key)
    predicate = predicate_from_args(args)
    try:
        result = attest(predicate, key.private_key, ChainStore(args.state, key.keyid), _now)
    except ValueError as err:
        raise ConfigError(f"cannot build the statement: {err}") from err
    summary = f"signed sequence {result.sequence} with key {result.keyid} (envelope sha256 {result.digest})"
    if args.out is None:
        sys.stdout.buffer.write(result.envelope + (b"\n" if sys.stdout.isatty() else b""))
        sys.stdout.flush()
    else:
        try:
            atomic_write(args.out, result.envelope, mode=0o644, overwrite=False)
        except OSError as err:
            raise StateError(
                f"sequence {result.sequence} was signed but {args.out} could not be written: {err.strerror}",
                hint="the next attestation will show a gap; nothing else is lost",
            ) from err
    print(f"gpucensus-agent: {summary}", file=sys.stderr)
    return 0
