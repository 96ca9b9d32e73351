"""The service's own Prometheus registry (served on the service's /metrics, also when it
is embedded in `crypitor run`) with the delivery and chain-follower metrics; names come
from `catalog`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

import catalog.metrics as m
from service.models import DeliveryState, QueueStats, Verdict

OUTCOMES = ("success", "retry", "failed", "dead")


@dataclass(frozen=True)
class ServiceMetrics:
    registry: CollectorRegistry
    events: Counter
    deliveries: Counter
    latency: Histogram
    depth: Gauge
    oldest: Gauge
    disabled: Gauge
    busy: Gauge
    saturation: Gauge
    task_crashes: Counter  # by task; the service's supervisor counts its tasks' crashes here
    disconnects: Counter  # clients that hung up mid-request, on the API
    auth_throttled: Counter  # requests answered 429 after too many wrong keys

    def task_crashed(self, task: str) -> None:
        self.task_crashes.labels(task).inc()

    def observe_delivery(self, verdict: Verdict, accepted_at: datetime, now: datetime) -> None:
        """One attempt's outcome, and for a success the time since the event's acceptance."""
        state, outcome = verdict.state, self._outcomes
        if state is DeliveryState.DELIVERED:
            outcome["success"].inc()
            self.latency.observe(max(0.0, (now - accepted_at).total_seconds()))
        elif state is DeliveryState.RETRYING:
            outcome["retry"].inc()
        elif verdict.disable_endpoint:  # ended early: the endpoint is gone or disabled
            outcome["failed"].inc()
        else:  # retries exhausted
            outcome["dead"].inc()

    @cached_property
    def _outcomes(self) -> dict[str, Counter]:
        """The outcome children, looked up once: `labels()` costs a lock per call."""
        return {o: self.deliveries.labels(o) for o in OUTCOMES}

    def observe_stats(self, stats: QueueStats) -> None:
        self.depth.set(stats.depth)
        self.oldest.set(stats.oldest_pending_age)
        self.disabled.set(stats.disabled_endpoints)
        if stats.due_unclaimed is not None:
            self._fleet[0].set(stats.due_unclaimed)
        if stats.leased is not None:
            self._fleet[1].set(stats.leased)

    @cached_property
    def _fleet(self) -> tuple[Gauge, Gauge]:
        """The Redis queue's consumer-group gauges, made at its first statistics: a SQLite
        queue has no group, so it shows no such series rather than a 0 that means nothing."""
        return (Gauge(m.WEBHOOK_CONSUMER_LAG.name, m.WEBHOOK_CONSUMER_LAG.help,
                      registry=self.registry),
                Gauge(m.WEBHOOK_LEASED.name, m.WEBHOOK_LEASED.help, registry=self.registry))


def new_metrics() -> ServiceMetrics:
    from prometheus_client import PlatformCollector, ProcessCollector

    r = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=r)
    PlatformCollector(registry=r)
    deliveries = Counter(m.WEBHOOK_DELIVERIES.name, m.WEBHOOK_DELIVERIES.help,
                         m.WEBHOOK_DELIVERIES.labels, registry=r)
    for outcome in OUTCOMES:  # every outcome exists from the start, at 0
        deliveries.labels(outcome)
    return ServiceMetrics(
        registry=r,
        events=Counter(m.WEBHOOK_EVENTS.name, m.WEBHOOK_EVENTS.help, registry=r),
        deliveries=deliveries,
        latency=Histogram(m.WEBHOOK_LATENCY.name, m.WEBHOOK_LATENCY.help,
                          buckets=m.WEBHOOK_LATENCY.buckets, registry=r),
        depth=Gauge(m.WEBHOOK_QUEUE_DEPTH.name, m.WEBHOOK_QUEUE_DEPTH.help, registry=r),
        oldest=Gauge(m.WEBHOOK_OLDEST_PENDING.name, m.WEBHOOK_OLDEST_PENDING.help,
                     registry=r),
        disabled=Gauge(m.WEBHOOK_DISABLED_ENDPOINTS.name, m.WEBHOOK_DISABLED_ENDPOINTS.help,
                       registry=r),
        busy=Gauge(m.WEBHOOK_BUSY_ENDPOINTS.name, m.WEBHOOK_BUSY_ENDPOINTS.help, registry=r),
        saturation=Gauge(m.WEBHOOK_SATURATION.name, m.WEBHOOK_SATURATION.help, registry=r),
        task_crashes=Counter(m.TASK_CRASHES.name, m.TASK_CRASHES.help, m.TASK_CRASHES.labels,
                             registry=r),
        disconnects=Counter(m.HTTP_CLIENT_DISCONNECTS.name, m.HTTP_CLIENT_DISCONNECTS.help,
                            m.HTTP_CLIENT_DISCONNECTS.labels, registry=r).labels("service"),
        auth_throttled=Counter(m.HTTP_AUTH_THROTTLED.name, m.HTTP_AUTH_THROTTLED.help,
                               m.HTTP_AUTH_THROTTLED.labels, registry=r).labels("service"),
    )


@dataclass(frozen=True)
class FollowerMetrics:
    """One set for every follower of a process (labelled by chain), on the registry given."""

    head: Gauge
    processed: Gauge
    lag: Gauge
    reorgs: Counter
    deep_reorgs: Counter
    reorg_depth: Gauge
    rpc_errors: Counter
    not_ready: Counter
    store_errors: Counter
    events: Counter
    pending: Gauge
    leader: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> FollowerMetrics:
        def gauge(d: m.MetricDef) -> Gauge:
            return Gauge(d.name, d.help, d.labels, registry=registry)

        def counter(d: m.MetricDef) -> Counter:
            return Counter(d.name, d.help, d.labels, registry=registry)

        return cls(gauge(m.FOLLOWER_HEAD), gauge(m.FOLLOWER_PROCESSED), gauge(m.FOLLOWER_LAG),
                   counter(m.FOLLOWER_REORGS), counter(m.FOLLOWER_DEEP_REORGS),
                   gauge(m.FOLLOWER_REORG_DEPTH), counter(m.FOLLOWER_RPC_ERRORS),
                   counter(m.FOLLOWER_NOT_READY), counter(m.FOLLOWER_STORE_ERRORS),
                   counter(m.FOLLOWER_EVENTS), gauge(m.FOLLOWER_PENDING),
                   gauge(m.FOLLOWER_LEADER))
