"""Prometheus metrics, one registry per app so that tests can build several apps."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from fhir_mappers.validation_memo import ValidationMemo

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    request_seconds: Histogram
    service_seconds: Histogram
    service_errors: Counter
    audit_failures: Counter

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            requests=Counter(
                "bedside_http_requests",
                "HTTP requests by route template and status.",
                ["method", "route", "status"],
                registry=registry,
            ),
            request_seconds=Histogram(
                "bedside_http_request_duration_seconds",
                "HTTP request latency by route template.",
                ["route"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            service_seconds=Histogram(
                "bedside_cds_service_duration_seconds",
                "Latency of CDS service calls by service.",
                ["service"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            service_errors=Counter(
                "bedside_cds_service_errors",
                "CDS service calls that did not answer 200, by service and status.",
                ["service", "status"],
                registry=registry,
            ),
            audit_failures=Counter(
                "bedside_audit_write_failures",
                "Predictions that could not be written to the audit store (no card returned).",
                registry=registry,
            ),
        )

    def watch_validation_memo(self, memo: ValidationMemo) -> None:
        """Export the memo's hits, misses and size (to size ``BEDSIDE_VALIDATION_MEMO_ENTRIES``)."""
        self.registry.register(_MemoCollector(memo))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _MemoCollector(Collector):
    def __init__(self, memo: ValidationMemo) -> None:
        self._memo = memo

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        lookups = CounterMetricFamily(
            "bedside_validation_memo_lookups",
            "Resources checked against the validation memo, by result (hit: not validated again).",
            labels=["result"],
        )
        lookups.add_metric(["hit"], self._memo.hits)
        lookups.add_metric(["miss"], self._memo.misses)
        yield lookups
        yield GaugeMetricFamily(
            "bedside_validation_memo_entries",
            "Validation results the memo holds now.",
            value=len(self._memo),
        )
