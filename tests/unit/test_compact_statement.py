"""The compact statement (inventory unchanged since full envelope N): its shape, its strict checks, what a
verified one exposes, and the agent's decision between full and compact (`agent.compact`)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gpucensus.agent.attest import sign_predicate
from gpucensus.agent.compact import FullPolicy, fingerprint
from gpucensus.common import verify
from gpucensus.common.statement import (
    COMPACT,
    COMPACT_PREDICATE_TYPE,
    FULL,
    build_statement,
    check_statement,
    compact_predicate,
    statement_kind,
)

from tests.unit.attest_fixtures import predicate

DIGEST = "ab" * 32
CHAIN = {"sequence": 5, "previous": "cd" * 32, "timestamp": "2026-11-23T12:00:00Z"}


def compact(**overrides: Any) -> dict[str, Any]:
    fields = {**CHAIN, **overrides}
    return build_statement(
        compact_predicate("node-a", 3, "ef" * 32),
        subject_sha256=DIGEST,
        predicate_type=COMPACT_PREDICATE_TYPE,
        **fields,
    )


def test_a_compact_statement_names_the_node_and_the_full_envelope() -> None:
    result = compact()
    assert result["predicateType"] == COMPACT_PREDICATE_TYPE == "https://gpucensus.dev/inventory-unchanged/v1"
    assert result["subject"] == [{"name": "node:node-a", "digest": {"sha256": DIGEST}}]
    assert result["predicate"] == {
        "node": {"id": "node-a"},
        "inventory": {"sequence": 3, "digest": "ef" * 32},
        "sequence": 5,
        "previous": "cd" * 32,
        "timestamp": "2026-11-23T12:00:00Z",
        "last_checkpoint": {},
    }
    assert check_statement(result) == []
    assert statement_kind(result) == COMPACT
    assert statement_kind(build_statement(predicate(), subject_sha256=DIGEST, **CHAIN)) == FULL


def _edited(path: list[Any], value: Any) -> dict[str, Any]:
    result = copy.deepcopy(compact())
    target = result
    for step in path[:-1]:
        target = target[step]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return result


@pytest.mark.parametrize(
    "path, value, reason, message",
    [
        (["predicate", "devices"], [], "compact-shape", "unknown field(s) 'devices'"),
        (["predicate", "totals"], {"gpus": 8}, "compact-shape", "unknown field(s) 'totals'"),
        (["predicate", "inventory"], ..., "compact-shape", "inventory must be an object"),
        (["predicate", "inventory"], [3, "ef" * 32], "compact-shape", "inventory must be an object"),
        (["predicate", "inventory", "sequence"], "3", "compact-shape", "inventory.sequence must be an integer"),
        (["predicate", "inventory", "sequence"], True, "compact-shape", "inventory.sequence must be an integer"),
        (["predicate", "inventory", "sequence"], 0, "compact-shape", "inventory.sequence must be an integer >= 1"),
        (["predicate", "inventory", "sequence"], 5, "compact-shape", "below the statement's own sequence"),
        (["predicate", "inventory", "digest"], "EF" * 32, "compact-shape", "64 lower-case hex"),
        (["predicate", "inventory", "digest"], 7, "compact-shape", "64 lower-case hex"),
        (["predicate", "inventory", "extra"], 1, "compact-shape", "exactly sequence and digest"),
        (["predicate", "node", "site"], "fra1", "compact-shape", "node must have exactly id"),
        (["predicate", "node"], ..., "statement-shape", "node.id must be a non-empty string"),
        (["predicate", "sequence"], ..., "statement-shape", "sequence must be an integer"),
        (["subject", 0, "name"], "node:other", "statement-shape", "does not match node id"),
        (["predicateType"], "https://gpucensus.dev/inventory-unchanged/v2", "predicate-type", "predicateType is"),
    ],
)
def test_check_statement_refuses_every_malformed_compact_statement(
    path: list[Any], value: Any, reason: str, message: str
) -> None:
    problems = check_statement(_edited(path, value))
    assert any(r == reason and message in m for r, m in problems), problems


def test_the_agent_never_signs_a_malformed_compact_statement() -> None:
    with pytest.raises(ValueError, match="below the statement's own sequence"):
        compact(sequence=3)
    with pytest.raises(ValueError, match="64 lower-case hex"):
        build_statement(
            compact_predicate("node-a", 1, "xyz"), subject_sha256=DIGEST, predicate_type=COMPACT_PREDICATE_TYPE,
            **CHAIN,
        )  # fmt: skip


def test_a_verified_compact_statement_exposes_its_kind_and_reference() -> None:
    key = Ed25519PrivateKey.generate()
    envelope = sign_predicate(
        compact_predicate("node-a", 3, "ef" * 32), key, predicate_type=COMPACT_PREDICATE_TYPE, **CHAIN
    )
    result = verify.verify_envelope(envelope, key.public_key())
    assert result.ok, result.failures
    assert result.verified is not None
    assert (result.verified.kind, result.verified.inventory_reference) == (COMPACT, (3, "ef" * 32))
    assert (result.verified.node_id, result.verified.sequence) == ("node-a", 5)
    full = verify.verify_envelope(sign_predicate(predicate(), key, **CHAIN), key.public_key()).verified
    assert full is not None and (full.kind, full.inventory_reference) == (FULL, None)


# --- the agent's decision ---------------------------------------------------------------------------------


def test_the_first_round_after_start_is_full_then_compact_until_full_every() -> None:
    policy, inventory = FullPolicy(3600), predicate()
    assert policy.compact_for(inventory, now=0.0) is None
    policy.signed_full(inventory, 7, DIGEST, now=0.0)
    named = policy.compact_for(copy.deepcopy(inventory), now=60.0)
    assert named is not None and (named.sequence, named.digest) == (7, DIGEST)
    assert policy.compact_for(inventory, now=3599.0) is not None
    assert policy.compact_for(inventory, now=3600.0) is None  # full_every elapsed
    assert policy.compact_for(inventory, now=-1.0) is None  # a clock that went back: full, to be safe


def test_a_changed_inventory_or_a_reboot_is_full() -> None:
    policy, inventory = FullPolicy(3600), predicate()
    policy.signed_full(inventory, 7, DIGEST, now=0.0)
    rebooted = copy.deepcopy(inventory)
    rebooted["node"]["boot_id"] = "another-boot"
    assert policy.compact_for(rebooted, now=60.0) is None
    one_less = copy.deepcopy(inventory)
    one_less["devices"] = one_less["devices"][1:]
    assert policy.compact_for(one_less, now=60.0) is None
    assert fingerprint(rebooted) != fingerprint(inventory)


def test_location_evidence_is_carried_by_a_full_statement_but_is_no_change() -> None:
    policy, inventory = FullPolicy(3600), predicate()
    policy.signed_full(inventory, 7, DIGEST, now=0.0)
    with_evidence = {**inventory, "location_evidence": ["{}"]}
    assert policy.compact_for(with_evidence, now=60.0) is None
    policy.signed_full(with_evidence, 8, "ef" * 32, now=60.0)
    named = policy.compact_for(inventory, now=120.0)  # the measurements are no change of inventory
    assert named is not None and named.sequence == 8


def test_a_rejection_makes_the_next_round_full_and_zero_means_always_full() -> None:
    policy, inventory = FullPolicy(3600), predicate()
    policy.signed_full(inventory, 7, DIGEST, now=0.0)
    policy.rejected()
    assert policy.compact_for(inventory, now=60.0) is None
    policy.signed_full(inventory, 9, DIGEST, now=60.0)
    assert policy.compact_for(inventory, now=120.0) is not None
    always = FullPolicy(0)
    always.signed_full(inventory, 7, DIGEST, now=0.0)
    assert always.compact_for(inventory, now=1.0) is None
