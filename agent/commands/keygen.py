"""`gpucensus-agent keygen --key FILE`: create the node's Ed25519 key pair and print its key id."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gpucensus.agent.keys import generate_key, public_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "keygen",
        help="create this node's Ed25519 signing key",
        description="Create an Ed25519 key: FILE (PKCS#8 PEM, mode 0600) and FILE.pub (SubjectPublicKeyInfo "
        "PEM). Refuses to overwrite. Prints the key id (hex SHA-256 of the DER public key) on stdout.",
    )
    parser.add_argument("--key", required=True, type=Path, metavar="FILE", help="private key file to create")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    key = generate_key(args.key)
    print(f"wrote {args.key} (private, mode 0600) and {public_path(args.key)}", file=sys.stderr)
    print(key.keyid)
    return 0
