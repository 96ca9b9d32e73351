"""Runs every target's probe on its own interval: APScheduler keeps the cadence, the event
loop's timers place the runs inside it.

Targets sharing an interval form a round. APScheduler runs each round as one interval job
(coalesced after a stall, dropped past its misfire grace, added and removed at run time); a
round arms one loop timer per target at the target's offset inside the interval. Offsets are
spread evenly across the interval, so a thousand targets with the same interval never fire in
one burst, and placed on a 100 ms grid (`WINDOW`), so the runs of one window share one wake-up
of the process: measured, a wake-up costs about as much CPU as a probe's own Python, and
APScheduler's per-job bookkeeping (datetime triggers, a sorted job store, events, an executor)
as much again when every target is its own job (`python -m bench.http_cpu` prints the parts).

Fire times are `origin + offset + n * interval`, so they do not drift; a target never overlaps
itself; every probe is bounded by its timeout so a hung target delays nothing else; the delay
between a fire's scheduled time and its start is observed into
`crypitor_scheduler_lag_seconds`, and a run found more than its grace (`max(1 s, interval)`)
late is dropped and counted in `crypitor_scheduler_missed_total`, as is every run of a round
APScheduler dropped. A result handler that raises is logged with its traceback and reported
to `on_crash("scheduler")` (counted like a supervised task's crash); the next run goes on.

With `[cluster]` the scheduler runs on a wall-clock grid (`grid=True`): rounds start at
multiples of the interval and a target's offset is taken from its name alone (`grid_offset`),
so every instance agrees on slot k whatever it started with or reloaded; an async `gate` is
asked before each run (may this instance probe slot k?). A run the gate refuses is no result
and no overlap: nothing is recorded.
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
# Runs placed in one window of this width start together, on one wake-up of the process.
WINDOW = 0.1
# A loop timer may fire a hair before its time (loop timers are millisecond-grained); a run
# is armed this much later, so that it never starts before its scheduled time.
ARM_SLACK = 0.001
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
    # where in its round's interval it fires, on the WINDOW grid; in grid mode rounds start
    # at multiples of the interval, so fire times are offset + k * interval (unix time)
    offset: float = 0.0
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)  # its armed run


@dataclass(eq=False)
class Round:
    """The targets sharing an interval: one APScheduler job, whose run at `origin + k *
    interval` arms each member's run at that time plus the member's offset."""

    interval: float
    origin: float  # unix time of round 0 (0 in grid mode: rounds on the wall-clock grid)
    members: dict[Job, None] = field(default_factory=dict)  # insertion-ordered set
    at: float | None = None  # start of the latest round armed (None: none yet)

    @property
    def id(self) -> str:
        return f"round/{self.interval!r}"


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


def place(offset: float) -> float:
    """`offset` moved back onto the WINDOW grid (at most one window earlier)."""
    return math.floor(offset / WINDOW + 1e-9) * WINDOW


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
        self._rounds: dict[float, Round] = {}  # by interval
        self._lag = metrics.lag
        self._missed = metrics.missed
        self._missed_unlogged = 0
        self._missed_logged_at = 0.0
        self._on_result = on_result
        self._on_crash = on_crash
        self._clock = clock
        self._first_delay = first_delay
        self._scheduler: AsyncIOScheduler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._to_loop = 0.0  # unix time + this = loop time (`_read_loop_offset`)
        self._stopping = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._read_loop_offset()
        sched = _Scheduler(timezone=UTC, job_defaults={
            "coalesce": True,  # after a stall, one round, not one per missed round
            "max_instances": 1,
        })
        self._scheduler = sched
        offsets = spread([(j.state.name, j.state.config.interval) for j in self._jobs])
        now = self._clock()
        origin = 0.0 if self._grid else now + self._first_delay
        # grid: the runs of the round under way still ahead (an instance joining a cluster
        # must not leave a slot to nobody while the others count it in); else every run of
        # the first round
        cutoff = now if self._grid else origin - EARLY
        for job in self._jobs:
            if self._active is None or self._active(job):
                interval = job.state.config.interval
                job.offset = place(grid_offset(job.state.name, interval) if self._grid
                                   else offsets[job.state.name])
                rnd = self._round(interval, origin)
                job.start = (grid_start(now, job.offset, interval) if self._grid
                             else origin + job.offset)
                self._join(rnd, job, cutoff)
        sched.add_listener(self._on_missed, EVENT_JOB_MISSED)
        sched.start()
        log.info("scheduler started with %d targets (%d fired here)", len(self._jobs),
                 sum(len(r.members) for r in self._rounds.values()))

    def _round(self, interval: float, origin: float) -> Round:
        """The round of `interval`, made (and given to APScheduler) if there is none. A new
        round starting before now is under way: its first APScheduler run is the next one."""
        rnd = self._rounds.get(interval)
        if rnd is not None:
            return rnd
        rnd = self._rounds[interval] = Round(interval, origin)
        now, first = self._clock(), origin
        if origin <= now:
            rnd.at = origin + math.floor((now - origin) / interval) * interval
            first = rnd.at + interval
        assert self._scheduler is not None
        self._scheduler.add_job(
            self._arm_round, IntervalTrigger(seconds=interval, timezone=UTC,
                                             start_date=datetime.fromtimestamp(first, UTC)),
            args=[rnd], id=rnd.id, misfire_grace_time=max(1, math.ceil(interval)))
        return rnd

    def _join(self, rnd: Round, job: Job, cutoff: float) -> None:
        """`job` fires in `rnd` from now on: in the round under way too, if its time there is
        after `cutoff`."""
        rnd.members[job] = None
        if rnd.at is not None and rnd.at + job.offset > cutoff:
            self._arm(job, rnd.at + job.offset)

    def _leave(self, job: Job) -> None:
        """`job` fires no more (its run in flight, if any, goes on)."""
        rnd = self._rounds.get(job.state.config.interval)
        if rnd is not None:
            rnd.members.pop(job, None)
            if not rnd.members:
                del self._rounds[rnd.interval]
                if self._scheduler is not None:
                    self._scheduler.remove_job(rnd.id)
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None

    def _read_loop_offset(self) -> None:
        """What to add to a unix time to get the loop's time of it, read once per round: runs
        of one window then get one deadline, to the bit, and share one wake-up."""
        assert self._loop is not None
        self._to_loop = self._loop.time() - self._clock()

    def _arm(self, job: Job, fire: float) -> None:
        assert self._loop is not None
        if job.timer is not None:  # its last run still waits for its time: a stall
            job.timer.cancel()
            self._missed_runs(1)
        job.timer = self._loop.call_at(fire + self._to_loop + ARM_SLACK, self._due, job, fire)

    async def _arm_round(self, rnd: Round) -> None:
        """APScheduler's job: arm this round's runs. After a stall it comes late, once (its
        runs past their grace are then dropped and counted by `_run`)."""
        if self._stopping:  # begun just before stop() paused APScheduler
            return
        try:
            now = self._clock()
            at = rnd.origin + math.floor((now - rnd.origin + EARLY) / rnd.interval) \
                * rnd.interval
            rnd.at = at
            self._read_loop_offset()
            for job in rnd.members:
                self._arm(job, at + job.offset)
        except Exception:  # our bug: loud and counted; APScheduler runs the next round
            log.exception("arming the round of interval %gs failed", rnd.interval)
            self._on_crash("scheduler")

    def _due(self, job: Job, fire: float) -> None:
        job.timer = None
        assert self._loop is not None
        self._loop.create_task(self._fire(job, fire))

    def refresh(self) -> None:
        """Fire the jobs `active` selects now and no others (cluster mode: ownership changed).
        A job that became active fires from its next grid point on; one that became inactive
        stops firing, its run in flight (if any) finishing as usual."""
        if self._scheduler is None or self._active is None or self._stopping:
            return
        now = self._clock()
        for job in self._jobs:
            interval = job.state.config.interval
            rnd = self._rounds.get(interval)
            scheduled = rnd is not None and job in rnd.members
            want = self._active(job)
            if want and not scheduled:
                job.offset = place(grid_offset(job.state.name, interval) if self._grid
                                   else job.offset)
                self._join(self._round(interval, 0.0 if self._grid else now), job, now)
            elif not want and scheduled:
                self._leave(job)

    @property
    def jobs(self) -> list[Job]:
        return list(self._jobs)

    def add(self, job: Job) -> None:
        """Schedule a job while running (a target added or changed by a config reload): its
        first fire comes after `first_delay`, later ones every interval from there."""
        assert self._scheduler is not None, "add() is for a started scheduler"
        self._jobs.append(job)
        if self._active is not None and not self._active(job):
            return
        now = self._clock()
        interval = job.state.config.interval
        first = now + self._first_delay
        if self._grid:
            job.offset = place(grid_offset(job.state.name, interval))
            rnd = self._round(interval, 0.0)
            job.start = grid_start(first, job.offset, interval)
        else:
            rnd = self._round(interval, first)
            # the window at or after `first`, so that nothing fires before it
            job.offset = place((first - rnd.origin) % interval + WINDOW - 1e-6) % interval
            job.start = first
        self._join(rnd, job, first - EARLY if self._grid else now)

    def remove(self, job: Job) -> None:
        """Stop scheduling `job` and cancel its run in flight, if any (it records nothing)."""
        job.retired = True
        self._jobs.remove(job)
        self._leave(job)
        if job.task is not None and not job.task.done():
            job.task.cancel()

    async def stop(self) -> None:
        """Stop firing, cancel the probes in flight, and end APScheduler. Runs already
        started get one loop turn first, so each ends inside `_fire` (quietly) rather than
        never starting."""
        self._stopping = True
        if self._scheduler is None:
            return
        self._scheduler.pause()
        for job in self._jobs:
            if job.timer is not None:
                job.timer.cancel()
                job.timer = None
        await asyncio.sleep(0)
        running = [j.task for j in self._jobs if j.task is not None and not j.task.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        self._scheduler.shutdown(wait=False)
        self._scheduler = None

    def _on_missed(self, event: JobEvent) -> None:
        """APScheduler dropped a round (it came past its grace): each of its runs is missed."""
        self._missed_runs(sum(len(r.members) for r in self._rounds.values()
                              if r.id == event.job_id))

    def _missed_runs(self, count: int) -> None:
        if not count:
            return
        self._missed.inc(count)
        self._missed_unlogged += count
        now = self._clock()
        if now - self._missed_logged_at >= MISSED_LOG_EVERY:
            log.warning("%d probe runs missed their time and were dropped (event loop "
                        "blocked or machine suspended?); see crypitor_scheduler_missed_total",
                        self._missed_unlogged)
            self._missed_unlogged, self._missed_logged_at = 0, now

    def slot(self, job: Job, fire_time: float) -> int:
        """The slot a run scheduled at `fire_time` is: k of the grid in grid mode, else the
        number of intervals since the job's first fire."""
        interval = job.state.config.interval
        if self._grid:
            return grid_slot(fire_time, job.offset, interval)
        return round((fire_time - job.start) / interval)

    async def _allowed(self, job: Job, slot: int) -> bool:
        assert self._gate is not None
        try:
            return await self._gate(job, slot)
        except Exception:  # our bug: loud and counted; probing goes on (fail open)
            log.exception("the probe gate of target %s failed", job.state.name)
            self._on_crash("scheduler")
            return True

    async def _fire(self, job: Job, scheduled: float) -> None:
        """One run of `job`, scheduled at `scheduled` (unix time)."""
        if self._stopping or job.retired:  # started after stop() or remove(): nothing
            return
        try:
            await self._run(job, scheduled)
        except Exception:  # our bug: loud and counted, and the next run goes on
            log.exception("the run of target %s failed", job.state.name)
            self._on_crash("scheduler")

    async def _run(self, job: Job, scheduled: float) -> None:
        now = self._clock()
        interval = job.state.config.interval
        if now - scheduled > max(1, math.ceil(interval)):  # past its grace: dropped
            self._missed_runs(1)
            return
        self._lag.observe(max(0.0, now - scheduled))
        state = job.state
        if state.running:
            state.skipped += 1
            return
        state.running = True
        job.task = asyncio.current_task()
        try:
            if self._gate is not None and not await self._allowed(job,
                                                                  self.slot(job, scheduled)):
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
