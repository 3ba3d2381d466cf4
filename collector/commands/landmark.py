"""`gpucensus-collector landmark keygen|add|list|remove|serve`: the timing services that bound where nodes are."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import threading
from pathlib import Path

from gpucensus.collector.commands.common import command_group, emit, iso, now, store_action, store_from_args
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.location.records import Landmark
from gpucensus.collector.registry import validate_id

# The keys (cryptography) and the timing service are imported by the handlers that use them: building the
# command line parser stays cheap for every command (collector/commands/__init__.py).

log = logging.getLogger("gpucensus.landmark")


def register(subparsers: argparse._SubParsersAction) -> None:
    group = command_group(subparsers, "landmark", "manage landmarks (timing services at known places)")
    keygen = group.add_parser("keygen", help="create a landmark's Ed25519 key (FILE and FILE.pub)")
    keygen.add_argument("--key", required=True, type=Path, metavar="FILE", help="where to write the private key")
    keygen.set_defaults(func=run_keygen)
    add = store_action(group, "add", "register a landmark", run_add)
    add.add_argument("name", help="landmark name, e.g. fra-lm1")
    add_coordinates(add, required=True)
    add.add_argument("--public-key", required=True, type=Path, metavar="FILE", help="its FILE.pub from keygen")
    add.add_argument("--address", required=True, metavar="HOST:PORT", help="where nodes reach its timing service")
    store_action(group, "list", "list landmarks", run_list, formatted=True)
    remove = store_action(group, "remove", "remove a landmark (its measurements are rejected from then on)", run_remove)
    remove.add_argument("name")
    serve = group.add_parser("serve", help="run a landmark's timing service")
    serve.add_argument("--key", required=True, type=Path, metavar="FILE", help="the landmark's private key")
    serve.add_argument("--listen", required=True, metavar="HOST:PORT", help="e.g. 0.0.0.0:7450")
    serve.add_argument("--max-connections", type=int, default=64, metavar="N", help="measured at once (default 64)")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.set_defaults(func=run_serve)


def add_coordinates(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--lat", type=float, required=required, metavar="DEG", help="latitude, WGS 84 (-90..90)")
    parser.add_argument("--lon", type=float, required=required, metavar="DEG", help="longitude, WGS 84 (-180..180)")


def coordinates(lat: float | None, lon: float | None) -> tuple[float, float] | None:
    """Checked (lat, lon), None when neither is given; ConfigError when one is missing or out of range."""
    if lat is None and lon is None:
        return None
    if lat is None or lon is None:
        raise ConfigError(
            "--lat and --lon go together", hint="give both, in decimal degrees, e.g. --lat 50.11 --lon 8.68"
        )
    if not (math.isfinite(lat) and -90 <= lat <= 90 and math.isfinite(lon) and -180 <= lon <= 180):
        raise ConfigError(f"coordinates ({lat}, {lon}) are out of range", hint="latitude -90..90, longitude -180..180")
    return lat, lon


def _address(value: str, lowest_port: int = 1) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if (
        not sep
        or not host
        or not port.isdigit()
        or not lowest_port <= int(port) < 65536
        or any(c.isspace() for c in value)
    ):
        raise ConfigError(f"address {value!r} must be HOST:PORT", hint="e.g. lm1.example.net:7450")
    return host, int(port)


def run_keygen(args: argparse.Namespace) -> int:
    from gpucensus.collector.location import landmark_keys
    from gpucensus.common.verify import public_key_id

    key = landmark_keys.generate(args.key)
    print(f"landmark key {public_key_id(key.public_key())} written to {args.key} and {args.key}.pub")
    return 0


def run_add(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from gpucensus.collector.location import landmark_keys
    from gpucensus.common.verify import public_key_id

    name, address = validate_id("landmark", args.name), args.address
    _address(address)
    lat, lon = coordinates(args.lat, args.lon)  # type: ignore[misc]
    public, _ = landmark_keys.load_public(args.public_key)
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")
    landmark = Landmark(name, public_key_id(public), pem, lat, lon, address, now())
    with store_from_args(args) as store:
        store.add_landmark(landmark)
    print(f"landmark {name} added at ({lat}, {lon}), {address}, key {landmark.keyid}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        rows = [(lm.name, lm.latitude, lm.longitude, lm.address, lm.keyid, iso(lm.added_at))
                for lm in store.list_landmarks()]  # fmt: skip
    emit(args.format, ("name", "lat", "lon", "address", "keyid", "added_at"), rows)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        store.remove_landmark(args.name)
    print(f"landmark {args.name} removed")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from gpucensus.collector.location import landmark_keys
    from gpucensus.collector.location.landmark_server import Landmark as LandmarkService
    from gpucensus.collector.location.landmark_server import LandmarkServer
    from gpucensus.common.verify import public_key_id

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    key = landmark_keys.load_private(args.key)
    host, port = _address(args.listen, lowest_port=0)  # port 0: any free port (printed)
    if args.max_connections < 1:
        raise ConfigError("--max-connections must be at least 1")
    try:
        server = LandmarkServer(LandmarkService(key), host.strip("[]"), port, args.max_connections)
    except OSError as err:
        raise ConfigError(
            f"cannot listen on {args.listen}: {err.strerror}", hint="is another process using it?"
        ) from err
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"landmark {public_key_id(key.public_key())} listening on {host}:{server.port}", flush=True)
    with server:
        server.serve_forever()
    return 0
