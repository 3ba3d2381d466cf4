"""`gpucensus-audit`: the auditor's offline checks.

- `verify FILE... --key PUBKEY.pem`: each envelope file (canonical form, signature, payload type, statement shape)
  and, per node key, the chain across them (order, `previous` links, duplicates, gaps, forks). A fork is two
  different payloads, each verified with the key, for one sequence (`common.verify.check_chain`).
- `verify DIR [--vkey KEY]`: an audit bundle (`collector.audit.check_bundle`): checkpoint signature, manifest,
  inclusion proofs, envelopes and chains, recomputed figures, registry binding, policy packs.
- `witness --state DIR CHECKPOINT --vkey KEY [--consistency PROOF.json] [--cosign-key FILE]`: accept a log's new
  checkpoint only if it extends the one held (`collector.audit.witness`); optionally cosign it.
- `witness-key NAME --out FILE`: a new cosigner key for `witness --cosign-key`.
Exit 0 only if everything holds (or the checkpoint is accepted), 1 if any check fails (each failure printed with
its reason), 2 on unusable input (a file, key or state that cannot be read).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from gpucensus.collector import __version__
from gpucensus.collector.audit.bundle import read_bundle
from gpucensus.collector.audit.check_bundle import verify_bundle
from gpucensus.collector.audit.envelopes import read_file, verify_file, verify_files
from gpucensus.collector.audit.render import report_bundle, report_files
from gpucensus.collector.audit.witness import MAX_INPUT_BYTES, WitnessState, judge, parse_consistency
from gpucensus.collector.errors import ConfigError
from gpucensus.common import note
from gpucensus.common.accounting import load_rules
from gpucensus.common.catalogue import load_catalogue
from gpucensus.common.cli_support import run_command
from gpucensus.common.durable import atomic_write, refuse_shared_private_key
from gpucensus.common.safe_text import printable
from gpucensus.common.verify import public_key_from_pem, public_key_id

__all__ = ["main", "verify_file", "verify_files"]


def load_keys(paths: Sequence[Path]) -> list[Ed25519PublicKey]:
    keys = []
    for path in paths:
        try:
            keys.append(public_key_from_pem(read_file(path, "public key")))
        except ValueError as err:
            raise ConfigError(
                f"{path} is not an Ed25519 public key (SubjectPublicKeyInfo PEM): {err}",
                hint="use the FILE.pub that gpucensus-agent keygen wrote",
            ) from err
    return keys


def load_vkey(text_or_path: str) -> note.VerifierKey:
    """A verifier key string, or a file holding one."""
    path = Path(text_or_path)
    text = read_file(path, "verifier key").decode("ascii", "replace") if path.is_file() else text_or_path
    try:
        return note.VerifierKey.parse(text)
    except note.NoteError as err:
        raise ConfigError(
            f"--vkey {text_or_path}: {err.message}", hint="use what `gpucensus-collector log key` prints"
        ) from err


def cmd_verify(args: argparse.Namespace) -> int:
    keys = load_keys(args.key or [])
    for key_path, key in zip(args.key or [], keys, strict=True):
        print(f"key {key_path}: {public_key_id(key)}", file=sys.stderr)
    if len(args.paths) == 1 and args.paths[0].is_dir():
        bundle = read_bundle(args.paths[0])
        pinned = load_vkey(args.vkey) if args.vkey else None
        witnesses = [load_vkey(text) for text in args.witness or []]
        for witness in witnesses:
            if witness.sig_type != note.COSIGNATURE_V1:
                raise ConfigError(f"--witness {witness} is not a cosignature/v1 key (type 0x04)",
                                  hint="use the key gpucensus-audit witness-key printed")  # fmt: skip
        report = verify_bundle(bundle, pinned, keys, load_catalogue(), load_rules(), witnesses)
        report_bundle(args.paths[0], report, len(bundle.envelopes), args.format)
        return 1 if report.failures else 0
    if not keys:
        raise ConfigError("give the node public key(s) with --key", hint="or a bundle directory as the only path")
    verified, failures = verify_files(args.paths, keys)
    report_files(verified, failures, len(args.paths), args.format)
    return 1 if failures else 0


def _load_cosigner(path: Path) -> note.SignerKey:
    try:
        refuse_shared_private_key(path, path.stat(), "cosigner key")
    except OSError as err:
        raise ConfigError(f"cannot read cosigner key {path}: {err.strerror}") from err
    try:
        key = note.SignerKey.parse(read_file(path, "cosigner key").decode("ascii", "replace"))
    except note.NoteError as err:
        raise ConfigError(f"{path}: {err.message}", hint="create one with gpucensus-audit witness-key") from err
    if key.sig_type != note.COSIGNATURE_V1:
        raise ConfigError(f"{path} is not a cosignature/v1 key (type 0x04)", hint="use gpucensus-audit witness-key")
    return key


def _small_input(path: Path, what: str) -> bytes:
    data = read_file(path, what)
    if len(data) > MAX_INPUT_BYTES:
        raise ConfigError(f"{what} {path} is {len(data)} bytes, more than {MAX_INPUT_BYTES}")
    return data


def cmd_witness(args: argparse.Namespace) -> int:
    log_key = load_vkey(args.vkey)
    cosigner = _load_cosigner(args.cosign_key) if args.cosign_key else None
    offered_bytes = _small_input(args.checkpoint, "checkpoint")
    proof = (
        parse_consistency(_small_input(args.consistency, "proof"), str(args.consistency)) if args.consistency else None
    )
    state = WitnessState(args.state, log_key)
    held = state.held()
    try:
        offered, signed = note.open_checkpoint(offered_bytes, log_key)
    except note.NoteError as err:
        print(f"REJECT {printable(args.checkpoint)} is not a checkpoint signed by {log_key}: {err.message}")
        print(f"state unchanged: {printable(state.path)}", file=sys.stderr)
        return 1
    verdict = judge(held, offered, proof)
    for line in verdict.lines:
        print(printable(line))
    if not verdict.accepted:
        print(f"state unchanged: {printable(state.path)}", file=sys.stderr)
        return 1
    state.store(offered_bytes)
    if cosigner is not None:
        line = note.cosign(signed, cosigner, int(time.time())).line()
        if args.out:
            try:
                atomic_write(args.out, line.encode("utf-8"), mode=0o644)
            except OSError as err:
                raise ConfigError(f"checkpoint accepted, but cannot write {args.out}: {err.strerror}",
                                  hint="run the same command again to cosign it") from err  # fmt: skip
            print(f"cosignature by {cosigner.verifier()} written to {printable(args.out)}", file=sys.stderr)
        else:
            sys.stdout.write(line)
    return 0


def cmd_witness_key(args: argparse.Namespace) -> int:
    key = note.SignerKey.generate(note.check_name(args.name), note.COSIGNATURE_V1)
    try:
        atomic_write(args.out, (str(key) + "\n").encode("ascii"), mode=0o600, overwrite=False)
    except FileExistsError as err:
        raise ConfigError(f"{args.out} exists; not overwriting a key") from err
    except OSError as err:
        raise ConfigError(f"cannot write {args.out}: {err.strerror}") from err
    print(key.verifier())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpucensus-audit", description="Offline checks of gpucensus attestations for auditors and regulators."
    )
    parser.add_argument("--version", action="version", version=f"gpucensus-audit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    verify = sub.add_parser(
        "verify",
        help="verify envelope files and their hash chain, or a whole audit bundle",
        description="Verify DSSE envelope files: signature with the node's public key, payload type, statement "
        "shape, and across the files of each key: sequence order, previous links, duplicates, gaps, forks. Given "
        "one directory, verify it as an audit bundle: also the checkpoint signature, the manifest, every inclusion "
        "proof, the recomputed figures. Exit 0 only if all hold; 1 with every failure and its reason otherwise; 2 "
        "on unreadable input.",
    )
    verify.add_argument(
        "paths", nargs="+", type=Path, metavar="FILE|DIR", help="envelope file(s), any order; or a bundle directory"
    )
    verify.add_argument(
        "--key", action="append", type=Path, metavar="PUBKEY.pem",
        help="node public key (FILE.pub from keygen); repeat for several nodes; required for files",
    )  # fmt: skip
    verify.add_argument("--vkey", metavar="KEY", help="the log's verifier key (string or file) obtained out of band: "
                        "a bundle's own log.vkey proves nothing unless pinned")  # fmt: skip
    verify.add_argument("--witness", action="append", metavar="KEY", help="a witness's cosigner key (string or "
                        "file) whose cosignature the bundle's checkpoint must carry; repeat for several")  # fmt: skip
    verify.add_argument("--format", choices=("text", "json"), default="text")
    verify.set_defaults(func=cmd_verify)
    witness = sub.add_parser(
        "witness",
        help="accept a log checkpoint only if it extends the last one accepted",
        description="Keep the last checkpoint accepted in --state DIR; accept CHECKPOINT (signed by --vkey) only "
        "with a valid consistency proof from it. A fork or rollback is reported with both checkpoints, exit 1, "
        "state unchanged. On acceptance, --cosign-key writes a C2SP tlog-cosignature line to --out (or stdout).",
    )
    witness.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="the signed checkpoint offered")
    witness.add_argument("--state", required=True, type=Path, metavar="DIR", help="the witness's state directory")
    witness.add_argument("--vkey", required=True, metavar="KEY", help="the log's verifier key (string or file)")
    witness.add_argument(
        "--consistency", type=Path, metavar="PROOF.json", help="consistency proof from the held size (log consistency)"
    )
    witness.add_argument("--cosign-key", type=Path, metavar="FILE", help="cosigner key from witness-key")
    witness.add_argument("--out", type=Path, metavar="COSIG", help="write the cosignature line here")
    witness.set_defaults(func=cmd_witness)
    key = sub.add_parser("witness-key", help="create a cosigner key", description="Write a new Ed25519 "
                         "cosignature/v1 key (mode 0600) and print its verifier key string.")  # fmt: skip
    key.add_argument("name", metavar="NAME", help="the cosigner's name, e.g. regulator.example/witness")
    key.add_argument("--out", required=True, type=Path, metavar="FILE")
    key.set_defaults(func=cmd_witness_key)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv, exit_code=2)


if __name__ == "__main__":
    sys.exit(main())
