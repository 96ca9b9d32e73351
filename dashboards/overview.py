"""The *Overview* dashboard, for managers: are the targets up, how available were they over
24 hours / 7 days / 30 days per team and per chain, the service level objectives and their
error budgets, what is firing, and do customers' webhooks get delivered.

Uptime is computed from raw `probe_success` (`avg_over_time` over fixed windows), never from
recording rules, so the dashboard works on any Prometheus that scrapes the monitor; the 30 d
window needs Prometheus to keep more than its default 15 d (README, "Dashboards"). A team's
or chain's uptime averages its own targets, so the monitor's self-checks never weigh on an
Ethereum node's figure; the headline figures are the worst team's.
"""

from __future__ import annotations

from typing import Any

import catalog.metrics as m
from dashboards.common import (
    COUNT,
    GREEN,
    NUMBER,
    ORANGE,
    PERCENT,
    RED,
    UP_DOWN,
    Page,
    colored,
    mapped,
    or_none,
    query,
    stat_panel,
    state_panel,
    table_panel,
    timeseries_panel,
    up_count_panel,
)
from dashboards.webhooks import (
    DELIVERED_WITHIN_HELP,
    PER_ATTEMPT_HELP,
    RATIO_STEPS,
    delivered_within,
    delivery_success_ratio,
)

UID = "crypitor-overview"
TITLE = "Crypitor · Overview"

UP = m.PROBE_SUCCESS.name
UPTIME_WINDOWS = (("24 h", "24h"), ("7 d", "7d"), ("30 d", "30d"))
UPTIME_STEPS = ((0.99, ORANGE), (0.999, GREEN))  # below 99 % red, below 99.9 % orange


SLO_OBJECTIVE = m.SLO_OBJECTIVE.name
SLO_BUDGET = m.SLO_BUDGET_REMAINING.name
SLO_BURN = m.SLO_BURN_RATE.name
# error budget left: spent (below 0) red, under a quarter left orange
BUDGET_STEPS = ((0.0, ORANGE), (0.25, GREEN))
# burn rate per window, at the multiples the SLOBurnRate alerts use (SRE workbook): a ticket
# at 1x over 3 d, a page at 6x over 6 h and at 14.4x over 1 h
BURN_WINDOWS = (("1h", ((1.0, ORANGE), (14.4, RED))), ("6h", ((1.0, ORANGE), (6.0, RED))),
                ("3d", ((1.0, RED),)))


def uptime(window: str, by: str = "", selector: str = UP) -> str:
    """The share of probes that succeeded over `window`, averaged over the targets of
    `selector` (per `by` group; with one grouping label, targets without it form the group
    "(none)")."""
    per_target = f"avg_over_time({selector}[{window}])"
    if not by:
        return f"avg ({per_target})"
    if "," not in by:
        per_target = or_none(per_target, by)
    return f"avg by ({by}) ({per_target})"


def up_now(by: str) -> str:
    """Targets whose last probe succeeded, per `by` group."""
    return f"sum by ({by}) ({or_none(UP, by)})"


def worst_uptime(window: str) -> str:
    """The lowest of the teams' uptimes over `window`."""
    return f"min ({uptime(window, 'team')})"


def build(prometheus_url: str) -> dict[str, Any]:
    page = Page(UID, TITLE, "Targets up and down, uptime over 24 h / 7 d / 30 d per team and "
                "per chain, SLOs and their error budgets, firing alerts and webhook "
                "delivery.", prometheus_url).time("now-24h")
    page.row("Right now")
    page.add(up_count_panel("Targets up", query(f"sum({UP})", instant=True),
                            description="Targets whose last probe succeeded. Red when none "
                            "is up, and when there is no data (the monitor is not scraped)."),
             4, 5)
    page.add(stat_panel("Targets down", COUNT,
                        query(f"count({UP} == 0) or vector(0)", instant=True),
                        description="Targets whose last probe failed.",
                        steps=((1.0, RED),)), 4, 5)
    page.add(stat_panel("Alerts firing", COUNT,
                        query(f"sum({m.ALERTS_FIRING.name}) or vector(0)", instant=True),
                        steps=((1.0, RED),)), 4, 5)
    for label, window in UPTIME_WINDOWS:
        page.add(stat_panel(f"Uptime {label}", PERCENT, query(worst_uptime(window), instant=True),
                            description=f"The worst team's uptime over the last {label}: "
                            "each team's is the share of successful probes of its own "
                            "targets (see the table by team below).",
                            base=RED, steps=UPTIME_STEPS, decimals=2), 4, 5)

    page.row("By team and by chain")
    for by, what, selector in (("team", "team", UP), ("chain", "chain", f'{UP}{{chain!=""}}')):
        page.add(up_count_panel(
            f"Targets up by {what}",
            query(f"sum by ({by}) ({or_none(selector, by)})", f"{{{{{by}}}}}", instant=True),
            description=f"Targets up now in each {what} (the `{by}` label of the targets; "
            f'"(none)": targets without it). Red when none of a {what}\'s targets is up.'),
            12, 5)
    for by, what in (("team", "team"), ("chain", "chain")):
        selector = UP if by == "team" else f'{UP}{{chain!=""}}'
        page.add(table_panel(
            f"Uptime by {what}", PERCENT,
            query(f"sum by ({by}) ({or_none(selector, by)})", table_format=True),
            query(f"count by ({by}) ({or_none(selector, by)})", table_format=True),
            *(query(uptime(window, by, selector), table_format=True)
              for _, window in UPTIME_WINDOWS),
            description=f"Per {what}: targets up now, targets, and the share of successful "
            f"probes of the {what}'s own targets over 24 h, 7 d and 30 d.",
            columns=[("Up", NUMBER, "color-text"), ("Targets", NUMBER, ""),
                     *((f"Uptime {label}", PERCENT, "color-text")
                       for label, _ in UPTIME_WINDOWS)],
            overrides=[("Up", [colored(RED, (1.0, GREEN))]),
                       *((f"Uptime {label}", [colored(RED, *UPTIME_STEPS)])
                         for label, _ in UPTIME_WINDOWS)]), 12, 7)

    page.row("Service level objectives")
    page.add(table_panel(
        "SLOs", PERCENT,
        query(f"max by (slo) ({SLO_OBJECTIVE})", table_format=True),
        query(f"max by (slo) ({SLO_BUDGET})", table_format=True),
        *(query(f'max by (slo) ({SLO_BURN}{{window="{w}"}})', table_format=True)
          for w, _ in BURN_WINDOWS),
        description="Each [[slos]] entry: its objective, the share of its window's error "
        "budget still left (below 0: spent beyond it), and how fast the budget burns (1: "
        "exactly the budget over the window). The SLOBurnRate alerts page at 14.4x over 1 h "
        "and 6x over 6 h, and open a ticket at 1x over 3 d.",
        columns=[("Objective", PERCENT, ""), ("Error budget left", PERCENT, "color-text"),
                 *((f"Burn rate {w}", NUMBER, "color-text") for w, _ in BURN_WINDOWS)],
        overrides=[("Error budget left", [colored(RED, *BUDGET_STEPS)]),
                   *((f"Burn rate {w}", [colored(GREEN, *steps)])
                     for w, steps in BURN_WINDOWS)]), 12, 8)
    page.add(timeseries_panel("Error budget left", PERCENT,
                              query(f"max by (slo) ({SLO_BUDGET})", "{{slo}}"),
                              description="Share of each SLO's error budget still left over "
                              "its window.", base=RED, steps=BUDGET_STEPS, min_value=None,
                              max_value=1), 6, 8)
    page.add(timeseries_panel("Burn rate (1 h)", NUMBER,
                              query(f'max by (slo) ({SLO_BURN}{{window="1h"}})', "{{slo}}"),
                              description="Error budget burn rate over the last hour; the "
                              "page threshold is 14.4.", steps=BURN_WINDOWS[0][1],
                              decimals=2), 6, 8)

    page.row("Targets")
    by = "target, type, team, chain"
    page.add(table_panel(
        "Targets", PERCENT,
        query(f"max by ({by}) ({UP})", table_format=True),
        *(query(uptime(window, by), table_format=True) for _, window in UPTIME_WINDOWS),
        description="Every target's team and chain, its current state and its uptime.",
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
    page.add(stat_panel("Delivered within 1 min (24 h)", PERCENT,
                        query(delivered_within("24h"), instant=True),
                        description=DELIVERED_WITHIN_HELP,
                        base=RED, steps=RATIO_STEPS, decimals=2), 4, 8)
    page.add(stat_panel("Webhook delivery success (24 h)", PERCENT,
                        query(delivery_success_ratio("24h"), instant=True),
                        description=PER_ATTEMPT_HELP,
                        base=RED, steps=RATIO_STEPS, decimals=2), 4, 8)
    page.add(timeseries_panel("Webhook delivery success", PERCENT,
                              query(delivered_within("$__rate_interval"),
                                    "delivered within 1 min (per event)"),
                              query(delivery_success_ratio("$__rate_interval"),
                                    "attempts succeeding (per attempt)"),
                              description="Per event (delivered within 1 min, retries "
                              "included) beside per attempt (every retry a failure).",
                              base=RED, steps=RATIO_STEPS, max_value=1), 8, 8)
    return page.build()
