"""Every check of an audit bundle, collected (never stopping at the first): what `gpucensus-audit verify DIR` runs.

1. the checkpoint is a signed note verified with the log's key (the pinned `--vkey` if given, else the bundle's
   own `log.vkey`, which proves nothing about *which* log unless the auditor got the key out of band), and
   cosigned by every witness the auditor requires (`--witness`);
2. the manifest lists exactly the files present, with their SHA-256, and the checkpoint's size;
3. each envelope has a proof for the checkpoint's size whose path leads from SHA-256(0x00 ‖ envelope bytes)
   to the checkpoint's root (RFC 9162);
4. each envelope's signature with its node key from `keys/`, and per key the chain (gaps, forks, links);
5. each verified full statement's figures recomputed from its facts with this tool's catalogue; a disagreement
   fails; each compact statement names a full inventory of its key that the bundle holds (sequence and digest),
   which is not recomputed again for it (the manifest's `references` are full inventories present only for
   that: they are verified, but not checked as part of the selection's chain);
6. each envelope's key is bound in the manifest's registry rows to the node the statement names; each policy
   file parses as a policy pack.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from gpucensus.collector.audit.bundle import CHECKPOINT, Bundle, parse_proof, sha256_hex
from gpucensus.collector.audit.envelopes import verify_file
from gpucensus.collector.audit.figures import recompute_figures
from gpucensus.collector.ingest.errors import MalformedFactError
from gpucensus.collector.policy.pack import parse_pack
from gpucensus.common import merkle, note
from gpucensus.common.accounting import Rules
from gpucensus.common.catalogue import Catalogue
from gpucensus.common.errors import GpucensusError
from gpucensus.common.statement import COMPACT
from gpucensus.common.verify import (
    GAP,
    PREVIOUS_MISMATCH,
    Failure,
    VerifiedStatement,
    check_chains,
    public_key_from_pem,
    public_key_id,
)


@dataclass
class BundleReport:
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was checked against what, and the recomputed totals
    checkpoint: note.Checkpoint | None = None
    verified: list[VerifiedStatement] = field(default_factory=list)

    def fail(self, reason: str, message: str, source: str = "", sequence: int | None = None) -> None:
        self.failures.append(Failure(reason, message, sequence, source))


def _log_key(bundle: Bundle, pinned: note.VerifierKey | None, report: BundleReport) -> note.VerifierKey | None:
    try:
        own = note.VerifierKey.parse(bundle.vkey)
    except note.NoteError as err:
        own = None
        report.fail("vkey-malformed", err.message, "log.vkey")
    if pinned is None:
        report.notes.append(
            "checkpoint checked against the bundle's own log.vkey: pin the log's key with --vkey (obtained out of "
            "band) to know whose log this is"
        )
        return own
    if own is not None and own != pinned:
        report.fail("vkey-mismatch", f"log.vkey is {own}, not the pinned key {pinned}", "log.vkey")
    report.notes.append(f"checkpoint checked against the pinned key {pinned}")
    return pinned


def check_checkpoint(
    bundle: Bundle, pinned: note.VerifierKey | None, witnesses: Sequence[note.VerifierKey], report: BundleReport
) -> None:
    key = _log_key(bundle, pinned, report)
    try:
        signed = note.parse_note(bundle.checkpoint)
        report.checkpoint = note.Checkpoint.parse(signed.text)
    except note.NoteError as err:
        report.fail("checkpoint-malformed", err.message, CHECKPOINT)
        return
    if key is not None:
        try:
            signed.verify([key])
        except note.NoteError as err:
            report.fail("checkpoint-signature", err.message, CHECKPOINT)
    for witness in witnesses:
        try:
            when = note.verify_cosignature(signed, witness)
        except note.NoteError as err:
            report.fail("cosignature", f"witness {witness}: {err.message}", CHECKPOINT)
            continue
        stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        report.notes.append(f"checkpoint cosigned by witness {witness} at {stamp}")


def check_manifest(bundle: Bundle, report: BundleReport) -> None:
    listed: dict[str, str] = {}
    entries = bundle.manifest.get("files")
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("sha256"), str) for e in entries
    ):
        report.fail("manifest-malformed", 'manifest "files" is not a list of {"path", "sha256"} objects')
        entries = []
    for entry in entries:
        listed[entry["path"]] = entry["sha256"]
    for path in sorted(set(listed) - set(bundle.files)):
        report.fail("manifest-missing-file", "listed in the manifest but not in the bundle", path)
    for path in sorted(set(bundle.files) - set(listed)):
        report.fail("manifest-unlisted-file", "in the bundle but not listed in the manifest", path)
    for path in sorted(set(listed) & set(bundle.files)):
        if sha256_hex(bundle.files[path]) != listed[path]:
            report.fail("manifest-digest", f"SHA-256 is {sha256_hex(bundle.files[path])}, the manifest says "
                        f"{listed[path]}", path)  # fmt: skip
    for name in bundle.misnamed:
        report.fail("bundle-layout", "not a file the bundle layout allows", name)
    selection = bundle.manifest.get("selection")
    chosen = ", ".join(f"{k} {v}" for k, v in selection.items() if v) if isinstance(selection, dict) else ""
    report.notes.append(f"exported by gpucensus-collector {bundle.manifest.get('collector_version', '?')}"
                        f" ({chosen or 'whole log'})")  # fmt: skip
    size = bundle.manifest.get("checkpoint_size")
    if report.checkpoint is not None and size != report.checkpoint.size:
        report.fail("manifest-mismatch", f"manifest checkpoint_size {size!r}, checkpoint size "
                    f"{report.checkpoint.size}", "manifest.json")  # fmt: skip


def check_proofs(bundle: Bundle, report: BundleReport) -> None:
    checkpoint = report.checkpoint
    for index in sorted(set(bundle.proofs) - set(bundle.envelopes)):
        report.fail("envelope-missing", f"a proof for log index {index} but no envelope", f"proofs/{index}.json")
    for index, envelope in sorted(bundle.envelopes.items()):
        source = f"proofs/{index}.json"
        if index not in bundle.proofs:
            report.fail("proof-missing", f"no inclusion proof for log index {index}", source)
            continue
        try:
            proof = parse_proof(bundle.proofs[index])
        except ValueError as err:
            report.fail("proof-malformed", str(err), source)
            continue
        if proof.log_index != index:
            report.fail("proof-malformed", f"proof is for log index {proof.log_index}, its file for {index}", source)
            continue
        if checkpoint is None:
            continue
        if proof.tree_size != checkpoint.size:
            report.fail("proof-size", f"proof is for tree size {proof.tree_size}, the checkpoint's is "
                        f"{checkpoint.size}", source)  # fmt: skip
            continue
        try:
            merkle.verify_inclusion(merkle.leaf_hash(envelope), index, proof.tree_size, proof.hashes,
                                    checkpoint.root_hash)  # fmt: skip
        except merkle.ProofError as err:
            report.fail("inclusion", f"envelopes/{index}.json is not in the checkpoint's tree: {err.message}", source)


def load_node_keys(bundle: Bundle, report: BundleReport) -> list[Ed25519PublicKey]:
    keys = []
    for keyid, pem in sorted(bundle.keys.items()):
        try:
            key = public_key_from_pem(pem)
        except ValueError as err:
            report.fail("key-malformed", f"not an Ed25519 public key: {err}", f"keys/{keyid}.pem")
            continue
        if public_key_id(key) != keyid:
            report.fail("key-misnamed", f"the key's id is {public_key_id(key)}", f"keys/{keyid}.pem")
        keys.append(key)
    return keys


def check_envelopes(bundle: Bundle, keys: Sequence[Ed25519PublicKey], report: BundleReport) -> None:
    for index, data in sorted(bundle.envelopes.items()):
        result = verify_file(data, keys, f"envelopes/{index}.json")
        report.failures += result.failures
        if result.verified is not None:
            report.verified.append(result.verified)
    references = _references(bundle)
    chained = [s for s in report.verified if s.source not in references]
    holes = {"pruned": _ranges(bundle, "pruned"), "rejected": _ranges(bundle, "rejected")}
    report.failures += _pruning_explained(check_chains(chained), chained, holes, report)


def _covered(low: int, high: int, ranges: list[tuple[int, int]]) -> bool:
    """Whether the sorted (first, last) `ranges` cover every sequence in low..high (without enumerating it)."""
    for first, last in ranges:
        if first > low:
            return False
        if last >= low:
            low = last + 1
            if low > high:
                return True
    return False


def _ranges(bundle: Bundle, name: str) -> dict[str, list[tuple[int, int]]]:
    """The manifest's `pruned` or `rejected`: {keyid: [(first, last), ...]} (what is malformed is left out: then a
    gap stays a gap)."""
    listed = bundle.manifest.get(name, {})
    out: dict[str, list[tuple[int, int]]] = {}
    for keyid, ranges in listed.items() if isinstance(listed, dict) else ():
        for r in ranges if isinstance(ranges, list) else ():
            if isinstance(r, list) and len(r) == 2 and all(type(v) is int for v in r):
                out.setdefault(str(keyid), []).append((r[0], r[1]))
    return out


def _pruning_explained(
    failures: list[Failure],
    chained: list[VerifiedStatement],
    holes: dict[str, dict[str, list[tuple[int, int]]]],
    report: BundleReport,
) -> list[Failure]:
    """Gap and previous-mismatch failures of a statement whose missing predecessors the collector says it pruned
    (`holes["pruned"]`) or rejected as compact statements (`holes["rejected"]`, never stored) become notes: the
    manifest is unsigned, so this is the collector's word; pruned envelopes' leaves remain in the log (their
    inclusion cannot be shown without them), rejected ones were never leaves."""
    if not any(holes.values()):
        return failures
    explained: set[tuple[str, int]] = set()
    by_key: dict[str, list[int]] = defaultdict(list)
    sources = {}
    for statement in chained:
        by_key[statement.keyid].append(statement.sequence)
        sources[(statement.keyid, statement.sequence)] = statement.source
    for keyid, sequences in by_key.items():
        ordered = sorted(set(sequences))
        kinds = {name: sorted(ranges.get(keyid, ())) for name, ranges in holes.items()}
        both = sorted(r for ranges in kinds.values() for r in ranges)
        for before, after in itertools.pairwise(ordered):
            if after <= before + 1 or not _covered(before + 1, after - 1, both):
                continue
            explained.add((sources[(keyid, after)], after))
            span = f"{before + 1}..{after - 1}" if after - 1 > before + 1 else str(before + 1)
            named = [name for name, ranges in kinds.items() if _covered(before + 1, after - 1, ranges)]
            how = named[0] if named else "pruned or rejected"
            report.notes.append(f"key {keyid[:16]}: sequence(s) {span} {how} by the collector (compact statements; "
                                "its manifest says so, nothing proves it)")  # fmt: skip
    return [f for f in failures if not ((f.source, f.sequence) in explained and f.reason in (GAP, PREVIOUS_MISMATCH))]


def _references(bundle: Bundle) -> set[str]:
    listed = bundle.manifest.get("references", [])
    indices = listed if isinstance(listed, list) else []
    return {f"envelopes/{i}.json" for i in indices if isinstance(i, int) and not isinstance(i, bool)}


def check_compact(report: BundleReport) -> None:
    """Each compact statement names a full inventory of its own key that the bundle holds."""
    by_key = {(s.keyid, s.sequence): s for s in report.verified}
    for statement in report.verified:
        named = statement.inventory_reference
        if named is None:
            continue
        target = by_key.get((statement.keyid, named[0]))
        if target is None:
            report.fail("compact-reference", f"names full inventory {named[0]} ({named[1]}), which the bundle "
                        "does not hold", statement.source, statement.sequence)  # fmt: skip
        elif target.digest != named[1] or target.kind == COMPACT:
            report.fail("compact-reference", f"names inventory {named[0]} with digest {named[1]}, but the bundle's "
                        f"sequence {named[0]} is {target.source} ({target.kind}, digest {target.digest})",
                        statement.source, statement.sequence)  # fmt: skip


def check_figures(report: BundleReport, catalogue: Catalogue, rules: Rules) -> dict[str, dict[str, int]]:
    """Recompute each statement; return the latest statement's recomputed totals per node id."""
    latest: dict[str, tuple[int, dict[str, int]]] = {}
    for statement in report.verified:
        if statement.kind == COMPACT:
            continue  # it repeats the full inventory it names, recomputed there
        predicate = statement.statement["predicate"]
        try:
            figures = recompute_figures(predicate, catalogue, rules)
        except MalformedFactError as err:
            report.fail("facts-malformed", str(err), statement.source, statement.sequence)
            continue
        for difference in figures.differences:
            report.fail("figures", difference, statement.source, statement.sequence)
        node_id = statement.node_id
        if node_id not in latest or latest[node_id][0] < statement.sequence:
            latest[node_id] = (statement.sequence, figures.totals)
    return {node_id: totals for node_id, (_, totals) in latest.items()}


def _rows(bundle: Bundle, kind: str) -> list[dict[str, Any]]:
    registry = bundle.manifest.get("registry")
    rows = registry.get(kind) if isinstance(registry, dict) else None
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def check_registry(bundle: Bundle, report: BundleReport, totals: dict[str, dict[str, int]]) -> None:
    nodes = {r.get("keyid"): r for r in _rows(bundle, "nodes")}
    sites = {r.get("id"): r for r in _rows(bundle, "sites")}
    site_of: dict[str, str] = {}
    for statement in report.verified:
        row = nodes.get(statement.keyid)
        if row is None:
            report.fail("registry-missing", f"key {statement.keyid} has no node row in the manifest's registry",
                        statement.source, statement.sequence)  # fmt: skip
        elif row.get("node_id") != statement.node_id:
            report.fail("registry-mismatch", f"key {statement.keyid} is bound to node {row.get('node_id')!r}, the "
                        f"statement names {statement.node_id!r}", statement.source, statement.sequence)  # fmt: skip
        else:
            site_of[statement.node_id] = str(row.get("site"))
    by_site: dict[str, dict[str, int]] = defaultdict(lambda: {"nodes": 0, "gpus": 0, "tpp": 0, "unaccounted": 0})
    for node_id, node_totals in totals.items():
        site = site_of.get(node_id, "?")
        by_site[site]["nodes"] += 1
        for name in ("gpus", "tpp", "unaccounted"):
            by_site[site][name] += node_totals[name]
    for site, t in sorted(by_site.items()):
        country = sites.get(site, {}).get("country", "?")
        report.notes.append(
            f"site {site} ({country}): {t['nodes']} node(s), {t['gpus']} GPU(s), TPP {t['tpp']} recomputed from "
            f"the latest attestation of each node, {t['unaccounted']} unaccounted"
        )


def check_policies(bundle: Bundle, report: BundleReport) -> None:
    for name, data in sorted(bundle.policies.items()):
        source = f"policy/{name}.toml"
        try:
            parse_pack(data.decode("utf-8"), source, source)
        except (GpucensusError, UnicodeDecodeError) as err:
            report.fail("policy-malformed", getattr(err, "message", str(err)), source)


def verify_bundle(
    bundle: Bundle,
    pinned: note.VerifierKey | None,
    extra_keys: Sequence[Ed25519PublicKey],
    catalogue: Catalogue,
    rules: Rules,
    witnesses: Sequence[note.VerifierKey] = (),
) -> BundleReport:
    report = BundleReport()
    check_checkpoint(bundle, pinned, witnesses, report)
    check_manifest(bundle, report)
    check_proofs(bundle, report)
    keys = load_node_keys(bundle, report) + list(extra_keys)
    check_envelopes(bundle, keys, report)
    check_compact(report)
    totals = check_figures(report, catalogue, rules)
    check_registry(bundle, report, totals)
    check_policies(bundle, report)
    return report
