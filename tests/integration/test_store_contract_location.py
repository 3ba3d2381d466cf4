"""The location part of the store contract, run against SQLite and the real PostgreSQL server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from gpucensus.collector.location.records import (
    IMPLAUSIBLE,
    IN_COUNTRY,
    Landmark,
    NodeLocation,
    SiteLocation,
    StoredMeasurement,
)
from gpucensus.collector.store.base import Entity, RecordExistsError, RecordNotFoundError, Site

pytest_plugins = ["tests.integration.store_fixtures"]

NOW = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)


def _store(make_store):
    store = make_store()
    store.add_entity(Entity("acme", "US", "none"))
    store.add_site(Site("fra1", "DE", "acme"))
    return store


def _landmark(name: str, keyid: str) -> Landmark:
    return Landmark(name, keyid, "PEM", 50.11, 8.68, "127.0.0.1:7500", NOW)


def test_site_coordinates_are_set_and_replaced(make_store) -> None:
    store = _store(make_store)
    assert store.site_locations() == {}
    store.set_site_location(SiteLocation("fra1", 50.1109, 8.6821), NOW)
    store.set_site_location(SiteLocation("fra1", 50.2, 8.7), NOW)
    assert store.site_locations() == {"fra1": SiteLocation("fra1", 50.2, 8.7)}
    with pytest.raises(RecordNotFoundError):
        store.set_site_location(SiteLocation("nowhere", 0.0, 0.0), NOW)


def test_landmarks_are_unique_by_name_and_key(make_store) -> None:
    store = _store(make_store)
    store.add_landmark(_landmark("fra", "a" * 64))
    store.add_landmark(_landmark("par", "b" * 64))
    with pytest.raises(RecordExistsError):
        store.add_landmark(_landmark("fra", "c" * 64))
    with pytest.raises(RecordExistsError):
        store.add_landmark(_landmark("other", "a" * 64))
    assert [lm.name for lm in store.list_landmarks()] == ["fra", "par"]
    assert store.list_landmarks()[0] == _landmark("fra", "a" * 64)
    store.remove_landmark("fra")
    with pytest.raises(RecordNotFoundError):
        store.remove_landmark("fra")
    assert [lm.name for lm in store.list_landmarks()] == ["par"]


def test_measurements_are_kept_once_and_recognised(make_store) -> None:
    store = _store(make_store)
    older = StoredMeasurement("d1", "n1", "k" * 64, "fra", 4211, NOW - timedelta(hours=2), NOW, b'{"payload":"x"}')
    newer = StoredMeasurement("d2", "n1", "k" * 64, "par", 9000, NOW - timedelta(hours=1), NOW, b"{}")
    verdict = NodeLocation("n1", "fra1", IN_COUNTRY, "fine", NOW)
    assert store.last_measured_at("n1") is None
    store.record_location([older, newer], verdict)
    store.record_location([older], NodeLocation("n1", "fra1", IMPLAUSIBLE, "moved", NOW))  # the same digest again
    assert store.measurements_seen(["d1", "d2", "d3"]) == {"d1", "d2"}
    assert store.measurements_seen([]) == set()
    assert store.last_measured_at("n1") == NOW - timedelta(hours=1)
    assert store.last_measured_at("n2") is None
    assert store.node_locations() == {"n1": NodeLocation("n1", "fra1", IMPLAUSIBLE, "moved", NOW)}
    assert store.list_measurements("n1") == [older, newer]
    assert store.list_measurements("n2") == []
    store.record_location([], None)
    assert store.node_locations()["n1"].status == IMPLAUSIBLE
