"""SLOs evaluated by the monitor itself: `[[slos]]` checked at load (errors name the key and
the value), counts kept in SQLite across a restart (and in a real Redis with [cluster]), burn
rates and remaining budget as the SRE workbook computes them, partial history marked, the
crypitor_slo_* gauges, and SLOBurnRate firing through the evaluator on the SLO's synthetic
targets with the labels slo, window and severity and the runbook link."""

from __future__ import annotations

import asyncio
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from alerts.evaluate import Evaluator
from monitor.alerting_setup import linked_rules, slo_targets, slo_values
from monitor.cluster import RedisSloHistory, connect
from monitor.config import ConfigError, GrafanaSection, SloConfig, TargetConfig
from monitor.config import parse as parse_config
from monitor.runtime import SloBook, SqliteSloHistory, slo_collector
from service.metrics import new_metrics
from tests.support.redis_server import RedisKeyspace

START = datetime(2026, 3, 1, tzinfo=UTC)


def load(text: str) -> tuple[SloConfig, ...]:
    return parse_config(tomllib.loads(text), Path("/tmp/config.toml")).slos


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text)
    return [str(i) for i in caught.value.issues]


def test_slos_are_checked_at_load() -> None:
    [probe, delivery] = load("""
[[slos]]
name = "eth-nodes"
match = { chain = "ethereum" }
objective = 99.5
window = "7d"

[[slos]]
name = "deliveries"
kind = "webhook_delivery"
within = "30s"
""")
    assert (probe.kind, probe.ratio, probe.window, dict(probe.match)) == \
        ("probe", 0.995, 7 * 86400, {"chain": "ethereum"})
    assert (delivery.kind, delivery.objective, delivery.window, delivery.delivered_within) \
        == ("webhook_delivery", 99.9, 30 * 86400, 30.0)
    assert errors("""
[[slos]]
name = "a"
objective = 100

[[slos]]
name = "b"
within = "1m"

[[slos]]
name = "c"
kind = "webhook_delivery"
within = "45s"

[[slos]]
name = "d"
window = "90d"

[[slos]]
name = "g"

[[slos]]
name = "g"

[[slos]]
name = "e"
kind = "webhook_delivery"
match = { team = "x" }

[[slos]]
name = "f"
kind = "latency"
""") == [
        "slos[0].objective: must be a percentage above 0 and below 100 (got 100.0)",
        'slos[1].within: is for kind = "webhook_delivery" only (got "1m")',
        "slos[2].within: must be one of the delivery latency histogram's buckets (1ms, 2.5ms, "
        '5ms, 10ms, 25ms, 50ms, 100ms, 250ms, 500ms, 1s, 2.5s, 5s, 10s, 30s, 1m, 5m) '
        '(got "45s")',
        'slos[3].window: must be from 1h to 30d (got "90d")',
        'slos[5].name: is already used by slos[4] (got "g")',
        'slos[6].match: is for kind = "probe" only (got {"team": "x"})',
        'slos[7].kind: must be one of probe, webhook_delivery (got "latency")',
    ]


def target(name: str, team: str) -> TargetConfig:
    return TargetConfig(name, "http", "http://127.0.0.1:1/", 60.0, 5.0, {"team": team})


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


SLO = SloConfig("core", match={"team": "core"}, objective=99.0)


async def probe_minutes(book: SloBook, clock: Clock, minutes: int, failing_every: int) -> None:
    """Ten probes a minute of a `core` target (every `failing_every`-th failing, 0: none) and
    of an unmatched `web` target that always fails."""
    core, web = target("a", "core"), target("w", "web")
    for _ in range(minutes):
        for i in range(10):
            at = clock.now.timestamp() + i
            book.record_probe(core, not (failing_every and i % failing_every == 0), at)
            book.record_probe(web, False, at)
        clock.now += timedelta(minutes=1)
    await book.history.flush()


async def test_burn_rates_budget_and_partial_history_survive_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    book = SloBook([SLO], SqliteSloHistory(tmp_path / "slo.sqlite3"), clock)
    await probe_minutes(book, clock, 50, failing_every=0)
    await probe_minutes(book, clock, 20, failing_every=5)  # 20 % failing for 20 minutes
    [status] = await book.evaluate()
    assert status.burn_rates["5m"] == pytest.approx(20.0)  # 20 % of a 1 % budget
    assert status.burn_rates["1h"] == pytest.approx((40 / 600) / 0.01, rel=0.05)
    assert status.burn_rates["3d"] == pytest.approx((40 / 700) / 0.01)  # all there is
    assert status.partial == {"5m": False, "30m": False, "1h": False, "6h": True, "3d": True,
                              "window": True}
    assert status.attained == pytest.approx(660 / 700)
    assert status.error_budget_remaining == pytest.approx(1 - (40 / 700) / 0.01)
    assert book.statuses() == [{"name": "core", "objective": 99.0, "window": "30d",
                                "attained": round(660 / 700 * 100, 4),
                                "error_budget_remaining": round(1 - (40 / 700) / 0.01, 4)}]
    registry = CollectorRegistry()
    registry.register(slo_collector(lambda: book))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(generate_latest(registry).decode())
               for s in family.samples}
    assert samples[("crypitor_slo_objective", (("slo", "core"),))] == 0.99
    assert samples[("crypitor_slo_burn_rate", (("slo", "core"), ("window", "5m")))] == \
        pytest.approx(20.0)
    assert samples[("crypitor_slo_error_budget_remaining", (("slo", "core"),))] == \
        pytest.approx(1 - (40 / 700) / 0.01)
    book.history.close()

    again = SloBook([SLO], SqliteSloHistory(tmp_path / "slo.sqlite3"), clock)  # a restart
    [restored] = await again.evaluate()
    assert restored.burn_rates == status.burn_rates and restored.partial == status.partial
    clock.now += timedelta(hours=2)  # nothing since: the short windows hold no event
    [later] = await again.evaluate()
    assert later.burn_rates["5m"] is None and later.burn_rates["1h"] is None
    assert later.burn_rates["3d"] == status.burn_rates["3d"]
    again.history.close()


async def test_slo_burn_rate_fires_through_the_evaluator(tmp_path: Path) -> None:
    """The SLO's synthetic targets: a 20x burn over both windows of the two page pairs and
    the ticket pair fires SLOBurnRate three times, with slo, window and severity labels."""
    clock = Clock()
    book = SloBook([SLO], SqliteSloHistory(tmp_path / "slo.sqlite3"), clock)
    await probe_minutes(book, clock, 70, failing_every=5)
    [status] = await book.evaluate()
    section = parse_config({}, Path("/tmp/config.toml")).alerts
    rules = linked_rules(section, GrafanaSection(url="http://127.0.0.1:3000"))
    evaluator = Evaluator(rules, {}, slo_targets([SLO]))
    targets = slo_targets([SLO])
    fired = []
    for name, values in slo_values(status).items():
        for t in evaluator.observe(name, targets[name], values, clock.now):
            fired.append(t.alert)
    assert sorted((a.labels["window"], a.labels["severity"]) for a in fired) == \
        [("1h", "critical"), ("3d", "warning"), ("6h", "critical")]
    alert = next(a for a in fired if a.labels["window"] == "1h")
    assert alert.labels["alertname"] == "SLOBurnRate" and alert.labels["slo"] == "core"
    assert alert.annotations["summary"] == (
        "SLO core: the error budget burns 20x as fast as it may over 1h (and 20x over the "
        "shorter window); -19 of it remains")
    assert alert.annotations["runbook_url"] == "README.md#runbook-sloburnrate"
    assert alert.annotations["dashboard_url"] == "http://127.0.0.1:3000/d/crypitor-overview"
    book.history.close()

    calm = SloBook([SLO], SqliteSloHistory(tmp_path / "calm.sqlite3"), clock)
    await probe_minutes(calm, clock, 70, failing_every=0)
    [quiet] = await calm.evaluate()
    evaluator = Evaluator(rules, {}, targets)
    assert not [t for name, values in slo_values(quiet).items()
                for t in evaluator.observe(name, targets[name], values, clock.now)]
    calm.history.close()


async def test_webhook_delivery_slo_counts_deliveries_that_ended(tmp_path: Path) -> None:
    """Late deliveries (past `within`) and dead ones are bad; retries are no event."""
    clock = Clock()
    slo = SloConfig("deliveries", kind="webhook_delivery", within=60.0, objective=99.0)
    book = SloBook([slo], SqliteSloHistory(tmp_path / "slo.sqlite3"), clock)
    service = new_metrics()
    for latency in [1.0] * 8 + [120.0]:
        service.latency.observe(latency)
        service.deliveries.labels("success").inc()
    service.deliveries.labels("dead").inc()
    service.deliveries.labels("retry").inc(5)
    book.sample_service(service.registry, clock.now.timestamp())
    book.sample_service(service.registry, clock.now.timestamp())  # nothing new: no event
    [status] = await book.evaluate()
    assert status.attained == pytest.approx(0.8)
    assert status.burn_rates["5m"] == pytest.approx(20.0)
    book.history.close()


@pytest.mark.timeout(30)
async def test_cluster_instances_add_their_counts_and_read_everyone_s(
        redis_keyspace: RedisKeyspace) -> None:
    redis = connect(redis_keyspace.url)
    try:
        clock = Clock()
        eu = SloBook([SLO], RedisSloHistory(redis, redis_keyspace.prefix), clock)
        us = SloBook([SLO], RedisSloHistory(redis, redis_keyspace.prefix), clock)
        core = target("a", "core")
        at = clock.now.timestamp()
        for i in range(10):
            eu.record_probe(core, True, at - 3600 * 5 - i)  # in 6h, not in 1h
            us.record_probe(core, i % 2 == 0, at - 30 - i)
        await eu.history.flush()
        await us.history.flush()
        eu.record_probe(core, False, at - 1)  # not flushed: only eu counts it
        [seen_by_eu] = await eu.evaluate()
        [seen_by_us] = await us.evaluate()
        assert seen_by_us.burn_rates["1h"] == pytest.approx(0.5 / 0.01)
        assert seen_by_us.burn_rates["6h"] == pytest.approx(0.25 / 0.01)
        assert seen_by_eu.burn_rates["1h"] == pytest.approx((6 / 11) / 0.01)
        assert seen_by_us.partial["6h"] is True and seen_by_us.partial["1h"] is False
        assert seen_by_us.history_seconds == pytest.approx(3600 * 5 + 9)
    finally:
        await redis.aclose()


async def test_run_evaluates_slos_alerts_and_reloads_them(tmp_path: Path) -> None:
    """`crypitor run` with an SLO over a broken target: the gauges show the burn, the
    SLOBurnRate alerts fire in /api/v1/alerts, the status page's function lists it, and a
    reload adds a second SLO."""
    import aiohttp
    from aiohttp import web

    from monitor.app import Runtime
    from monitor.config import load as load_file
    from tests.monitor.test_reload import Setup, Site, metrics, reload_via_api, target
    from tests.monitor.test_reload import wait_until as wait
    from tests.support.web import serve

    site = Site()
    app = web.Application()
    app.router.add_get("/{path:.*}", site.handle)
    slo = '[[slos]]\nname = "broken"\nmatch = { target = "b" }\nobjective = 99.0\n'
    async with serve(app) as base, aiohttp.ClientSession() as http:
        site.host = base.removeprefix("http://")
        s = Setup(tmp_path)
        s.write(s.head() + target("b", site, "/broken") + slo)
        runtime = Runtime(load_file(s.path), env={})
        runtime.slo_every = 0.2
        await runtime.start()
        try:
            await wait(lambda: site.count("/broken") >= 2)
            text = ""

            async def shown() -> bool:
                nonlocal text
                text = await metrics(http, s.base)
                burn = 'crypitor_slo_burn_rate{slo="broken",window="5m"} '
                return any(line.startswith(burn) and float(line.removeprefix(burn))
                           == pytest.approx(100.0) for line in text.splitlines())

            async with asyncio.timeout(20):
                while not await shown():
                    await asyncio.sleep(0.1)
            assert 'crypitor_slo_objective{slo="broken"} 0.99' in text

            async def alerts() -> list[dict[str, object]]:
                async with http.get(f"{s.base}/api/v1/alerts") as resp:
                    return [a for a in await resp.json() if a["alertname"] == "SLOBurnRate"]

            async with asyncio.timeout(20):
                while len([a for a in await alerts() if a["state"] == "firing"]) < 3:
                    await asyncio.sleep(0.1)
            windows = sorted((a["labels"]["window"], a["severity"])  # type: ignore[index]
                             for a in await alerts())
            assert windows == [("1h", "critical"), ("3d", "warning"), ("6h", "critical")]
            [status] = runtime.slo_statuses()
            assert status["name"] == "broken" and status["attained"] == 0.0
            s.write(s.head() + target("b", site, "/broken") + slo
                    + slo.replace('"broken"', '"second"'))
            code, _ = await reload_via_api(http, s.base)
            assert code == 200
            async with asyncio.timeout(20):
                while 'crypitor_slo_objective{slo="second"}' not in await metrics(http, s.base):
                    await asyncio.sleep(0.1)
        finally:
            await runtime.stop()
