"""Google Cloud Monitoring export through the real client and gRPC transport to a local
fake: requests as documented, at most 200 series a call, and a failing or slow API retried,
logged once and never felt by the probes."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import grpc
import pytest
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from monitor.config import TargetConfig
from monitor.exporters import new_registry
from monitor.exporters.gcp import GcpExporter
from monitor.exporters.gcp.series import (
    MAX_SERIES_PER_CALL,
)
from monitor.runtime import Job, ProbeScheduler, TargetState
from probes.base import Outcome, ProbeResult, Reason, SystemClock
from tests.monitor.gcp_helpers import (
    T0,
    StepClock,
    by_type,
    probe_registry,
    records,
    settings,
    started,
)
from tests.support.fake_gcp import CUMULATIVE, GAUGE, FakeGcp

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def exporter_for(fake_gcp: FakeGcp) -> AsyncIterator[
        tuple[StepClock, list[GcpExporter]]]:
    """Clock and a list to register exporters in; every one is stopped at the end."""
    made: list[GcpExporter] = []
    yield StepClock(), made
    for e in made:
        await e.stop()


# ---- end to end through the client -------------------------------------------------------

async def test_requests_reach_the_api_as_documented(
        fake_gcp: FakeGcp, exporter_for: tuple[StepClock, list[GcpExporter]]) -> None:
    clock, made = exporter_for
    exporter = await started(fake_gcp, probe_registry(), clock, made)
    assert await exporter.export_once()
    (request,) = fake_gcp.requests
    assert request.name == "projects/test-project"
    got = by_type(list(request.time_series))
    lag = got["crypitor_chain_block_lag"][0]
    assert dict(lag.metric.labels) == {"target": "eth-main", "chain": "ethereum"}
    assert lag.metric_kind == GAUGE
    assert lag.value_type == 3  # DOUBLE
    assert lag.points[0].value.double_value == 3
    assert lag.points[0].interval.end_time == clock.now
    assert dict(lag.resource.labels) == {"project_id": "test-project", "location": "global",
                                         "namespace": "crypitor", "node_id": "mon-1"}
    total = got["crypitor_probes_total"][0]
    assert total.metric_kind == CUMULATIVE
    assert total.points[0].interval.start_time == T0  # the exporter's start
    assert got["crypitor_chain_peers"][0].points[0].value.double_value == 25
    assert got["crypitor_chain_head_age_seconds"][0].unit == "s"
    # a minute later: the same series again, the counter with the same start
    clock.advance()
    assert await exporter.export_once()
    later = by_type(list(fake_gcp.requests[1].time_series))["crypitor_probes_total"][0]
    assert later.points[0].interval.start_time == T0
    assert later.points[0].interval.end_time == clock.now
    assert exporter.stats.series_sent == 2 * len(request.time_series)


async def test_real_probe_collector_feeds_the_export(
        fake_gcp: FakeGcp, exporter_for: tuple[StepClock, list[GcpExporter]]) -> None:
    eth = TargetState(TargetConfig("eth-main", "ethereum", "http://127.0.0.1:8545", 30, 10,
                                   {"team": "infra", "chain": "mainnet"}))
    site = TargetState(TargetConfig("site", "http", "http://127.0.0.1/", 30, 10))
    eth.record(ProbeResult(True, 0.2, T0, {"head_block": 19_000_123, "block_lag": 2,
                                           "head_age_seconds": 7.0, "peers": 40}))
    site.record(ProbeResult(False, 1.5, T0, {"status_code": 503}, Reason.STATUS, "503"))
    registry, _ = new_registry([eth, site])
    clock, made = exporter_for
    exporter = await started(fake_gcp, registry, clock, made)
    assert await exporter.export_once()
    got = by_type(fake_gcp.series)
    up = {ts.metric.labels["target"]: ts for ts in got["probe_success"]}
    assert up["eth-main"].points[0].value.double_value == 1.0
    assert dict(up["eth-main"].metric.labels) == {"target": "eth-main", "type": "ethereum",
                                                  "team": "infra", "chain": "mainnet"}
    assert up["site"].points[0].value.double_value == 0.0
    assert dict(up["site"].metric.labels) == {"target": "site", "type": "http"}
    durations = {ts.metric.labels["target"]: ts.points[0].value.double_value
                 for ts in got["probe_duration_seconds"]}
    assert durations == {"eth-main": 0.2, "site": 1.5}
    chain = {name: got[f"crypitor_chain_{name}"][0].points[0].value.double_value
             for name in ("head_block", "block_lag", "head_age_seconds", "peers")}
    assert chain == {"head_block": 19_000_123, "block_lag": 2, "head_age_seconds": 7.0,
                     "peers": 40}
    assert dict(got["crypitor_chain_head_block"][0].metric.labels) == {
        "target": "eth-main", "chain": "mainnet", "team": "infra"}
    failures = got["crypitor_probe_failures_total"][0]
    assert failures.metric_kind == CUMULATIVE
    assert failures.metric.labels["reason"] == "status"
    assert "process_cpu_seconds_total" not in got and "crypitor_build_info" not in got


async def test_450_series_go_in_calls_of_at_most_200(
        fake_gcp: FakeGcp, exporter_for: tuple[StepClock, list[GcpExporter]]) -> None:
    reg = CollectorRegistry(auto_describe=False)
    g = Gauge("probe_success", "h", ["target"], registry=reg)
    for i in range(450):
        g.labels(f"t{i:03}").set(i % 2)
    clock, made = exporter_for
    exporter = await started(fake_gcp, reg, clock, made)
    assert await exporter.export_once()
    sizes = [len(r.time_series) for r in fake_gcp.requests]
    assert sizes == [200, 200, 50] and max(sizes) <= MAX_SERIES_PER_CALL
    targets = {ts.metric.labels["target"] for ts in fake_gcp.series}
    assert len(targets) == 450
    assert not fake_gcp.rejected


async def test_points_closer_than_the_api_allows_are_not_sent(
        fake_gcp: FakeGcp, exporter_for: tuple[StepClock, list[GcpExporter]]) -> None:
    clock, made = exporter_for
    exporter = await started(fake_gcp, probe_registry(), clock, made)
    assert await exporter.export_once()
    clock.advance(1)
    assert not await exporter.export_once()  # 1 s later: skipped, no call
    clock.advance(-3600)
    assert not await exporter.export_once()  # the clock stepped back: skipped too
    assert fake_gcp.calls == 1 and not fake_gcp.rejected
    clock.advance(3600 + 60)
    assert await exporter.export_once()
    assert fake_gcp.calls == 2 and exporter.stats.skipped == 2


# ---- failures ----------------------------------------------------------------------------

async def test_unavailable_is_retried_logged_once_and_recovers(
        fake_gcp: FakeGcp, exporter_for: tuple[StepClock, list[GcpExporter]],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "crypitor.gcp")
    clock, made = exporter_for
    exporter = await started(fake_gcp, probe_registry(), clock, made)
    fake_gcp.fail(grpc.StatusCode.UNAVAILABLE, times=7)
    assert not await exporter.export_once()  # 3 attempts (2 retries), all refused
    assert fake_gcp.calls == 3
    clock.advance()
    assert not await exporter.export_once()  # 3 more
    clock.advance()
    assert await exporter.export_once()  # one refusal, then through on the retry
    assert fake_gcp.calls == 8 and len(fake_gcp.requests) == 1
    (logged,) = records(caplog, "unavailable or too slow")
    assert logged.levelno == logging.WARNING and "UNAVAILABLE" in logged.getMessage()
    assert len(records(caplog, "works again")) == 1
    # a fresh outage after the recovery is news again
    fake_gcp.fail(grpc.StatusCode.UNAVAILABLE, times=3)
    clock.advance()
    assert not await exporter.export_once()
    assert len(records(caplog, "unavailable or too slow")) == 2


async def test_invalid_argument_is_logged_once_and_export_goes_on(
        fake_gcp: FakeGcp, exporter_for: tuple[StepClock, list[GcpExporter]],
        caplog: pytest.LogCaptureFixture) -> None:
    reg = CollectorRegistry(auto_describe=False)
    g = Gauge("crypitor_chain_peers", "h", ["target"], registry=reg)
    for i in range(250):
        g.labels(f"n{i}").set(i)
    clock, made = exporter_for
    exporter = await started(fake_gcp, reg, clock, made)
    refuse = "Field timeSeries[3] had an invalid value"
    fake_gcp.fail(grpc.StatusCode.INVALID_ARGUMENT, message=refuse)
    assert not await exporter.export_once()
    # not retried; the second batch still went
    assert fake_gcp.calls == 2 and [len(r.time_series) for r in fake_gcp.requests] == [50]
    clock.advance()
    fake_gcp.fail(grpc.StatusCode.INVALID_ARGUMENT, message=refuse)
    assert not await exporter.export_once()  # refused again: no second log line
    assert fake_gcp.calls == 4
    clock.advance()
    assert await exporter.export_once()
    (logged,) = records(caplog, "INVALID_ARGUMENT")
    assert logged.levelno == logging.ERROR and "timeSeries[3]" in logged.getMessage()


async def test_permission_denied_names_the_role_and_is_not_retried(
        fake_gcp: FakeGcp, exporter_for: tuple[StepClock, list[GcpExporter]],
        caplog: pytest.LogCaptureFixture) -> None:
    clock, made = exporter_for
    exporter = await started(fake_gcp, probe_registry(), clock, made)
    fake_gcp.fail(grpc.StatusCode.PERMISSION_DENIED, times=5)
    for _ in range(3):
        assert not await exporter.export_once()
        clock.advance()
    assert fake_gcp.calls == 3
    (logged,) = records(caplog, "PERMISSION_DENIED")
    assert "roles/monitoring.metricWriter" in logged.getMessage()


async def test_deadline_exceeded_is_retried_then_logged_once(
        fake_gcp: FakeGcp, exporter_for: tuple[StepClock, list[GcpExporter]],
        caplog: pytest.LogCaptureFixture) -> None:
    clock, made = exporter_for
    exporter = await started(fake_gcp, probe_registry(), clock, made, call_timeout=0.2)
    fake_gcp.delay = 1.0
    for _ in range(2):
        assert not await exporter.export_once()
        clock.advance()
    assert exporter.stats.calls == 6 and exporter.stats.failed_calls == 6
    assert len(records(caplog, "DEADLINE_EXCEEDED")) == 1
    fake_gcp.delay = 0.0
    assert await exporter.export_once()


async def test_slow_api_skips_cycles_and_never_delays_probes(
        fake_gcp: FakeGcp, exporter_for: tuple[StepClock, list[GcpExporter]]) -> None:
    """The real scheduler probes a target every 50 ms while the API takes 1.5 s an answer
    and then refuses: ticks return at once, a tick during a running cycle is skipped, and
    the probes keep their schedule."""

    class QuickProbe:
        async def run(self) -> ProbeResult:
            outcome = Outcome(SystemClock())
            outcome.values["head_block"] = 1
            return outcome.result()

    state = TargetState(TargetConfig("fast", "ethereum", "http://127.0.0.1:1", 0.05, 1))
    registry, sched_metrics = new_registry([state])
    results: list[float] = []

    def on_result(job: Job, result: ProbeResult) -> None:
        job.state.record(result)
        results.append(time.monotonic())

    sched = ProbeScheduler([Job(state, QuickProbe())], sched_metrics, on_result,
                           first_delay=0.0)
    clock, made = exporter_for
    exporter = await started(fake_gcp, registry, clock, made, call_timeout=5.0)
    fake_gcp.delay = 1.5
    fake_gcp.fail(grpc.StatusCode.UNAVAILABLE, times=100)
    sched.start()
    try:
        await asyncio.sleep(0.3)
        t = time.monotonic()
        assert exporter.tick()
        clock.advance()
        assert not exporter.tick()  # previous cycle still waiting on the API
        assert time.monotonic() - t < 0.05
        async with asyncio.timeout(20):
            while fake_gcp.calls < 2:
                await asyncio.sleep(0.05)
        window = [r for r in results if r > t]
    finally:
        await sched.stop()
    assert exporter.stats.skipped == 1
    assert len(window) >= 15  # ~1.5 s of 50 ms probes ran during the slow call
    gaps = [b - a for a, b in itertools.pairwise(window)]
    assert max(gaps) < 0.5


async def test_loop_ticks_on_its_own_and_stops_cleanly(
        fake_gcp: FakeGcp, exporter_for: tuple[StepClock, list[GcpExporter]]) -> None:
    clock, made = exporter_for

    def moving() -> datetime:  # each cycle a minute later, so the spacing rule holds
        return clock.advance()

    exporter = GcpExporter(settings(fake_gcp), probe_registry(), node_id="n", now=moving)
    made.append(exporter)
    assert exporter.interval == 60.0
    exporter.interval = 0.05  # only here: to see the ticker fire a few times
    await exporter.start()
    async with asyncio.timeout(10):
        while len(fake_gcp.requests) < 3:
            await asyncio.sleep(0.02)
    await exporter.stop()
    calls = fake_gcp.calls
    await asyncio.sleep(0.2)
    assert fake_gcp.calls == calls and not exporter.enabled
    assert not exporter.tick()


def test_interval_has_a_floor() -> None:
    class Loose:
        project_id, interval, api_endpoint, insecure = "p", 1.0, "", False

    assert GcpExporter(Loose(), CollectorRegistry()).interval == 10.0


async def test_a_broken_collector_is_logged_once_and_the_export_goes_on(
        fake_gcp: FakeGcp, exporter_for: tuple[StepClock, list[GcpExporter]],
        caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Collector):
        fail = True

        def collect(self) -> Iterator[Metric]:
            if self.fail:
                raise RuntimeError("collector bug")
            yield from ()

    reg = probe_registry()
    broken = Broken()
    reg.register(broken)
    clock, made = exporter_for
    exporter = await started(fake_gcp, reg, clock, made)
    for _ in range(2):
        assert not await exporter.export_once()
        clock.advance()
    (logged,) = records(caplog, "collector bug")
    assert logged.levelno == logging.ERROR and fake_gcp.calls == 0
    broken.fail = False
    assert await exporter.export_once()
    assert fake_gcp.requests
