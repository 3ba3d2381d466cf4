"""`gpucensus-collector log key|checkpoint|prove|consistency|cosign`: the transparency log from the data
directory and the store, without a running collector (docs/operators.md, "Transparency log")."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gpucensus.collector.commands.common import command_group, config_from_args, store_action, store_from_args
from gpucensus.common import merkle
from gpucensus.common.errors import ConfigError, StateError

# The log's keys and checkpoints (cryptography) and its service (metrics) are imported by the handlers: building
# the command line parser stays cheap for every command (collector/commands/__init__.py).
if TYPE_CHECKING:
    from gpucensus.collector.config import CollectorConfig
    from gpucensus.collector.log import state
    from gpucensus.common import note


def register(subparsers: argparse._SubParsersAction) -> None:
    group = command_group(subparsers, "log", "the transparency log: key, checkpoint, proofs, cosignatures")
    store_action(group, "key", "print the log's verifier key string (generates the key on first use)", run_key)
    store_action(group, "checkpoint", "print the latest signed checkpoint, with its cosignatures", run_checkpoint)
    prove = store_action(group, "prove", "print the inclusion proof of one leaf (JSON)", run_prove)
    prove.add_argument("--index", type=_count, required=True, metavar="N", help="the leaf index (Ack.log_index)")
    prove.add_argument("--size", type=_count, default=0, metavar="M", help="tree size; default the checkpoint's")
    consistency = store_action(group, "consistency", "print a consistency proof between two sizes (JSON)", run_cons)
    consistency.add_argument("--old", type=_count, required=True, metavar="N", help="the older tree size")
    consistency.add_argument(
        "--new",
        type=_count,
        default=0,
        metavar="M",
        help="the newer size; default the checkpoint's",
    )
    help = "attach a witness's cosignature (a cosigned checkpoint or its cosignature lines) to the served checkpoint"
    cosigning = store_action(group, "cosign", help, run_cosign)
    cosigning.add_argument("file", metavar="FILE", help="the witness's output")
    cosigning.add_argument("--vkey", action="append", default=[], metavar="KEY",
                           help="a witness verifier key (repeatable; adds to [log] witness_keys)")  # fmt: skip


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value < merkle.MAX_TREE_SIZE:
        raise argparse.ArgumentTypeError(f"{text} is not in 0..2^63-1")
    return value


def _key(config: CollectorConfig) -> note.SignerKey:
    from gpucensus.collector.log import state
    from gpucensus.collector.log.service import data_dir

    return state.load_or_create_key(config.log.key_path(data_dir(config)), config.log.origin)


def _signed(config: CollectorConfig) -> tuple[Path, state.Signed]:
    from gpucensus.collector.log import state
    from gpucensus.collector.log.service import data_dir

    path = config.log.checkpoint_path(data_dir(config))
    signed = state.load_checkpoint(path, _key(config))
    if signed is None:
        raise StateError(f"no checkpoint signed yet ({path} does not exist)", hint="start the collector: it signs one")
    return path, signed


def run_key(args: argparse.Namespace) -> int:
    print(_key(config_from_args(args)).verifier())
    return 0


def run_checkpoint(args: argparse.Namespace) -> int:
    from gpucensus.collector.log import state

    path, signed = _signed(config_from_args(args))
    sys.stdout.buffer.write(state.load_cosigned(path, signed))
    sys.stdout.flush()
    return 0


def _tree_size(config: CollectorConfig, args: argparse.Namespace, store_size: int, size: int) -> int:
    from gpucensus.collector.log.service import LogRangeError

    if size == 0:
        size = _signed(config)[1].checkpoint.size
    if size > store_size:
        raise LogRangeError(f"tree size {size} is beyond the log's integrated tree ({store_size} leaves)")
    return size


def run_prove(args: argparse.Namespace) -> int:
    from gpucensus.collector.log.service import LogRangeError, b64

    config = config_from_args(args)
    with store_from_args(args, config) as store:
        size = _tree_size(config, args, store.log_size(), args.size)
        if args.index >= size:
            raise LogRangeError(f"leaf index {args.index} is not in a tree of size {size}")
        hashes = merkle.inclusion_proof(args.index, size, store.log_hashes)
    print(json.dumps({"log_index": args.index, "tree_size": size, "hashes": [b64(h) for h in hashes]}))
    return 0


def run_cons(args: argparse.Namespace) -> int:
    from gpucensus.collector.log.service import LogRangeError, b64

    config = config_from_args(args)
    with store_from_args(args, config) as store:
        size = _tree_size(config, args, store.log_size(), args.new)
        if not 0 < args.old <= size:
            raise LogRangeError(f"no consistency proof from size {args.old} to size {size} (need 0 < old <= new)")
        hashes = merkle.consistency_proof(args.old, size, store.log_hashes)
    print(json.dumps({"old_size": args.old, "new_size": size, "hashes": [b64(h) for h in hashes]}))
    return 0


def run_cosign(args: argparse.Namespace) -> int:
    from gpucensus.collector.log import cosign

    config = config_from_args(args)
    path, signed = _signed(config)
    try:
        data = Path(args.file).read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {args.file}: {err.strerror}") from err
    keys = cosign.witness_keys([*config.log.witness_keys, *args.vkey])
    names = cosign.add_cosignatures(path, signed, data, keys)
    print(f"kept the cosignature(s) of {', '.join(names)} for checkpoint {signed.checkpoint.size}")
    return 0
