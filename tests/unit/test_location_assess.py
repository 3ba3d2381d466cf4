"""The collector's judgement of location evidence, pure: the issue's scenarios with measurements signed by
landmarks at Frankfurt, Paris, Singapore and Ashburn, and every way a measurement is refused."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from gpucensus.collector.ingest.model import VIOLATION, WARNING
from gpucensus.collector.location.assess import IMPLAUSIBLE_RULE, UNPROVEN_RULE, Settings, assess
from gpucensus.collector.location.evidence import check_evidence, findings
from gpucensus.collector.location.records import IMPLAUSIBLE, IN_COUNTRY, UNPROVEN, SiteLocation
from gpucensus.common import jcs
from gpucensus.common.dsse import envelope_digest

from tests.location_fixtures import FRANKFURT_DC, SINGAPORE_DC, landmarks, rtt_from

NOW = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
NODE = "a" * 64
OTHER = "b" * 64
HOUR, SKEW = timedelta(hours=2), timedelta(minutes=5)
LANDMARKS = landmarks()
BY_KEY = {lm.keyid: lm.record() for lm in LANDMARKS.values()}
FRA1 = SiteLocation("fra1", FRANKFURT_DC.lat, FRANKFURT_DC.lon)
SIN1 = SiteLocation("sin1", SINGAPORE_DC.lat, SINGAPORE_DC.lon)


def evidence_from(node_at, extra_us: int = 300, keyid: str = NODE, at: datetime = NOW) -> list[str]:
    return [lm.measure(keyid, rtt_from(node_at, lm, extra_us), at - timedelta(minutes=1)) for lm in LANDMARKS.values()]


def judge(raw: list[str], site: SiteLocation, country: str, seen: set[str] | None = None):
    accepted, rejected = check_evidence(raw, BY_KEY, NODE, NOW, HOUR, SKEW, seen or set())
    assert not rejected, rejected
    return assess("n1", site.site, country, site, accepted, Settings())


def test_an_honest_node_in_frankfurt_is_in_germany() -> None:
    verdict = judge(evidence_from(FRANKFURT_DC), FRA1, "DE")
    assert verdict.status == IN_COUNTRY
    assert verdict.findings == ()


def test_the_same_node_claiming_singapore_is_implausible_with_the_numbers() -> None:
    verdict = judge(evidence_from(FRANKFURT_DC), SIN1, "SG")
    assert verdict.status == IMPLAUSIBLE
    (finding,) = verdict.findings
    assert (finding.rule_id, finding.severity, finding.subject) == (IMPLAUSIBLE_RULE, VIOLATION, "node:n1")
    # the Frankfurt landmark (and Paris) bound the node to Europe; the site is ~10,300 km from Frankfurt
    assert "landmark fra measured a round trip of" in finding.message
    assert "site sin1 is 10,2" in finding.message and "landmark par" in finding.message
    assert "landmark sin" not in finding.message  # Singapore's own bound is wide enough


@pytest.mark.parametrize("added_ms", [2, 20, 200])
def test_a_node_adding_delay_is_unproven_never_placed_elsewhere(added_ms: int) -> None:
    """A node in Frankfurt adds delay to every landmark: it looks farther away, never closer."""
    raw = evidence_from(FRANKFURT_DC, extra_us=added_ms * 1000)
    at_home = judge(raw, FRA1, "DE")
    assert at_home.status == UNPROVEN
    assert at_home.findings[0].rule_id == UNPROVEN_RULE and at_home.findings[0].severity == WARNING
    assert "reaches beyond DE" in at_home.findings[0].message
    claimed = judge(raw, SIN1, "SG")
    assert claimed.status in (IMPLAUSIBLE, UNPROVEN)  # implausible until the delay hides Europe, then unproven
    assert claimed.status != IN_COUNTRY


def test_a_site_whose_coordinates_are_not_in_its_country_is_unproven() -> None:
    verdict = judge(evidence_from(FRANKFURT_DC), FRA1, "FR")  # registered as FR, coordinates in Frankfurt
    assert verdict.status == UNPROVEN
    assert "wholly outside FR" in verdict.message


def _one(raw: str, seen: set[str] | None = None, keyid: str = NODE, now: datetime = NOW):
    accepted, rejected = check_evidence([raw], BY_KEY, keyid, now, HOUR, SKEW, seen or set())
    assert not accepted
    return rejected[0]


def test_a_forged_measurement_is_rejected() -> None:
    real = json.loads(LANDMARKS["sin"].measure(NODE, 103_000, NOW))
    document = json.loads(base64.b64decode(real["payload"]))
    document.update(samples_us=[900, 940, 980], min_rtt_us=900)  # a node in Europe claiming to be near Singapore
    real["payload"] = base64.b64encode(jcs.canonical_bytes(document)).decode()  # the landmark's signature kept
    assert _one(jcs.canonical_bytes(real).decode()).reason == "bad-signature"
    impostor = LANDMARKS["fra"].__class__("fra")  # a key nobody registered, claiming the same landmark
    assert _one(impostor.measure(NODE, 300, NOW)).reason == "unknown-landmark"


def test_a_measurement_signed_with_another_registered_key_does_not_verify() -> None:
    real = LANDMARKS["sin"].measure(NODE, 300, NOW)
    swapped = real.replace(LANDMARKS["sin"].keyid, LANDMARKS["fra"].keyid)  # claims Frankfurt's key
    assert _one(swapped).reason == "bad-signature"


def test_a_replayed_measurement_is_rejected() -> None:
    raw = LANDMARKS["fra"].measure(NODE, 300, NOW)
    assert _one(raw, seen={envelope_digest(raw.encode())}).reason == "replayed"
    accepted, rejected = check_evidence([raw, raw], BY_KEY, NODE, NOW, HOUR, SKEW, set())  # twice in one statement
    assert len(accepted) == 1 and rejected[0].reason == "replayed"


def test_a_measurement_of_another_nodes_key_is_rejected() -> None:
    rejected = _one(LANDMARKS["fra"].measure(OTHER, 300, NOW))
    assert rejected.reason == "other-node"
    (finding,) = findings("n1", [rejected])
    assert finding.severity == VIOLATION and "location_evidence[0] rejected (other-node)" in finding.message


def test_an_old_or_future_measurement_is_rejected() -> None:
    old = _one(LANDMARKS["fra"].measure(NODE, 300, NOW - timedelta(hours=3)))
    assert old.reason == "too-old" and "10800 s ago, more than 7200 s" in old.message
    assert _one(LANDMARKS["fra"].measure(NODE, 300, NOW + timedelta(hours=1))).reason == "future"


@pytest.mark.parametrize("junk", ["{}", "not json", '{"payload":"","payloadType":"x","signatures":[]}', "x" * 9000])
def test_junk_is_malformed(junk: str) -> None:
    assert _one(junk).reason in ("malformed", "unknown-landmark")
