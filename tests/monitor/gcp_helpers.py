"""What the Google Cloud Monitoring export tests share: a clock moved by hand, settings that
point the exporter at the fake API, a registry of hand-made catalog series, and a started
exporter."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from google.cloud import monitoring_v3
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitor.config import GcpSection
from monitor.exporters.gcp import GcpExporter
from tests.support.fake_gcp import FakeGcp

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
PREFIX = "custom.googleapis.com/crypitor/"
FAST = (0.01, 0.02)  # retry waits: the real ones are seconds


class StepClock:
    """Wall time that moves only when told to."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 60.0) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def settings(fake: FakeGcp, project: str = "test-project") -> GcpSection:
    return GcpSection(project_id=project, interval=60.0, api_endpoint=fake.address,
                      insecure=True)


def probe_registry() -> CollectorRegistry:
    """Hand-made gauges and a counter with the catalog's names, plus series not exported."""
    reg = CollectorRegistry(auto_describe=False)
    success = Gauge("probe_success", "h", ["target", "type", "team"], registry=reg)
    success.labels("eth-main", "ethereum", "infra").set(1)
    success.labels("api", "http", "").set(0)
    Gauge("probe_duration_seconds", "h", ["target", "type"], registry=reg) \
        .labels("eth-main", "ethereum").set(0.25)
    head = Gauge("crypitor_chain_head_block", "h", ["target", "chain"], registry=reg)
    head.labels("eth-main", "ethereum").set(19_000_000)
    Gauge("crypitor_chain_block_lag", "h", ["target", "chain"], registry=reg) \
        .labels("eth-main", "ethereum").set(3)
    Gauge("crypitor_chain_head_age_seconds", "h", ["target", "chain"], registry=reg) \
        .labels("eth-main", "ethereum").set(12.5)
    Gauge("crypitor_chain_peers", "h", ["target", "chain"], registry=reg) \
        .labels("eth-main", "ethereum").set(25)
    Counter("crypitor_probes", "h", ["target", "type", "result"], registry=reg) \
        .labels("eth-main", "ethereum", "success").inc(7)
    Gauge("crypitor_targets", "not per target", registry=reg).set(2)
    Histogram("crypitor_scheduler_lag_seconds", "h", registry=reg).observe(0.1)
    return reg


async def started(fake: FakeGcp, registry: CollectorRegistry, clock: StepClock,
                  made: list[GcpExporter], call_timeout: float = 12.0) -> GcpExporter:
    exporter = GcpExporter(settings(fake), registry, node_id="mon-1", now=clock,
                           backoff=FAST, call_timeout=call_timeout)
    made.append(exporter)
    await exporter.start()
    assert await exporter.ready()
    clock.advance()
    return exporter


def by_type(series: list[monitoring_v3.TimeSeries]) -> dict[str, list[monitoring_v3.TimeSeries]]:
    out: dict[str, list[monitoring_v3.TimeSeries]] = {}
    for ts in series:
        out.setdefault(ts.metric.type.removeprefix(PREFIX), []).append(ts)
    return out


def records(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "crypitor.gcp" and text in r.getMessage()]
