"""The scheduler: spread start times, no self-overlap, a hung target delays nobody, lag is
measured, and a misbehaving probe becomes a failed result instead of a crash."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter

from monitor.config import TargetConfig
from monitor.runtime import SchedulerMetrics, TargetState
from monitor.runtime.scheduler import Job, ProbeScheduler, run_bounded, spread
from probes.base import Outcome, ProbeResult, Reason, SystemClock


class CountingProbe:
    """A probe whose run takes `hold` seconds (or until released), counting overlaps."""

    def __init__(self, hold: float = 0.0) -> None:
        self.hold = hold
        self.runs = 0
        self.active = 0
        self.max_active = 0

    async def run(self) -> ProbeResult:
        self.runs += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.hold)
        finally:
            self.active -= 1
        return Outcome(SystemClock()).result()


class RaisingProbe:
    async def run(self) -> ProbeResult:
        raise RuntimeError("bug")


def target(name: str, interval: float, timeout: float | None = None) -> TargetConfig:
    return TargetConfig(name, "http", "http://127.0.0.1:1/", interval,
                        interval if timeout is None else timeout)


def lag_histogram() -> SchedulerMetrics:
    registry = CollectorRegistry()
    return SchedulerMetrics(Histogram("lag_seconds", "test", registry=registry),
                            PromCounter("missed", "test", registry=registry))


def test_spread_places_same_interval_targets_evenly() -> None:
    names = [(f"t{i}", 30.0) for i in range(1000)]
    offsets = spread(names)
    ordered = sorted(offsets.values())
    assert ordered[0] == 0.0
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(ordered)}
    assert gaps == {0.03}
    # no second of the interval holds more than its share
    per_second = Counter(int(v) for v in ordered)
    assert max(per_second.values()) <= 34


def test_spread_is_stable_and_independent_of_order() -> None:
    names = [(f"t{i}", 10.0) for i in range(50)] + [("x", 60.0)]
    assert spread(names) == spread(list(reversed(names)))
    assert spread(names)["x"] == 0.0  # alone in its interval


async def test_scheduled_fire_times_are_spread_across_the_interval() -> None:
    jobs = [Job(TargetState(target(f"t{i}", 10.0)), CountingProbe()) for i in range(100)]
    sched = ProbeScheduler(jobs, lag_histogram(), lambda _j, _r: None)
    sched.start()
    try:
        starts = sorted(j.start for j in jobs)
        span = starts[-1] - starts[0]
        assert 9.8 < span < 10.0
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert min(gaps) > 0.09  # evenly: 100 fires spread over 10 s
    finally:
        await sched.stop()


async def test_target_never_overlaps_itself_and_skips_are_counted() -> None:
    slow = CountingProbe(hold=1.0)  # runs 1 s (bounded at timeout + margin) every 0.2 s
    job = Job(TargetState(target("slow", 0.2)), slow)
    results: list[ProbeResult] = []
    sched = ProbeScheduler([job], lag_histogram(), lambda _j, r: results.append(r),
                           first_delay=0.0)
    sched.start()
    try:
        async with asyncio.timeout(10):
            while job.state.skipped < 2:
                await asyncio.sleep(0.05)
    finally:
        await sched.stop()
    assert slow.max_active == 1
    assert job.state.skipped >= 2


async def test_hung_target_does_not_delay_others() -> None:
    hung = CountingProbe(hold=3600)
    fast = CountingProbe()
    jobs = [Job(TargetState(target("hung", 0.3)), hung),
            Job(TargetState(target("fast", 0.3)), fast)]
    done: list[str] = []
    sched = ProbeScheduler(jobs, lag_histogram(), lambda j, _r: done.append(j.state.name),
                           first_delay=0.0)
    sched.start()
    try:
        async with asyncio.timeout(20):
            while done.count("fast") < 3:
                await asyncio.sleep(0.05)
            # the hung probe is cut at its timeout plus the safety margin
            while "hung" not in done:
                await asyncio.sleep(0.05)
    finally:
        await sched.stop()
    # three fast probes finished while the hung one was still in its first run
    assert done.index("hung") >= 3
    assert hung.max_active == 1


async def test_scheduler_lag_is_observed() -> None:
    metrics = lag_histogram()
    job = Job(TargetState(target("a", 0.2)), CountingProbe())
    sched = ProbeScheduler([job], metrics, lambda _j, _r: None, first_delay=0.0)
    sched.start()
    try:
        async with asyncio.timeout(10):
            while job.probe.runs < 3:  # type: ignore[attr-defined]
                await asyncio.sleep(0.05)
    finally:
        await sched.stop()
    samples = next(iter(metrics.lag.collect())).samples
    count = next(s.value for s in samples if s.name == "lag_seconds_count")
    assert count >= 3
    assert job.start > 0


async def test_run_bounded_turns_misbehaviour_into_results() -> None:
    hung = await run_bounded(CountingProbe(hold=3600), timeout=0.1)
    assert not hung.success and hung.reason is Reason.TIMEOUT
    assert "0.1s" in hung.detail
    broken = await run_bounded(RaisingProbe(), timeout=1)
    assert not broken.success and broken.reason is Reason.INTERNAL
    assert "RuntimeError" in broken.detail


def test_state_records_flips_quietly_on_healthy_start() -> None:
    state = TargetState(target("a", 1.0))
    ok = Outcome(SystemClock()).result()
    bad_outcome = Outcome(SystemClock())
    bad_outcome.fail(Reason.REFUSED, "connection refused")
    bad = bad_outcome.result()
    assert state.record(ok) is None
    assert state.record(bad) == "down"
    assert state.record(bad) is None
    assert state.consecutive_failures == 2
    assert state.record(ok) == "up"
    assert (state.successes, state.failures) == (2, 2)
    assert state.failures_by_reason == {"refused": 2}


def test_missed_runs_are_counted_and_logged_once_a_minute(
        caplog: pytest.LogCaptureFixture) -> None:
    metrics = lag_histogram()
    now = [1000.0]
    sched = ProbeScheduler([], metrics, lambda _j, _r: None, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="monitor.runtime.scheduler"):
        for _ in range(500):  # a stalled loop: every target's run comes too late
            sched._missed_runs(1)
        now[0] += 61
        sched._missed_runs(1)
    samples = next(iter(metrics.missed.collect())).samples
    assert next(s.value for s in samples if s.name == "missed_total") == 501
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("1 probe runs missed") and lines[1].startswith("500 probe")


async def test_jobs_added_and_removed_while_running(caplog: pytest.LogCaptureFixture) -> None:
    """A reload's part: a removed job's run in flight is cancelled quietly (nothing recorded,
    nothing logged, no crash counted); an added job runs; the others keep their schedule."""
    # intervals apart, so that each is alone in its spread group and fires at once
    hung = Job(TargetState(target("hung", 61.0, 30.0)), CountingProbe(hold=3600))
    kept = Job(TargetState(target("kept", 60.0)), CountingProbe())
    results: list[str] = []
    crashes: list[str] = []
    sched = ProbeScheduler([hung, kept], lag_histogram(),
                           lambda job, _r: results.append(job.state.name),
                           first_delay=0.05, on_crash=crashes.append)
    sched.start()
    try:
        start = kept.start
        async with asyncio.timeout(10):
            while hung.task is None or "kept" not in results:
                await asyncio.sleep(0.01)
        task = hung.task
        with caplog.at_level(logging.DEBUG, logger="apscheduler"):
            sched.remove(hung)
            await asyncio.wait([task], timeout=10)
            added = Job(TargetState(target("added", 60.0)), CountingProbe())
            sched.add(added)
            async with asyncio.timeout(10):
                while "added" not in results:
                    await asyncio.sleep(0.01)
    finally:
        await sched.stop()
    assert task.done() and not task.cancelled()  # it ended quietly inside _fire
    assert "hung" not in results and crashes == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [j.state.name for j in sched.jobs] == ["kept", "added"]
    assert kept.start == start


async def test_grid_mode_asks_the_gate_with_the_slot_and_a_refused_run_is_nothing() -> None:
    from monitor.runtime import grid_offset, grid_slot

    probe = CountingProbe()
    state = TargetState(target("gated", 0.2))
    asked: list[int] = []
    results: list[ProbeResult] = []

    async def gate(_job: Job, slot: int) -> bool:
        asked.append(slot)
        return slot % 2 == 0

    sched = ProbeScheduler([Job(state, probe)], lag_histogram(),
                           lambda _j, r: results.append(r), grid=True, gate=gate)
    sched.start()
    try:
        async with asyncio.timeout(10):
            while len(asked) < 6:
                await asyncio.sleep(0.05)
    finally:
        await sched.stop()
    offset = grid_offset("gated", 0.2)
    assert asked == list(range(asked[0], asked[0] + len(asked)))  # consecutive slots
    assert all(grid_slot(r.started_at.timestamp(), offset, 0.2) % 2 == 0 for r in results)
    assert probe.runs == len(results) >= 2  # only the allowed slots ran
    assert state.skipped == 0  # a refused run is no overlap
