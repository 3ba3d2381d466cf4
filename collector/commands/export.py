"""`gpucensus-collector export --out DIR [--site S | --country CC] [--since DATE]`: an audit bundle
(docs/formats.md, "Audit bundle"; layout in `collector.audit.bundle`) that `gpucensus-audit verify DIR` checks
offline: the latest signed checkpoint, the log key, the selected envelopes byte for byte with an inclusion proof
each against that checkpoint, the node keys, the policy pack in force and the registry rows they belong to.

Only what the checkpoint covers is exported (an envelope sequenced later waits for the next checkpoint), and
the database's tree must match the checkpoint: after a restore from an old backup, export refuses rather than
write proofs that cannot verify. DIR must be new or empty: a bundle is never merged with another.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import UTC, date, datetime
from pathlib import Path

from gpucensus.collector import __version__
from gpucensus.collector.audit import bundle
from gpucensus.collector.commands.common import add_store_arguments, config_from_args, iso, store_from_args
from gpucensus.collector.countries import is_alpha2
from gpucensus.collector.store.base import RecordNotFoundError, Store
from gpucensus.common import dsse, merkle
from gpucensus.common.errors import ConfigError, StateError
from gpucensus.common.statement import COMPACT_PREDICATE_TYPE


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write an audit bundle (envelopes, proofs, checkpoint, keys, policy) for gpucensus-audit verify",
        description="Write the envelopes the latest checkpoint covers (optionally one site's or one country's, "
        "since a date) with their inclusion proofs, the signed checkpoint, the log key, the node keys, the policy "
        "pack in force and the registry rows, as plain files in DIR (new or empty).",
    )
    add_store_arguments(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="the bundle directory (new or empty)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--site", help="only this site's envelopes")
    scope.add_argument("--country", metavar="CC", help="only the envelopes of sites in this country (ISO alpha-2)")
    parser.add_argument("--since", type=_since, metavar="DATE", help="only statements dated on or after DATE "
                        "(YYYY-MM-DD or an RFC 3339 time)")  # fmt: skip
    parser.set_defaults(func=run_export)


def _since(text: str) -> datetime:
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD) or an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (add Z for UTC)")
    return moment.astimezone(UTC)


def run_export(args: argparse.Namespace) -> int:
    # here, not at the top: the log's keys (cryptography) and service (metrics) and the policy packs load only when
    # this command runs, so building the command line parser stays cheap (collector/commands/__init__.py)
    from gpucensus.collector.log import state
    from gpucensus.collector.log.service import LogRangeError, b64, data_dir
    from gpucensus.collector.policy.pack import load_pack, pack_text

    config = config_from_args(args)
    where = data_dir(config)
    key = state.load_or_create_key(config.log.key_path(where), config.log.origin)
    checkpoint_path = config.log.checkpoint_path(where)
    signed = state.load_checkpoint(checkpoint_path, key)
    if signed is None:
        raise StateError(f"no checkpoint signed yet ({checkpoint_path} does not exist)",
                         hint="start the collector: it signs one")  # fmt: skip
    size, root = signed.checkpoint.size, signed.checkpoint.root_hash
    pack_name = config.policy.pack
    pack = load_pack(pack_name)
    with store_from_args(args, config) as store:
        if size > store.log_size() or merkle.tree_root(size, store.log_hashes) != root:
            raise LogRangeError(
                f"the database's tree does not match the checkpoint {checkpoint_path} (size {size}, root {b64(root)})",
                hint="was the database restored from an old backup? the collector refuses to sign it too",
            )
        sites = store.list_sites()
        if args.site is not None:
            chosen = [s for s in sites if s.id == args.site]
            if not chosen:
                raise RecordNotFoundError(f"no site {args.site!r}")
        elif args.country is not None:
            country = args.country.upper()
            if not is_alpha2(country):
                raise ConfigError(f"--country {args.country!r} is not an ISO 3166-1 alpha-2 code", hint="e.g. DE")
            chosen = [s for s in sites if s.country == country]
        else:
            chosen = sites
        selected = None if args.site is None and args.country is None else [s.id for s in chosen]
        rows = store.log_attestations(size, selected, args.since)
        envelopes = {index: envelope for index, _, envelope in rows}
        references = _named_fulls(store, rows, size)  # what the selected compact statements repeat
        envelopes.update(references)
        proofs = {index: merkle.inclusion_proof(index, size, store.log_hashes) for index in envelopes}
        keyids = sorted({keyid for _, keyid, _ in rows})
        pruned = store.pruned_ranges(keyids)
        rejected = store.rejected_compact_ranges(keyids)
        node_keys = [store.get_key(keyid) for keyid in keyids]
        entities = {e.id: e for e in store.list_entities()}
    keys = [k for k in node_keys if k is not None]
    covered_sites = {k.site for k in keys} | {s.id for s in chosen if selected is not None}
    site_rows = [s for s in sites if s.id in covered_sites]
    registry = {
        "entities": [asdict(entities[e]) for e in sorted({s.entity for s in site_rows}) if e in entities],
        "sites": [asdict(s) for s in site_rows],
        "nodes": [
            {
                "node_id": k.node_id,
                "keyid": k.keyid,
                "site": k.site,
                "enrolled_at": iso(k.enrolled_at),
                "revoked_at": iso(k.revoked_at) or None,
            }
            for k in keys
        ],
    }
    bundle.write_bundle(
        Path(args.out),
        checkpoint=state.load_cosigned(checkpoint_path, signed),
        vkey=str(key.verifier()),
        envelopes=envelopes,
        proofs=proofs,
        tree_size=size,
        keys={k.keyid: k.public_key_pem.encode("ascii") for k in keys},
        policies={pack.name: pack_text(pack_name)[0].encode("utf-8")},
        collector_version=__version__,
        registry=registry,
        selection={
            "site": args.site,
            "country": args.country and args.country.upper(),
            "since": iso(args.since) if args.since else None,
        },
        references=sorted(references),
        pruned=pruned,
        rejected=rejected,
    )
    print(f"wrote {len(envelopes)} envelope(s) with proofs against checkpoint {size} to {args.out}")
    return 0


def _named_fulls(store: Store, rows: list[tuple[int, str, bytes]], size: int) -> dict[int, bytes]:
    """{log index: envelope} of the full inventories the selected compact statements name, when the selection
    (`--since`, a site) left them out: a bundle with a compact statement also carries what it repeats."""
    have = {dsse.envelope_digest(envelope) for _, _, envelope in rows}
    out: dict[int, bytes] = {}
    for _, keyid, envelope in rows:
        named = compact_reference(envelope)
        if named is None or named[1] in have:
            continue
        record = store.get_attestation(keyid, named[0])
        if (
            record is not None
            and record.digest == named[1]
            and record.log_index is not None
            and record.log_index < size
        ):
            out[record.log_index] = record.envelope
            have.add(record.digest)
    return out


def compact_reference(envelope: bytes) -> tuple[int, str] | None:
    """(sequence, digest) a stored compact statement names; None for a full one (or one that cannot be read)."""
    try:
        statement = json.loads(dsse.b64decode(json.loads(envelope)["payload"]))
        if statement.get("predicateType") != COMPACT_PREDICATE_TYPE:
            return None
        named = statement["predicate"]["inventory"]
        return int(named["sequence"]), str(named["digest"])
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
