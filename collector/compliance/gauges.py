"""The compliance state as Prometheus gauges, read from `ComplianceState.current()` at scrape time (the same state
the Acks carry; no store access).

Label sets are bounded by the registry: `country` takes the countries of registered sites, `entity` the
registered entities, `site` the registered sites (ids the operator created with `entity add` / `site add`); no
label comes from the content of an attestation.
"""

from __future__ import annotations

from collections.abc import Iterator

from gpucensus.collector.compliance.state import ComplianceState, SubjectStatus
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "gpucensus_collector_"
STATUS_VALUE = {"compliant": 0, "warning": 1, "violation": 2}
_KINDS = {"country": ("country",), "entity": ("entity",), "site": ("site", "country", "entity")}


def _labels(s: SubjectStatus) -> list[str]:
    return {"country": [s.id], "entity": [s.id], "site": [s.id, s.country, s.entity]}[s.kind]


class ComplianceGauges(Collector):
    def __init__(self, state: ComplianceState) -> None:
        self._state = state

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()[0]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families, by_name = self._families()
        snap = self._state.current()
        for kind, rows in (("country", snap.countries), ("entity", snap.entities), ("site", snap.sites)):
            for s in rows:
                labels = _labels(s)
                by_name[f"{kind}_tpp"].add_metric(labels, s.tpp)
                by_name[f"{kind}_h100e_milli"].add_metric(labels, s.h100e_milli)
                by_name[f"{kind}_counted_tpp"].add_metric(labels, s.counted_tpp)
                by_name[f"{kind}_status"].add_metric(labels, STATUS_VALUE[s.status])
                if kind == "country" and s.allocation_tpp is not None:
                    by_name["country_allocation_limit_tpp"].add_metric(labels, s.allocation_tpp)
                    by_name["country_allocation_used_tpp"].add_metric(labels, s.allocation_used_tpp or 0)
        counts: dict[tuple[str, str], int] = {}
        for f in snap.findings:
            counts[(f.rule, f.severity)] = counts.get((f.rule, f.severity), 0) + 1
        for (rule, severity), n in sorted(counts.items()):
            by_name["policy_findings_open"].add_metric([rule, severity], n)
        if snap.evaluated_at is not None:
            by_name["policy_evaluated_timestamp_seconds"].add_metric([snap.pack["name"]], snap.evaluated_at.timestamp())
        return iter(families)

    @staticmethod
    def _families() -> tuple[list[GaugeMetricFamily], dict[str, GaugeMetricFamily]]:
        by_name: dict[str, GaugeMetricFamily] = {}

        def add(name: str, text: str, labels: tuple[str, ...]) -> None:
            by_name[name] = GaugeMetricFamily(PREFIX + name, text, labels=list(labels))

        for kind, labels in _KINDS.items():
            add(f"{kind}_tpp", f"TPP of every device of established TPP, per {kind} (counted class or not)", labels)
            add(f"{kind}_h100e_milli", f"{kind}_tpp in thousandths of the pack's H100 reference TPP", labels)
            add(f"{kind}_counted_tpp", f"TPP of the device classes the policy pack counts, per {kind}", labels)
            add(f"{kind}_status", f"Compliance of each {kind} under the pack: 0 compliant, 1 warning, 2 violation",
                labels)  # fmt: skip
        add("country_allocation_limit_tpp", "The pack's allocation for the country (Tier 2 countries only)",
            ("country",))  # fmt: skip
        add("country_allocation_used_tpp", "Licensed acquisitions counted against the country's allocation",
            ("country",))  # fmt: skip
        add("policy_findings_open", "Open policy findings of the continuous evaluation, by rule and severity",
            ("rule", "severity"))  # fmt: skip
        add("policy_evaluated_timestamp_seconds", "When the compliance state last changed, by pack", ("pack",))
        return list(by_name.values()), by_name
