"""`gpucensus-audit`: the auditor's offline checks.

`gpucensus-audit verify FILE... --key PUBKEY.pem` verifies each envelope file (canonical form, signature, payload
type, statement shape) and, per node key, the chain across them (order, `previous` links, duplicates, gaps, forks).
A fork is two different payloads, each verified with the key, for one sequence (`common.verify.check_chain`):
the same rule as the collector's equivocation.
Exit 0 only if everything holds, 1 if any check fails (each failure printed with its reason), 2 on unusable
input (a file or key that cannot be read).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from collector import __version__
from collector.errors import ConfigError
from common.cli_support import run_command
from common.dsse import EnvelopeError
from common.safe_text import printable
from common.verify import (
    EnvelopeResult,
    Failure,
    VerifiedStatement,
    check_chains,
    parse_envelope,
    public_key_from_pem,
    public_key_id,
    verify_parsed,
)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror}") from err


def load_keys(paths: Sequence[Path]) -> list[Ed25519PublicKey]:
    keys = []
    for path in paths:
        try:
            keys.append(public_key_from_pem(_read(path, "public key")))
        except ValueError as err:
            raise ConfigError(
                f"{path} is not an Ed25519 public key (SubjectPublicKeyInfo PEM): {err}",
                hint="use the FILE.pub that gpucensus-agent keygen wrote",
            ) from err
    return keys


def verify_file(data: bytes, keys: Sequence[Ed25519PublicKey], source: str) -> EnvelopeResult:
    """Verify one envelope against the given keys: the result of the first key that verifies it, else the
    result for the key its keyid names (or the first key)."""
    if data.endswith(b"\n"):  # a terminal newline (cat, editors) is not part of the envelope's JCS bytes
        data = data[:-1]
    try:
        parsed = parse_envelope(data)  # once, whatever the number of keys
    except EnvelopeError as err:
        return EnvelopeResult([Failure(err.reason, err.message, source=source)])
    results = [verify_parsed(parsed, key, source) for key in keys]
    for result in results:
        if result.ok:
            return result
    for result in results:
        if all(f.reason != "wrong-key" for f in result.failures):
            return result
    return results[0]


def verify_files(
    files: Sequence[Path], keys: Sequence[Ed25519PublicKey]
) -> tuple[list[VerifiedStatement], list[Failure]]:
    contents = [(path, _read(path, "envelope file")) for path in files]
    verified: list[VerifiedStatement] = []
    failures: list[Failure] = []
    for path, data in contents:
        result = verify_file(data, keys, str(path))
        failures += result.failures
        if result.verified is not None:
            verified.append(result.verified)
    failures += check_chains(verified)
    return verified, failures


def _report(verified: list[VerifiedStatement], failures: list[Failure], total: int, fmt: str) -> None:
    if fmt == "json":
        document = {
            "ok": not failures,
            "envelopes": total,
            "verified": [
                {"source": v.source, "keyid": v.keyid, "node": v.node_id, "sequence": v.sequence, "digest": v.digest}
                for v in verified
            ],
            "failures": [
                {"source": f.source, "sequence": f.sequence, "reason": f.reason, "message": f.message} for f in failures
            ],
        }
        print(json.dumps(document, indent=2))
        return
    for failure in failures:
        print(f"FAIL {printable(failure)}")
    nodes = sorted({printable(v.node_id) for v in verified})
    if failures:
        print(f"{len(failures)} failure(s); {len(verified)} of {total} envelope(s) verified individually")
    else:
        sequences = sorted(v.sequence for v in verified)
        print(
            f"OK {total} envelope(s) from {len(nodes)} node(s) ({', '.join(nodes)}), sequences "
            f"{sequences[0]}..{sequences[-1]}: signatures, statements and chains hold"
        )


def cmd_verify(args: argparse.Namespace) -> int:
    keys = load_keys(args.key)
    for key_path, key in zip(args.key, keys, strict=True):
        print(f"key {key_path}: {public_key_id(key)}", file=sys.stderr)
    verified, failures = verify_files(args.files, keys)
    _report(verified, failures, len(args.files), args.format)
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpucensus-audit", description="Offline checks of gpucensus attestations for auditors and regulators."
    )
    parser.add_argument("--version", action="version", version=f"gpucensus-audit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    verify = sub.add_parser(
        "verify",
        help="verify envelope files and their hash chain",
        description="Verify DSSE envelope files: signature with the node's public key, payload type, statement "
        "shape, and across the files of each key: sequence order, previous links, duplicates, gaps, forks. "
        "Exit 0 only if all hold; 1 with every failure and its reason otherwise; 2 on unreadable input.",
    )
    verify.add_argument("files", nargs="+", type=Path, metavar="FILE", help="envelope file(s), any order")
    verify.add_argument(
        "--key", required=True, action="append", type=Path, metavar="PUBKEY.pem",
        help="node public key (FILE.pub from keygen); repeat for several nodes",
    )  # fmt: skip
    verify.add_argument("--format", choices=("text", "json"), default="text")
    verify.set_defaults(func=cmd_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv, exit_code=2)


if __name__ == "__main__":
    sys.exit(main())
