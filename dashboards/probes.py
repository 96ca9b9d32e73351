"""The *Probes and alerting* dashboard, for on-call engineers: how long probes take and in
which HTTP phase, why they fail, whether the scheduler keeps time, which alerts fire and
whether their notifications go out.
"""

from __future__ import annotations

from typing import Any

import catalog.metrics as m
from dashboards.common import (
    COUNT,
    GREEN,
    ORANGE,
    PER_SECOND,
    RED,
    SECONDS,
    Page,
    query,
    query_variable,
    stat_panel,
    table_panel,
    timeseries_panel,
    unit,
)

UID = "crypitor-probes"
TITLE = "Crypitor · Probes and alerting"

SEL = '{type=~"$type", target=~"$target"}'
TARGET = '{target=~"$target"}'  # per-target metrics without a `type` label
DAY = 86400.0
LAG_BUCKETS = f"{m.SCHEDULER_LAG.name}_bucket"
NOTIFICATIONS = m.NOTIFICATIONS.name
FIRING = m.ALERTS_FIRING.name


def scheduler_lag(q: float, window: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({LAG_BUCKETS}[{window}])))"


def build(prometheus_url: str) -> dict[str, Any]:
    rate = "$__rate_interval"
    up = m.PROBE_SUCCESS.name
    page = (Page(UID, TITLE, "Probe timings and failures, scheduler lag, firing alerts and "
                 "notifications.", prometheus_url)
            .variable(query_variable("type", "Type", up, "type"))
            .variable(query_variable("target", "Target", f'{up}{{type=~"$type"}}', "target")))

    page.row("Probes")
    page.add(timeseries_panel("Probe duration", unit(m.PROBE_DURATION),
                              query(f"max by (target) ({m.PROBE_DURATION.name}{SEL})",
                                    "{{target}}"),
                              description="How long each target's last probe took."), 12, 8)
    page.add(timeseries_panel(
        "HTTP probe duration by phase", unit(m.PROBE_HTTP_PHASE),
        query(f"avg by (phase) ({m.PROBE_HTTP_PHASE.name}{TARGET})", "{{phase}}"),
        description="DNS resolve, connect, TLS, server processing and transfer of the "
        "last HTTP probe, averaged over the selected targets: pick one target to see its "
        "own.", stacked=True), 12, 8)
    page.add(timeseries_panel(
        "Probe failures by reason", COUNT,
        query(f"60 * sum by (target, reason) (rate({m.PROBE_FAILURES.name}{SEL}[{rate}]))",
              "{{target}}: {{reason}}"),
        description="Failed probes per minute, by the reason the probe gave (dns, refused, "
        "tls, status, stale, lagging, ...)."), 12, 8)
    page.add(timeseries_panel(
        "Probes by result", PER_SECOND,
        query(f"sum by (result) (rate({m.PROBES_TOTAL.name}{SEL}[{rate}]))", "{{result}}"),
        stacked=True), 12, 8)
    page.add(stat_panel(
        "TLS certificate expires in", SECONDS,
        query(f"min by (target) ({m.PROBE_SSL_EXPIRY.name}{TARGET}) - time()", "{{target}}",
              instant=True),
        description="Time left on each HTTPS target's earliest-expiring certificate.",
        base=RED, steps=((7 * DAY, ORANGE), (14 * DAY, GREEN))), 12, 6)
    page.add(table_panel(
        "HTTP status and body size", COUNT,
        query(f"max by (target) ({m.PROBE_HTTP_STATUS.name}{TARGET})", table_format=True),
        query(f"max by (target) ({m.PROBE_HTTP_BODY_BYTES.name}{TARGET})",
              table_format=True),
        description="The last HTTP probe's status code (0: no answer) and body size.",
        columns=[("Status", "none", ""), ("Body", unit(m.PROBE_HTTP_BODY_BYTES), "")]), 12, 6)

    page.row("Scheduler")
    page.add(timeseries_panel("Scheduler lag", SECONDS,
                              query(scheduler_lag(0.5, rate), "p50"),
                              query(scheduler_lag(0.99, rate), "p99"),
                              description="Delay between a probe's scheduled time and its "
                              "start; a busy event loop shows here first.",
                              steps=((0.5, ORANGE), (2.0, RED))), 12, 8)
    page.add(timeseries_panel(
        "Missed and skipped runs", COUNT,
        query(f"60 * sum(rate({m.SCHEDULER_MISSED.name}[{rate}]))", "missed"),
        query(f"60 * sum by (target) (rate({m.PROBE_SKIPPED.name}{TARGET}[{rate}]))",
              "skipped: {{target}}"),
        description="Runs per minute that could not start within their interval (missed) "
        "or found the previous probe still running (skipped).",
        steps=((0.001, RED),)), 12, 8)

    page.row("Alerting")
    page.add(stat_panel("Alerts firing", COUNT,
                        query(f"sum({FIRING}) or vector(0)", instant=True),
                        steps=((1.0, RED),)), 6, 4)
    page.add(stat_panel("Critical alerts firing", COUNT,
                        query(f'sum({FIRING}{{severity="critical"}}) or vector(0)',
                              instant=True),
                        steps=((1.0, RED),)), 6, 4)
    page.add(stat_panel("Notifications sent (24 h)", COUNT,
                        query(f'sum(increase({NOTIFICATIONS}{{outcome="sent"}}[24h]))'
                              " or vector(0)", instant=True),
                        base=GREEN, decimals=0), 6, 4)
    page.add(stat_panel("Notifications failed (24 h)", COUNT,
                        query(f'sum(increase({NOTIFICATIONS}{{outcome="failed"}}[24h]))'
                              " or vector(0)", instant=True),
                        steps=((1.0, RED),), decimals=0), 6, 4)
    page.add(timeseries_panel(
        "Alerts firing", COUNT,
        query(f"sum by (alertname, severity) ({FIRING})", "{{alertname}} ({{severity}})"),
        stacked=True, decimals=0, stepped=True), 12, 8)
    page.add(timeseries_panel(
        "Notifications by outcome", COUNT,
        query(f"60 * sum by (receiver, outcome) (rate({NOTIFICATIONS}[{rate}]))",
              "{{receiver}}: {{outcome}}"),
        description="Notifications per minute: sent, retry (Telegram refused for now) and "
        "failed (given up)."), 12, 8)
    return page.build()
