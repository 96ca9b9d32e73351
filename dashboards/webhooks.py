"""The *Webhook service* dashboard: what customers feel of the delivery service — ingest,
delivery outcomes and success ratio, latency quantiles, and the backlog.

The store's gauges (queue depth, oldest pending, disabled endpoints) describe one shared
queue: every process on a Redis queue reports the same figure, so they are read with `max`,
never summed; counters are per process and are summed.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import dashboard as dm

import catalog.metrics as m
from dashboards.common import (
    COUNT,
    GREEN,
    ORANGE,
    PER_SECOND,
    PERCENT,
    RED,
    SECONDS,
    Page,
    query,
    stat_panel,
    timeseries_panel,
    unit,
)

UID = "crypitor-webhooks"
TITLE = "Crypitor · Webhook service"

EVENTS = m.WEBHOOK_EVENTS.name
DELIVERIES = m.WEBHOOK_DELIVERIES.name
LATENCY_BUCKETS = f"{m.WEBHOOK_LATENCY.name}_bucket"
OUTCOME_COLORS = {"success": GREEN, "retry": ORANGE, "failed": RED, "dead": "purple"}
# success ratio colours: below 90 % red, below 99 % orange
RATIO_STEPS = ((0.9, ORANGE), (0.99, GREEN))
BACKLOG_STEPS = ((60.0, ORANGE), (300.0, RED))  # WebhookQueueBacklog fires at 300 s
WITHIN = 60.0  # "delivered within 1 min": a bucket bound of the latency histogram
ENDED = '{outcome=~"success|failed|dead"}'  # outcomes that end a delivery (retry does not)


def delivery_success_ratio(window: str) -> str:
    """Per attempt: successful attempts over all attempts in `window` — what the built-in
    WebhookDeliveriesFailing rule watches, where every retry counts as a failure; no series
    at all when nothing was attempted."""
    return (f'sum(rate({DELIVERIES}{{outcome="success"}}[{window}]))'
            f" / (sum(rate({DELIVERIES}[{window}])) > 0)")


def delivered_within(window: str, seconds: float = WITHIN) -> str:
    """Per event, as a customer feels it: deliveries (an event to one endpoint) that reached
    the endpoint within `seconds` of the event's acceptance, retries included, over the
    deliveries that ended in `window` (delivered, failed for good, or dead). A retry that
    delivers in time counts as good here, while the per-attempt ratio counts its failed
    attempts; no series when no delivery ended."""
    if seconds not in m.WEBHOOK_LATENCY.buckets:  # only a bucket bound can be read exactly
        raise ValueError(f"{seconds:g}s is not a bucket of {m.WEBHOOK_LATENCY.name}")
    le = repr(float(seconds))  # the `le` value as the Prometheus client writes it
    return (f'sum(rate({LATENCY_BUCKETS}{{le="{le}"}}[{window}]))'
            f' / (sum(rate({DELIVERIES}{ENDED}[{window}])) > 0)')


def latency_quantile(q: float, window: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({LATENCY_BUCKETS}[{window}])))"


DELIVERED_WITHIN_HELP = (
    "Per event: deliveries that reached their endpoint within 1 minute of the event's "
    "acceptance, retries included, over the deliveries that ended (delivered, failed or dead). "
    "What customers feel; a retry that delivers in time is good here.")
PER_ATTEMPT_HELP = (
    "Per attempt: successful attempts over all attempts. Every retry counts as a failed "
    "attempt here, even when the event is delivered a minute later: see \"Delivered within "
    "1 min\" for what customers feel.")


def _outcome_colors() -> list[tuple[str, list[dm.DynamicConfigValue]]]:
    return [(name, [dm.DynamicConfigValue(id_val="color",
                                          value={"mode": "fixed", "fixedColor": color})])
            for name, color in OUTCOME_COLORS.items()]


def build(prometheus_url: str) -> dict[str, Any]:
    rate = "$__rate_interval"
    page = Page(UID, TITLE, "Ingest, delivery outcomes, latency and backlog of the embedded "
                "webhook delivery service (its own /metrics job).", prometheus_url)
    page.row("Now")
    page.add(stat_panel("Events accepted", PER_SECOND,
                        query(f"sum(rate({EVENTS}[5m]))", instant=True),
                        description="Events accepted per second over the last 5 minutes.",
                        decimals=2), 4, 4)
    page.add(stat_panel("Delivered within 1 min (1 h)", PERCENT,
                        query(delivered_within("1h"), instant=True),
                        description=DELIVERED_WITHIN_HELP,
                        base=RED, steps=RATIO_STEPS, decimals=2), 4, 4)
    page.add(stat_panel("Delivery success (1 h)", PERCENT,
                        query(delivery_success_ratio("1h"), instant=True),
                        description=PER_ATTEMPT_HELP,
                        base=RED, steps=RATIO_STEPS, decimals=2), 4, 4)
    page.add(stat_panel("Latency p95 (5 m)", SECONDS,
                        query(latency_quantile(0.95, "5m"), instant=True),
                        description="Event accepted until the endpoint answered 2xx.",
                        steps=((5.0, ORANGE), (30.0, RED))), 3, 4)
    page.add(stat_panel("Queue depth", COUNT,
                        query(f"max({m.WEBHOOK_QUEUE_DEPTH.name})", instant=True),
                        description="Deliveries waiting to be attempted.",
                        steps=((1000.0, ORANGE), (10000.0, RED))), 3, 4)
    page.add(stat_panel("Oldest pending", unit(m.WEBHOOK_OLDEST_PENDING),
                        query(f"max({m.WEBHOOK_OLDEST_PENDING.name})", instant=True),
                        description="Age of the oldest event still waiting for a delivery.",
                        steps=BACKLOG_STEPS), 3, 4)
    page.add(stat_panel("Disabled endpoints", COUNT,
                        query(f"max({m.WEBHOOK_DISABLED_ENDPOINTS.name})", instant=True),
                        description="Endpoints disabled after a 410 or failing too long.",
                        steps=((1.0, ORANGE),)), 3, 4)

    page.row("Traffic")
    page.add(timeseries_panel("Events accepted", PER_SECOND,
                              query(f"sum(rate({EVENTS}[{rate}]))", "events/s"),
                              description="Events accepted by POST /v1/events and "
                              "/v1/events/batch, per second."), 12, 8)
    deliveries = timeseries_panel(
        "Deliveries by outcome", PER_SECOND,
        query(f"sum by (outcome) (rate({DELIVERIES}[{rate}]))", "{{outcome}}"),
        description="Delivery attempts per second: success, retry (will be tried again), "
        "failed (410 or endpoint disabled), dead (retries exhausted).", stacked=True)
    for name, props in _outcome_colors():
        deliveries = deliveries.override_by_name(name, props)
    page.add(deliveries, 12, 8)
    page.add(timeseries_panel("Delivered within 1 min", PERCENT,
                              query(delivered_within(rate), "delivered within 1 min"),
                              description=DELIVERED_WITHIN_HELP,
                              base=RED, steps=RATIO_STEPS, max_value=1), 8, 8)
    page.add(timeseries_panel("Delivery success ratio", PERCENT,
                              query(delivery_success_ratio(rate), "success"),
                              description=PER_ATTEMPT_HELP,
                              base=RED, steps=RATIO_STEPS, max_value=1), 8, 8)
    page.add(timeseries_panel("Delivery latency", SECONDS,
                              query(latency_quantile(0.5, rate), "p50"),
                              query(latency_quantile(0.95, rate), "p95"),
                              query(latency_quantile(0.99, rate), "p99"),
                              description="From the event's acceptance to the endpoint's "
                              "2xx answer, retries included."), 8, 8)

    page.row("Backlog")
    page.add(timeseries_panel("Queue depth", COUNT,
                              query(f"max({m.WEBHOOK_QUEUE_DEPTH.name})", "waiting"),
                              description="Deliveries waiting to be attempted.",
                              decimals=0), 8, 8)
    page.add(timeseries_panel("Oldest pending delivery", unit(m.WEBHOOK_OLDEST_PENDING),
                              query(f"max({m.WEBHOOK_OLDEST_PENDING.name})", "oldest"),
                              description="Alerting (WebhookQueueBacklog) starts at 5 min.",
                              steps=BACKLOG_STEPS), 8, 8)
    page.add(timeseries_panel("Disabled and busy endpoints", COUNT,
                              query(f"max({m.WEBHOOK_DISABLED_ENDPOINTS.name})", "disabled"),
                              query(f"max({m.WEBHOOK_BUSY_ENDPOINTS.name})", "busy"),
                              description="Busy: more work than the endpoint takes (slow "
                              "answers or its rate limit); its deliveries wait along its own "
                              "pace, other endpoints' go on.", decimals=0, stepped=True), 8, 8)
    page.add(timeseries_panel(
        "Retries and give-ups", PER_SECOND,
        query(f'sum by (outcome) (rate({DELIVERIES}{{outcome=~"retry|failed|dead"}}[{rate}]))',
              "{{outcome}}"),
        description="Attempts that did not deliver: retried later, failed for good, or dead "
        "after the whole retry schedule (replayable)."), 12, 8)
    page.add(timeseries_panel(
        "Canary end-to-end delivery", unit(m.PROBE_CANARY_DELIVERY),
        query(f"max by (target) ({m.PROBE_CANARY_DELIVERY.name})", "{{target}}"),
        description="webhook_canary targets: POST of a signed event until it reached the "
        "monitor's sink."), 12, 8)
    return page.build()
