"""The store Protocol every persistence backend implements, and the plain dataclasses it speaks.

Times are timezone-aware UTC `datetime`s everywhere in this API. The idempotency key of an attestation is
`(keyid, sequence)`, UNIQUE in every store; `store_attestation` writes the envelope, its devices, its findings,
the node watermark and the per-GPU state in ONE transaction, and raises `ConflictError` when another writer
(possibly another collector sharing the database) stored that `(keyid, sequence)` first: the caller then
re-reads it with `get_attestation` and answers duplicate or equivocation.

Errors: `collector.errors.StoreError` = the store cannot be used (unreachable, newer schema): transient or fatal,
never the client's fault. The errors below are about the request and are user-facing (exit code 2 in the CLI).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol, runtime_checkable

from gpucensus.collector.location.records import LocationStore  # the location part of the interface
from gpucensus.common.errors import GpucensusError


class ConflictError(Exception):
    """`(keyid, sequence)` is already stored: re-read it with `get_attestation` (duplicate or equivocation)."""

    def __init__(self, keyid: str, sequence: int) -> None:
        super().__init__(f"attestation ({keyid}, {sequence}) is already stored")
        self.keyid = keyid
        self.sequence = sequence


class RecordExistsError(GpucensusError):
    """An entity, site or key with that id already exists."""

    exit_code = 2


class RecordNotFoundError(GpucensusError):
    """A referenced entity, site, key or GPU does not exist."""

    exit_code = 2


class TokenRejectedError(GpucensusError):
    """An enrollment token is unknown, used up, revoked or expired (these are not told apart)."""

    exit_code = 2


class NodeBoundError(GpucensusError):
    """The node id is bound to another key (or the key to another node): a token never rebinds it; re-keying
    and moving a node are explicit operator actions (`node rekey`, `node move`, `token create --node-id`)."""

    exit_code = 2


# --- registry -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entity:
    id: str
    headquarters: str  # ISO 3166-1 alpha-2
    authorization: str = "none"  # none | uveu | nveu


@dataclass(frozen=True)
class Site:
    id: str
    country: str  # ISO 3166-1 alpha-2
    entity: str  # Entity.id


TOKEN_ID_LENGTH = 12


@dataclass(frozen=True)
class EnrollmentToken:
    token_hash: str  # hex SHA-256 of the token; the token itself is never stored
    site: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None  # the time of its last use
    node_id: str = ""  # "" = any NEW node id; else only this node id, and it re-keys that node if enrolled
    uses: int = 1  # how many NEW node ids it may enroll (a site token for a fleet: more than 1)
    uses_left: int | None = None  # None: all of them (a new token)
    revoked_at: datetime | None = None

    @property
    def public_id(self) -> str:
        """How a token is named in lists, records and `token revoke`: the first 12 hex digits of its hash."""
        return self.token_hash[:TOKEN_ID_LENGTH]

    @property
    def remaining(self) -> int:
        return self.uses if self.uses_left is None else self.uses_left


@dataclass(frozen=True)
class TokenUse:
    """One use of an enrollment token: the node id and key it enrolled, and when."""

    token_hash: str
    node_id: str
    keyid: str
    used_at: datetime


@dataclass(frozen=True)
class NodeKey:
    keyid: str  # hex SHA-256 of the DER SubjectPublicKeyInfo
    public_key_pem: str
    node_id: str
    site: str
    enrolled_at: datetime
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class NodeEvent:
    """One change of a node's binding, recorded in the transaction that made it."""

    node_id: str
    event: str  # enrolled | rekeyed | moved | revoked
    keyid: str  # the node's key after the event (the revoked key for "revoked")
    site: str  # the node's site after the event
    actor: str  # "token:<first 12 hex digits of its hash>", "operator:<user>@<host>", "migration 0003"
    created_at: datetime
    old_keyid: str = ""
    old_site: str = ""
    reason: str = ""
    id: int | None = None


# --- attestations -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceRecord:
    """One device of an attestation, with the COLLECTOR's recomputed accounting (never the agent's)."""

    uuid: str
    index: int = 0
    name: str = ""
    bus_id: str = ""
    status: str = "ok"  # ok | lost | incomplete
    error: str = ""
    model: str = ""  # catalogue model id, "" when unknown
    basis: str = "unknown"  # catalogue | derived | unknown
    tpp: int | None = None  # None = not established: counts as unaccounted, never as zero
    die_area_mm2: str | None = None  # decimal string, e.g. "814"
    pd_milli: int | None = None
    eccn: str = ""  # "3A090.a", "3A090.b", "" (outside 3A090 or unknown)
    h100e_milli: int | None = None
    datacenter: bool = True


@dataclass(frozen=True)
class Finding:
    rule_id: str  # stable, e.g. "chain.gap", "gpu.duplicate-uuid"
    severity: str  # violation | warning | info
    subject: str  # "node:…", "site:…", "gpu:…", "key:…"
    message: str
    keyid: str = ""
    sequence: int | None = None
    created_at: datetime | None = None  # set by the caller; the store fills "now" when None
    id: int | None = None  # assigned by the store
    digest: str = ""  # of the envelope the finding is about; with keyid and sequence, recorded once


@dataclass(frozen=True)
class Evidence:
    """An equivocation's second signed envelope, kept byte for byte for an auditor (never an attestation)."""

    keyid: str
    sequence: int
    digest: str  # hex SHA-256 of envelope
    envelope: bytes  # exactly as received
    stored_digest: str  # the digest of the envelope already stored for (keyid, sequence)
    received_at: datetime
    id: int | None = None


@dataclass(frozen=True)
class AttestationRecord:
    """A verified attestation as stored; `id` is None before `store_attestation` assigns it."""

    keyid: str
    sequence: int
    digest: str  # hex SHA-256 of the envelope bytes as received
    envelope: bytes  # exactly as received; never re-serialized
    node_id: str
    site: str
    timestamp: datetime  # the statement's timestamp
    received_at: datetime  # collector clock; drives the node watermark
    previous: str = ""
    devices: Sequence[DeviceRecord] = ()
    findings: Sequence[Finding] = ()  # stored with this attestation; returned again for a duplicate ack
    interval_seconds: int | None = None  # the node's expected reporting interval (staleness)
    status: str = "accepted"  # the ack status given the first time
    log_index: int | None = None  # transparency-log leaf index, assigned by store_attestation
    # not stored (the column stays empty: every ack, a duplicate's too, carries the log's current checkpoint
    # instead); a row written before this may still return the note its first ack carried
    checkpoint: bytes = b""
    id: int | None = None
    kind: str = "full"  # full | compact (inventory unchanged since the full envelope named by inventory_digest)
    inventory_digest: str = ""  # compact: the digest of the full envelope it names; "" for a full one


@dataclass(frozen=True)
class FullInventory:
    """A key's latest accepted full inventory, and what a compact statement naming it must not contradict."""

    id: int
    sequence: int
    digest: str
    node_id: str
    site: str
    received_at: datetime
    current: bool  # the node is bound to this key and its current inventory is this attestation
    node_event: str  # "" or the node's latest binding change (moved, rekeyed, revoked) recorded after it
    decommissioned: str  # "" or the UUID of one of its GPUs decommissioned since


@dataclass(frozen=True)
class AttestationSummary:
    """One line of a node's history, without envelope bytes (fetch one with `get_attestation`): a full inventory,
    or a run of compact statements ("inventory unchanged") that all name one full inventory. A run is described by
    its newest statement (sequence, digest, times, log index), counts its statements and names the inventory it
    repeats; `gpus` is that inventory's GPU count (a compact statement carries no devices, it vouches for those)."""

    keyid: str
    sequence: int
    digest: str
    node_id: str
    site: str
    timestamp: datetime  # the statement's timestamp
    received_at: datetime
    log_index: int  # the transparency-log index (the attestation id where no log exists)
    gpus: int
    kind: str = "full"  # full | compact (a run of compact statements)
    statements: int = 1  # how many statements the line stands for: a run's length
    first_sequence: int | None = None  # compact: the run's oldest statement (sequence and statement time)
    first_timestamp: datetime | None = None
    unchanged_since: int | None = None  # compact: the sequence of the full inventory the run names


class ChainHead(NamedTuple):
    sequence: int
    digest: str


class StoredLink(NamedTuple):
    """A stored envelope's place in its key's chain (no envelope bytes, devices or findings)."""

    sequence: int
    digest: str
    previous: str


class ChainLinks(NamedTuple):
    """The stored neighbours of an incoming (keyid, sequence), read together (`Store.chain_links`)."""

    at: StoredLink | None  # stored at the incoming sequence: a replay or an equivocation
    before: StoredLink | None  # at sequence - 1
    head: ChainHead | None  # the key's highest stored sequence


# --- per-GPU state, nodes, queries --------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuState:
    uuid: str
    node_id: str  # the node that last reported it
    site: str
    country: str
    keyid: str
    acquired: datetime  # the first time this collector saw the GPU
    last_seen: datetime  # received_at of the last attestation reporting it
    decommissioned_at: datetime | None = None  # cleared when the GPU is reported again
    decommission_reason: str = ""


@dataclass(frozen=True)
class NodeStatus:
    node_id: str
    site: str
    keyid: str  # the key of the latest enrollment
    enrolled_at: datetime
    last_attested_at: datetime | None  # None = enrolled, never attested
    last_sequence: int | None
    interval_seconds: int | None
    gpus: int = 0
    revoked: bool = False


def is_stale(node: NodeStatus, now: datetime, intervals: int, default_interval_seconds: int) -> bool:
    """Silent (since its last attestation, or its enrolment) for more than `intervals` of its own interval."""
    if node.revoked:
        return False
    since = node.last_attested_at or node.enrolled_at
    interval = node.interval_seconds or default_interval_seconds
    return (now - since).total_seconds() > intervals * interval


@dataclass(frozen=True)
class EccnTotals:
    gpus: int
    tpp: int


@dataclass(frozen=True)
class SiteStatus:
    site: str
    country: str
    entity: str
    nodes: int
    gpus: int
    tpp: int
    unaccounted: int  # devices whose TPP is not established
    last_attested_at: datetime | None


@dataclass(frozen=True)
class CountryTotals:
    country: str
    gpus: int
    tpp: int
    unaccounted: int
    by_eccn: dict[str, EccnTotals] = field(default_factory=dict)


_NUMBER = re.compile(r"\d[\d,.]*")


@dataclass(frozen=True)
class PolicyFinding:
    """A finding of the collector's continuous policy evaluation, as recorded: open until `cleared_at`."""

    rule_id: str
    severity: str
    subject: str
    message: str
    opened_at: datetime | None = None
    cleared_at: datetime | None = None  # None = still open
    pack: str = ""
    id: int | None = None

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """What makes two evaluations' findings the same open finding: rule, severity, subject and the message
        with its numbers masked (TPP and shares move while a finding stays open; a country code or a rule's
        wording does not). A change of severity (warning -> violation) clears one finding and opens another."""
        return self.rule_id, self.severity, self.subject, _NUMBER.sub("#", self.message)


@runtime_checkable
class Store(LocationStore, Protocol):
    """Persistence for the collector. Implementations: `collector.store.STORES`. Thread-safe."""

    kind: str

    # lifecycle
    def migrate(self) -> int:
        """Apply pending migrations; return the schema version. StoreError if the database is newer."""
        ...

    def schema_version(self) -> int: ...

    def close(self) -> None: ...

    # registry
    def add_entity(self, entity: Entity) -> None: ...
    def get_entity(self, entity_id: str) -> Entity | None: ...
    def list_entities(self) -> list[Entity]: ...
    def add_site(self, site: Site) -> None: ...
    def get_site(self, site_id: str) -> Site | None: ...
    def list_sites(self) -> list[Site]: ...
    def add_token(self, token: EnrollmentToken) -> None: ...
    def consume_token(self, token_hash: str, now: datetime) -> str | None:
        """Atomically count one use of the token down; its site, or None if unknown, used up, revoked or expired."""
        ...

    def list_tokens(self) -> list[EnrollmentToken]:
        """Every token, newest first (hashes only; the tokens themselves are never stored)."""
        ...

    def token_uses(self, token_hash: str | None = None) -> list[TokenUse]:
        """The record of the token's uses (all tokens' if None), oldest first."""
        ...

    def find_token(self, public_id: str) -> EnrollmentToken:
        """The one token whose hash starts with `public_id` (12 to 64 hex digits). ConfigError if it is not such
        an id; RecordNotFoundError if no token (or more than one) matches."""
        ...

    def revoke_token(self, public_id: str, now: datetime) -> EnrollmentToken:
        """Revoke the token `find_token(public_id)` names; its record as it was before (revoked_at set if it was
        revoked already)."""
        ...

    def preregister_node(
        self, keyid: str, public_key_pem: str, node_id: str, site: str, now: datetime, actor: str
    ) -> NodeKey:
        """Bind a key to a NEW node id at a site without a token (an operator action, recorded as an event).
        NodeBoundError if the node id is bound; RecordExistsError if the key is; RecordNotFoundError (site)."""
        ...

    def enroll(
        self, keyid: str, public_key_pem: str, node_id: str, site: str, token_hash: str, now: datetime
    ) -> NodeKey:
        """Consume the token and bind the key to (node_id, site) in one transaction, recording the event.

        `site` may be "" (take the token's site); otherwise it must equal the token's site. A node id already
        bound is never rebound by a general token: NodeBoundError, the token stays unused and the attempt is
        recorded as an `enroll.node-already-bound` finding. A token created for that node id re-keys it (the old
        key is revoked in the same transaction). The same key for the same node again: with the token that
        enrolled it, the stored binding (an agent's retry); with another token, RecordExistsError (token unused).
        TokenRejectedError / RecordExistsError / NodeBoundError / RecordNotFoundError."""
        ...

    def get_key(self, keyid: str) -> NodeKey | None: ...
    def list_keys(self, site: str | None = None) -> list[NodeKey]: ...
    def revoke_key(self, keyid: str, now: datetime, actor: str = "operator") -> bool:
        """True if the key was active and is now revoked (recorded as a node event)."""
        ...

    def rekey_node(
        self, node_id: str, keyid: str, public_key_pem: str, now: datetime, actor: str, reason: str = ""
    ) -> NodeKey:
        """Bind a new key to an enrolled node, revoking its old key, in one recorded transaction.
        RecordNotFoundError (no such node) / RecordExistsError (the key is enrolled already)."""
        ...

    def move_node(self, node_id: str, site: str, now: datetime, actor: str, reason: str = "") -> bool:
        """Move a node (and its active key) to another site, recorded; False if it is there already.
        RecordNotFoundError for an unknown node or site."""
        ...

    def node_events(self, node_id: str | None = None) -> list[NodeEvent]:
        """Recorded enrollments, re-keyings, moves and revocations, oldest first."""
        ...

    # attestations
    def get_attestation(self, keyid: str, sequence: int) -> AttestationRecord | None: ...
    def last_attestation(self, keyid: str) -> ChainHead | None:
        """The highest stored sequence for the key, with its digest."""
        ...

    def latest_full(self, keyid: str) -> FullInventory | None:
        """The key's accepted full inventory with the highest sequence (None: none yet), with the node's binding
        and GPU changes since: what a compact statement is checked against."""
        ...

    def store_compact(self, record: AttestationRecord) -> AttestationRecord:
        """Store a compact statement (`kind` compact, no devices) in one cheap transaction: the row, the node's
        last report (staleness; its current inventory stays the full one), its findings, its log index.
        ConflictError as `store_attestation`."""
        ...

    def rejected_compact(self, keyid: str, first: int, last: int) -> dict[int, str]:
        """{sequence: digest} of the key's compact statements in first..last this collector rejected."""
        ...

    def prune_compact(self, before: datetime, now: datetime, batch: int = 5000) -> int:
        """Delete compact statements received before `before` (never a key's chain head, one with findings, one
        not yet integrated into the log, nor anything else); record the removed sequences. How many."""
        ...

    def pruned_ranges(self, keyids: list[str]) -> dict[str, list[tuple[int, int]]]:
        """{keyid: [(first, last), ...]} of the sequences `prune_compact` removed."""
        ...

    def chain_links(self, keyid: str, sequence: int) -> ChainLinks:
        """The envelopes stored at `sequence` and `sequence - 1` for the key and its highest one, in one read."""
        ...

    def rejected_compact_ranges(self, keyids: list[str]) -> dict[str, list[tuple[int, int]]]:
        """{keyid: [(first, last), ...]} of the compact statements this collector rejected (never stored)."""
        ...

    def store_attestation(self, record: AttestationRecord) -> AttestationRecord:
        """Store in one transaction that also sequences it in the transparency log; the stored record (with `id`
        and `log_index`). ConflictError if (keyid, sequence) exists."""
        ...

    # transparency log (collector.store.sqllog)
    def log_sequenced(self) -> int:
        """How many leaves were sequenced (the next leaf index)."""
        ...

    def log_size(self) -> int:
        """The size of the integrated tree."""
        ...

    def log_hashes(self, coordinates: Sequence[tuple[int, int]]) -> list[bytes]:
        """Stored complete-subtree hashes by (level, n): a `common.merkle.HashReader`."""
        ...

    def log_entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        """(leaf index, envelope bytes) of the sequenced leaves in [start, end), in order."""
        ...

    def log_attestations(
        self, below: int, sites: Sequence[str] | None = None, since: datetime | None = None
    ) -> list[tuple[int, str, bytes]]:
        """(leaf index, keyid, envelope) with index < below, of `sites` (None: all), stated since `since`."""
        ...

    def integrate_log(self, max_leaves: int) -> tuple[int, int]:
        """Integrate up to `max_leaves` sequenced leaves into the stored tree; (old size, new size)."""
        ...

    # per-GPU state and nodes
    def gpu_states(self, uuids: Iterable[str]) -> dict[str, GpuState]: ...
    def node_devices(self, node_id: str) -> list[DeviceRecord]:
        """The devices of the node's latest stored attestation (empty if none)."""
        ...

    def decommission_gpu(self, uuid: str, reason: str, now: datetime) -> bool:
        """False if the GPU was never seen."""
        ...

    def list_nodes(self, site: str | None = None, *, after: str = "", limit: int | None = None) -> list[NodeStatus]:
        """Sorted by site and node id; `after` and `limit` page through one site's nodes."""
        ...

    def stale_nodes(self, now: datetime, intervals: int = 3, default_interval_seconds: int = 60) -> list[NodeStatus]:
        """Non-revoked nodes silent (since last attestation, else since enrollment) for > intervals x interval."""
        ...

    def node_counts(self) -> dict[str, int]:
        """`{"enrolled", "revoked", "never_seen"}`: nodes whose key is not revoked, nodes whose key is, and
        non-revoked nodes that never attested (counted in the store, not node by node in Python)."""
        ...

    # findings and evidence
    def add_findings(self, findings: Iterable[Finding], evidence: Evidence | None = None) -> None:
        """Record findings (and the evidence they rest on) in one transaction. A finding naming an envelope
        (keyid, sequence, digest) is recorded once per rule and subject; the same evidence is kept once."""
        ...

    def list_evidence(self, keyid: str | None = None) -> list[Evidence]:
        """Equivocation evidence, oldest first."""
        ...

    def list_findings(
        self,
        *,
        rule_id: str | None = None,
        subject: str | None = None,
        keyid: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Finding]:
        """Newest first."""
        ...

    # queries
    def site_status(self, sites: Sequence[str] | None = None) -> list[SiteStatus]:
        """Every site, or only `sites`, sorted by id: summed from current state (`collector.store.sqlcurrent`)."""
        ...

    def country_totals(self) -> list[CountryTotals]: ...
    def inventory(self, as_of: datetime, sites: Iterable[str] | None = None) -> dict[str, Any]:
        """The live inventory in the policy scenario shape (see `collector.store.inventory`); only the `sites`
        named (every entity still listed) when given."""
        ...

    # continuous compliance
    def registry_version(self) -> int:
        """A counter every registry write that can change an evaluation bumps (entity, site, node move, GPU
        decommission): a collector that sees it move re-evaluates everything."""
        ...

    def reconcile_policy_findings(
        self, pack: str, subjects: Iterable[str] | None, findings: Iterable[PolicyFinding], now: datetime
    ) -> tuple[list[PolicyFinding], list[PolicyFinding]]:
        """Make `findings` the open findings of `pack` among `subjects` (all subjects if None), in one
        transaction serialized per pack: a finding already open (same `identity`) stays open with the new
        message; new ones open at `now`; open ones no longer found are cleared at `now`. (opened, cleared)."""
        ...

    def policy_findings(self, pack: str, *, subject: str | None = None, open_only: bool = False) -> list[PolicyFinding]:
        """The recorded policy findings of `pack`, oldest first."""
        ...

    def note_inventory_change(self, site: str, now: datetime) -> int:
        """Note that an accepted attestation changed `site`'s inventory (for the other collectors on this
        database); its id. Notes older than an hour are deleted in the same transaction."""
        ...

    def inventory_changes(self, since: datetime) -> list[tuple[int, str]]:
        """The (id, site) noted at or after `since`, by id."""

    def inventory_at(self, at: datetime, as_of: datetime | None = None) -> dict[str, Any]:
        """The inventory at the instant `at` in the same shape: each node's last attestation stated at or before
        `at` (at the site that attestation names), less the GPUs decommissioned by then (see `collector.history`).
        `as_of` (default `at`) is the date the scenario carries."""
        ...

    def inventories_at(self, points: Sequence[datetime]) -> list[dict[str, Any]]:
        """`[inventory_at(t) for t in points]` from one read transaction, each node's devices read once and
        then only for the nodes that stated something between two instants (`report --history`)."""
        ...

    def node_attestations(self, node_id: str, limit: int = 100) -> list[AttestationSummary]:
        """The node's history, newest statement first, at most `limit` lines: each full inventory, and each run of
        compact statements naming one full inventory as a single line (`AttestationSummary`)."""
        ...
