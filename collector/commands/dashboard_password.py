"""`gpucensus-collector dashboard-password`: the hash of a dashboard password, for `[dashboard]
basic_auth_password_hash` (the config keeps the hash, never the password)."""

from __future__ import annotations

import argparse
import getpass
import sys

from gpucensus.collector.dashboard.access import hash_password
from gpucensus.collector.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dashboard-password",
        help="hash a password for the dashboard's basic auth ([dashboard] basic_auth_password_hash)",
        description="Read a password (asked twice on a terminal, else the first line of standard input) and print "
        "its salted PBKDF2-SHA256 hash for [dashboard] basic_auth_password_hash.",
    )
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("dashboard password: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 12:
        raise ConfigError("the password must have at least 12 characters")
    print(hash_password(password))
    return 0
