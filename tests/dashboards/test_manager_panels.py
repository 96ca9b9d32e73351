"""The managers' panels (issue 17, 2b): uptime per team and per chain, "targets up" panels
that turn red at 0 and on no data, delivery success per event ("delivered within 1 min")
beside the per-attempt ratio, and the SLO row. Their queries run on a real Prometheus that
scrapes a stand-in exporter serving the series as CONTRACT names them (the SLO gauges come
from another part of the monitor; these panels must read them right once they exist), and
the figures must come out as the scenario says; then the colours Grafana is told to use."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import catalog.metrics as m
from dashboards.build import all_dashboards
from dashboards.common import RED
from tests.dashboards.test_queries_on_prometheus import Prometheus, running
from tests.support.promql import panels, queries, substitute
from tests.support.web import serve

# (target, type, team, chain, up): the monitor's self-checks are many and up, one of two
# Ethereum nodes is down, the bridges team's only target is down, one target has no team
TARGETS = [
    ("monitor-healthz", "http", "platform", "", 1), ("monitor-metrics", "http", "platform", "", 1),
    ("monitor-port", "tcp", "platform", "", 1),
    ("eth-a", "ethereum", "nodes", "ethereum", 1), ("eth-b", "ethereum", "nodes", "ethereum", 0),
    ("btc-bridge", "bitcoin", "bridges", "bitcoin", 0), ("lonely", "http", "", "", 1),
]
# per scrape: 10 deliveries succeed, 8 of them within 60 s; 5 attempts are retried, 1 fails
# for good, 1 goes dead. Per event: 8 / (10 + 1 + 1); per attempt: 10 / 17.
PER_SCRAPE = {"success": 10, "retry": 5, "failed": 1, "dead": 1}
WITHIN_MIN = 8
SLOS = {"eth-nodes": (0.999, 0.4, {"1h": 2.0, "6h": 0.5, "3d": 1.2})}
BUILTINS = {"__rate_interval": "10s", "__interval": "1s", "__range": "5m",
            "chain": ".*", "target": ".*"}  # the nodes board's variables: "All"


class StandIn:
    """Serves the scenario's exposition; every scrape advances the counters by PER_SCRAPE."""

    def __init__(self) -> None:
        self.scrapes = 0

    async def metrics(self, _request: web.Request) -> web.Response:
        self.scrapes += 1
        n = self.scrapes
        lines = ["# TYPE probe_success gauge"]
        for target, kind, team, chain, up in TARGETS:
            labels = {"target": target, "type": kind, "team": team, "chain": chain}
            lines.append(f"probe_success{{{fmt(labels)}}} {up}")
        lines.append(f"# TYPE {m.WEBHOOK_DELIVERIES.name} counter")
        for outcome, count in PER_SCRAPE.items():
            lines.append(f'{m.WEBHOOK_DELIVERIES.name}{{outcome="{outcome}"}} {count * n}')
        hist = m.WEBHOOK_LATENCY.name
        lines.append(f"# TYPE {hist} histogram")
        for bound in m.WEBHOOK_LATENCY.buckets:
            count = 0 if bound < 1 else WITHIN_MIN if bound <= 60 else PER_SCRAPE["success"]
            lines.append(f'{hist}_bucket{{le="{float(bound)!r}"}} {count * n}')
        lines.append(f'{hist}_bucket{{le="+Inf"}} {PER_SCRAPE["success"] * n}')
        lines.append(f"{hist}_count {PER_SCRAPE['success'] * n}")
        lines.append(f"{hist}_sum {100 * n}")
        for slo, (objective, budget, burns) in SLOS.items():
            lines.append(f'{m.SLO_OBJECTIVE.name}{{slo="{slo}"}} {objective}')
            lines.append(f'{m.SLO_BUDGET_REMAINING.name}{{slo="{slo}"}} {budget}')
            for window, rate in burns.items():
                lines.append(f'{m.SLO_BURN_RATE.name}{{slo="{slo}",window="{window}"}} {rate}')
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def fmt(labels: Mapping[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels.items() if v)


@pytest.fixture
async def stand_in() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/metrics", StandIn().metrics)
    async with serve(app) as base:
        yield base.removeprefix("http://")


def board(uid: str) -> dict[str, Any]:
    (found,) = [b for b in all_dashboards() if b["uid"] == uid]
    return found


def panel(uid: str, title: str) -> dict[str, Any]:
    (found,) = [p for p in panels(board(uid)) if p.get("title") == title]
    return found


def exprs(uid: str, title: str) -> list[str]:
    return [substitute(q.expr, BUILTINS) for q in queries(board(uid)) if q.panel_title == title]


async def by_label(prom: Prometheus, http: aiohttp.ClientSession, expr: str,
                   label: str) -> dict[str, float]:
    answer = await prom.query(http, expr)
    assert answer["status"] == "success", (expr, answer)
    return {s["metric"].get(label, ""): round(float(s["value"][1]), 4)
            for s in answer["data"]["result"]}


@pytest.mark.timeout(60)
async def test_manager_panels_compute_the_scenario_on_a_real_prometheus(
        tmp_path: Path, stand_in: str) -> None:
    prom = Prometheus(tmp_path, {"stand-in": stand_in})
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        with running(prom):
            await prom.wait_ready(http)
            async with asyncio.timeout(30):  # enough scrapes for rate() over 10 s
                while (await prom.value(http, "count_over_time(up[1m])") or 0) < 6:
                    await asyncio.sleep(0.25)
            await check_uptime_and_up(prom, http)
            await check_webhooks(prom, http)
            await check_slos(prom, http)


async def check_uptime_and_up(prom: Prometheus, http: aiohttp.ClientSession) -> None:
    ov = "crypitor-overview"
    (up,) = exprs(ov, "Targets up")
    assert await prom.value(http, up) == 5
    (by_team,) = exprs(ov, "Targets up by team")
    assert await by_label(prom, http, by_team, "team") == {
        "platform": 3, "nodes": 1, "bridges": 0, "(none)": 1}
    (by_chain,) = exprs(ov, "Targets up by chain")
    assert await by_label(prom, http, by_chain, "chain") == {"ethereum": 1, "bitcoin": 0}
    # the headline: the worst team, not 5/7 of everything
    for label in ("24 h", "7 d", "30 d"):
        (worst,) = exprs(ov, f"Uptime {label}")
        assert await prom.value(http, worst) == 0
    up_now, count, day, week, month = exprs(ov, "Uptime by team")
    assert await by_label(prom, http, count, "team") == {
        "platform": 3, "nodes": 2, "bridges": 1, "(none)": 1}
    assert await by_label(prom, http, up_now, "team") == {
        "platform": 3, "nodes": 1, "bridges": 0, "(none)": 1}
    for expr in (day, week, month):  # each team averages its own targets
        assert await by_label(prom, http, expr, "team") == {
            "platform": 1, "nodes": 0.5, "bridges": 0, "(none)": 1}
    _up, count, day, _week, _month = exprs(ov, "Uptime by chain")
    assert await by_label(prom, http, count, "chain") == {"ethereum": 2, "bitcoin": 1}
    assert await by_label(prom, http, day, "chain") == {"ethereum": 0.5, "bitcoin": 0}
    (nodes_up,) = exprs("crypitor-nodes", "Nodes up")
    answer = await prom.query(http, nodes_up)  # no node series here: "no data", shown red
    assert answer["status"] == "success" and answer["data"]["result"] == [], answer


async def check_webhooks(prom: Prometheus, http: aiohttp.ClientSession) -> None:
    per_event, per_attempt = round(8 / 12, 4), round(10 / 17, 4)
    for uid, event_title, attempt_title in (
            ("crypitor-overview", "Delivered within 1 min (24 h)",
             "Webhook delivery success (24 h)"),
            ("crypitor-webhooks", "Delivered within 1 min (1 h)", "Delivery success (1 h)"),
            ("crypitor-webhooks", "Delivered within 1 min", "Delivery success ratio")):
        (event,) = exprs(uid, event_title)
        (attempt,) = exprs(uid, attempt_title)
        assert await by_label(prom, http, event, "") == {"": per_event}, (uid, event)
        assert await by_label(prom, http, attempt, "") == {"": per_attempt}, (uid, attempt)
    both = exprs("crypitor-overview", "Webhook delivery success")
    assert [await by_label(prom, http, e, "") for e in both] == [
        {"": per_event}, {"": per_attempt}]


async def check_slos(prom: Prometheus, http: aiohttp.ClientSession) -> None:
    objective, budget, *burns = exprs("crypitor-overview", "SLOs")
    assert await by_label(prom, http, objective, "slo") == {"eth-nodes": 0.999}
    assert await by_label(prom, http, budget, "slo") == {"eth-nodes": 0.4}
    assert [await by_label(prom, http, b, "slo") for b in burns] == [
        {"eth-nodes": 2.0}, {"eth-nodes": 0.5}, {"eth-nodes": 1.2}]
    (left,) = exprs("crypitor-overview", "Error budget left")
    assert await by_label(prom, http, left, "slo") == {"eth-nodes": 0.4}
    (hour,) = exprs("crypitor-overview", "Burn rate (1 h)")
    assert await by_label(prom, http, hour, "slo") == {"eth-nodes": 2.0}


UP_PANELS = [("crypitor-overview", "Targets up"), ("crypitor-overview", "Targets up by team"),
             ("crypitor-overview", "Targets up by chain"), ("crypitor-nodes", "Nodes up")]


@pytest.mark.parametrize(("uid", "title"), UP_PANELS)
def test_targets_up_panels_are_red_at_zero_and_on_no_data(uid: str, title: str) -> None:
    defaults = panel(uid, title)["fieldConfig"]["defaults"]
    steps = defaults["thresholds"]["steps"]
    assert defaults["thresholds"]["mode"] == "absolute"
    assert steps[0] == {"value": None, "color": RED}  # below the first step: 0 up
    assert steps[1] == {"value": 1, "color": "green"}
    (special,) = [mp for mp in defaults["mappings"] if mp["type"] == "special"]
    assert special["options"]["match"] == "null+nan"
    assert special["options"]["result"]["color"] == RED
    assert panel(uid, title)["options"]["colorMode"] == "value"


def test_no_overview_figure_averages_all_targets_together() -> None:
    for q in queries(board("crypitor-overview")):
        if "avg_over_time" in q.expr:
            assert "by (" in q.expr, f"{q.panel_title}: {q.expr}"


def test_per_event_delivery_sits_beside_the_per_attempt_view() -> None:
    for uid, pairs in (("crypitor-overview", [("Delivered within 1 min (24 h)",
                                                "Webhook delivery success (24 h)")]),
                       ("crypitor-webhooks", [("Delivered within 1 min (1 h)",
                                                "Delivery success (1 h)"),
                                               ("Delivered within 1 min",
                                                "Delivery success ratio")])):
        for event, attempt in pairs:
            a, b = panel(uid, event)["gridPos"], panel(uid, attempt)["gridPos"]
            assert a["y"] == b["y"] and a["x"] + a["w"] == b["x"], (uid, event)
            assert "Per event" in panel(uid, event)["description"]
            assert "Per attempt" in panel(uid, attempt)["description"]


def test_the_overview_has_an_slo_row_reading_the_contract_metrics() -> None:
    ov = board("crypitor-overview")
    rows = [p["title"] for p in ov["panels"] if p["type"] == "row"]
    assert "Service level objectives" in rows
    read = " ".join(q.expr for q in queries(ov))
    for name in ("crypitor_slo_objective", "crypitor_slo_error_budget_remaining",
                 "crypitor_slo_burn_rate"):
        assert name in read
