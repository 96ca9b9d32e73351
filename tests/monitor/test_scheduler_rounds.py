"""The scheduler's rounds (issue 16): APScheduler runs one job per interval, which arms each
target's run on the loop's timers at its offset; runs of one WINDOW share a wake-up and never
start before their time; a late round arms each run once, on the same grid; runs dropped
(past their grace, or by APScheduler) are counted; targets join and leave rounds at run time;
nothing starts after stop()."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from typing import cast

import pytest
from apscheduler.events import EVENT_JOB_MISSED, JobEvent
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter

from monitor.config import TargetConfig
from monitor.runtime import SchedulerMetrics, TargetState
from monitor.runtime.scheduler import ARM_SLACK, WINDOW, Job, ProbeScheduler
from probes.base import Outcome, ProbeResult, SystemClock


class Probe:
    """Returns at once, noting the wall time of each run."""

    def __init__(self) -> None:
        self.at: list[float] = []

    async def run(self) -> ProbeResult:
        self.at.append(time.time())
        return Outcome(SystemClock()).result()


def job(name: str, interval: float) -> Job:
    return Job(TargetState(TargetConfig(name, "http", "http://127.0.0.1:1/", interval,
                                        interval)), Probe())


def metrics() -> SchedulerMetrics:
    registry = CollectorRegistry()
    return SchedulerMetrics(Histogram("lag_seconds", "test", registry=registry),
                            PromCounter("missed", "test", registry=registry))


def missed(m: SchedulerMetrics) -> float:
    return next(s.value for s in next(iter(m.missed.collect())).samples
                if s.name == "missed_total")


def on_window_grid(offset: float) -> bool:
    return math.isclose(offset / WINDOW, round(offset / WINDOW), abs_tol=1e-6)


async def test_one_apscheduler_job_per_interval_and_runs_share_windows() -> None:
    jobs = [job(f"t{i}", 1.0) for i in range(80)] + [job(f"s{i}", 5.0) for i in range(3)]
    sched = ProbeScheduler(jobs, metrics(), lambda _j, _r: None, first_delay=0.0)
    sched.start()
    try:
        assert sched._scheduler is not None
        assert sorted(j.id for j in sched._scheduler.get_jobs()) == ["round/1.0", "round/5.0"]
        assert all(on_window_grid(j.offset) and 0 <= j.offset < j.state.config.interval
                   for j in jobs)
        loop = asyncio.get_running_loop()
        armed = [j for j in jobs if j.timer is not None]
        assert len(armed) == len(jobs)  # the first round is under way: every run is armed
        deadlines = Counter(j.timer.when() for j in jobs[:80] if j.timer is not None)
        windows = round(1.0 / WINDOW)  # 80 runs spread over the interval's windows
        assert len(deadlines) == windows and set(deadlines.values()) == {80 // windows}
        for j in jobs:
            assert j.timer is not None
            # armed for its own time (plus the slack), never before; 5 ms: the two clocks
            ahead = j.timer.when() - loop.time()
            assert j.start + ARM_SLACK - 0.005 <= time.time() + ahead
            assert time.time() + ahead <= j.start + ARM_SLACK + 0.005
    finally:
        await sched.stop()


async def test_runs_never_start_before_their_time_and_keep_the_grid() -> None:
    j = job("a", 0.1)
    sched = ProbeScheduler([j], metrics(), lambda _j, _r: None, first_delay=0.0)
    sched.start()
    probe = cast(Probe, j.probe)
    try:
        async with asyncio.timeout(20):
            while len(probe.at) < 6:
                await asyncio.sleep(0.02)
    finally:
        await sched.stop()
    # the n-th run is that of fire n or, after a stall, a later one; 1 ms: the two clocks
    assert all(at >= j.start + n * 0.1 - 0.001 for n, at in enumerate(probe.at))
    # and no run is more than a loop turn's noise behind a fire of the grid
    assert all((at - j.start) % 0.1 < 0.09 for at in probe.at)


async def test_a_late_round_arms_each_run_once_on_the_same_grid() -> None:
    shift = [0.0]
    jobs = [job(f"t{i}", 0.2) for i in range(4)]
    sched = ProbeScheduler(jobs, metrics(), lambda _j, _r: None,
                           clock=lambda: time.time() + shift[0], first_delay=10.0)
    sched.start()
    try:
        assert all(j.timer is None for j in jobs)  # the first round is 10 s away
        rnd = sched._rounds[0.2]
        shift[0] = 10.0 + 1.0 + 0.01  # as if the loop stood still past five rounds
        await sched._arm_round(rnd)
        assert rnd.at is not None
        steps = (rnd.at - rnd.origin) / 0.2
        assert math.isclose(steps, round(steps), abs_tol=1e-6) and round(steps) == 5
        async with asyncio.timeout(10):
            while not all(cast(Probe, j.probe).at for j in jobs):
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
    finally:
        await sched.stop()
    assert [len(cast(Probe, j.probe).at) for j in jobs] == [1, 1, 1, 1]


async def test_runs_dropped_are_counted_each() -> None:
    m = metrics()
    jobs = [job(f"t{i}", 1.0) for i in range(3)]
    sched = ProbeScheduler(jobs, m, lambda _j, _r: None, first_delay=10.0)
    sched.start()
    try:
        # APScheduler dropped a round (past its misfire grace): each member's run is missed
        sched._on_missed(JobEvent(EVENT_JOB_MISSED, "round/1.0", "default"))
        assert missed(m) == 3
        # a run begun past its grace (max(1 s, interval)) is dropped and counted
        await sched._fire(jobs[0], time.time() - 5.0)
        assert missed(m) == 4 and cast(Probe, jobs[0].probe).at == []
        await sched._fire(jobs[0], time.time() - 0.5)
        assert missed(m) == 4 and len(cast(Probe, jobs[0].probe).at) == 1
    finally:
        await sched.stop()


class BrokenHistogram:
    def observe(self, _amount: float) -> None:
        raise RuntimeError("bug")


async def test_a_bug_in_a_run_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    broken = SchedulerMetrics(cast(Histogram, BrokenHistogram()), metrics().missed)
    crashes: list[str] = []
    j = job("a", 1.0)
    sched = ProbeScheduler([j], broken, lambda _j, _r: None, on_crash=crashes.append)
    with caplog.at_level(logging.ERROR, logger="monitor.runtime.scheduler"):
        await sched._fire(j, time.time())
    assert crashes == ["scheduler"]
    assert any("the run of target a failed" in r.getMessage() and r.exc_info
               for r in caplog.records)


async def test_targets_leave_and_join_rounds_at_run_time() -> None:
    owned = {"a": True, "b": True}
    jobs = [job("a", 1.0), job("b", 1.0)]
    sched = ProbeScheduler(jobs, metrics(), lambda _j, _r: None, grid=True,
                           active=lambda j: owned[j.state.name])
    sched.start()
    try:
        assert sched._scheduler is not None
        owned["a"] = False
        sched.refresh()
        assert jobs[0].timer is None and jobs[0] not in sched._rounds[1.0].members
        owned["b"] = False
        sched.refresh()  # the round is empty: APScheduler's job goes with it
        assert sched._rounds == {} and sched._scheduler.get_jobs() == []
        owned["a"] = True
        sched.refresh()
        rnd = sched._rounds[1.0]
        assert list(rnd.members) == [jobs[0]] and rnd.at is not None
        # armed in the round under way if its grid point there is still ahead
        assert (jobs[0].timer is not None) == (rnd.at + jobs[0].offset > time.time())
        assert on_window_grid(jobs[0].offset)
        extra = job("c", 1.0)
        owned["c"] = True
        sched.add(extra)
        assert extra in rnd.members
        sched.remove(extra)
        assert extra not in rnd.members and extra.timer is None
    finally:
        await sched.stop()


async def test_nothing_starts_after_stop() -> None:
    j = job("a", 1.0)
    sched = ProbeScheduler([j], metrics(), lambda _j, _r: None, first_delay=10.0)
    sched.start()
    assert j.timer is None
    sched._due(j, time.time())  # a run handed to the loop, not begun yet
    await sched.stop()
    await asyncio.sleep(0.05)
    assert cast(Probe, j.probe).at == []
    assert j.timer is None


async def test_a_bug_arming_a_round_is_logged_and_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    crashes: list[str] = []
    j = job("a", 1.0)
    sched = ProbeScheduler([j], metrics(), lambda _j, _r: None, first_delay=10.0,
                           on_crash=crashes.append)
    sched.start()
    try:
        rnd = sched._rounds[1.0]
        rnd.members[cast(Job, None)] = None  # a member that cannot be armed
        with caplog.at_level(logging.ERROR, logger="monitor.runtime.scheduler"):
            await sched._arm_round(rnd)
    finally:
        await sched.stop()
    assert crashes == ["scheduler"]
    assert any("arming the round of interval 1s failed" in r.getMessage() and r.exc_info
               for r in caplog.records)
