"""Runs every target's probe on its own interval, on APScheduler's asyncio scheduler.

Start times are spread evenly across each interval so a thousand targets with the same
interval never fire in one burst; fire times are `start + n * interval`, so they do not
drift; a target never overlaps itself; every probe is bounded by its timeout so a hung
target delays nothing else; the delay between a fire's scheduled time and its start is
observed into `crypitor_scheduler_lag_seconds`. The scheduler's runs are APScheduler jobs,
not a task of ours: a result handler that raises is logged with its traceback and reported
to `on_crash("scheduler")` (counted like a supervised task's crash); the next run goes on.

With `[cluster]` the scheduler runs on a wall-clock grid (`grid=True`): fire times are
`offset + k * interval` with an offset taken from the target's name alone (`grid_offset`), so
every instance agrees on slot k whatever it started with or reloaded; an async `gate` is asked
before each run (may this instance probe slot k?). A run the gate refuses is no result and
no overlap: nothing is recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from apscheduler.events import EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import Counter, Histogram

from monitor.runtime.state import TargetState
from probes.base import Outcome, Probe, ProbeResult, Reason, SystemClock

log = logging.getLogger(__name__)
# APScheduler logs every run at INFO and every missed run at WARNING: at thousands of
# targets either is the whole log. Misses are counted and summarised here instead.
logging.getLogger("apscheduler").setLevel(logging.ERROR)
MISSED_LOG_EVERY = 60.0

# How long past its own timeout a probe may run before the scheduler gives up on it; a
# probe that honours its timeout never gets here.
SAFETY_MARGIN = 1.0


class _Scheduler(AsyncIOScheduler):  # type: ignore[misc]
    """AsyncIOScheduler, minus idle wake-ups. Its timer may fire a hair before the next
    run is due (loop timers are millisecond-grained); it then finds nothing to do and
    re-arms, several times per run, each time through `call_soon_threadsafe` (a pipe
    write). Measured: six wake-ups per run at 500 jobs. A little slack and a direct call
    make it one."""

    def _start_timer(self, wait_seconds: float | None) -> None:
        self._stop_timer()
        if wait_seconds is not None:
            self._timeout = self._eventloop.call_later(wait_seconds + TIMER_SLACK,
                                                       self._wake_in_loop)

    def _wake_in_loop(self) -> None:
        self._stop_timer()
        self._start_timer(self._process_jobs())


TIMER_SLACK = 0.002
EARLY = 0.001


@dataclass(frozen=True)
class SchedulerMetrics:
    """The scheduler's own series, registered by `monitor.exporters.new_registry`."""

    lag: Histogram
    missed: Counter


@dataclass(eq=False)
class Job:
    state: TargetState
    probe: Probe
    start: float = 0.0  # unix time of the first fire; later fires are start + n * interval
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    retired: bool = False  # removed by a config reload: a run cancelled now ends quietly
    offset: float = 0.0  # grid mode: fire times are offset + k * interval (unix time)


Gate = Callable[[Job, int], Awaitable[bool]]  # (job, slot k): may this instance run it?


def grid_offset(name: str, interval: float) -> float:
    """Where in [0, interval) target `name` fires on the wall-clock grid: from its name's
    hash alone, so every instance (and every config with that target) agrees, and targets
    sharing an interval are spread over it."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**64 * interval


def grid_start(now: float, offset: float, interval: float) -> float:
    """The first grid point `offset + k * interval` at or after `now`."""
    return offset + math.ceil((now - offset) / interval) * interval


def grid_slot(fire_time: float, offset: float, interval: float) -> int:
    """k of the grid point `fire_time` (rounded: a fire a hair off its point is that point)."""
    return round((fire_time - offset) / interval)


def spread(targets: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Offsets in [0, interval) for each (name, interval): targets sharing an interval are
    placed evenly across it, in an order fixed by their names' hashes (stable across
    restarts, and unrelated to config order, so neighbours in config are not neighbours
    in time)."""
    groups: dict[float, list[str]] = {}
    for name, interval in targets:
        groups.setdefault(interval, []).append(name)
    offsets: dict[str, float] = {}
    for interval, names in groups.items():
        names.sort(key=lambda n: hashlib.blake2b(n.encode(), digest_size=8).digest())
        step = interval / len(names)
        for i, name in enumerate(names):
            offsets[name] = i * step
    return offsets


class ProbeScheduler:
    def __init__(self, jobs: Sequence[Job], metrics: SchedulerMetrics,
                 on_result: Callable[[Job, ProbeResult], None],
                 clock: Callable[[], float] = time.time, first_delay: float = 0.2,
                 on_crash: Callable[[str], None] = lambda _task: None,
                 grid: bool = False, gate: Gate | None = None,
                 active: Callable[[Job], bool] | None = None) -> None:
        """`grid`: fire on the wall-clock grid of `grid_offset` (cluster mode); `gate`: asked
        before every run with the run's slot (its fire count since the epoch in grid mode),
        False skips it. A gate that raises is our bug: logged, counted, and the probe runs.
        `active`: which jobs this scheduler fires at all (cluster mode: the targets this
        instance owns); the others stay known but unscheduled until `refresh()` finds them
        active, so an instance pays for its own share of the targets only."""
        self._jobs = list(jobs)
        self._grid = grid
        self._gate = gate
        self._active = active
        self._scheduled: set[str] = set()  # names of the jobs APScheduler fires
        self._lag = metrics.lag
        self._missed = metrics.missed
        self._missed_unlogged = 0
        self._missed_logged_at = 0.0
        self._on_result = on_result
        self._on_crash = on_crash
        self._clock = clock
        self._first_delay = first_delay
        self._scheduler: AsyncIOScheduler | None = None
        self._stopping = False

    def start(self) -> None:
        sched = _Scheduler(timezone=UTC, job_defaults={
            "coalesce": True,  # after a stall, run once, not once per missed fire
            "max_instances": 2,  # overlap is refused (and counted) by _fire itself
        })
        offsets = spread([(j.state.name, j.state.config.interval) for j in self._jobs])
        # on the grid, from the next grid point on: an instance joining a cluster must not
        # leave a slot to nobody while the others already count it in
        now = self._clock() + (0.0 if self._grid else self._first_delay)
        for job in self._jobs:
            if self._active is None or self._active(job):
                self._schedule(sched, job, self._first_fire(job, now, offsets[job.state.name]))
        sched.add_listener(self._on_missed, EVENT_JOB_MISSED)
        sched.start()
        self._scheduler = sched
        log.info("scheduler started with %d targets (%d fired here)", len(self._jobs),
                 len(self._scheduled))

    def refresh(self) -> None:
        """Fire the jobs `active` selects now and no others (cluster mode: ownership changed).
        A job that became active fires from the next grid point on; one that became inactive
        stops firing, its run in flight (if any) finishing as usual."""
        sched = self._scheduler
        if sched is None or self._active is None or self._stopping:
            return
        now = self._clock()
        for job in self._jobs:
            name, want = job.state.name, self._active(job)
            if want and name not in self._scheduled:
                self._schedule(sched, job, self._first_fire(job, now, 0.0))
            elif not want and name in self._scheduled:
                sched.remove_job(name)
                self._scheduled.discard(name)

    def _first_fire(self, job: Job, now: float, spread_offset: float) -> float:
        if not self._grid:
            return now + spread_offset
        interval = job.state.config.interval
        job.offset = grid_offset(job.state.name, interval)
        return grid_start(now, job.offset, interval)

    def _schedule(self, sched: AsyncIOScheduler, job: Job, start: float) -> None:
        interval = job.state.config.interval
        job.start = start
        trigger = IntervalTrigger(seconds=interval, timezone=UTC,
                                  start_date=datetime.fromtimestamp(start, UTC))
        sched.add_job(self._fire, trigger, args=[job], id=job.state.name,
                      misfire_grace_time=max(1, math.ceil(interval)))
        self._scheduled.add(job.state.name)

    @property
    def jobs(self) -> list[Job]:
        return list(self._jobs)

    def add(self, job: Job) -> None:
        """Schedule a job while running (a target added or changed by a config reload): its
        first fire comes after `first_delay`, later ones every interval from there."""
        assert self._scheduler is not None, "add() is for a started scheduler"
        self._jobs.append(job)
        if self._active is None or self._active(job):
            self._schedule(self._scheduler, job,
                           self._first_fire(job, self._clock() + self._first_delay, 0.0))

    def remove(self, job: Job) -> None:
        """Stop scheduling `job` and cancel its run in flight, if any (it records nothing)."""
        job.retired = True
        self._jobs.remove(job)
        if self._scheduler is not None and job.state.name in self._scheduled:
            self._scheduler.remove_job(job.state.name)
            self._scheduled.discard(job.state.name)
        if job.task is not None and not job.task.done():
            job.task.cancel()

    async def stop(self) -> None:
        """Stop firing, cancel the probes in flight, and end APScheduler. Runs it already
        submitted get one loop turn first, so each ends inside `_fire` (quietly) instead of
        being cancelled before it started (which APScheduler logs as a job error)."""
        self._stopping = True
        if self._scheduler is None:
            return
        self._scheduler.pause()
        await asyncio.sleep(0)
        running = [j.task for j in self._jobs if j.task is not None and not j.task.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        self._scheduler.shutdown(wait=False)
        self._scheduler = None

    def _on_missed(self, _event: JobEvent) -> None:
        self._missed.inc()
        self._missed_unlogged += 1
        now = self._clock()
        if now - self._missed_logged_at >= MISSED_LOG_EVERY:
            log.warning("%d probe runs missed their time and were dropped (event loop "
                        "blocked or machine suspended?); see crypitor_scheduler_missed_total",
                        self._missed_unlogged)
            self._missed_unlogged, self._missed_logged_at = 0, now

    def scheduled_time(self, job: Job, now: float) -> float:
        interval = job.state.config.interval
        # EARLY: a fire never comes early, but float rounding of `start` (APScheduler keeps
        # microseconds) must not make a punctual run look like the previous slot's
        return job.start + math.floor((now - job.start + EARLY) / interval) * interval

    def slot(self, job: Job, fire_time: float) -> int:
        """The slot a run scheduled at `fire_time` is: k of the grid in grid mode, else the
        number of intervals since the job's first fire."""
        interval = job.state.config.interval
        if self._grid:
            return grid_slot(fire_time, job.offset, interval)
        return round((fire_time - job.start) / interval)

    async def _allowed(self, job: Job, slot: int) -> bool:
        if self._gate is None:
            return True
        try:
            return await self._gate(job, slot)
        except Exception:  # our bug: loud and counted; probing goes on (fail open)
            log.exception("the probe gate of target %s failed", job.state.name)
            self._on_crash("scheduler")
            return True

    async def _fire(self, job: Job) -> None:
        now = self._clock()
        scheduled = self.scheduled_time(job, now)
        self._lag.observe(max(0.0, now - scheduled))
        state = job.state
        if state.running:
            state.skipped += 1
            return
        state.running = True
        job.task = asyncio.current_task()
        try:
            if not await self._allowed(job, self.slot(job, scheduled)):
                return  # another instance runs this slot: no result, no overlap
            result = await run_bounded(job.probe, state.config.timeout)
        except asyncio.CancelledError:
            if self._stopping or job.retired:  # our own doing: end quietly, record nothing
                return
            raise
        finally:
            state.running = False
            job.task = None
        try:
            self._on_result(job, result)
        except Exception:  # our bug: loud and counted, and the next run goes on
            log.exception("handling the result of target %s failed", state.name)
            self._on_crash("scheduler")


async def run_bounded(probe: Probe, timeout: float) -> ProbeResult:
    """The probe's result, or a timeout/internal failure if the probe itself misbehaves."""
    outcome = Outcome(SystemClock())
    try:
        async with asyncio.timeout(timeout + SAFETY_MARGIN):
            return await probe.run()
    except TimeoutError:
        outcome.fail(Reason.TIMEOUT, f"no result within {timeout:g}s")
    except Exception as exc:  # a bug in a probe must not stop the scheduler
        log.exception("probe raised instead of returning a result")
        outcome.fail(Reason.INTERNAL, f"internal error: {type(exc).__name__}")
    return outcome.result()
