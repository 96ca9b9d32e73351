"""The *Overview* dashboard, for managers: are the targets up, how available were they over
24 hours / 7 days / 30 days, what is firing, and do customers' webhooks get delivered.

Uptime is computed from raw `probe_success` (`avg_over_time` over fixed windows), never from
recording rules, so the dashboard works on any Prometheus that scrapes the monitor.
"""

from __future__ import annotations

from typing import Any

import catalog.metrics as m
from dashboards.common import (
    COUNT,
    GREEN,
    ORANGE,
    PERCENT,
    RED,
    UP_DOWN,
    Page,
    colored,
    mapped,
    query,
    stat_panel,
    state_panel,
    table_panel,
    timeseries_panel,
)
from dashboards.webhooks import RATIO_STEPS, delivery_success_ratio

UID = "crypitor-overview"
TITLE = "Crypitor · Overview"

UP = m.PROBE_SUCCESS.name
UPTIME_WINDOWS = (("24 h", "24h"), ("7 d", "7d"), ("30 d", "30d"))
UPTIME_STEPS = ((0.99, ORANGE), (0.999, GREEN))  # below 99 % red, below 99.9 % orange


def uptime(window: str, by: str = "") -> str:
    """The share of probes that succeeded over `window`, averaged over the targets."""
    grouping = f" by ({by})" if by else ""
    return f"avg{grouping} (avg_over_time({UP}[{window}]))"


def build(prometheus_url: str) -> dict[str, Any]:
    page = Page(UID, TITLE, "Targets up and down, uptime over 24 h / 7 d / 30 d, firing alerts "
                "and webhook delivery success.", prometheus_url).time("now-24h")
    page.row("Right now")
    page.add(stat_panel("Targets up", COUNT, query(f"sum({UP})", instant=True),
                        description="Targets whose last probe succeeded."), 4, 5)
    page.add(stat_panel("Targets down", COUNT,
                        query(f"count({UP} == 0) or vector(0)", instant=True),
                        description="Targets whose last probe failed.",
                        steps=((1.0, RED),)), 4, 5)
    page.add(stat_panel("Alerts firing", COUNT,
                        query(f"sum({m.ALERTS_FIRING.name}) or vector(0)", instant=True),
                        steps=((1.0, RED),)), 4, 5)
    for label, window in UPTIME_WINDOWS:
        page.add(stat_panel(f"Uptime {label}", PERCENT, query(uptime(window), instant=True),
                            description=f"Share of successful probes over the last {label}, "
                            "averaged over all targets.",
                            base=RED, steps=UPTIME_STEPS, decimals=2), 4, 5)

    page.row("Targets")
    page.add(table_panel(
        "Targets", PERCENT,
        query(f"max by (target, type) ({UP})", table_format=True),
        *(query(uptime(window, "target, type"), table_format=True)
          for _, window in UPTIME_WINDOWS),
        description="Every target's current state and its uptime.",
        columns=[("Up", "none", "color-text"),
                 *((f"Uptime {label}", PERCENT, "color-text")
                   for label, _ in UPTIME_WINDOWS)],
        overrides=[("Up", [mapped(UP_DOWN)]),
                   *((f"Uptime {label}", [colored(RED, *UPTIME_STEPS)])
                     for label, _ in UPTIME_WINDOWS)]), 14, 10)
    page.add(state_panel("Up and down", query(f"max by (target) ({UP})", "{{target}}"),
                         description="Each target's probe results over time.",
                         mappings=[UP_DOWN]), 10, 10)

    page.row("Alerts and webhooks")
    page.add(table_panel(
        "Firing alerts", COUNT,
        query(f"sum by (alertname, severity) ({m.ALERTS_FIRING.name}) > 0",
              table_format=True),
        description="Alerts firing now, by rule and severity.",
        columns=[("Firing", COUNT, "")]), 8, 8)
    page.add(stat_panel("Webhook delivery success (24 h)", PERCENT,
                        query(delivery_success_ratio("24h"), instant=True),
                        description="Successful webhook delivery attempts over all attempts.",
                        base=RED, steps=RATIO_STEPS, decimals=2), 4, 8)
    page.add(timeseries_panel("Webhook delivery success", PERCENT,
                              query(delivery_success_ratio("$__rate_interval"), "success"),
                              base=RED, steps=RATIO_STEPS, max_value=1), 12, 8)
    return page.build()
