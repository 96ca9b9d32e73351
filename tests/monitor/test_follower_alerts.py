"""FollowerDeepReorg, natively: the monitor watches the embedded service's followers as
targets of type `follower` and fires while a deep reorg is less than an hour old."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import monitor.alerting_setup
from monitor.alerting_setup import MonitorAlerting, ServiceWatch, follower_target
from monitor.config import AlertsSection
from service.metrics import FollowerMetrics, new_metrics
from service.models import QueueStats

pytestmark = pytest.mark.timeout(60)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Registry:
    registry: CollectorRegistry


class Queue:
    async def stats(self, now: datetime) -> QueueStats:
        return QueueStats(0, 0.0, 0)


@dataclass
class Service:
    store: Queue
    metrics: Registry


async def test_a_deep_reorg_fires_for_an_hour(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(monitor.alerting_setup, "SERVICE_EVERY", 0.01)
    clock = Clock()
    service_registry = CollectorRegistry()
    followers = FollowerMetrics.create(service_registry)
    alerting = MonitorAlerting(AlertsSection(), tmp_path, [], CollectorRegistry(), {}, True,
                               clock, followed=["eth", "polygon"])

    async def deep() -> list[tuple[str, str, str]]:
        await asyncio.sleep(0.05)  # a few looks at the service
        return sorted((a.labels["target"], a.labels["chain"], phase)
                      for a, phase, _ in alerting.alerting.current()
                      if a.name == "FollowerDeepReorg")

    await alerting.start(Service(Queue(), Registry(service_registry)))
    try:
        assert await deep() == []
        followers.deep_reorgs.labels("eth").inc()
        async with asyncio.timeout(10):
            while await deep() != [(follower_target("eth"), "eth", "firing")]:
                pass
        (alert,) = [a for a, _, _ in alerting.alerting.current()
                    if a.name == "FollowerDeepReorg"]
        assert alert.labels["severity"] == "critical"
        assert "chain eth: 1 reorgs in the last hour" in alert.annotations["summary"]
        clock.now += timedelta(minutes=59)
        assert await deep() == [(follower_target("eth"), "eth", "firing")]
        clock.now += timedelta(minutes=2)
        async with asyncio.timeout(10):
            while await deep() != []:
                pass
    finally:
        await alerting.stop()


async def test_failing_deliveries_fire_natively(tmp_path: Path) -> None:
    """The share of failed attempts is over the last five minutes, so a look that finds no
    new attempt (retries are minutes apart) keeps the alert's pending time; the counters
    are read by their sample names (the watch once asked for `..._total_total`, read
    nothing, and WebhookDeliveriesFailing never fired)."""
    clock = Clock()
    metrics = new_metrics()
    alerting = MonitorAlerting(AlertsSection(), tmp_path, [], CollectorRegistry(), {}, True,
                               clock)
    watch = ServiceWatch(alerting.alerting, Service(Queue(), Registry(metrics.registry)), (),
                         clock)

    async def look(after: timedelta) -> list[str]:
        clock.now += after
        await watch.look()
        return [p for a, p, _ in alerting.alerting.current()
                if a.name == "WebhookDeliveriesFailing"]

    try:
        assert await look(timedelta(0)) == []
        metrics.deliveries.labels("success").inc(1)
        metrics.deliveries.labels("retry").inc(3)
        assert await look(timedelta(seconds=30)) == ["pending"]
        assert await look(timedelta(seconds=30)) == ["pending"]  # nothing new: still 3 of 4
        metrics.deliveries.labels("failed").inc(2)
        assert await look(timedelta(minutes=2)) == ["pending"]
        metrics.deliveries.labels("dead").inc(1)
        assert await look(timedelta(minutes=3)) == ["firing"]  # for 5m 30s now
        metrics.deliveries.labels("success").inc(50)
        await look(timedelta(seconds=30))
        assert await look(timedelta(seconds=30)) == []  # resolved after two clean looks
    finally:
        alerting.store.close()
